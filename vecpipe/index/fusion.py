"""Fusing runs: reciprocal rank fusion and score fusions, one query at a time, ties by docid.

For each query, a document's fused score is a weighted sum over the runs (weights default to 1):

* ``rrf``: ``w / (rrf_k + rank)``; a run that lacks the document adds 0 (Cormack et al., 2009).
* ``zscore``: the run's score standardised over the query's list, ``(s - mean) / std`` (0 when all
  scores are equal); a run that lacks the document adds the lowest z-score of its list, as if the
  document were ranked just below its last one.
* ``minmax``: ``(s - min) / (max - min)`` over the query's list (1 when all scores are equal); a run
  that lacks the document adds 0, its list's minimum.
* ``combsum``: the raw scores summed (runs on comparable scales); absent adds 0.
* ``combmnz``: ``combsum`` times the number of runs that retrieved the document.

A query missing from a run entirely gets nothing from that run. Queries come out in the order they
first appear (first run first), each with its k best documents, ties broken by docid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpipe.errors import InputError

METHODS = ("rrf", "zscore", "minmax", "combsum", "combmnz")
DEFAULT_METHOD = "rrf"
DEFAULT_RRF_K = 60


def _key(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table.column("qid").cast(pa.string()), table.column("docid").cast(pa.string()), "\x1f")


def fuse(runs: Sequence[pa.Table], names: Sequence[str], method: str = DEFAULT_METHOD, weights: Sequence[float] | None = None,
         rrf_k: float = DEFAULT_RRF_K, k: int = 100) -> pa.Table:
    """A run table (qid, docid, rank, score) fusing ``runs`` (tables with qid, docid, rank, score)."""
    if method not in METHODS:
        raise InputError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if len(runs) < 2:
        raise InputError("fuse needs two runs or more")
    w = [1.0] * len(runs) if weights is None else [float(x) for x in weights]
    if len(w) != len(runs):
        raise InputError(f"--weights gives {len(w)} weights for {len(runs)} runs; give one weight per run")
    if not all(np.isfinite(w)):
        raise InputError("--weights: every weight must be a finite number")
    qsets = [set(pc.unique(r.column("qid").cast(pa.string())).to_pylist()) for r in runs]
    if not set.intersection(*qsets):
        raise InputError(f"{', '.join(names)}: the runs have no query in common; fuse runs of the same queries")
    parts_q, parts_d, parts_v, parts_n = [], [], [], []
    base: dict[str, float] = {}
    for run, weight in zip(runs, w):
        qid = run.column("qid").cast(pa.string()).combine_chunks()
        docid = run.column("docid").cast(pa.string()).combine_chunks()
        rank = np.asarray(run.column("rank").to_numpy(zero_copy_only=False), np.float64)
        score = np.asarray(run.column("score").to_numpy(zero_copy_only=False), np.float64)
        contrib = _contributions(method, qid, rank, score, rrf_k, base, weight)
        parts_q.append(qid)
        parts_d.append(docid)
        parts_v.append(pa.array(contrib * weight))
        parts_n.append(pa.array(np.ones(len(contrib), np.int64)))
    table = pa.table({"qid": pa.concat_arrays(parts_q), "docid": pa.concat_arrays(parts_d),
                      "v": pa.concat_arrays(parts_v), "n": pa.concat_arrays(parts_n)})
    order = table.column("qid").unique()  # first appearance: first run first
    grouped = table.group_by(["qid", "docid"], use_threads=False).aggregate([("v", "sum"), ("n", "sum")])
    fused = np.asarray(grouped.column("v_sum").to_numpy(), np.float64)
    if method == "combmnz":
        fused = fused * np.asarray(grouped.column("n_sum").to_numpy(), np.float64)
    if base:
        offsets = pa.array([base.get(q, 0.0) for q in grouped.column("qid").to_pylist()], pa.float64())
        fused = fused + np.asarray(offsets.to_numpy())
    from vecpipe.index.rescore import top_k

    q_pos = pc.index_in(grouped.column("qid"), value_set=order)
    first = np.argsort(np.asarray(q_pos.to_numpy(zero_copy_only=False)), kind="stable")  # queries in first-appearance order
    return top_k(grouped.column("qid").take(pa.array(first)), grouped.column("docid").take(pa.array(first)),
                 fused[first].astype(np.float32), k)


def _contributions(method: str, qid: pa.Array, rank: np.ndarray, score: np.ndarray, rrf_k: float,
                   base: dict[str, float], weight: float) -> np.ndarray:
    """Each row's (unweighted) share of its document's fused score; ``base`` gathers, per query, what
    this run adds to every document (the zscore of absent documents), weighted."""
    if method == "rrf":
        return 1.0 / (rrf_k + rank)
    if method in ("combsum", "combmnz"):
        return score
    codes = pc.dictionary_encode(qid).indices.to_numpy(zero_copy_only=False)
    uniq = pc.unique(qid).to_pylist()
    count = np.bincount(codes, minlength=len(uniq)).astype(np.float64)
    if method == "minmax":
        lo = np.full(len(uniq), np.inf)
        hi = np.full(len(uniq), -np.inf)
        np.minimum.at(lo, codes, score)
        np.maximum.at(hi, codes, score)
        span = (hi - lo)[codes]
        return np.where(span > 0, (score - lo[codes]) / np.where(span > 0, span, 1), 1.0)
    mean = np.bincount(codes, weights=score, minlength=len(uniq)) / count
    var = np.bincount(codes, weights=(score - mean[codes]) ** 2, minlength=len(uniq)) / count
    std = np.sqrt(var)
    z = np.where(std[codes] > 0, (score - mean[codes]) / np.where(std[codes] > 0, std[codes], 1), 0.0)
    lowest = np.full(len(uniq), np.inf)
    np.minimum.at(lowest, codes, z)
    for q, low in zip(uniq, lowest):
        base[q] = base.get(q, 0.0) + weight * float(low)
    return z - lowest[codes]

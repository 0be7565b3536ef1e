"""Vectorised retrieval measures with trec_eval semantics (numpy + Arrow compute, no pytrec_eval).

Semantics, matching trec_eval 9 as bundled by pytrec_eval:

- Each query's documents are ranked by score descending; ties are broken by docid *descending*
  (byte order), as trec_eval's ``comp_sim_docno`` does. The run's ``rank`` column is ignored.
- A document listed twice for one query is refused (trec_eval: "duplicate docs").
- Relevance from the qrels: a document is relevant when ``rel >= rel`` level (default 1); rel 0 and
  negative values are not relevant; documents absent from the qrels are not relevant.
- nDCG (``ndcg``/``ndcg_cut``): gain = rel for rel > 0, discount log2(rank + 1), ideal ranking from
  all of the query's judgements with rel > 0 (cut at k for nDCG@k).
- R@k (``recall_k``) = relevant in top k / relevant judged; P@k (``P_k``) = relevant in top k / k;
  RR (``recip_rank``) = 1 / rank of the first relevant (RR@k: within the top k, 0 otherwise);
  AP (``map``) = sum of precision at each relevant rank / relevant judged; AP@k (``map_cut_k``)
  sums only ranks <= k, same denominator. Judged@k (ir_measures): share of the top min(k, n)
  documents that appear in the qrels with any value.
- Queries with no relevant judgement score 0. The mean is over every query in the qrels; a qrels
  query missing from the run scores 0 (trec_eval ``-c``); run queries absent from the qrels are
  ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpipe.errors import InputError
from vecpipe.evaluate.measures import Measure, parse_measures


@dataclass
class EvalResult:
    """Evaluation of one run against qrels.

    ``values[i, j]`` is measure ``measures[j]`` for query ``qids[i]``; ``qids`` are the qrels'
    queries in the order they first appear in the qrels.
    """

    measures: list[Measure]
    qids: list[str]
    values: np.ndarray
    n_qrels_queries: int
    missing_queries: int
    n_run_queries: int
    _per_query: dict | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measures]

    @property
    def n_common_queries(self) -> int:
        return self.n_qrels_queries - self.missing_queries

    @property
    def aggregate(self) -> dict[str, float]:
        """Measure name (as given) -> mean over every qrels query."""
        if self.values.shape[0] == 0:
            return {m.name: 0.0 for m in self.measures}
        means = self.values.mean(axis=0)
        return {m.name: float(v) for m, v in zip(self.measures, means)}

    @property
    def per_query(self) -> dict[str, dict[str, float]]:
        """qid -> {measure name -> value}, for every qrels query (missing ones score 0)."""
        if self._per_query is None:
            names = self.names
            rows = self.values.tolist()
            self._per_query = {q: dict(zip(names, row)) for q, row in zip(self.qids, rows)}
        return self._per_query

    def per_query_table(self) -> pa.Table:
        """Long table ``qid: string, measure: string, value: float64``, query-major order."""
        nq, nm = self.values.shape
        return pa.table(
            {
                "qid": pa.array(np.repeat(np.asarray(self.qids, dtype=object), nm), pa.string()),
                "measure": pa.array(np.tile(np.asarray(self.names, dtype=object), nq), pa.string()),
                "value": pa.array(self.values.reshape(-1), pa.float64()),
            }
        )


def _combine(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _group_positions(codes: np.ndarray) -> np.ndarray:
    """0-based position of each row within its block of equal adjacent codes."""
    n = len(codes)
    idx = np.arange(n, dtype=np.int64)
    if n == 0:
        return idx
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


def evaluate(
    run: pa.Table,
    qrels: pa.Table,
    measures: Iterable[str | Measure] | str | None = None,
    run_name: str = "run",
    qrels_name: str = "qrels",
) -> EvalResult:
    """Evaluate ``run`` (qid, docid, score; rank ignored) against ``qrels`` (qid, docid, rel).

    ``measures`` are ir_measures names (default ``nDCG@10 R@100 RR@10 AP``). ``run_name`` and
    ``qrels_name`` name the inputs in error messages.
    """
    from vecpipe.formats.qrels import QRELS_SCHEMA, conform_qrels
    from vecpipe.formats.runs import run_columns

    ms = parse_measures(measures)
    r_qid, r_docid, r_score = run_columns(run, run_name)
    if qrels.schema.names != QRELS_SCHEMA.names or qrels.schema.types != QRELS_SCHEMA.types:
        qrels = conform_qrels(qrels, qrels_name)
    if qrels.num_rows == 0:
        raise InputError(f"{qrels_name}: qrels have no judgements; give qrels with at least one row")

    # ---- qrels: query codes in first-appearance order, doc codes, relevance
    j_qid = _combine(qrels.column("qid"))
    j_docid = _combine(qrels.column("docid"))
    j_rel = np.asarray(_combine(qrels.column("rel")).to_numpy(zero_copy_only=False), dtype=np.int64)
    uq = pc.unique(j_qid)
    nq = len(uq)
    j_q = np.asarray(pc.index_in(j_qid, value_set=uq), dtype=np.int64)
    ud = pc.unique(j_docid)
    nd = max(len(ud), 1)
    j_d = np.asarray(pc.index_in(j_docid, value_set=ud), dtype=np.int64)
    j_key = j_q * nd + j_d
    j_order = np.argsort(j_key, kind="stable")
    j_key_sorted = j_key[j_order]
    if len(j_key_sorted) > 1 and np.any(j_key_sorted[1:] == j_key_sorted[:-1]):
        i = int(np.flatnonzero(j_key_sorted[1:] == j_key_sorted[:-1])[0])
        row = int(j_order[i])
        raise InputError(
            f"{qrels_name}: query {j_qid[row].as_py()!r} judges document {j_docid[row].as_py()!r} twice; "
            "keep one judgement per (query, document) pair, as trec_eval requires"
        )

    # ---- run: keep rows of qrels queries
    r_qid_a = _combine(r_qid)
    n_run_queries = len(pc.unique(r_qid_a)) if len(r_qid_a) else 0
    r_q_all = pc.index_in(r_qid_a, value_set=uq)
    keep = pc.is_valid(r_q_all)
    n_keep = pc.sum(keep).as_py() or 0
    if n_keep == 0:
        run_example = r_qid_a[0].as_py() if len(r_qid_a) else None
        if run_example is None:
            raise InputError(f"{run_name}: the run is empty; give a run with at least one (qid, docid, score) row")
        raise InputError(
            "run and qrels share no query id; check that they come from the same dataset "
            f"(run qids look like {run_example!r}, qrels qids look like {uq[0].as_py()!r})"
        )
    if n_keep < len(r_qid_a):
        r_q_arr = r_q_all.filter(keep)
        r_docid_a = _combine(r_docid).filter(keep)
        r_score_a = _combine(r_score).filter(keep)
    else:
        r_q_arr = r_q_all
        r_docid_a = _combine(r_docid)
        r_score_a = _combine(r_score)
    if pa.types.is_floating(r_score_a.type):
        nan = pc.sum(pc.is_nan(r_score_a)).as_py() or 0
        if nan:
            raise InputError(f"{run_name}: {nan} scores are NaN; a run needs numeric scores")

    # duplicate documents within a query (trec_eval refuses them)
    t = pa.table({"q": r_q_arr, "d": r_docid_a, "s": r_score_a})
    by_doc = pc.sort_indices(t, sort_keys=[("q", "ascending"), ("d", "ascending")])
    q_bd = np.asarray(r_q_arr.take(by_doc), dtype=np.int64)
    d_bd = r_docid_a.take(by_doc)
    if len(d_bd) > 1:
        same = pc.and_(pc.equal(d_bd.slice(1), d_bd.slice(0, len(d_bd) - 1)),
                       pa.array(q_bd[1:] == q_bd[:-1]))
        if pc.any(same).as_py():
            i = int(np.flatnonzero(np.asarray(same))[0])
            raise InputError(
                f"{run_name}: query {uq[int(q_bd[i])].as_py()!r} lists document {d_bd[i].as_py()!r} more than once; "
                "keep one row per (query, document), e.g. the highest score (trec_eval refuses duplicates)"
            )

    # trec_eval order: score descending, ties by docid descending
    order = pc.sort_indices(t, sort_keys=[("q", "ascending"), ("s", "descending"), ("d", "descending")])
    q_s = np.asarray(r_q_arr.take(order), dtype=np.int64)
    d_code = np.asarray(pc.fill_null(pc.index_in(r_docid_a.take(order), value_set=ud), -1), dtype=np.int64)
    pos = _group_positions(q_s)  # 0-based rank
    rank = pos + 1

    # relevance of each ranked row: qrels rel, -1 not judged, -2 judged negative (trec_eval unjudged)
    judged = d_code >= 0
    rel_s = np.full(len(q_s), -1, dtype=np.int64)
    if judged.any():
        key = q_s[judged] * nd + d_code[judged]
        at = np.searchsorted(j_key_sorted, key)
        at = np.minimum(at, len(j_key_sorted) - 1)
        hit = j_key_sorted[at] == key
        vals = np.where(hit, j_rel[j_order[at]], -1)
        vals = np.where(vals < 0, np.where(hit, -2, -1), vals)
        rel_s[judged] = vals
        judged = judged.copy()
        judged[judged] = hit

    num_ret = np.bincount(q_s, minlength=nq).astype(np.float64)
    values = np.zeros((nq, len(ms)), dtype=np.float64)
    cache: dict = {}

    def num_rel(level: int) -> np.ndarray:
        if ("num_rel", level) not in cache:
            cache[("num_rel", level)] = np.bincount(j_q[j_rel >= level], minlength=nq).astype(np.float64)
        return cache[("num_rel", level)]

    def ideal_rows():
        if "ideal" not in cache:
            pos_mask = j_rel > 0
            iq = j_q[pos_mask]
            ir = j_rel[pos_mask]
            o = np.lexsort((-ir, iq))
            iq, ir = iq[o], ir[o]
            ipos = _group_positions(iq)
            cache["ideal"] = (iq, ir.astype(np.float64) / np.log2(ipos + 2.0), ipos)
        return cache["ideal"]

    def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        out = np.zeros_like(num)
        np.divide(num, den, out=out, where=den > 0)
        return out

    dcg_gain = None
    for j, m in enumerate(ms):
        k = m.cutoff
        within = rank <= k if k is not None else None
        if m.kind == "nDCG":
            if dcg_gain is None:
                dcg_gain = np.where(rel_s > 0, rel_s, 0).astype(np.float64) / np.log2(rank + 1.0)
            w = dcg_gain if within is None else dcg_gain * within
            dcg = np.bincount(q_s, weights=w, minlength=nq)
            iq, ig, ipos = ideal_rows()
            iw = ig if k is None else ig * (ipos < k)
            idcg = np.bincount(iq, weights=iw, minlength=nq)
            values[:, j] = safe_div(dcg, idcg)
        elif m.kind in ("R", "P"):
            rel_mask = rel_s >= m.rel
            hits_mask = rel_mask if within is None else rel_mask & within
            hits = np.bincount(q_s[hits_mask], minlength=nq).astype(np.float64)
            if m.kind == "R":
                values[:, j] = safe_div(hits, num_rel(m.rel))
            else:
                values[:, j] = hits / float(k)
        elif m.kind == "RR":
            rel_mask = rel_s >= m.rel
            sel = rel_mask if within is None else rel_mask & within
            rows = np.flatnonzero(sel)
            if len(rows):
                qs = q_s[rows]
                first = np.ones(len(rows), dtype=bool)
                first[1:] = qs[1:] != qs[:-1]
                values[qs[first], j] = 1.0 / rank[rows[first]]
        elif m.kind == "AP":
            rel_mask = (rel_s >= m.rel)
            cs = np.cumsum(rel_mask, dtype=np.int64)
            start = np.arange(len(q_s), dtype=np.int64) - pos
            cumrel = cs - (cs[start] - rel_mask[start])
            prec = np.where(rel_mask, cumrel / rank, 0.0)
            if within is not None:
                prec = prec * within
            values[:, j] = safe_div(np.bincount(q_s, weights=prec, minlength=nq), num_rel(m.rel))
        elif m.kind == "Judged":
            sel = judged if within is None else judged & within
            cnt = np.bincount(q_s[sel], minlength=nq).astype(np.float64)
            den = num_ret if k is None else np.minimum(num_ret, float(k))
            values[:, j] = safe_div(cnt, den)
        else:  # pragma: no cover - parse_measures refuses others
            raise InputError(f"measure {m.name!r} is not supported")

    present = np.zeros(nq, dtype=bool)
    present[q_s] = True
    missing = int(nq - present.sum())
    return EvalResult(
        measures=ms,
        qids=uq.to_pylist(),
        values=values,
        n_qrels_queries=nq,
        missing_queries=missing,
        n_run_queries=n_run_queries,
    )


"""Evaluation of a run against qrels with trec_eval's definitions, vectorised with numpy.

:func:`evaluate` prepares the inputs once (:mod:`vecpipe.evaluate.prepare`: qrels encoded, the run
filtered to qrels queries, checked and ranked in trec_eval order, each row's relevance looked up)
and runs each measure's compute function from the table in :mod:`vecpipe.evaluate.registry`, where
every measure's semantics are documented.

Common rules, matching trec_eval 9 as bundled by pytrec_eval:

- Each query's documents are ranked by score descending, ties broken by docid *descending* (byte
  order), as trec_eval's ``comp_sim_docno`` does; scores are compared as float32, as trec_eval 9
  stores them. The run's ``rank`` column is ignored. NaN scores are refused; ``inf`` and ``-inf``
  are valid and rank first and last.
- A document listed twice for one query is refused (trec_eval: "duplicate docs"), and so is a
  (query, document) pair judged twice.
- Relevance from the qrels: a document is relevant when its value >= the level ``rel`` (default 1);
  0 is judged non-relevant; negative values are pooled but unjudged (Bpref and infAP tell them apart,
  other measures treat them as non-relevant); documents absent from the qrels are not relevant.
- Queries with no relevant judgement score 0. Means are over every query in the qrels; a qrels
  query missing from the run scores 0 (trec_eval ``-c``); run queries absent from the qrels are
  ignored. Count measures (``NumRet``, ``NumRel``, ``NumRelRet``) aggregate as sums.

Measures the table lacks (``SetP``, ``RBP(rel=1)``, ``alpha_nDCG@10``, ...) are computed by
ir_measures' providers (:mod:`vecpipe.evaluate.providers`) over the run's rows of qrels queries (its
checks and query counts are the same), with ir_measures' own numbers and ranking rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vecpipe.evaluate.measures import Measure, parse_measures
from vecpipe.evaluate.prepare import Prepared, prepare


@dataclass
class EvalResult:
    """Evaluation of one run against qrels.

    ``values[i, j]`` is measure ``measures[j]`` for query ``qids[i]``; ``qids`` are the qrels'
    queries in the order they first appear in the qrels. ``max_depth`` is the largest number of
    documents the run ranks for one (qrels) query.
    """

    measures: list[Measure]
    qids: list[str]
    values: np.ndarray
    n_qrels_queries: int
    missing_queries: int
    n_run_queries: int
    max_depth: int = 0
    #: mean R@k (relevance >= 1) for k = 1..max_depth, when asked for (:func:`evaluate` ``recall_curve``)
    recall_curve: np.ndarray | None = None
    #: measure name -> ir_measures' own aggregate, for measures its providers compute
    provided: dict[str, float] = field(default_factory=dict)
    _per_query: dict | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measures]

    @property
    def n_common_queries(self) -> int:
        return self.n_qrels_queries - self.missing_queries

    @property
    def aggregate(self) -> dict[str, float]:
        """Measure name (as given) -> mean over every qrels query (sum for count measures); for a
        measure an ir_measures provider computes, ir_measures' own aggregate."""
        if self.values.shape[0] == 0:
            return {m.name: self.provided.get(m.name, 0.0) for m in self.measures}
        means = self.values.mean(axis=0)
        sums = self.values.sum(axis=0)
        return {m.name: self.provided[m.name] if m.name in self.provided else float(s if m.total else v)
                for m, v, s in zip(self.measures, means, sums)}

    @property
    def per_query(self) -> dict[str, dict[str, float]]:
        """qid -> {measure name -> value}, for every qrels query (missing ones score 0)."""
        if self._per_query is None:
            names = self.names
            rows = self.values.tolist()
            self._per_query = {q: dict(zip(names, row)) for q, row in zip(self.qids, rows)}
        return self._per_query

    @property
    def deeper_than_run(self) -> list[str]:
        """Names of the measures whose cutoff exceeds the run's depth (``R@1000`` on a run of 100
        documents per query): their values are those of the whole ranking, which may mislead."""
        return [m.name for m in self.measures if m.depth is not None and m.depth > self.max_depth]

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


def evaluate(
    run: pa.Table,
    qrels: pa.Table,
    measures: Iterable[str | Measure] | str | None = None,
    run_name: str = "run",
    qrels_name: str = "qrels",
    recall_curve: bool = False,
) -> EvalResult:
    """Evaluate ``run`` (qid, docid, score; rank ignored) against ``qrels`` (qid, docid, rel).

    ``measures`` are ir_measures names or trec_eval names (default ``nDCG@10 R@100 RR@10 AP``);
    :class:`~vecpipe.errors.UsageError` for names nobody knows. ``run_name`` and ``qrels_name``
    name the inputs in error messages. ``recall_curve``: also the mean R@k for every k up to the
    run's depth (``EvalResult.recall_curve``, for plots).
    """
    ms = parse_measures(measures)
    p, n_run_queries = prepare(run, qrels, run_name, qrels_name)
    values = np.zeros((p.nq, len(ms)), dtype=np.float64)
    qids = p.qrels.qids.to_pylist()
    for j, m in enumerate(ms):
        spec = m.spec
        if spec is not None:
            values[:, j] = spec.compute(p, m)
    provided = [j for j, m in enumerate(ms) if m.spec is None]
    aggregates: dict[str, float] = {}
    if provided:
        values[:, provided], agg = _from_providers([ms[j] for j in provided], qids, run, qrels, run_name, qrels_name)
        aggregates = {ms[j].name: a for j, a in zip(provided, agg)}
    present = np.zeros(p.nq, dtype=bool)
    present[p.q] = True
    return EvalResult(
        measures=ms,
        qids=qids,
        values=values,
        n_qrels_queries=p.nq,
        missing_queries=int(p.nq - present.sum()),
        n_run_queries=n_run_queries,
        max_depth=p.max_depth,
        recall_curve=_recall_curve(p) if recall_curve else None,
        provided=aggregates,
    )


def _from_providers(ms: list[Measure], qids: list[str], run: pa.Table, qrels: pa.Table, run_name: str,
                    qrels_name: str) -> tuple[np.ndarray, list[float]]:
    """The per-query values of measures computed by ir_measures' providers, over the run's rows of
    qrels queries (the run and qrels were checked by :func:`prepare` already)."""
    from vecpipe.evaluate import providers
    from vecpipe.evaluate.prepare import combine
    from vecpipe.formats import arrowfn as pc
    from vecpipe.formats.qrels import QRELS_SCHEMA, conform_qrels
    from vecpipe.formats.runs import run_columns

    if qrels.schema.names != QRELS_SCHEMA.names or qrels.schema.types != QRELS_SCHEMA.types:
        qrels = conform_qrels(qrels, qrels_name)
    r_qid, r_docid, r_score = (combine(c) for c in run_columns(run, run_name))
    keep = pc.is_in(r_qid, value_set=pa.array(qids, r_qid.type))
    if not pc.all(keep).as_py():
        r_qid, r_docid, r_score = pc.filter(r_qid, keep), pc.filter(r_docid, keep), pc.filter(r_score, keep)
    exprs = [m.expr or m.name for m in ms]
    return providers.compute(exprs, [m.provider or "" for m in ms], qids, (r_qid.to_pylist(), r_docid.to_pylist(), r_score.to_pylist()),
                             (combine(qrels.column("qid")).to_pylist(), combine(qrels.column("docid")).to_pylist(),
                              combine(qrels.column("rel")).to_pylist()))


def _recall_curve(p: Prepared) -> np.ndarray:
    """Mean R@k over every qrels query for k = 1..max_depth (relevance >= 1; as the R@k measure)."""
    depth = p.max_depth
    if depth == 0:
        return np.zeros(0, dtype=np.float64)
    n_rel = p.num_rel(1)
    rows = np.flatnonzero(p.relevant(1))
    w = 1.0 / n_rel[p.q[rows]]  # relevant rows exist only where n_rel > 0
    hits = np.bincount(p.rank[rows] - 1, weights=w, minlength=depth)[:depth]
    return np.cumsum(hits) / p.nq

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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from vecpipe.evaluate.measures import Measure, parse_measures
from vecpipe.evaluate.prepare import prepare


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
    _per_query: dict | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.measures]

    @property
    def n_common_queries(self) -> int:
        return self.n_qrels_queries - self.missing_queries

    @property
    def aggregate(self) -> dict[str, float]:
        """Measure name (as given) -> mean over every qrels query (sum for count measures)."""
        if self.values.shape[0] == 0:
            return {m.name: 0.0 for m in self.measures}
        means = self.values.mean(axis=0)
        sums = self.values.sum(axis=0)
        return {m.name: float(s if m.spec.total else v) for m, v, s in zip(self.measures, means, sums)}

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
) -> EvalResult:
    """Evaluate ``run`` (qid, docid, score; rank ignored) against ``qrels`` (qid, docid, rel).

    ``measures`` are ir_measures names or trec_eval names (default ``nDCG@10 R@100 RR@10 AP``);
    :class:`~vecpipe.errors.UsageError` for names it does not know. ``run_name`` and
    ``qrels_name`` name the inputs in error messages.
    """
    ms = parse_measures(measures)
    p, n_run_queries = prepare(run, qrels, run_name, qrels_name)
    values = np.zeros((p.nq, len(ms)), dtype=np.float64)
    for j, m in enumerate(ms):
        values[:, j] = m.spec.compute(p, m)
    present = np.zeros(p.nq, dtype=bool)
    present[p.q] = True
    return EvalResult(
        measures=ms,
        qids=p.qrels.qids.to_pylist(),
        values=values,
        n_qrels_queries=p.nq,
        missing_queries=int(p.nq - present.sum()),
        n_run_queries=n_run_queries,
        max_depth=p.max_depth,
    )

"""Preparation shared by every measure: qrels and run as flat numpy arrays in trec_eval order.

Three steps, each a function:

- :func:`prepare_qrels`: query codes in first-appearance order, document codes, relevance, and a
  sorted (query, document) key for lookups; a pair judged twice is refused.
- :func:`prepare_run`: the run's rows of qrels queries, NaN scores and duplicate documents refused,
  ranked as trec_eval 9 ranks them: scores compared as float32 (trec_eval 9 stores ``sim`` as a C
  ``float``), descending, ties by docid descending (byte order, ``strcmp``).
- :func:`lookup_relevance`: each ranked row's relevance: the qrels value when judged >= 0,
  :data:`NONPOOL` (-1) when the qrels do not list the document, :data:`UNJUDGED` (-2) when they list
  it with a negative value (trec_eval's ``RELVALUE_NONPOOL`` / ``RELVALUE_UNJUDGED``).

The result is a :class:`Prepared`: what a measure's compute function reads (see
:mod:`vecpipe.evaluate.registry`), with small cached helpers (per-query counts, cumulative counts
within a query, the ideal gains of nDCG).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn as pc

NONPOOL = -1  # document absent from the qrels of its query
UNJUDGED = -2  # document in the qrels with a negative value (pooled but not judged)


def combine(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array from a (chunked) column."""
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def group_positions(codes: np.ndarray) -> np.ndarray:
    """0-based position of each row within its block of equal adjacent codes."""
    n = len(codes)
    idx = np.arange(n, dtype=np.int64)
    if n == 0:
        return idx
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    return idx - np.maximum.accumulate(np.where(starts, idx, 0))


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass
class PreparedQrels:
    """Qrels as arrays: ``j_q`` / ``j_d`` codes into ``qids`` / ``docids``, ``j_rel`` values, and
    ``key_sorted`` (``j_q * nd + j_d`` sorted) with ``key_order`` (its permutation)."""

    name: str
    qids: pa.Array
    docids: pa.Array
    j_q: np.ndarray
    j_d: np.ndarray
    j_rel: np.ndarray
    key_sorted: np.ndarray
    key_order: np.ndarray

    @property
    def nq(self) -> int:
        return len(self.qids)

    @property
    def nd(self) -> int:
        return max(len(self.docids), 1)


def prepare_qrels(qrels: pa.Table, name: str = "qrels") -> PreparedQrels:
    """Encode a qrels table (any column names :func:`~vecpipe.formats.qrels.conform_qrels` accepts)."""
    from vecpipe.formats.qrels import QRELS_SCHEMA, conform_qrels

    if qrels.schema.names != QRELS_SCHEMA.names or qrels.schema.types != QRELS_SCHEMA.types:
        qrels = conform_qrels(qrels, name)
    if qrels.num_rows == 0:
        raise InputError(f"{name}: qrels have no judgements; give qrels with at least one row")
    j_qid = combine(qrels.column("qid"))
    j_docid = combine(qrels.column("docid"))
    j_rel = np.asarray(combine(qrels.column("rel")).to_numpy(zero_copy_only=False), dtype=np.int64)
    uq = pc.unique(j_qid)
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
            f"{name}: query {j_qid[row].as_py()!r} judges document {j_docid[row].as_py()!r} twice; "
            "keep one judgement per (query, document) pair, as trec_eval requires"
        )
    return PreparedQrels(name, uq, ud, j_q, j_d, j_rel, j_key_sorted, j_order)


@dataclass
class RankedRun:
    """The run's rows of qrels queries in trec_eval order: ``q`` query code (ascending, so each
    query's rows are contiguous) and ``d`` document code into the qrels docids (-1: not in the qrels)."""

    q: np.ndarray
    d: np.ndarray
    n_run_queries: int


def prepare_run(run: pa.Table | tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray], qrels: PreparedQrels,
                name: str = "run") -> RankedRun:
    """Keep the rows of qrels queries, refuse NaN scores and repeated documents, rank in trec_eval order.

    ``run`` is a table or its validated ``(qid, docid, score)`` columns (:func:`~vecpipe.formats.runs.run_columns`).

    Scores are compared as float32, as trec_eval 9 (the version pytrec_eval bundles) stores them:
    float64 scores that round to the same float32 tie, and ties go to the larger docid. ``inf`` and
    ``-inf`` are valid scores (first and last; float64 values beyond float32's range become them).
    """
    from vecpipe.formats.runs import run_columns

    r_qid, r_docid, r_score = run_columns(run, name) if isinstance(run, pa.Table) else run
    r_qid_a = combine(r_qid)
    n_run_queries = len(pc.unique(r_qid_a)) if len(r_qid_a) else 0
    r_q_all = pc.index_in(r_qid_a, value_set=qrels.qids)
    keep = pc.is_valid(r_q_all)
    n_keep = pc.sum(keep).as_py() or 0
    if n_keep == 0:
        run_example = r_qid_a[0].as_py() if len(r_qid_a) else None
        if run_example is None:
            raise InputError(f"{name}: the run is empty; give a run with at least one (qid, docid, score) row")
        raise InputError(
            "run and qrels share no query id; check that they come from the same dataset "
            f"(run qids look like {run_example!r}, qrels qids look like {qrels.qids[0].as_py()!r})"
        )
    if n_keep < len(r_qid_a):
        r_q_arr = pc.filter(r_q_all, keep)
        r_docid_a = pc.filter(combine(r_docid), keep)
        r_score_a = pc.filter(combine(r_score), keep)
    else:
        r_q_arr = r_q_all
        r_docid_a = combine(r_docid)
        r_score_a = combine(r_score)
    if pa.types.is_floating(r_score_a.type):
        nan = pc.sum(pc.is_nan(r_score_a)).as_py() or 0
        if nan:
            raise InputError(f"{name}: {nan} scores are NaN; a run needs numeric scores")
    if not pa.types.is_float32(r_score_a.type):
        r_score_a = pc.cast(r_score_a, pa.float32(), safe=False)

    t = pa.table({"q": r_q_arr, "d": r_docid_a, "s": r_score_a})
    _refuse_duplicates(t, qrels.qids, name)
    order = pc.sort_indices(t, sort_keys=[("q", "ascending"), ("s", "descending"), ("d", "descending")])
    q_s = np.asarray(pc.take(r_q_arr, order), dtype=np.int64)
    d_code = np.asarray(pc.fill_null(pc.index_in(pc.take(r_docid_a, order), value_set=qrels.docids), -1), dtype=np.int64)
    return RankedRun(q_s, d_code, n_run_queries)


def _refuse_duplicates(t: pa.Table, qids: pa.Array, name: str) -> None:
    """trec_eval refuses a run that lists a document twice for one query; so do we."""
    by_doc = pc.sort_indices(t, sort_keys=[("q", "ascending"), ("d", "ascending")])
    q_bd = np.asarray(pc.take(t.column("q"), by_doc), dtype=np.int64)
    d_bd = pc.take(combine(t.column("d")), by_doc)
    if len(d_bd) > 1:
        same = pc.and_(pc.equal(d_bd.slice(1), d_bd.slice(0, len(d_bd) - 1)), pa.array(q_bd[1:] == q_bd[:-1]))
        if pc.any(same).as_py():
            i = int(np.flatnonzero(np.asarray(same))[0])
            raise InputError(
                f"{name}: query {qids[int(q_bd[i])].as_py()!r} lists document {d_bd[i].as_py()!r} more than once; "
                "keep one row per (query, document), e.g. the highest score (trec_eval refuses duplicates)"
            )


def lookup_relevance(ranked: RankedRun, qrels: PreparedQrels) -> tuple[np.ndarray, np.ndarray]:
    """Per ranked row: relevance (qrels value >= 0, :data:`NONPOOL` or :data:`UNJUDGED`) and
    whether the qrels list the document for that query (with any value)."""
    q_s, d_code = ranked.q, ranked.d
    judged = d_code >= 0
    rel_s = np.full(len(q_s), NONPOOL, dtype=np.int64)
    if judged.any():
        key = q_s[judged] * qrels.nd + d_code[judged]
        at = np.searchsorted(qrels.key_sorted, key)
        at = np.minimum(at, len(qrels.key_sorted) - 1)
        hit = qrels.key_sorted[at] == key
        vals = np.where(hit, qrels.j_rel[qrels.key_order[at]], NONPOOL)
        vals = np.where(vals < 0, np.where(hit, UNJUDGED, NONPOOL), vals)
        rel_s[judged] = vals
        judged = judged.copy()
        judged[judged] = hit
    return rel_s, judged


class Prepared:
    """What a measure computes from: the ranked run joined with the qrels, as numpy arrays.

    Per ranked row (queries contiguous, each in trec_eval order): ``q`` query code, ``pos`` 0-based
    and ``rank`` 1-based position, ``rel`` relevance (>= 0 judged, :data:`NONPOOL`, :data:`UNJUDGED`),
    ``judged`` (listed in the qrels with any value). Per judgement: ``j_q`` and ``j_rel``.
    Per query (``nq`` qrels queries, qrels order): ``num_ret``. Helpers are cached per argument.
    """

    def __init__(self, qrels: PreparedQrels, ranked: RankedRun, rel: np.ndarray, judged: np.ndarray):
        self.qrels = qrels
        self.nq = qrels.nq
        self.q = ranked.q
        self.pos = group_positions(ranked.q)
        self.rank = self.pos + 1
        self.rel = rel
        self.judged = judged
        self.j_q = qrels.j_q
        self.j_rel = qrels.j_rel
        self.num_ret = np.bincount(self.q, minlength=self.nq).astype(np.float64)
        self._cache: dict[object, object] = {}

    @property
    def max_depth(self) -> int:
        """The largest number of ranked documents of one query."""
        return int(self.num_ret.max()) if self.nq else 0

    def cached(self, key: object, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = make()
        out = self._cache[key]
        assert isinstance(out, np.ndarray)
        return out

    def within(self, k: int) -> np.ndarray:
        """Rows ranked in the top ``k`` of their query."""
        return self.cached(("within", k), lambda: self.rank <= k)

    def relevant(self, level: int) -> np.ndarray:
        """Rows judged relevant at ``level`` (relevance >= level; never NONPOOL or UNJUDGED)."""
        return self.cached(("relevant", level), lambda: self.rel >= level)

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Per query: rows where ``mask`` holds (float64)."""
        return np.bincount(self.q[mask], minlength=self.nq).astype(np.float64)

    def cumcount(self, mask: np.ndarray) -> np.ndarray:
        """Per row: rows of its query up to and including it where ``mask`` holds (int64)."""
        cs = np.cumsum(mask, dtype=np.int64)
        start = np.arange(len(self.q), dtype=np.int64) - self.pos
        return cs - (cs[start] - mask[start])

    def num_rel(self, level: int) -> np.ndarray:
        """Per query: judgements with relevance >= ``level`` (trec_eval's ``num_rel``)."""
        return self.cached(("num_rel", level),
                           lambda: np.bincount(self.j_q[self.j_rel >= level], minlength=self.nq).astype(np.float64))

    def num_nonrel(self, level: int) -> np.ndarray:
        """Per query: judgements with 0 <= relevance < ``level`` (judged non-relevant)."""
        return self.cached(("num_nonrel", level), lambda: np.bincount(
            self.j_q[(self.j_rel >= 0) & (self.j_rel < level)], minlength=self.nq).astype(np.float64))

    def ideal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """nDCG's ideal ranking: per judgement with rel > 0, sorted by query then rel descending:
        query code, discounted gain ``rel / log2(pos + 2)`` and 0-based position."""
        if "ideal" not in self._cache:
            pos_mask = self.j_rel > 0
            iq = self.j_q[pos_mask]
            ir = self.j_rel[pos_mask]
            o = np.lexsort((-ir, iq))
            iq, ir = iq[o], ir[o]
            ipos = group_positions(iq)
            self._cache["ideal"] = (iq, ir.astype(np.float64) / np.log2(ipos + 2.0), ipos)
        out = self._cache["ideal"]
        assert isinstance(out, tuple)
        return out

    def first_judgement(self, where: np.ndarray) -> tuple[str, str]:
        """(qid, docid) of the first qrels row (in qrels order) where ``where`` (per judgement) holds."""
        i = int(np.flatnonzero(where)[0])
        return (str(self.qrels.qids[int(self.j_q[i])].as_py()), str(self.qrels.docids[int(self.qrels.j_d[i])].as_py()))


def prepare(run: pa.Table, qrels: pa.Table, run_name: str = "run", qrels_name: str = "qrels") -> tuple[Prepared, int]:
    """All three steps: the :class:`Prepared` arrays and the number of distinct queries in the run."""
    from vecpipe.formats.runs import run_columns

    cols = run_columns(run, run_name)  # the run's columns are checked first
    pq_ = prepare_qrels(qrels, qrels_name)
    ranked = prepare_run(cols, pq_, run_name)
    rel, judged = lookup_relevance(ranked, pq_)
    return Prepared(pq_, ranked, rel, judged), ranked.n_run_queries

"""The measure table: one :class:`MeasureSpec` per measure, each with a small compute function.

A compute function takes the :class:`~vecpipe.evaluate.prepare.Prepared` arrays (the run in
trec_eval order joined with the qrels) and a parsed :class:`~vecpipe.evaluate.measures.Measure`,
and returns one float64 value per qrels query (``Prepared.nq`` of them, qrels order; queries the
run lacks have no rows and must come out 0, unless the measure depends on the qrels alone).

To add a measure: write its compute function here, add one ``MeasureSpec`` to :data:`SPECS` (its
ir_measures name, what ``@`` sets, the parameters it accepts, its trec_eval names) and a test that
checks it against pytrec_eval (or the reference ir_measures uses) in ``tests/test_measures.py``.
The parser (:mod:`vecpipe.evaluate.measures`) and :func:`~vecpipe.evaluate.evaluate` read the
table; nothing else needs to change.

Semantics (trec_eval 9 as bundled by pytrec_eval, unless noted; "relevant" = relevance >= the
level ``rel``, default 1; a qrels value < 0 marks a pooled but unjudged document):

==============  =================  ======================================================================
ir_measures     trec_eval          definition (per query)
==============  =================  ======================================================================
``nDCG@k``      ``ndcg_cut_k``     DCG / ideal DCG; gain = rel (rel > 0), discount log2(rank + 1); the
``nDCG``        ``ndcg``           ideal ranking sorts all of the query's judgements with rel > 0
``R@k``         ``recall_k``       relevant in the top k / relevant judged (``R``: whole ranking)
``P@k``         ``P_k``            relevant in the top k / k (short rankings count as padded)
``RR``          ``recip_rank``     1 / rank of the first relevant document (``RR@k``: within the top k)
``AP``          ``map``            sum of precision at each relevant rank / relevant judged;
``AP@k``        ``map_cut_k``      ``AP@k`` sums ranks <= k only, same denominator
``Judged@k``    (ir_measures)      share of the top min(k, n) documents listed in the qrels (any value)
``Success@k``   ``success_k``      1 if a relevant document is in the top k, else 0
``Rprec``       ``Rprec``          relevant in the top R / R, with R = relevant judged
``Bpref``       ``bpref``          per retrieved relevant document, 1 - min(n, R) / min(N, R) (1 when
                                   n = 0), summed and divided by R; n = judged non-relevant (0 <= rel <
                                   level) ranked above it, N = judged non-relevant in the qrels;
                                   documents absent from the qrels or with rel < 0 are skipped
``infAP``       ``infAP``          inferred AP (Yilmaz & Aslam): per relevant document at 0-based index
                                   j > 0, 1/(j+1) + j/(j+1) * ((r+n+u)/j) * ((r+e)/(r+n+2e)) with r, n,
                                   u the relevant, judged non-relevant and unjudged (rel < 0) documents
                                   above it and e = 1e-5; 1 at j = 0; summed and divided by R
``ERR@k``       (none)             expected reciprocal rank, as gdeval.pl (TREC Web track), which
                                   ir_measures runs for ERR: sum over the top k of p_i * prod_{j<i} (1 -
                                   p_j) / i with p = (2**g - 1) / 16, g = max(rel, 0); grades above 4
                                   are refused (gdeval's maximum); ``ERR``: whole ranking
``IPrec@x``     ``iprec_at_``      interpolated precision at recall x: the largest precision at any rank
                ``recall_x``       at or below the c-th relevant document, c = int(x * R + 0.9) (trec_eval
                                   9; trec_eval 10 rounds x * R instead); 0 when fewer than c relevant
                                   documents are retrieved
``NumRet``      ``num_ret``        documents retrieved; ``NumRet(rel=l)``: retrieved with rel >= l
``NumRelRet``   ``num_rel_ret``    ``NumRet(rel=1)``
``NumRel``      ``num_rel``        relevant judged (from the qrels alone: also for queries the run lacks,
                                   as trec_eval -c totals it)
==============  =================  ======================================================================

``NumRet``, ``NumRelRet`` and ``NumRel`` aggregate as sums over queries (trec_eval and ir_measures
do); every other measure is the mean over every qrels query, a query the run lacks scoring 0.

Ranking: score descending, ties by docid descending in byte order (trec_eval's ``comp_sim_docno``),
scores compared as float32 as trec_eval 9 stores them (trec_eval 10 compares doubles); ``inf`` and
``-inf`` rank first and last. Every measure here uses that one order. ir_measures' default provider
can differ on tied scores: it sends each measure to the first provider that supports it, and the
providers sort differently. pytrec_eval (nDCG, P, R, AP, Success, Rprec, Bpref, infAP, IPrec,
NumRet, NumRel) ranks as here; ``msmarco`` (RR@k) and ``judged`` (Judged@k) sort Python tuples
(-score, docid), so ties go to the *smaller* docid; ``gdeval`` (ERR@k) breaks ties as trec_eval does
but compares scores as doubles, so float64 scores that are equal in float32 can order differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vecpipe.evaluate.measures import Measure
    from vecpipe.evaluate.prepare import Prepared

Compute = Callable[["Prepared", "Measure"], np.ndarray]

INFAP_EPSILON = 0.00001  # trec_eval.h
ERR_MAX_GRADE = 4  # gdeval.pl's $MAX_JUDGMENT


@dataclass(frozen=True)
class MeasureSpec:
    """One row of the measure table.

    ``name``: the ir_measures name. ``at``: what ``@`` sets (``"cutoff"``, a positive integer rank;
    ``"recall"``, a recall level in [0, 1]; ``None``: the measure takes no ``@``), and
    ``at_required`` whether it must be given. ``rel``: whether ``rel=N`` (lowest relevant grade) is
    accepted, ``rel_default`` its value when absent. ``choices``: other accepted parameters and
    their accepted values. ``aliases``: other ir_measures names, each with the parameters it sets.
    ``trec``: trec_eval names, each with the parameters it sets; a name ending in ``_K`` takes the
    ``@`` value as a suffix, ``_10`` or ``.10``. ``total``: aggregate as a sum over queries, not the
    mean. ``compute``: the per-query values.
    """

    name: str
    compute: Compute
    at: str | None = "cutoff"
    at_required: bool = False
    rel: bool = True
    rel_default: int | None = 1
    choices: Mapping[str, tuple[object, ...]] = field(default_factory=dict)
    aliases: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    trec: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    total: bool = False

    @property
    def known(self) -> list[str]:
        """The forms listed in help and error messages (``nDCG@k``, ``nDCG``)."""
        presets = [alias for alias, params in self.aliases.items() if params]  # NumRelRet
        if self.at is None:
            return [self.name, *presets]
        at = f"{self.name}@{'k' if self.at == 'cutoff' else 'r'}"
        return [at, *presets] if self.at_required else [at, self.name, *presets]


# ------------------------------------------------------------------------------------------ helpers


def _level(m: Measure) -> int:
    return 1 if m.rel is None else m.rel


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _group_suffix_max(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row: the largest value at or after it within its group (``groups`` non-decreasing).

    Exact: runs a running maximum over integer ranks of the values, offset per group.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    order = np.argsort(values, kind="stable")
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n, dtype=np.int64)
    offset = (int(groups.max()) - groups.astype(np.int64)) * n  # grows along the reversed rows
    key = (ranks + offset)[::-1]
    best = np.maximum.accumulate(key) - offset[::-1]
    return values[order][best][::-1]


# ------------------------------------------------------------------------------------------ measures


def ndcg(p: Prepared, m: Measure) -> np.ndarray:
    k = m.cutoff
    gain = p.cached("dcg_gain", lambda: np.where(p.rel > 0, p.rel, 0).astype(np.float64) / np.log2(p.rank + 1.0))
    w = gain if k is None else gain * p.within(k)
    dcg = np.bincount(p.q, weights=w, minlength=p.nq)
    iq, ig, ipos = p.ideal()
    iw = ig if k is None else ig * (ipos < k)
    idcg = np.bincount(iq, weights=iw, minlength=p.nq)
    return _safe_div(dcg, idcg)


def _hits(p: Prepared, m: Measure) -> np.ndarray:
    rel_mask = p.relevant(_level(m))
    return p.count(rel_mask if m.cutoff is None else rel_mask & p.within(m.cutoff))


def recall(p: Prepared, m: Measure) -> np.ndarray:
    return _safe_div(_hits(p, m), p.num_rel(_level(m)))


def precision(p: Prepared, m: Measure) -> np.ndarray:
    assert m.cutoff is not None
    return _hits(p, m) / float(m.cutoff)


def success(p: Prepared, m: Measure) -> np.ndarray:
    return (_hits(p, m) > 0).astype(np.float64)


def reciprocal_rank(p: Prepared, m: Measure) -> np.ndarray:
    rel_mask = p.relevant(_level(m))
    sel = rel_mask if m.cutoff is None else rel_mask & p.within(m.cutoff)
    out = np.zeros(p.nq, dtype=np.float64)
    rows = np.flatnonzero(sel)
    if len(rows):
        qs = p.q[rows]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = qs[1:] != qs[:-1]
        out[qs[first]] = 1.0 / p.rank[rows[first]]
    return out


def average_precision(p: Prepared, m: Measure) -> np.ndarray:
    level = _level(m)
    rel_mask = p.relevant(level)
    prec = np.where(rel_mask, p.cumcount(rel_mask) / p.rank, 0.0)
    if m.cutoff is not None:
        prec = prec * p.within(m.cutoff)
    return _safe_div(np.bincount(p.q, weights=prec, minlength=p.nq), p.num_rel(level))


def judged(p: Prepared, m: Measure) -> np.ndarray:
    k = m.cutoff
    cnt = p.count(p.judged if k is None else p.judged & p.within(k))
    return _safe_div(cnt, p.num_ret if k is None else np.minimum(p.num_ret, float(k)))


def r_precision(p: Prepared, m: Measure) -> np.ndarray:
    level = _level(m)
    n_rel = p.num_rel(level)
    return _safe_div(p.count(p.relevant(level) & (p.rank <= n_rel[p.q])), n_rel)


def _judged_nonrelevant(p: Prepared, level: int) -> np.ndarray:
    return (p.rel >= 0) & (p.rel < level)


def bpref(p: Prepared, m: Measure) -> np.ndarray:
    level = _level(m)
    rel_mask = p.relevant(level)
    rows = np.flatnonzero(rel_mask)
    n_rel = p.num_rel(level)
    if not len(rows):
        return np.zeros(p.nq, dtype=np.float64)
    qs = p.q[rows]
    above = p.cumcount(_judged_nonrelevant(p, level))[rows]  # judged non-relevant ranked above
    contrib = np.ones(len(rows), dtype=np.float64)
    some = above > 0
    r = n_rel[qs[some]]
    contrib[some] = 1.0 - np.minimum(above[some], r) / np.minimum(p.num_nonrel(level)[qs[some]], r)
    return _safe_div(np.bincount(qs, weights=contrib, minlength=p.nq), n_rel)


def inferred_ap(p: Prepared, m: Measure) -> np.ndarray:
    from vecpipe.evaluate.prepare import UNJUDGED

    level = _level(m)
    rel_mask = p.relevant(level)
    rows = np.flatnonzero(rel_mask)
    if not len(rows):
        return np.zeros(p.nq, dtype=np.float64)
    qs = p.q[rows]
    j = p.pos[rows]
    val = np.ones(len(rows), dtype=np.float64)
    later = j > 0
    r = p.cumcount(rel_mask)[rows][later] - 1  # relevant above
    n = p.cumcount(_judged_nonrelevant(p, level))[rows][later]
    u = p.cumcount(p.rel == UNJUDGED)[rows][later]
    fj = j[later].astype(np.float64)
    e = INFAP_EPSILON
    val[later] = 1.0 / (fj + 1.0) + (fj / (fj + 1.0)) * ((r + n + u) / fj) * ((r + e) / (r + n + 2 * e))
    return _safe_div(np.bincount(qs, weights=val, minlength=p.nq), p.num_rel(level))


def expected_reciprocal_rank(p: Prepared, m: Measure) -> np.ndarray:
    from vecpipe.errors import InputError
    from vecpipe.evaluate.prepare import group_positions

    too_high = p.j_rel > ERR_MAX_GRADE
    if too_high.any():
        qid, docid = p.first_judgement(too_high)
        grade = int(p.j_rel[np.flatnonzero(too_high)[0]])
        raise InputError(
            f"{p.qrels.name}: {m.name} takes relevance grades up to {ERR_MAX_GRADE} (gdeval's ERR, as ir_measures "
            f"computes it), but query {qid!r} judges document {docid!r} {grade}; map the grades to 0..{ERR_MAX_GRADE}"
        )
    rows = np.flatnonzero(p.rel > 0)  # only graded documents stop the user (g = 0: p = 0)
    if m.cutoff is not None:
        rows = rows[p.rank[rows] <= m.cutoff]
    if not len(rows):
        return np.zeros(p.nq, dtype=np.float64)
    qs = p.q[rows]
    stop = (np.exp2(p.rel[rows]) - 1.0) / 16.0  # probability that the user stops at this document
    log_go = np.log1p(-stop)
    cs = np.cumsum(log_go)
    start = np.arange(len(rows), dtype=np.int64) - group_positions(qs)
    above = cs - log_go - (cs[start] - log_go[start])  # sum of log(1 - p) over the graded rows above
    w = stop * np.exp(above) / p.rank[rows]
    return np.bincount(qs, weights=w, minlength=p.nq)


def interpolated_precision(p: Prepared, m: Measure) -> np.ndarray:
    assert m.recall is not None
    level = _level(m)
    out = np.zeros(p.nq, dtype=np.float64)
    rel_mask = p.relevant(level)
    rows = np.flatnonzero(rel_mask)
    if not len(rows):
        return out
    qs = p.q[rows]
    cum = p.cumcount(rel_mask)[rows]  # relevant so far, this one included
    best = _group_suffix_max(qs, cum / p.rank[rows])  # max precision at this relevant rank or below
    need = (m.recall * p.num_rel(level) + 0.9).astype(np.int64)  # trec_eval 9: (long) (x * R + 0.9)
    at = cum == np.maximum(need, 1)[qs]
    out[qs[at]] = best[at]
    return out


def num_ret(p: Prepared, m: Measure) -> np.ndarray:
    return p.num_ret.copy() if m.rel is None else p.count(p.relevant(m.rel))


def num_rel(p: Prepared, m: Measure) -> np.ndarray:
    return p.num_rel(_level(m)).copy()


# ------------------------------------------------------------------------------------------ the table

SPECS: tuple[MeasureSpec, ...] = (
    MeasureSpec("nDCG", ndcg, rel=False, choices={"dcg": ("log2",)}, aliases={"NDCG": {}},
                trec={"ndcg": {}, "ndcg_cut_K": {}}),
    MeasureSpec("R", recall, aliases={"Recall": {}}, trec={"recall_K": {}}),
    MeasureSpec("RR", reciprocal_rank, aliases={"MRR": {}}, trec={"recip_rank": {}}),
    MeasureSpec("AP", average_precision, aliases={"MAP": {}}, trec={"map": {}, "map_cut_K": {}}),
    MeasureSpec("P", precision, at_required=True, aliases={"Precision": {}}, trec={"P_K": {}}),
    MeasureSpec("Judged", judged, rel=False),
    MeasureSpec("Success", success, at_required=True, trec={"success_K": {}}),
    MeasureSpec("Rprec", r_precision, at=None, aliases={"RPrec": {}}, trec={"Rprec": {}}),
    MeasureSpec("Bpref", bpref, at=None, aliases={"BPref": {}}, trec={"bpref": {}}),
    MeasureSpec("infAP", inferred_ap, at=None, trec={"infAP": {}}),
    MeasureSpec("ERR", expected_reciprocal_rank, rel=False),
    MeasureSpec("IPrec", interpolated_precision, at="recall", at_required=True, trec={"iprec_at_recall_K": {}}),
    MeasureSpec("NumRet", num_ret, at=None, rel_default=None, aliases={"NumRelRet": {"rel": 1}},
                trec={"num_ret": {}, "num_rel_ret": {"rel": 1}}, total=True),
    MeasureSpec("NumRel", num_rel, at=None, trec={"num_rel": {}}, total=True),
)

REGISTRY: dict[str, MeasureSpec] = {s.name: s for s in SPECS}


def spec(kind: str) -> MeasureSpec:
    """The table row of a measure kind (its ir_measures name)."""
    return REGISTRY[kind]

"""Calibrated relevance cutoffs (Rossi et al., CIKM 2024, "Relevance filtering for embedding-based
retrieval"): a query-conditioned map from a result's score to its probability of relevance, numpy only.

Each (query, document) row of a run gets five features: its score ``s``; the query's top score
``s1``; the gap from ``s1`` to the score at the calibration depth (the k-th score); the spread
(standard deviation) and the mean of the query's scores down to that depth. A logistic regression
over the standardised features (Newton's method, a small L2 penalty, deterministic) gives
``P(relevant | s, query)``. The gap and spread tell a query with one clear answer from a query whose
scores are flat, which one global threshold on the cosine cannot.

A calibration file is JSON: the features' means and scales, the coefficients, the depth the features
were taken to, the model and metric of the runs it was fitted on (a run of another model is refused),
fit figures, and the quantiles of the training positives' probabilities, from which
``--target-recall R`` picks the threshold that keeps a share R of the training positives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError

FEATURES = ("score", "top1", "gap_to_kth", "spread", "mean")
KIND = "calibration"
FORMAT_VERSION = 1
QUANTILES = 1001  # recall 0.000 .. 1.000 in steps of 0.001
L2_PENALTY = 1e-3


@dataclass
class Calibration:
    """A fitted query-conditioned logistic map from scores to probabilities of relevance."""

    depth: int
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    positive_quantiles: list[float] = field(default_factory=list)
    model: str | None = None
    metric: str | None = None
    hubness: str | None = None
    train: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {"kind": KIND, "version": FORMAT_VERSION, "features": list(FEATURES), "depth": self.depth,
               "mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
               "model": self.model, "metric": self.metric, "hubness": self.hubness, "train": self.train,
               "positive_quantiles": self.positive_quantiles}
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, name: str) -> Calibration:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{name}: not a calibration file (not JSON); write one with vecpipe calibrate") from None
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise InputError(f"{name}: not a calibration file (no \"kind\": \"calibration\"); write one with vecpipe calibrate")
        if doc.get("version") != FORMAT_VERSION or doc.get("features") != list(FEATURES):
            raise InputError(f"{name}: calibration format {doc.get('version')!r} with features {doc.get('features')!r} is not "
                             f"this vecpipe's ({FORMAT_VERSION}, {', '.join(FEATURES)}); refit it with vecpipe calibrate")
        try:
            calib = cls(depth=int(doc["depth"]), mean=[float(v) for v in doc["mean"]], scale=[float(v) for v in doc["scale"]],
                        coef=[float(v) for v in doc["coef"]], intercept=float(doc["intercept"]),
                        positive_quantiles=[float(v) for v in doc.get("positive_quantiles") or []],
                        model=doc.get("model"), metric=doc.get("metric"), hubness=doc.get("hubness"), train=dict(doc.get("train") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{name}: calibration file is incomplete or damaged ({exc!s}); refit it with vecpipe calibrate") from None
        n = len(FEATURES)
        numbers = [*calib.mean, *calib.scale, *calib.coef, calib.intercept, *calib.positive_quantiles]
        if (len(calib.mean), len(calib.scale), len(calib.coef)) != (n, n, n) or calib.depth < 1 or not np.all(np.isfinite(numbers)) \
                or min(calib.scale) <= 0 or len(calib.positive_quantiles) not in (0, QUANTILES):
            raise InputError(f"{name}: calibration file is damaged (wrong lengths or non-finite numbers); refit it with vecpipe calibrate")
        return calib

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return _sigmoid(z @ np.asarray(self.coef) + self.intercept)

    def threshold_for_recall(self, recall: float) -> float:
        """The largest probability threshold that keeps at least ``recall`` of the training positives."""
        if not self.positive_quantiles:
            raise InputError("the calibration file records no training positives; refit it with vecpipe calibrate")
        # positive_quantiles[i] is the (i / 1000)-quantile of the positives' probabilities: keeping
        # p >= quantile(1 - R) keeps a share R of them.
        pos = (1.0 - recall) * (QUANTILES - 1)
        return float(self.positive_quantiles[int(np.floor(pos + 1e-9))])


def _scores_label(hubness: str | None) -> str:
    return f"{hubness}-normalised scores (--hubness {hubness})" if hubness else "plain similarity scores"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


# -------------------------------------------------------------------------------- run features


@dataclass
class RunArrays:
    """A run as arrays grouped by query: rows ordered by (query first seen, rank)."""

    qids: np.ndarray  # object, per row
    docids: np.ndarray  # object, per row
    ranks: np.ndarray
    scores: np.ndarray  # float64
    starts: np.ndarray  # first row of each query group
    order: np.ndarray  # row positions in the input table


def run_arrays(table: pa.Table, name: str) -> RunArrays:
    """Group a conformed run's rows by query (queries in first-seen order, rows by rank)."""
    qids = np.asarray(table.column("qid").to_numpy(zero_copy_only=False), dtype=object)
    docids = np.asarray(table.column("docid").to_numpy(zero_copy_only=False), dtype=object)
    ranks = np.asarray(table.column("rank").to_numpy(), dtype=np.int64)
    scores = np.asarray(table.column("score").to_numpy(), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{name}: query {qids[i]!r}, document {docids[i]!r} has score {scores[i]}; "
                         "a run to calibrate or cut needs finite scores")
    _, first, codes = np.unique(qids, return_index=True, return_inverse=True)
    group_rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")[codes]  # queries in first-seen order
    order = np.lexsort((ranks, group_rank))
    g = group_rank[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, dtype=np.int64)
    return RunArrays(qids[order], docids[order], ranks[order], scores[order], starts, order)


def features(run: RunArrays, depth: int) -> np.ndarray:
    """The (rows, 5) feature matrix of :data:`FEATURES`, query features taken to ``depth`` results."""
    n = len(run.scores)
    out = np.empty((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    lengths = np.diff(np.r_[run.starts, n])
    group = np.repeat(np.arange(len(run.starts)), lengths)
    top = (np.arange(n) - run.starts[group]) < depth
    counted = np.minimum(lengths, depth)
    s = run.scores
    mean = np.bincount(group, weights=np.where(top, s, 0.0)) / counted
    spread = np.sqrt(np.bincount(group, weights=np.where(top, (s - mean[group]) ** 2, 0.0)) / counted)
    first = s[run.starts]
    kth = s[run.starts + counted - 1]
    out[:, 0] = s
    out[:, 1] = first[group]
    out[:, 2] = (first - kth)[group]
    out[:, 3] = spread[group]
    out[:, 4] = mean[group]
    return out


# ------------------------------------------------------------------------------------------ fitting


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float = L2_PENALTY, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of an L2-penalised logistic regression (Newton's method)."""
    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, penalty * n)
    reg[-1] = 0.0  # the intercept is not penalised
    for _ in range(iterations):
        p = _sigmoid(a @ w)
        grad = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def labels_of(run: RunArrays, qrels: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(relevance label per row, whether the row's query is judged) from conformed qrels."""
    rel = np.asarray(qrels.column("rel").to_numpy(), dtype=np.int64)
    q = qrels.column("qid").to_pylist()
    d = qrels.column("docid").to_pylist()
    relevant = {(a, b) for a, b, r in zip(q, d, rel.tolist()) if r > 0}
    judged_queries = set(q)
    y = np.fromiter(((a, b) in relevant for a, b in zip(run.qids.tolist(), run.docids.tolist())), dtype=np.float64,
                    count=len(run.qids))
    judged = np.fromiter((a in judged_queries for a in run.qids.tolist()), dtype=bool, count=len(run.qids))
    return y, judged


def fit(run: RunArrays, y: np.ndarray, depth: int, model: str | None, metric: str | None,
        hubness: str | None = None) -> Calibration:
    """Fit a calibration on the rows of ``run`` with labels ``y`` (1 relevant, 0 not)."""
    if y.sum() == 0:
        raise InputError("no row of the run is relevant by the qrels: nothing to calibrate on; "
                         "give the training qrels of the queries the run holds")
    if y.sum() == len(y):
        raise InputError("every row of the run is relevant by the qrels: nothing to tell apart; give a deeper run")
    x = features(run, depth)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    coef, intercept = fit_logistic((x - mean) / scale, y)
    calib = Calibration(depth=depth, mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept,
                        model=model, metric=metric, hubness=hubness)
    p = calib.probabilities(x)
    calib.positive_quantiles = np.quantile(p[y > 0], np.linspace(0, 1, QUANTILES), method="lower").tolist()
    calib.train = {"queries": len(run.starts), "rows": len(y), "positives": int(y.sum()),
                   "ece": round(expected_calibration_error(p, y), 6), "pr_auc": round(average_precision(p, y), 6)}
    return calib


# ---------------------------------------------------------------------------------------- measures


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: the row-weighted mean |mean prediction - observed rate| over equal-width probability bins."""
    if len(p) == 0:
        return 0.0
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins)
    rate = np.bincount(which, weights=y, minlength=bins)
    used = count > 0
    return float(np.abs(mean_p[used] - rate[used]).sum() / len(p))


def average_precision(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision over the rows sorted by ``p``)."""
    if y.sum() == 0:
        return 0.0
    order = np.argsort(-p, kind="stable")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


# ------------------------------------------------------------------------------------------ cutting


def cut(table: pa.Table, calib: Calibration, threshold: float, prob_scores: bool, name: str) -> pa.Table:
    """The rows of a run whose probability of relevance is at least ``threshold``, re-ranked 1..n per
    query in their order (by probability with ``prob_scores``, which also writes it as the score)."""
    from vecpipe.formats.runs import RUN_SCHEMA

    run = run_arrays(table, name)
    p = calib.probabilities(features(run, calib.depth)) if len(run.scores) else np.zeros(0)
    keep = p >= threshold
    n = len(p)
    ends = np.r_[run.starts[1:], n]
    group = np.repeat(np.arange(len(run.starts)), ends - run.starts) if n else np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(keep)
    if prob_scores:
        rows = rows[np.lexsort((rows, -p[rows], group[rows]))]  # by probability within each query, stable
    g = group[rows]
    new_start = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(new_start, np.arange(len(g)), 0)) if len(g) else np.zeros(0, dtype=np.int64)
    ranks = (np.arange(len(g)) - first + 1).astype(np.int32)
    scores = p[rows] if prob_scores else run.scores[rows]
    return pa.Table.from_arrays([pa.array(run.qids[rows], pa.string()), pa.array(run.docids[rows], pa.string()),
                                 pa.array(ranks, pa.int32()), pa.array(scores.astype(np.float32), pa.float32())],
                                schema=RUN_SCHEMA)


def check_run_fits(calib: Calibration, run_meta: dict[str, Any], deepest: int, run_name: str, calib_name: str) -> None:
    """Refuse a run of another model or metric than the calibration's, or one too shallow for its depth."""
    model = run_meta.get("model")
    if calib.model and model and model != calib.model:
        raise InputError(f"{calib_name}: fitted on runs of model {calib.model!r} but {run_name} comes from {model!r}; "
                         "fit a calibration on runs of this model with vecpipe calibrate")
    metric = (run_meta.get("index") or {}).get("metric")
    if calib.metric and metric and metric != calib.metric:
        raise InputError(f"{calib_name}: fitted on {calib.metric} scores but {run_name} holds {metric} scores; "
                         "fit a calibration on runs of this index with vecpipe calibrate")
    if (run_meta.get("cut") or {}).get("scores") == "prob":
        raise InputError(f"{run_name}: its scores are already probabilities (vecpipe cut --scores prob); cut the original run")
    hubness = (run_meta.get("hubness") or {}).get("method")
    if hubness != calib.hubness:
        raise InputError(f"{calib_name}: fitted on {_scores_label(calib.hubness)} but {run_name} holds {_scores_label(hubness)}; "
                         "fit a calibration on runs searched the same way")
    k = run_meta.get("k")
    if (k is not None and int(k) < calib.depth) or (k is None and 0 < deepest < calib.depth):
        raise InputError(f"{run_name}: keeps {k if k is not None else deepest} results per query but {calib_name} was fitted on "
                         f"the top {calib.depth}; search with -k {calib.depth} or more")

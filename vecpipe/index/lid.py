"""Local intrinsic dimensionality, HNSW insertion orders and recall diagnostics.

LID is the maximum-likelihood estimate of Levina and Bickel (2004) as Amsaleg et al. (2015) use it
for nearest-neighbour search: over a point's k nearest neighbours (k = 20) at distances r_1..r_k,
``LID = -1 / mean_i log(r_i / r_k)`` (i < k). Points whose neighbourhood is spread in many directions
have a high LID; graph indexes reach them with more difficulty (the seed study: recall shifts by up
to 12 points with insertion order and intrinsic dimensionality).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecpipe.errors import UsageError

ORDERS = ("input", "random", "lid-desc", "lid-asc")
LID_K = 20


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise UsageError(f"--order {order!r}: choose one of {', '.join(ORDERS)}")
    return order


def lid_from_distances(dist: np.ndarray) -> np.ndarray:
    """LID (MLE) of each row of ascending neighbour distances (Euclidean, not squared; the point
    itself excluded). Rows with a zero k-th distance (duplicates) get NaN."""
    d = np.asarray(dist, np.float64)
    rk = d[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.maximum(d[:, :-1], 1e-30) / rk)
        lid = -1.0 / logs.mean(1)
    lid[~np.isfinite(lid) | (rk[:, 0] <= 0)] = np.nan
    return lid


def knn_l2(base: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by Euclidean distance (not squared), blocked by faiss."""
    import faiss

    kk = min(len(base), k + (1 if exclude_self else 0))
    dist, idx = faiss.knn(np.ascontiguousarray(queries, np.float32), np.ascontiguousarray(base, np.float32), kk)
    if exclude_self:
        keep = idx != np.arange(len(queries))[:, None]
        # drop the point itself (or, for duplicates, the first column) from each row
        first = np.argmin(keep, axis=1)
        mask = np.ones_like(keep)
        mask[np.arange(len(queries)), np.where(keep.all(1), kk - 1, first)] = False
        dist = dist[mask].reshape(len(queries), kk - 1)
        idx = idx[mask].reshape(len(queries), kk - 1)
    return np.sqrt(np.maximum(dist, 0)), idx


def lid(base: np.ndarray, queries: np.ndarray | None = None, k: int = LID_K) -> np.ndarray:
    """LID of each query (default: of each base point, among the others) over its k neighbours in ``base``."""
    if queries is None:
        return lid_from_distances(knn_l2(base, base, k, exclude_self=True)[0])
    return lid_from_distances(knn_l2(base, queries, k)[0])


def insertion_order(matrix: np.ndarray, order: str, seed: int) -> np.ndarray | None:
    """The permutation rows are inserted in (None for ``input``)."""
    check_order(order)
    if order == "input":
        return None
    if order == "random":
        return np.random.default_rng(seed).permutation(len(matrix))
    values = lid(matrix)
    values = np.where(np.isnan(values), -np.inf, values)
    key = -values if order == "lid-desc" else values
    return np.argsort(key, kind="stable")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    values = x[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    stops = np.concatenate([starts[1:], [len(x)]])
    avg = (starts + stops + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, stops - starts)
    return ranks


def diagnose(index: Any, docs: np.ndarray, queries: np.ndarray, qids: list[str], k: int, metric: str,
             doc_lid_sample: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """Recall@k of ``index`` (a loaded index with ``search``) against exact search over ``docs`` per
    query, its quantiles and worst queries, the LID of queries and of documents, and how recall
    correlates with query LID."""
    import faiss

    from vecpipe.metric import prepare

    q = prepare(queries, metric)
    d = prepare(docs, metric)
    k = min(k, len(d))
    exact = faiss.knn(q, d, k, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)[1]
    _, got = index.search(queries, k)
    recall = np.array([len(set(exact[i].tolist()) & set(got[i][got[i] >= 0].tolist())) / k for i in range(len(q))])
    q_lid = lid(d, q)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(d), size=min(len(d), doc_lid_sample), replace=False))
    d_lid = lid_from_distances(knn_l2(d, d[sample], LID_K, exclude_self=True)[0])
    worst = np.lexsort((-np.nan_to_num(q_lid, nan=-1.0), recall))[:10]
    quant = {f"p{int(p * 100):02d}": round(float(np.quantile(recall, p)), 4) for p in (0.01, 0.05, 0.1, 0.25, 0.5)}

    def summary(x: np.ndarray) -> dict[str, float]:
        x = x[np.isfinite(x)]
        if not len(x):
            return {}
        return {"mean": round(float(x.mean()), 3), "p10": round(float(np.quantile(x, 0.1)), 3),
                "median": round(float(np.median(x)), 3), "p90": round(float(np.quantile(x, 0.9)), 3)}

    high = q_lid > np.nanmedian(q_lid)
    return {
        "k": k, "queries": len(q), "recall": round(float(recall.mean()), 4), "recall_quantiles": quant,
        "perfect_share": round(float((recall == 1).mean()), 4),
        "worst": [{"qid": qids[i], "recall": round(float(recall[i]), 4), "lid": _finite(q_lid[i])} for i in worst.tolist()],
        "lid": {"k": LID_K, "queries": summary(q_lid), "documents": summary(d_lid), "documents_sampled": len(sample)},
        "recall_lid_spearman": _finite(spearman(recall, q_lid)),
        "recall_by_lid": {"low_half": round(float(recall[~high].mean()), 4) if (~high).any() else None,
                          "high_half": round(float(recall[high].mean()), 4) if high.any() else None},
    }


def _finite(x: float) -> float | None:
    """A rounded number, or None where it is not finite (JSON has no NaN)."""
    return round(float(x), 4) if np.isfinite(x) else None

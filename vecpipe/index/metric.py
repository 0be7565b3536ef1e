"""Metric vocabulary shared by build and search: ``ip``, ``l2``, ``cos`` (and ``hamming`` for bits)."""

from __future__ import annotations

import numpy as np

from vecpipe.errors import UsageError

METRICS = ("ip", "l2", "cos", "hamming")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    return metric


def faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def prepare(matrix: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, and L2-normalised for ``cos``."""
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    if metric == "cos":
        if out is matrix:
            out = out.copy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
    return out


def scores_from_distances(distances: np.ndarray, metric: str) -> np.ndarray:
    """Higher is better in runs: similarities as they are, distances negated."""
    if metric in ("l2", "hamming"):
        return -distances.astype(np.float32)
    return distances.astype(np.float32, copy=False)

"""The metric vocabulary and the vector arithmetic every package shares.

``ip``, ``l2``, ``cos`` (and ``hamming`` for packed bits); the default metric of a vectors artifact;
L2 normalisation; float32 preparation of a matrix for a metric; scores with higher-is-better.
This module sits at the bottom of the package graph beside :mod:`vecpipe.errors`: numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecpipe.errors import UsageError

METRICS = ("ip", "l2", "cos", "hamming")
FLOAT_METRICS = ("ip", "l2", "cos")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    return metric


def default_metric(meta: dict[str, Any] | None) -> str:
    """The float metric a vectors artifact records (``ip`` when it records none)."""
    metric = (meta or {}).get("metric")
    return metric if metric in FLOAT_METRICS else "ip"


def l2_normalize(matrix: np.ndarray, copy: bool = True) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32.

    With ``copy=False`` a float32 C-contiguous input is normalised in place.
    """
    out = np.array(matrix, dtype=np.float32, order="C", copy=copy)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


#: Rows whose squared norm is within this of 1 count as unit vectors (float32 rounding of a normalised
#: 384-d vector stays well inside it).
UNIT_TOLERANCE = 1e-4


def is_unit_norm(matrix: np.ndarray) -> bool:
    """Whether every row has unit L2 norm (one pass, no temporary as large as the matrix)."""
    if matrix.size == 0:
        return True
    squared = np.einsum("ij,ij->i", matrix, matrix)
    return bool(np.abs(squared - 1.0).max() <= UNIT_TOLERANCE)


def prepare(matrix: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, and L2-normalised for ``cos`` (never modifying the caller's array;
    unit vectors, such as every embed output, are used as they are, without a copy)."""
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    if metric == "cos" and not is_unit_norm(out):
        return l2_normalize(out, copy=out is matrix)
    return out


def scores_from_distances(distances: np.ndarray, metric: str) -> np.ndarray:
    """Higher is better in runs: similarities as they are, distances negated."""
    if metric in ("l2", "hamming"):
        return -distances.astype(np.float32)
    return distances.astype(np.float32, copy=False)

"""numba kernels of :mod:`vecpipe.index.hamming` (module-level, so numba's disk cache can reuse them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

if TYPE_CHECKING:
    from numba.core.typing import Signature


@intrinsic
def popcount(typingctx: Any, x: types.Type) -> tuple[Signature, Callable[..., Any]]:
    def codegen(context: Any, builder: Any, signature: Signature, args: Sequence[Any]) -> Any:
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@njit(fastmath=True, inline="always", cache=True)
def block_distances(xt: np.ndarray, start: int, n: int, q: np.ndarray, qi: int, d: np.ndarray) -> None:
    """Distances of queries qi..qi+7 to codes start..start+n-1 into d[0:8, 0:n]."""
    for j in range(n):
        for r in range(8):
            d[r, j] = 0
    for w in range(xt.shape[0]):
        a0, a1, a2, a3 = q[qi, w], q[qi + 1, w], q[qi + 2, w], q[qi + 3, w]
        a4, a5, a6, a7 = q[qi + 4, w], q[qi + 5, w], q[qi + 6, w], q[qi + 7, w]
        row = xt[w, start:start + n]
        for j in range(n):
            x = row[j]
            d[0, j] += np.int32(popcount(a0 ^ x))  # type: ignore[call-arg]  # numba's stub counts typingctx as an argument
            d[1, j] += np.int32(popcount(a1 ^ x))
            d[2, j] += np.int32(popcount(a2 ^ x))
            d[3, j] += np.int32(popcount(a3 ^ x))
            d[4, j] += np.int32(popcount(a4 ^ x))
            d[5, j] += np.int32(popcount(a5 ^ x))
            d[6, j] += np.int32(popcount(a6 ^ x))
            d[7, j] += np.int32(popcount(a7 ^ x))


@njit(inline="always", cache=True)
def merge(dist: np.ndarray, n: int, start: int, out_d: np.ndarray, out_i: np.ndarray, qi: int, k: int) -> None:
    """Insert a block's distances below the current k-th best into query qi's sorted top k."""
    thr = out_d[qi, k - 1]
    low = thr
    for j in range(n):
        low = min(low, dist[j])
    if low >= thr:
        return
    for j in range(n):
        v = dist[j]
        if v < thr:
            p = k - 1
            while p > 0 and out_d[qi, p - 1] > v:
                out_d[qi, p] = out_d[qi, p - 1]
                out_i[qi, p] = out_i[qi, p - 1]
                p -= 1
            out_d[qi, p] = v
            out_i[qi, p] = start + j
            thr = out_d[qi, k - 1]


@njit(parallel=True, fastmath=True, cache=True)
def knn(xt: np.ndarray, q: np.ndarray, k: int, block: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (distances, labels) of each query row of q (a multiple of 8 rows) against codes xt[W, N]."""
    n_codes = xt.shape[1]
    n_groups = q.shape[0] // 8
    out_d = np.full((q.shape[0], k), 1 << 30, np.int32)
    out_i = np.full((q.shape[0], k), -1, np.int64)
    per = (n_groups + threads - 1) // threads
    for t in prange(threads):
        g0 = t * per
        g1 = min(n_groups, g0 + per)
        d = np.empty((8, block), np.int32)
        for start in range(0, n_codes, block):
            n = min(n_codes, start + block) - start
            for g in range(g0, g1):
                block_distances(xt, start, n, q, g * 8, d)
                for r in range(8):
                    merge(d[r], n, start, out_d, out_i, g * 8 + r, k)
    return out_d, out_i

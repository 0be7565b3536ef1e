"""Exact scans on a CUDA GPU with CuPy: float32, fp16 and SQ8 vectors, and 1-bit codes.

The corpus is held on the GPU when it fits in 80% of the free memory, else it streams through in
blocks of rows from the host (the mapped index). For each batch of queries and each block of the
corpus, the scores are one matrix product (cuBLAS) and the top k is selected on the device:

1. a threshold per query from a strided sample of its scores (the sample's rank that leaves about
   2k of the block's scores above it);
2. every score at or above the threshold is a candidate (``nonzero``), at most ``CAP`` a row;
3. candidates are sorted per row (stably: among equal scores the lower row number first, as
   vecpipe's CPU Hamming scan keeps) and k kept. A row whose threshold catches fewer than k scores,
   or more than ``CAP``, is sorted whole: the result is always exact.

Per-block results are merged the same way. 1-bit codes are scanned as +-1 vectors in fp16 (an inner
product of +-1 vectors is exact in fp16 and equals ``bits - 2 * hamming``), so the tensor cores do the
Hamming scan. SQ8 codes are decoded on the device block by block (faiss's formula), fp16 vectors
converted to float32 there: the same scores as faiss's CPU scan up to float rounding.

Every function takes the array module ``xp`` (CuPy on the GPU): with NumPy the same code runs on the
CPU, which is how the selection, the blocking and the decoding are tested where there is no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vecpipe.errors import ModelError
from vecpipe.index.faiss_util import flat_codes

GPU_EXTRA = "pip install 'vecpipe[gpu]'"
CAP = 65536  # candidates kept per row and block before a row is sorted whole
SAMPLE = 4096  # scores sampled per row to set its threshold
KINDS = ("float32", "fp16", "sq8", "binary")


def cupy_or_reason() -> tuple[Any, str | None]:
    """(cupy, None) when a CUDA device is usable through CuPy, else (None, why not and the fix)."""
    try:
        import cupy
    except ImportError:
        return None, f"GPU search needs CuPy: {GPU_EXTRA} (CuPy for CUDA 12 or 13); vecpipe inspect --system shows what is found"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDA's own errors: no driver, no device
        return None, f"CuPy finds no usable CUDA device ({str(exc).splitlines()[0][:120]}); use --device cpu"
    if count < 1:
        return None, "CuPy finds no CUDA device; use --device cpu"
    return cupy, None


def require_cupy() -> Any:
    cupy, why = cupy_or_reason()
    if cupy is None:
        raise ModelError(f"--device cuda: {why}")
    return cupy


@dataclass
class Corpus:
    """The rows a flat index scans, as the host holds them (views into the mapped index)."""

    kind: str  # one of KINDS
    rows: np.ndarray  # float32 [n, d]; uint16 (fp16 bits) [n, d]; uint8 [n, d] (sq8); uint8 [n, bytes] (binary)
    metric: str  # ip, cos, l2, hamming
    vmin: np.ndarray | None = None  # sq8: per-dimension minimum and range (faiss QT_8bit)
    vdiff: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])


def corpus_of(index: Any, metric: str) -> Corpus | None:
    """The scannable rows of a flat faiss index (float, fp16 or 8-bit scalar codes, 1-bit codes), or
    None for other kinds (IVF, HNSW, PQ), which stay on the CPU."""
    import faiss

    n = int(index.ntotal)
    if isinstance(index, faiss.IndexBinaryFlat):
        return Corpus("binary", flat_codes(index), "hamming")
    if isinstance(index, faiss.IndexFlat):
        data = faiss.rev_swig_ptr(index.get_xb(), n * index.d) if n else np.zeros(0, np.float32)
        return Corpus("float32", np.asarray(data).reshape(n, index.d), metric)
    if isinstance(index, faiss.IndexScalarQuantizer):
        sq = index.sq
        codes = flat_codes(index)
        if sq.qtype == faiss.ScalarQuantizer.QT_fp16:
            return Corpus("fp16", codes.view(np.uint16), metric)
        if sq.qtype == faiss.ScalarQuantizer.QT_8bit and sq.rangestat is not None:
            trained = faiss.vector_to_array(sq.trained).astype(np.float32)
            d = index.d
            if len(trained) == 2 * d:
                return Corpus("sq8", codes, metric, vmin=trained[:d].copy(), vdiff=trained[d:].copy())
            if len(trained) == 2:  # uniform ranges
                return Corpus("sq8", codes, metric, vmin=np.full(d, trained[0], np.float32), vdiff=np.full(d, trained[1], np.float32))
    return None


def unpack_pm1(xp: Any, codes: Any) -> Any:
    """uint8 codes [n, b] -> +-1 matrix [n, 8b], fp16 (exact while 8b <= 2048) else float32. Any bit
    order serves: a permutation of the bits leaves Hamming distances unchanged."""
    shifts = xp.arange(8, dtype=xp.uint8)
    bits = (codes[:, :, None] >> shifts[None, None, :]) & 1
    dtype = xp.float16 if codes.shape[1] * 8 <= 2048 else xp.float32
    return (bits.reshape(codes.shape[0], -1).astype(dtype) * 2 - 1).astype(dtype)


_COLLECT_SOURCE = r"""
extern "C" __global__
void vecpipe_collect(const float* __restrict__ scores, const long long n, const float* __restrict__ thr,
                     const int cap, int* __restrict__ count, float* __restrict__ vals, long long* __restrict__ cols) {
    const long long row = blockIdx.y;
    const float t = thr[row];
    const float* s = scores + row * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        const float v = s[j];
        if (v >= t) {
            const int p = atomicAdd(count + row, 1);
            if (p < cap) {
                vals[row * (long long)cap + p] = v;
                cols[row * (long long)cap + p] = j;
            }
        }
    }
}
"""
_kernels: dict[str, Any] = {}


def _cuda_collect(xp: Any, scores: Any, thresholds: Any, cap: int) -> tuple[Any, Any, Any]:
    """One pass over ``scores`` on the GPU: every score at or above its row's threshold, with its
    column, into ``[rows, cap]`` buffers (in no particular order), and each row's count."""
    kernel = _kernels.get("collect")
    if kernel is None:
        kernel = _kernels["collect"] = xp.RawKernel(_COLLECT_SOURCE, "vecpipe_collect")
    rows, n = scores.shape
    count = xp.zeros(rows, xp.int32)
    vals = xp.full((rows, cap), -xp.inf, xp.float32)
    cols = xp.full((rows, cap), n, xp.int64)
    blocks = int(min(max(1, (n + 255) // 256), 64))
    kernel((blocks, rows), (256,), (xp.ascontiguousarray(scores, dtype=xp.float32), np.int64(n),
                                     xp.ascontiguousarray(thresholds, dtype=xp.float32), np.int32(cap), count, vals, cols))
    return count, vals, cols


def numpy_collect(xp: Any, scores: Any, thresholds: Any, cap: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """The CUDA collect kernel's contract on NumPy (candidates in a shuffled order, as atomics leave
    them), for tests of what surrounds it."""
    rows, n = scores.shape
    count = np.zeros(rows, np.int32)
    vals = np.full((rows, cap), -np.inf, np.float32)
    cols = np.full((rows, cap), n, np.int64)
    rng = np.random.default_rng(seed)
    for r in range(rows):
        hit = np.flatnonzero(scores[r] >= thresholds[r])
        rng.shuffle(hit)
        count[r] = len(hit)
        take = hit[:cap]
        vals[r, : len(take)] = scores[r, take]
        cols[r, : len(take)] = take
    return count, vals, cols


# -- 1-bit codes: a fused Hamming scan with an exact top k from per-query histograms -----------------
#
# Two passes over the codes, no score matrix: (1) each query's histogram of Hamming distances
# (distances are small integers, at most the number of bits); from it the distance t at which the
# k-th nearest lies, and how many lie nearer; (2) every code nearer than t is kept, and every code at
# exactly t is listed; the nearer ones sorted by (distance, row) and the lowest rows at t fill the k.
# Exact, with ties in row order like the CPU scan. Queries are taken ``_QT`` at a time by each thread
# block, so each code read from memory serves several queries.

_QT = 8
MAX_FUSED_BITS = 1024  # a block's histograms in shared memory: _QT x (bits + 1) counters
_HAMMING_SOURCE = r"""
#define QT 8
extern "C" __global__
void vecpipe_hamming_hist(const unsigned long long* __restrict__ docs, const long long n,
                          const unsigned long long* __restrict__ queries, const int nq, const int bins,
                          unsigned int* __restrict__ hist) {
    extern __shared__ unsigned int sh[];
    __shared__ unsigned long long qs[QT * WORDS];
    const int q0 = blockIdx.y * QT;
    const int nqb = min(QT, nq - q0);
    for (int i = threadIdx.x; i < QT * bins; i += blockDim.x) sh[i] = 0;
    for (int i = threadIdx.x; i < nqb * WORDS; i += blockDim.x) qs[i] = queries[(long long)q0 * WORDS + i];
    __syncthreads();
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        unsigned long long d[WORDS];
#pragma unroll
        for (int w = 0; w < WORDS; ++w) d[w] = docs[j * WORDS + w];
        for (int qi = 0; qi < nqb; ++qi) {
            int h = 0;
#pragma unroll
            for (int w = 0; w < WORDS; ++w) h += __popcll(d[w] ^ qs[qi * WORDS + w]);
            atomicAdd(sh + qi * bins + h, 1u);
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nqb * bins; i += blockDim.x) {
        const unsigned int c = sh[i];
        if (c) atomicAdd(hist + (long long)(q0 + i / bins) * bins + (i % bins), c);
    }
}

extern "C" __global__
void vecpipe_hamming_collect(const unsigned long long* __restrict__ docs, const long long n,
                             const unsigned long long* __restrict__ queries, const int nq,
                             const int* __restrict__ thr, const int k, const int tie_cap,
                             int* __restrict__ nlt, unsigned long long* __restrict__ lt_keys,
                             int* __restrict__ neq, int* __restrict__ ties) {
    __shared__ unsigned long long qs[QT * WORDS];
    __shared__ int ts[QT];
    const int q0 = blockIdx.y * QT;
    const int nqb = min(QT, nq - q0);
    for (int i = threadIdx.x; i < nqb * WORDS; i += blockDim.x) qs[i] = queries[(long long)q0 * WORDS + i];
    for (int i = threadIdx.x; i < nqb; i += blockDim.x) ts[i] = thr[q0 + i];
    __syncthreads();
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        unsigned long long d[WORDS];
#pragma unroll
        for (int w = 0; w < WORDS; ++w) d[w] = docs[j * WORDS + w];
        for (int qi = 0; qi < nqb; ++qi) {
            int h = 0;
#pragma unroll
            for (int w = 0; w < WORDS; ++w) h += __popcll(d[w] ^ qs[qi * WORDS + w]);
            const int t = ts[qi];
            const long long q = q0 + qi;
            if (h < t) {
                const int p = atomicAdd(nlt + q, 1);
                if (p < k) lt_keys[q * k + p] = ((unsigned long long)h << 32) | (unsigned long long)j;
            } else if (h == t) {
                const int p = atomicAdd(neq + q, 1);
                if (p < tie_cap) ties[q * tie_cap + p] = (int)j;
            }
        }
    }
}
"""
_POP8 = np.array([bin(i).count("1") for i in range(256)], np.int64)


def as_words(xp: Any, codes: Any) -> Any:
    """uint8 codes [n, b] -> uint64 words [n, ceil(b / 8)], zero-padded (zeros change no distance)."""
    n, b = codes.shape
    pad = (-b) % 8
    if pad:
        codes = xp.concatenate([codes, xp.zeros((n, pad), xp.uint8)], axis=1)
    return xp.ascontiguousarray(codes).view(xp.uint64)


def _distances(q_words: np.ndarray, d_words: np.ndarray) -> np.ndarray:
    x = (q_words[:, None, :] ^ d_words[None, :, :]).view(np.uint8)
    return _POP8[x].sum(axis=2)


def numpy_hamming_hist(xp: Any, q_words: Any, d_words: Any, bins: int) -> Any:
    """The histogram kernel's contract on NumPy (for tests): counts [queries, bins] of distances."""
    dist = _distances(q_words, d_words)
    return np.stack([np.bincount(r, minlength=bins) for r in dist]).astype(np.uint32)


def numpy_hamming_collect(xp: Any, q_words: Any, d_words: Any, thr: Any, k: int, tie_cap: int, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """The collect kernel's contract on NumPy (in a shuffled order, as atomics leave it)."""
    dist = _distances(q_words, d_words)
    rows = len(q_words)
    rng = np.random.default_rng(seed)
    nlt = np.zeros(rows, np.int32)
    neq = np.zeros(rows, np.int32)
    lt_keys = np.full((rows, k), np.iinfo(np.uint64).max, np.uint64)
    ties = np.full((rows, max(1, tie_cap)), np.iinfo(np.int32).max, np.int32)
    for r in range(rows):
        lt = rng.permutation(np.flatnonzero(dist[r] < thr[r]))
        eq = rng.permutation(np.flatnonzero(dist[r] == thr[r]))
        nlt[r], neq[r] = len(lt), len(eq)
        lt_keys[r, : min(k, len(lt))] = (dist[r, lt[:k]].astype(np.uint64) << np.uint64(32)) | lt[:k].astype(np.uint64)
        ties[r, : min(tie_cap, len(eq))] = eq[:tie_cap]
    return nlt, lt_keys, neq, ties


def _cuda_hamming(xp: Any, words: int) -> tuple[Any, Any]:
    key = f"hamming{words}"
    if key not in _kernels:
        module = xp.RawModule(code=_HAMMING_SOURCE, options=(f"-DWORDS={words}",))
        _kernels[key] = (module.get_function("vecpipe_hamming_hist"), module.get_function("vecpipe_hamming_collect"))
    return _kernels[key]


def _grid_x(n: int, rows: int) -> int:
    # enough blocks to fill the GPU several times over, each thread striding over the codes
    return int(max(1, min((n + 255) // 256, max(1, 32768 // max(1, (rows + _QT - 1) // _QT)))))


def cuda_hamming_hist(xp: Any, q_words: Any, d_words: Any, bins: int) -> Any:
    hist_k, _ = _cuda_hamming(xp, int(q_words.shape[1]))
    rows, n = len(q_words), len(d_words)
    hist = xp.zeros((rows, bins), xp.uint32)
    hist_k((_grid_x(n, rows), (rows + _QT - 1) // _QT), (256,),
           (d_words, np.int64(n), q_words, np.int32(rows), np.int32(bins), hist), shared_mem=_QT * bins * 4)
    return hist


def cuda_hamming_collect(xp: Any, q_words: Any, d_words: Any, thr: Any, k: int, tie_cap: int) -> tuple[Any, Any, Any, Any]:
    _, collect_k = _cuda_hamming(xp, int(q_words.shape[1]))
    rows, n = len(q_words), len(d_words)
    nlt = xp.zeros(rows, xp.int32)
    neq = xp.zeros(rows, xp.int32)
    lt_keys = xp.full((rows, k), np.iinfo(np.uint64).max, xp.uint64)
    ties = xp.full((rows, max(1, tie_cap)), np.iinfo(np.int32).max, xp.int32)
    collect_k((_grid_x(n, rows), (rows + _QT - 1) // _QT), (256,),
              (d_words, np.int64(n), q_words, np.int32(rows), xp.ascontiguousarray(thr, dtype=xp.int32),
               np.int32(k), np.int32(max(1, tie_cap)), nlt, lt_keys, neq, ties))
    return nlt, lt_keys, neq, ties


def hamming_topk(xp: Any, q_words: Any, d_words: Any, k: int, bits: int, max_ties: int | None = None,
                 hist_fn: Any = None, collect_fn: Any = None) -> tuple[Any, Any] | None:
    """The k nearest codes of each query by Hamming distance, nearest first, among equal distances
    the lower row first: (minus the distances as float32, rows as int64); k at most the number of
    codes. None when the codes tied at the k-th distance would need more than ``max_ties`` slots in
    all (the caller scans those queries another way)."""
    rows = len(q_words)
    hist_fn = hist_fn or (cuda_hamming_hist if _is_cupy(xp) else numpy_hamming_hist)
    collect_fn = collect_fn or (cuda_hamming_collect if _is_cupy(xp) else numpy_hamming_collect)
    hist = hist_fn(xp, q_words, d_words, bits + 1).astype(xp.int64)
    cum = xp.cumsum(hist, axis=1)
    thr = xp.argmax(cum >= k, axis=1)  # the distance of the k-th nearest
    at_thr = xp.take_along_axis(hist, thr[:, None], 1)[:, 0]
    nearer = xp.take_along_axis(cum, thr[:, None], 1)[:, 0] - at_thr
    tie_cap = int(at_thr.max()) if rows else 0
    if max_ties is not None and rows * tie_cap > max_ties:
        return None
    _nlt, lt_keys, _neq, ties = collect_fn(xp, q_words, d_words, thr, k, tie_cap)
    lt_sorted = xp.sort(lt_keys, axis=1)
    firsts = xp.sort(ties, axis=1)[:, :k].astype(xp.uint64)
    tie_keys = (thr.astype(xp.uint64)[:, None] << xp.uint64(32)) | firsts
    unused = xp.arange(firsts.shape[1])[None, :] >= (k - nearer)[:, None]
    tie_keys[unused] = xp.uint64(np.iinfo(np.uint64).max)
    keys = xp.sort(xp.concatenate([lt_sorted, tie_keys], axis=1), axis=1)[:, :k]
    dist = (keys >> xp.uint64(32)).astype(xp.float32)
    return -dist, (keys & xp.uint64(0xFFFFFFFF)).astype(xp.int64)


def _is_cupy(xp: Any) -> bool:
    return getattr(xp, "__name__", "") == "cupy"


def _thresholds(xp: Any, scores: Any, k: int) -> tuple[Any, int]:
    """Per row, a score from a strided sample that leaves about 2k of the row's scores at or above
    it; and that expected count."""
    _rows, n = scores.shape
    step = max(1, n // SAMPLE)
    sample = scores[:, ::step]
    ns = sample.shape[1]
    rank = min(ns - 1, int(np.ceil(2.0 * k * ns / n)) + 4)
    return -xp.sort(-sample, axis=1)[:, rank], (rank + 1) * step


def _sort_candidates(xp: Any, vals: Any, cols: Any, k: int) -> tuple[Any, Any]:
    """Candidates sorted best first, among equal scores the lower column first; k kept. One sort of
    64-bit keys: the score's bits mapped to an order-preserving unsigned integer and inverted (best
    first) in the high half, the column in the low half (columns below 2**32)."""
    bits = xp.ascontiguousarray(vals + xp.float32(0), dtype=xp.float32).view(xp.uint32)  # -0.0 -> 0.0
    neg = (bits >> 31).astype(bool)
    ordered = xp.where(neg, ~bits, bits | xp.uint32(0x80000000))  # ascending with the float
    keys = ((~ordered).astype(xp.uint64) << xp.uint64(32)) | cols.astype(xp.uint64)
    keys = xp.sort(keys, axis=1)[:, :k]
    ordered = ~(keys >> xp.uint64(32)).astype(xp.uint32)
    top = ordered >> 31
    bits = xp.where(top.astype(bool), ordered & xp.uint32(0x7FFFFFFF), ~ordered)
    return bits.view(xp.float32), (keys & xp.uint64(0xFFFFFFFF)).astype(xp.int64)


def _whole_rows(xp: Any, scores: Any, k: int) -> tuple[Any, Any]:
    order = xp.argsort(-scores, axis=1, kind="stable")[:, :k]
    return xp.take_along_axis(scores, order, 1), order.astype(xp.int64)


def topk_rows(xp: Any, scores: Any, k: int, cap: int = CAP, collect: Any = None) -> tuple[Any, Any]:
    """The k best (highest) scores of each row and their columns, best first; among equal scores
    the lower column first. ``scores``: [rows, n] float array on ``xp``'s device. ``collect``: the
    candidate pass (the CUDA kernel on CuPy; :func:`numpy_collect` in tests); None: the kernel on
    CuPy, else masks; False: masks."""
    rows, n = scores.shape
    k = min(k, n)
    if rows == 0 or k == 0:
        return xp.zeros((rows, k), scores.dtype), xp.zeros((rows, k), xp.int64)
    if n <= max(4 * k, 2048):
        return _whole_rows(xp, scores, k)
    thresholds, expected = _thresholds(xp, scores, k)
    if collect is None and _is_cupy(xp) and rows <= 65535 and _kernels.get("collect") is not False:
        collect = _cuda_collect
    found = None
    if collect:
        width = int(min(n, cap, max(1024, 4 * expected)))
        try:
            found = collect(xp, scores, thresholds, width)
        except Exception:
            if collect is not _cuda_collect:
                raise
            _kernels["collect"] = False
    if found is not None:
        count, vals, cols = found
        used = max(k, min(width, int(count.max())))  # sort only the filled part of the buffers
        out_v, out_c = _sort_candidates(xp, vals[:, :used], cols[:, :used], k)
        whole = xp.flatnonzero((count < k) | (count > width))
        if len(whole):
            out_v[whole], out_c[whole] = _whole_rows(xp, scores[whole], k)
        return out_v.astype(scores.dtype), out_c
    mask = scores >= thresholds[:, None]
    counts = mask.sum(axis=1)
    whole_mask = (counts < k) | (counts > cap)
    out_v = xp.empty((rows, k), scores.dtype)
    out_c = xp.empty((rows, k), xp.int64)
    fallback = xp.flatnonzero(whole_mask)
    if len(fallback):
        out_v[fallback], out_c[fallback] = _whole_rows(xp, scores[fallback], k)
    good = xp.flatnonzero(~whole_mask)
    if len(good) == 0:
        return out_v, out_c
    if len(fallback):
        mask, counts, sub = mask[good], counts[good], scores[good]
    else:
        sub = scores
    r_idx, c_idx = xp.nonzero(mask)
    width = int(counts.max())
    starts = xp.cumsum(counts) - counts
    pos = xp.arange(len(r_idx)) - starts[r_idx]
    cand = xp.full((len(good), width), -xp.inf, dtype=scores.dtype)
    cols = xp.full((len(good), width), n, dtype=xp.int64)
    cand[r_idx, pos] = sub[r_idx, c_idx]
    cols[r_idx, pos] = c_idx
    order = xp.argsort(-cand, axis=1, kind="stable")[:, :k]  # nonzero lists columns ascending: stable keeps them so
    out_v[good] = xp.take_along_axis(cand, order, 1)
    out_c[good] = xp.take_along_axis(cols, order, 1)
    return out_v, out_c


def merge_topk(xp: Any, parts: list[tuple[Any, Any]], k: int) -> tuple[Any, Any]:
    """Merge per-block results (columns already global), keeping k; ties: lower column first."""
    if len(parts) == 1:
        return parts[0]
    vals = xp.concatenate([p[0] for p in parts], axis=1)
    cols = xp.concatenate([p[1] for p in parts], axis=1)
    # blocks are in column order, and each block's ties are in column order: a stable sort keeps it
    order = xp.argsort(-vals, axis=1, kind="stable")[:, :k]
    return xp.take_along_axis(vals, order, 1), xp.take_along_axis(cols, order, 1)


class Scan:
    """Exact top-k over a :class:`Corpus` on ``xp``'s device (CuPy, or NumPy for tests)."""

    def __init__(self, corpus: Corpus, xp: Any = None, memory: int | None = None, block_rows: int | None = None,
                 fused: bool | None = None):
        self.corpus = corpus
        self.xp = xp if xp is not None else require_cupy()
        self.gpu = self.xp is not np
        if memory is None:
            memory = int(self.xp.cuda.runtime.memGetInfo()[0] * 0.8) if self.gpu else 1 << 34
        self.memory = memory
        width = corpus.rows.shape[1] if corpus.rows.ndim == 2 else 0
        self.dim = width * 8 if corpus.kind == "binary" else width
        itemsize = corpus.rows.dtype.itemsize
        resident_bytes = corpus.n * width * itemsize
        self.resident = resident_bytes <= memory // 2
        self.block_rows = int(block_rows or max(1, min(corpus.n, 1 << 20)))
        self._device_rows = self.xp.asarray(corpus.rows) if self.resident else None
        if corpus.kind == "sq8":
            assert corpus.vmin is not None and corpus.vdiff is not None
            self._vmin = self.xp.asarray(corpus.vmin, dtype=self.xp.float32)
            self._vdiff = self.xp.asarray(corpus.vdiff, dtype=self.xp.float32) / 255.0
        self._norms: Any = None
        #: 1-bit codes: the fused Hamming scan (default on a GPU; tests turn it on with NumPy)
        self.fused = bool(self.gpu if fused is None else fused) and corpus.kind == "binary" and 0 < self.dim <= MAX_FUSED_BITS
        self._device_words = as_words(self.xp, self._device_rows) if self.fused and self._device_rows is not None else None

    def _block(self, start: int, stop: int) -> Any:
        xp = self.xp
        rows = self._device_rows[start:stop] if self._device_rows is not None else xp.asarray(self.corpus.rows[start:stop])
        kind = self.corpus.kind
        if kind == "float32":
            return rows
        if kind == "fp16":
            return rows.view(xp.float16).astype(xp.float32)
        if kind == "sq8":
            return self._vmin + (rows.astype(xp.float32) + 0.5) * self._vdiff
        return unpack_pm1(xp, rows)

    def _scores(self, q: Any, block: Any) -> Any:
        xp = self.xp
        if self.corpus.kind == "binary":
            ip = (q @ block.T).astype(xp.float32)
            return -((self.dim - ip) * 0.5)  # -hamming
        s = q @ block.T
        if self.corpus.metric == "l2":
            qn = (q * q).sum(axis=1)[:, None]
            bn = (block * block).sum(axis=1)[None, :]
            s = -xp.maximum(qn + bn - 2 * s, 0)
        return s

    def _words(self, start: int, stop: int) -> Any:
        if self._device_words is not None:
            return self._device_words[start:stop]
        return as_words(self.xp, self.xp.asarray(self.corpus.rows[start:stop]))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) on the host: scores higher-is-better (-distance for l2 and hamming), rows -1 past the corpus."""
        xp = self.xp
        n = self.corpus.n
        nq = len(queries)
        k_eff = min(k, n)
        binary = self.corpus.kind == "binary"
        host_q = np.ascontiguousarray(queries, dtype=np.uint8 if binary else np.float32)
        q_words = as_words(xp, xp.asarray(host_q)) if self.fused else None
        q_matrix: Any = None  # the queries as the matrix product wants them, made when first needed
        # queries per step: a [q_rows, block] float32 matrix and its mask within a quarter of the memory
        block = min(self.block_rows, n) if n else 1
        q_rows = max(1, min(nq, self.memory // 4 // max(1, block * 4 * 3)))
        step = min(nq, _QT * 8192) if self.fused else q_rows
        best_v = best_c = None
        # corpus blocks outside, so a streamed corpus crosses to the device once per call
        for start in range(0, n, block):
            stop = min(n, start + block)
            rows = None
            words = self._words(start, stop) if self.fused else None
            step_v, step_c = [], []
            for q0 in range(0, nq, max(1, step)):
                q1 = min(nq, q0 + step)
                found = None
                if words is not None and q_words is not None:
                    found = hamming_topk(xp, q_words[q0:q1], words, k_eff, self.dim, max_ties=self.memory // 16 // 4)
                if found is not None:
                    step_v.append(found[0])
                    step_c.append(found[1] + start)
                    continue
                if rows is None:
                    rows = self._block(start, stop)
                if q_matrix is None:
                    q_matrix = unpack_pm1(xp, xp.asarray(host_q)) if binary else xp.asarray(host_q)
                for a in range(q0, q1, q_rows):
                    vals, cols = topk_rows(xp, self._scores(q_matrix[a : min(q1, a + q_rows)], rows), k_eff)
                    step_v.append(vals)
                    step_c.append(cols + start)
            vals, cols = xp.concatenate(step_v), xp.concatenate(step_c)
            if best_v is None:
                best_v, best_c = vals, cols
            else:
                best_v, best_c = merge_topk(xp, [(best_v, best_c), (vals, cols)], k_eff)
            del rows, words
        if best_v is None:
            out_s, out_l = np.empty((nq, 0), np.float32), np.empty((nq, 0), np.int64)
        else:
            out_s, out_l = _host(xp, best_v.astype(xp.float32)), _host(xp, best_c)
        if k > k_eff:
            out_s = np.pad(out_s, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
            out_l = np.pad(out_l, ((0, 0), (0, k - k_eff)), constant_values=-1)
        return out_s, out_l


def _host(xp: Any, arr: Any) -> np.ndarray:
    return arr if xp is np else xp.asnumpy(arr)


def pair_scores(xp: Any, queries: np.ndarray, rows: np.ndarray, pair_q: np.ndarray, pair_row: np.ndarray, metric: str) -> np.ndarray:
    """Exact scores of (query row, document row) pairs on ``xp``'s device: inner products, or
    minus the squared L2 distance. Inputs are host arrays; the gather happens on the device."""
    q = xp.asarray(queries)
    d = xp.asarray(rows)
    pq = xp.asarray(pair_q)
    pr = xp.asarray(pair_row)
    qv, dv = q[pq], d[pr]
    if metric == "l2":
        diff = qv - dv
        s = -(diff * diff).sum(axis=1)
    else:
        s = (qv * dv).sum(axis=1)
    return _host(xp, s.astype(xp.float32))

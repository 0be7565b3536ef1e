"""A SPANN-style disk index (Chen et al., NeurIPS 2021): heads in memory, posting lists on disk.

Building (:func:`build`) streams the vectors once into a temporary float32 file and works from it in
chunks read with ``os.pread``, so the builder's memory holds the heads, the assignments (8 int32 and
8 float32 per vector) and one chunk, never the vectors:

1. heads: hierarchical balanced k-means; the heads are the final centroids (SPANN takes the vector
   nearest each centroid: on our synthetic data such vectors became hubs, with lists of 900 where
   the centroids' lists stay under 40). A top level of about sqrt(H) centroids (k-means on a
   sample) splits the vectors; each top cluster is clustered again into its share of the H heads
   (H = ``heads`` x n) with a *balanced* assignment whose cost adds a penalty growing with the
   cluster's size, so no posting list dominates.
2. an in-memory faiss HNSW graph over the heads (fp16 storage), used for assignment and search.
3. assignment: each vector goes to up to ``replicas`` of its nearest heads, taken in order of
   distance, under the paper's two rules: a head further than (1 + ``eps``) times the closest head's
   distance is not taken, and a head that is closer to an already chosen head than to the vector
   is skipped (the RNG rule: that head's list is already represented; ``rng=0`` turns it off).
4. posting lists: capped at ``cap`` entries (a vector's closest head always keeps it; only its
   replicas are dropped, furthest first), each stored contiguously from a 4 KB boundary of the file:
   ``count`` int32 row numbers, then ``count`` codes (``f32``, ``f16`` or ``sq8``).

The posting lists are the ``index`` section of the ``.vpi`` container, stored raw and aligned to
4 KB (:func:`vecpipe.formats.vpi.write_streamed` with ``index_align``): one file, so every contract of
the container (atomic writes, the header's sha256 over every section, the manifest) holds as for
any index, and no sidecar can go missing or stale. The heads (serialised faiss index), the list
directory (offset, count and crc32 of each list) and the sq8 ranges are small zstd sections.

Searching (:class:`SpannIndex`) loads only the small sections; the posting lists of the ``nprobe``
nearest heads (skipping heads further than ``max_dist_ratio`` times the nearest) are read with
``os.preadv`` on a thread pool, in waves through one reused buffer of :data:`READ_BUFFER` bytes,
checked against their crc32, each scored on its codes (exact for ``f32``) against the queries that
probe it, and deduplicated; ``search --rescore`` rescores the candidates from the full vectors.
"""

from __future__ import annotations

import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import arrowfn, metadata, vpi
from vecpipe.formats.vectors import first_duplicate
from vecpipe.metric import check_metric, default_metric, prepare, scores_from_distances

BLOCK = 4096
CODES = {"f32": 4, "f16": 2, "sq8": 1}
#: Parameters of ``--spec SPANN,key=value,...``: (default, low, high) for numbers.
#: heads 2% and nprobe 128: on 1M x 384 synthetic vectors 10% heads (the paper's 10-16%) left lists
#: of 10 vectors, recall@10 0.76 at nprobe 128; 2% heads gave 0.99 (bench/results/spann-1m*.log).
DEFAULTS: dict[str, Any] = {"heads": 0.02, "replicas": 8, "eps": 0.5, "rng": 1, "cap": 0, "codes": "f16", "head_codes": "sq8",
                            "m": 16, "nprobe": 128, "max_dist_ratio": 0.0}
HEAD_CODES = ("sq8", "f16", "f32")
RANGES: dict[str, tuple[float, float]] = {"heads": (1e-4, 0.5), "replicas": (1, 8), "rng": (0, 1), "eps": (0.0, 10.0), "cap": (0, 1 << 20),
                                         "m": (4, 128), "nprobe": (1, 1 << 16), "max_dist_ratio": (0.0, 100.0)}
INTEGER = ("replicas", "rng", "cap", "m", "nprobe")
SPEC_HELP = ("SPANN[,heads=0.02][,replicas=8][,eps=0.5][,rng=1|0][,cap=0 (auto)][,codes=f16|f32|sq8][,head_codes=sq8|f16|f32]"
             "[,m=16][,nprobe=128][,max_dist_ratio=0]")
CHUNK = 16384
GROUP = 32  # queries searched together (a posting list several of them probe is read once)
READ_BUFFER = 1 << 20  # posting lists are read in waves into one buffer of this size, reused
CANDIDATES = 32  # heads searched per vector at assignment, from which up to `replicas` are taken


def is_spann(spec: str) -> bool:
    return spec.strip().upper().split(",", 1)[0] == "SPANN"


def parse_spec(spec: str) -> dict[str, Any]:
    """The parameters of ``SPANN,key=value,...`` (defaults filled in); a usage error names the bad part."""
    parts = [p.strip() for p in spec.split(",")]
    if parts[0].upper() != "SPANN":
        raise UsageError(f"--spec {spec!r}: not a SPANN spec; write {SPEC_HELP}")
    params = dict(DEFAULTS)
    seen: set[str] = set()
    for part in parts[1:]:
        key, sep, text = part.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep or key not in DEFAULTS:
            raise UsageError(f"--spec {spec!r}: {part!r} is not a SPANN parameter; write {SPEC_HELP}")
        if key in seen:
            raise UsageError(f"--spec {spec!r}: {key} given twice")
        seen.add(key)
        text = text.strip()
        if key in ("codes", "head_codes"):
            choices = tuple(CODES) if key == "codes" else HEAD_CODES
            if text not in choices:
                raise UsageError(f"--spec {spec!r}: {key}={text}: choose one of {', '.join(choices)}")
            params[key] = text
            continue
        try:
            value: float = int(text) if key in INTEGER else float(text)
        except ValueError:
            raise UsageError(f"--spec {spec!r}: {key}={text}: expected {'an integer' if key in INTEGER else 'a number'}") from None
        lo, hi = RANGES[key]
        if not (math.isfinite(value) and lo <= value <= hi) or (key == "max_dist_ratio" and 0 < value < 1):
            extra = " (or 0 for no limit)" if key == "max_dist_ratio" else ""
            low = 1 if key == "max_dist_ratio" else lo
            raise UsageError(f"--spec {spec!r}: {key}={text} is out of range: from {low:g} to {hi:g}{extra}")
        params[key] = value
    return params


def canonical(params: dict[str, Any]) -> str:
    return "SPANN," + ",".join(f"{k}={params[k]:g}" if isinstance(params[k], float) else f"{k}={params[k]}" for k in DEFAULTS)


# -- building ---------------------------------------------------------------------------------------


class _Peak:
    """The largest anonymous resident memory (RssAnon) seen at sampling points: the builder's own
    memory, apart from file pages mapped for reading (a memory-mapped Parquet input counts in VmRSS
    and VmHWM although the kernel can drop it at any time)."""

    value = 0

    @classmethod
    def sample(cls) -> None:
        cls.value = max(cls.value, rss_bytes("RssAnon"))


class _Spill:
    """The prepared float32 vectors in a temporary file, read back in chunks or by rows with pread."""

    def __init__(self, directory: Path):
        self.fh = tempfile.TemporaryFile(dir=directory)
        self.n = 0
        self.d = 0

    def append(self, mat: np.ndarray) -> None:
        self.d = mat.shape[1]
        self.fh.write(np.ascontiguousarray(mat, np.float32).tobytes())
        self.n += len(mat)

    def rows(self, start: int, stop: int) -> np.ndarray:
        _Peak.sample()
        raw = os.pread(self.fh.fileno(), (stop - start) * self.d * 4, start * self.d * 4)
        return np.frombuffer(raw, np.float32).reshape(stop - start, self.d)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n, size):
            yield start, self.rows(start, min(self.n, start + size))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows by number (sorted ascending for sequential reads), runs of consecutive rows read at once."""
        out = np.empty((len(rows), self.d), np.float32)
        if not len(rows):
            return out
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [len(rows)]])
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            out[a:b] = self.rows(int(rows[a]), int(rows[b - 1]) + 1)
        return out

    def close(self) -> None:
        self.fh.close()


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 12) -> np.ndarray:
    import faiss

    if k >= len(x):
        return np.ascontiguousarray(x[:k], np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, max_points_per_centroid=1 << 30,
                      min_points_per_centroid=1)
    km.train(np.ascontiguousarray(x, np.float32))
    return np.asarray(km.centroids, np.float32)


def balanced_kmeans(x: np.ndarray, k: int, seed: int, rounds: int = 6, penalty: float = 1.0) -> np.ndarray:
    """k centroids of ``x`` whose clusters are kept near equal in size: after k-means, points are
    reassigned among their 8 nearest centroids by squared distance plus ``penalty`` times the mean
    squared distance times (cluster size / ideal size), and the centroids recomputed."""
    import faiss

    cent = _kmeans(x, k, seed)
    if k <= 1 or len(x) <= k:
        return cent
    target = len(x) / k
    nn = min(8, k)
    for _ in range(rounds):
        dist, cand = faiss.knn(x, cent, nn)
        scale = penalty * float(dist[:, 0].mean() or 1.0)
        assign = cand[:, 0].copy()
        # a few passes of greedy rebalancing against the current sizes
        for _ in range(3):
            loads = np.bincount(assign, minlength=k).astype(np.float32)
            cost = dist + scale * loads[cand] / target
            assign = cand[np.arange(len(x)), cost.argmin(1)]
        sums = np.zeros_like(cent)
        np.add.at(sums, assign, x)
        sizes = np.bincount(assign, minlength=k)
        full = sizes > 0
        cent[full] = sums[full] / sizes[full, None]
    return cent


def choose_heads(spill: _Spill, n_heads: int, seed: int, note: Callable[[str], object] | None) -> np.ndarray:
    """Hierarchical balanced k-means: sqrt(H) top clusters, each split into its share of the H heads."""
    import faiss

    rng = np.random.default_rng(seed)
    n = spill.n
    top_k = max(1, min(n_heads, round(math.sqrt(n_heads))))
    sample = np.sort(rng.choice(n, size=min(n, max(64 * top_k, 20_000)), replace=False))
    top = _kmeans(spill.take(sample), top_k, seed)
    labels = np.empty(n, np.int32)
    for start, mat in spill.chunks():
        labels[start : start + len(mat)] = faiss.knn(mat, top, 1)[1][:, 0]
    sizes = np.bincount(labels, minlength=top_k)
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    # each top cluster's share of the heads (largest remainders), at least one where it has vectors
    share = sizes * (n_heads / n)
    counts = np.floor(share).astype(np.int64)
    rest = n_heads - int(counts.sum())
    if rest > 0:
        counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    counts = np.minimum(np.maximum(counts, (sizes > 0).astype(np.int64)), sizes)
    heads: list[np.ndarray] = []
    for c in range(top_k):
        if not counts[c]:
            continue
        rows = np.sort(order[bounds[c] : bounds[c + 1]])
        heads.append(balanced_kmeans(spill.take(rows), int(counts[c]), seed + c))
        if note and (c + 1) % max(1, top_k // 4) == 0:
            note(f"SPANN heads: {c + 1}/{top_k} top clusters split")
    return np.ascontiguousarray(np.concatenate(heads), np.float32)


def head_index(heads: np.ndarray, m: int, codes: str) -> Any:
    """The in-memory HNSW graph over the heads (L2), storing them as sq8 (default), f16 or f32."""
    import faiss

    if codes == "f32":
        index: Any = faiss.IndexHNSWFlat(heads.shape[1], int(m), faiss.METRIC_L2)
    else:
        qtype = faiss.ScalarQuantizer.QT_8bit if codes == "sq8" else faiss.ScalarQuantizer.QT_fp16
        index = faiss.IndexHNSWSQ(heads.shape[1], qtype, int(m), faiss.METRIC_L2)  # type: ignore[arg-type]  # faiss's stub: the enum is an int
    index.hnsw.efConstruction = 80
    index.train(heads)
    index.add(heads)
    return index


def select_replicas(x: np.ndarray, heads: np.ndarray, dist: np.ndarray, cand: np.ndarray, replicas: int,
                    eps: float, rng: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``replicas`` heads per row of ``x`` among its candidates (nearest first, L2 squared
    ``dist``): within (1+eps) of the closest head's distance, and by the RNG rule (a head closer to
    an already chosen head than to the vector is skipped). Returns (heads, distances), -1 padded."""
    n = len(x)
    out = np.full((n, replicas), -1, np.int64)
    out_d = np.full((n, replicas), np.inf, np.float32)
    root = np.sqrt(np.maximum(dist, 0))
    out[:, 0] = cand[:, 0]
    out_d[:, 0] = root[:, 0]
    taken = np.ones(n, np.int64)
    limit = (1 + eps) * root[:, 0]
    for j in range(1, cand.shape[1]):
        active = np.flatnonzero((taken < replicas) & (cand[:, j] >= 0) & (root[:, j] <= limit))
        if not len(active):
            break
        cj = heads[cand[active, j]]
        ok = np.ones(len(active), bool)
        dj = root[active, j]
        for t in range(replicas if rng else 0):
            chosen = out[active, t]
            has = chosen >= 0
            if not has.any():
                break
            gap = np.linalg.norm(cj[has] - heads[chosen[has]], axis=1)
            ok[np.flatnonzero(has)[gap < dj[has]]] = False
        keep = active[ok]
        slot = taken[keep]
        out[keep, slot] = cand[keep, j]
        out_d[keep, slot] = root[keep, j]
        taken[keep] += 1
    return out, out_d


def _exact_l2(x: np.ndarray, heads: np.ndarray, cand: np.ndarray, step: int = 1024) -> np.ndarray:
    """Squared L2 distances from each row to its candidate heads (inf for -1), by blocks of rows."""
    out = np.full(cand.shape, np.inf, np.float32)
    for a in range(0, len(x), step):
        c = cand[a : a + step]
        h = heads[np.where(c >= 0, c, 0)]
        d = ((h - x[a : a + step, None, :]) ** 2).sum(-1)
        out[a : a + step] = np.where(c >= 0, d, np.inf)
    return out


@dataclass
class SpannBuild:
    meta: dict[str, Any]
    ids: pa.Array
    extra: dict[str, bytes]
    postings: Any  # the temporary file holding the posting lists
    size: int
    peak: dict[str, int]

    def write_to(self, sink: Callable[[bytes], int]) -> None:
        fd = self.postings.fileno()
        step = 8 << 20
        for pos in range(0, self.size, step):
            sink(os.pread(fd, min(step, self.size - pos), pos))

    def close(self) -> None:
        self.postings.close()


def _sq8_ranges(spill: _Spill, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    sample = spill.take(np.sort(rng.choice(spill.n, size=min(spill.n, 100_000), replace=False)))
    lo = sample.min(0)
    hi = sample.max(0)
    return lo.astype(np.float32), np.maximum(hi - lo, 1e-12).astype(np.float32) / 255.0


def encode(mat: np.ndarray, codes: str, lo: np.ndarray | None, step: np.ndarray | None) -> np.ndarray:
    if codes == "f32":
        return np.ascontiguousarray(mat, np.float32)
    if codes == "f16":
        return mat.astype(np.float16)
    assert lo is not None and step is not None
    return np.clip(np.rint((mat - lo) / step), 0, 255).astype(np.uint8)


def decode(raw: np.ndarray, codes: str, lo: np.ndarray | None, step: np.ndarray | None) -> np.ndarray:
    if codes == "sq8":
        assert lo is not None and step is not None
        return raw.astype(np.float32) * step + lo
    return raw.astype(np.float32, copy=False)


def build(batches: Iterator[tuple[pa.Array, np.ndarray, dict[str, Any]]], name: str, spec: str, metric: str | None,
          seed: int, workdir: Path, note: Callable[[str], object] | None = None) -> SpannBuild:
    """Build a SPANN index from streamed (ids, matrix, meta) batches (see the module's docstring)."""
    import faiss

    params = parse_spec(spec)
    _Peak.value = 0
    spill = _Spill(workdir)
    try:
        source: dict[str, Any] = {}
        ids_parts: list[pa.Array] = []
        for ids, mat, meta in batches:
            if not ids_parts:
                source = meta
                metric = check_metric(metric or default_metric(meta))
                if metric == "hamming":
                    raise UsageError("--spec SPANN indexes float vectors: --metric ip, l2 or cos")
                if isinstance(meta.get("compression"), dict) or mat.dtype.kind != "f":
                    raise InputError(f"{name}: holds compressed codes; --spec SPANN indexes float vectors (codes=f16|sq8 "
                                     "compresses its posting lists itself)")
            elif mat.shape[1] != spill.d:
                raise InputError(f"{name}: rows of dimension {mat.shape[1]} after rows of dimension {spill.d}")
            spill.append(prepare(mat, str(metric)))
            _Peak.sample()
            ids_parts.append(ids)
        if not ids_parts or spill.n == 0:
            raise InputError(f"{name}: no vectors to index")
        all_ids = pa.concat_arrays(ids_parts) if len(ids_parts) > 1 else ids_parts[0]
        del ids_parts
        dup = first_duplicate(all_ids)
        if dup is not None:
            raise InputError(f"{name}: id {dup!r} occurs more than once; ids must be unique")
        n, d = spill.n, spill.d
        n_heads = max(1, min(n, round(params["heads"] * n)))
        if note:
            note(f"SPANN: {n} vectors of dimension {d}: choosing {n_heads} heads")
        heads = choose_heads(spill, n_heads, seed, note)
        n_heads = len(heads)
        hindex = head_index(heads, params["m"], params["head_codes"])
        hindex.hnsw.efSearch = 2 * CANDIDATES
        replicas = int(params["replicas"])
        assign = np.full((n, replicas), -1, np.int32)
        adist = np.full((n, replicas), np.inf, np.float32)
        n_cand = min(CANDIDATES, n_heads)
        for start, mat in spill.chunks():
            _, cand = hindex.search(mat, n_cand)
            exact = _exact_l2(mat, heads, cand)  # the graph's distances are over coded heads: recomputed
            a, ad = select_replicas(mat, heads, exact, cand, replicas, float(params["eps"]), bool(params["rng"]))
            assign[start : start + len(mat)] = a
            adist[start : start + len(mat)] = ad
            if note and start and start % (CHUNK * 16) == 0:
                note(f"SPANN: assigned {start}/{n} vectors")
        # posting lists: (head, replica rank, distance) order; the cap drops the furthest replicas
        rows = np.repeat(np.arange(n, dtype=np.int64), replicas)
        flat_h = assign.reshape(-1).astype(np.int64)
        flat_d = adist.reshape(-1)
        primary = np.tile(np.arange(replicas) == 0, n)
        valid = flat_h >= 0
        rows, flat_h, flat_d, primary = rows[valid], flat_h[valid], flat_d[valid], primary[valid]
        del assign, adist
        cap = int(params["cap"]) or max(64, math.ceil(4 * len(rows) / n_heads / 16) * 16)
        order = np.lexsort((flat_d, ~primary, flat_h))
        rows, flat_h, primary = rows[order], flat_h[order], primary[order]
        counts_all = np.bincount(flat_h, minlength=n_heads)
        starts = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
        rank = np.arange(len(flat_h)) - starts[flat_h]
        keep = primary | (rank < cap)
        dropped = int((~keep).sum())
        rows, flat_h = rows[keep], flat_h[keep]
        counts = np.bincount(flat_h, minlength=n_heads).astype(np.int64)
        code_size = d * CODES[params["codes"]]
        nbytes = counts * (4 + code_size)
        blocks = (nbytes + BLOCK - 1) // BLOCK
        offsets = np.concatenate([[0], np.cumsum(blocks)[:-1]]) * BLOCK
        total = int((offsets[-1] + blocks[-1] * BLOCK) if n_heads else 0)
        lo = step = None
        extra: dict[str, bytes] = {}
        if params["codes"] == "sq8":
            lo, step = _sq8_ranges(spill, seed)
            extra["spann_sq8"] = np.concatenate([lo, step]).astype("<f4").tobytes()
        _Peak.sample()
        postings = tempfile.TemporaryFile(dir=workdir)
        try:
            postings.truncate(total)
            pfd = postings.fileno()
            list_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
            pos = np.arange(len(flat_h)) - list_start[flat_h]
            for h in np.flatnonzero(counts).tolist():
                first = int(list_start[h])
                os.pwrite(pfd, rows[first : first + int(counts[h])].astype("<i4").tobytes(), int(offsets[h]))
            where = offsets[flat_h] + 4 * counts[flat_h] + pos * code_size
            by_row = np.argsort(rows, kind="stable")
            rows_sorted = rows[by_row]
            where_sorted = where[by_row]
            for start, mat in spill.chunks():
                a, b = np.searchsorted(rows_sorted, [start, start + len(mat)])
                if a == b:
                    continue
                enc = encode(mat, params["codes"], lo, step)
                for r, w in zip((rows_sorted[a:b] - start).tolist(), where_sorted[a:b].tolist(), strict=True):
                    os.pwrite(pfd, enc[r].tobytes(), w)
            crc = np.zeros(n_heads, np.uint32)
            for h in np.flatnonzero(counts).tolist():
                crc[h] = zlib.crc32(os.pread(pfd, int(nbytes[h]), int(offsets[h])))
        except BaseException:
            postings.close()
            raise
        directory = np.empty((n_heads, 2), "<u8")
        directory[:, 0] = offsets
        directory[:, 1] = counts.astype(np.uint64) | (crc.astype(np.uint64) << np.uint64(32))
        extra["spann_dir"] = directory.tobytes()
        extra["spann_heads"] = bytes(faiss.serialize_index(hindex))
        stats = {"heads": n_heads, "postings": int(counts.sum()), "replication": round(float(counts.sum()) / n, 3),
                 "cap": cap, "dropped_replicas": dropped, "max_list": int(counts.max()), "mean_list": round(float(counts.mean()), 2),
                 "empty_lists": int((counts == 0).sum()), "posting_bytes": total}
        stored = {k: params[k] for k in DEFAULTS if k not in ("nprobe", "max_dist_ratio")}
        stored["cap"] = cap
        meta = metadata.new("index", index_kind="spann", spec=canonical(params), metric=metric, dim=d, count=n,
                            search_params={"nprobe": int(params["nprobe"]), "max_dist_ratio": float(params["max_dist_ratio"])},
                            seed=seed, spann={**stored, **stats, "block": BLOCK}, model=source.get("model"),
                            normalized=True if metric == "cos" else source.get("normalized"))
        meta = {k: v for k, v in meta.items() if v is not None}
        if note:
            note(f"SPANN: {n_heads} heads, {stats['postings']} postings ({stats['replication']:.2f} per vector), "
                 f"lists of {stats['mean_list']:.1f} on average (at most {stats['max_list']}), {total / 1e6:.1f} MB on disk")
        _Peak.sample()
        return SpannBuild(meta, all_ids, extra, postings, total, {"anon": _Peak.value, "hwm": rss_bytes("VmHWM")})
    finally:
        spill.close()


# -- searching --------------------------------------------------------------------------------------


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), 0 where /proc is not there.
    (getrusage's ru_maxrss is no use for the peak: Linux keeps it across exec, from the parent.)"""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _base() -> type:
    from vecpipe.index.search import LoadedIndex

    return LoadedIndex


def load(container: vpi.Container, name: str, path: str | Path) -> Any:
    import faiss

    meta = container.meta
    info = meta.get("spann") or {}
    try:
        heads = faiss.deserialize_index(np.frombuffer(container.extra["spann_heads"], np.uint8))
        directory = np.frombuffer(container.extra["spann_dir"], "<u8").reshape(-1, 2)
        sq = np.frombuffer(container.extra["spann_sq8"], "<f4").reshape(2, -1) if info.get("codes") == "sq8" else None
    except (KeyError, RuntimeError, ValueError):
        raise InputError(f"{name}: the SPANN index inside cannot be read; rebuild it with vecpipe build-index") from None
    if len(directory) != heads.ntotal:
        raise InputError(f"{name}: SPANN directory lists {len(directory)} heads but the head index holds {heads.ntotal}; rebuild it")
    cls = type("SpannIndex", (SpannMixin, _base()), {})
    loaded = cls(index=heads, ids=container.ids, meta=meta, name=name, keep=())
    loaded.attach(path, container.section("index"), directory, sq)
    return loaded


class SpannMixin:
    """Search over the posting lists on disk (mixed into :class:`vecpipe.index.search.LoadedIndex`)."""

    index: Any
    ids: pa.Array
    meta: dict[str, Any]
    name: str

    def attach(self, path: str | Path, section: dict[str, Any], directory: np.ndarray, sq: np.ndarray | None) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.base = int(section["offset"])
        self.section_length = int(section["length"])
        self.offsets = directory[:, 0].astype(np.int64)
        self.counts = (directory[:, 1] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        self.crcs = (directory[:, 1] >> np.uint64(32)).astype(np.uint32)
        info = self.meta["spann"]
        self.codes = str(info["codes"])
        self.dim_ = int(self.meta["dim"])
        self.code_size = self.dim_ * CODES[self.codes]
        if int((self.offsets + self.counts * (4 + self.code_size)).max(initial=0)) > self.section_length:
            raise InputError(f"{self.name}: SPANN directory points past the posting lists; rebuild the index")
        self.lo: np.ndarray | None = sq[0] if sq is not None else None
        self.step: np.ndarray | None = sq[1] if sq is not None else None
        params = self.meta.get("search_params") or {}
        self.nprobe = int(params.get("nprobe") or DEFAULTS["nprobe"])
        self.max_dist_ratio = float(params.get("max_dist_ratio") or 0.0)
        self.pool = ThreadPoolExecutor(min(16, (os.cpu_count() or 1) * 2))
        self.buffer = memoryview(bytearray(READ_BUFFER))
        self.bytes_read = 0  # blocks read from the posting lists, since loading
        self.lists_read = 0
        self.queries_seen = 0

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None, max_dist_ratio: float | None = None) -> None:
        if nprobe:
            self.nprobe = int(nprobe)
        if max_dist_ratio is not None:
            self.max_dist_ratio = float(max_dist_ratio)
        self.index.hnsw.efSearch = max(2 * self.nprobe, 64)

    def applies(self, param: str) -> bool:
        return param in ("nprobe", "max_dist_ratio")

    def use_device(self, device: str, note: Callable[[str], object] | None = None) -> str:
        if device == "cuda" and note:
            note(f"{self.name} (SPANN) is searched on the CPU")
        return "cpu"

    @property
    def memory_bytes(self) -> int:
        """The index's own memory: the head graph and codes, the directory, the ids."""
        code = {"sq8": 1, "f16": 2, "f32": 4}[str(self.meta["spann"].get("head_codes", "f16"))]
        heads = int(self.index.ntotal) * (self.dim_ * code + int(self.index.hnsw.nb_neighbors(0)) * 4)
        return heads + self.offsets.nbytes * 3 + int(self.ids.nbytes)

    def _read(self, job: tuple[int, memoryview]) -> tuple[np.ndarray, np.ndarray]:
        """One posting list read into its slice of the read buffer (the pool's threads allocate
        nothing) and checked against its crc32: (row numbers, codes), views into that slice."""
        head, raw = job
        count = int(self.counts[head])
        size = count * (4 + self.code_size)
        got = os.preadv(self.fd, [raw], self.base + int(self.offsets[head]))
        if got != size or zlib.crc32(raw) != int(self.crcs[head]):
            raise InputError(f"{self.name}: corrupt SPANN posting list {head} (checksum mismatch); rebuild or recopy the index")
        rows = np.frombuffer(raw, "<i4", count)
        dtype = {"f32": np.float32, "f16": np.float16, "sq8": np.uint8}[self.codes]
        codes = np.frombuffer(raw, dtype, count * self.dim_, offset=4 * count).reshape(count, self.dim_)
        return rows, codes

    def probe(self, q: np.ndarray) -> list[np.ndarray]:
        """The heads each query reads: its nprobe nearest, less those past max_dist_ratio x the nearest."""
        dist, cand = self.index.search(q, min(self.nprobe, int(self.index.ntotal)))
        root = np.sqrt(np.maximum(dist, 0))
        out = []
        for i in range(len(q)):
            ok = cand[i] >= 0
            if self.max_dist_ratio:
                ok &= root[i] <= self.max_dist_ratio * root[i, 0] + 1e-6
            chosen = cand[i][ok]
            out.append(chosen[self.counts[chosen] > 0])
        return out

    def search(self, queries: np.ndarray, k: int, qmeta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Queries in groups of :data:`GROUP` (a list that several of a group's queries probe is
        read once for them all)."""
        parts = [self._search(queries[a : a + GROUP], k) for a in range(0, len(queries), GROUP)]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _waves(self, wanted: np.ndarray) -> Iterator[tuple[int, int, memoryview]]:
        """(first, stop, buffer) spans of ``wanted`` whose lists fit the read buffer together (one
        list alone where it is larger than the buffer: it gets a buffer of its own)."""
        sizes = self.counts[wanted] * (4 + self.code_size)
        i = 0
        while i < len(wanted):
            ends = np.cumsum(sizes[i:])
            j = i + max(1, int(np.searchsorted(ends, len(self.buffer), side="right")))
            yield i, j, self.buffer if ends[j - i - 1] <= len(self.buffer) else memoryview(bytearray(int(ends[0])))
            i = j

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The probed lists are read in waves into one reused buffer of :data:`READ_BUFFER` bytes
        and scored list by list (each list against the queries that probe it), so the memory a
        search adds is that buffer, one decoded list and the candidates' scores, at any nprobe.
        (The buffer is the index's own: one search at a time per loaded index, as search_run does.)"""
        q = prepare(queries, str(self.meta["metric"]))
        metric = str(self.meta["metric"])
        lists = self.probe(q)
        sizes = self.counts * (4 + self.code_size)
        owner_h = np.concatenate(lists) if lists else np.empty(0, np.int64)
        owner_q = np.repeat(np.arange(len(q)), [len(c) for c in lists])
        by_head = np.argsort(owner_h, kind="stable")
        owner_h, owner_q = owner_h[by_head], owner_q[by_head]
        wanted, first = np.unique(owner_h, return_index=True)
        bounds = np.append(first, len(owner_h))
        found_rows: list[list[np.ndarray]] = [[] for _ in range(len(q))]
        found_scores: list[list[np.ndarray]] = [[] for _ in range(len(q))]
        for i, j, buf in self._waves(wanted):
            spans = np.concatenate([[0], np.cumsum(sizes[wanted[i:j]])])
            jobs = [(int(h), buf[int(spans[t]) : int(spans[t + 1])]) for t, h in enumerate(wanted[i:j].tolist())]
            for t, (rows, codes) in enumerate(self.pool.map(self._read, jobs)):
                who = owner_q[bounds[i + t] : bounds[i + t + 1]]
                vecs = decode(codes, self.codes, self.lo, self.step)
                if metric == "l2":
                    qw = q[who]
                    s = scores_from_distances((qw * qw).sum(1)[:, None] - 2 * (qw @ vecs.T) + (vecs * vecs).sum(1), "l2")
                else:
                    s = q[who] @ vecs.T
                rows = rows.copy()  # the buffer is overwritten by the next wave
                for r, qi in enumerate(who.tolist()):
                    found_rows[qi].append(rows)
                    found_scores[qi].append(s[r])
        k_eff = min(k, len(self.ids))
        scores = np.full((len(q), k_eff), -np.inf, np.float32)
        labels = np.full((len(q), k_eff), -1, np.int64)
        for i, chosen in enumerate(lists):
            self.bytes_read += int(((sizes[chosen] + BLOCK - 1) // BLOCK).sum()) * BLOCK
            self.lists_read += len(chosen)
            if not found_rows[i]:
                continue
            rows, first = np.unique(np.concatenate(found_rows[i]), return_index=True)  # a vector in several lists
            s = np.concatenate(found_scores[i])[first]
            m = min(k_eff, len(rows))
            top = np.argpartition(-s, m - 1)[:m] if m < len(rows) else np.arange(len(rows))
            scores[i, :m] = s[top]
            labels[i, :m] = rows[top]
        self.queries_seen += len(q)
        return self.order(scores, labels)

    def order(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score descending, ties by docid ascending, as every index orders its results, but with
        the docids ranked among this batch's labels only: no rank table over all the ids (8 bytes
        a vector, 8 MiB at 1M, more than the posting-list buffer and the candidates together)."""
        valid = labels >= 0
        uniq, inv = np.unique(np.where(valid, labels, 0), return_inverse=True)
        names = np.empty(len(uniq), object)
        names[:] = arrowfn.take(self.ids, pa.array(uniq)).to_pylist()  # str order: code points, as Arrow's sort of UTF-8
        local = np.empty(len(uniq), np.int64)
        local[np.argsort(names, kind="stable")] = np.arange(len(uniq))
        id_rank = np.where(valid, local[inv.reshape(labels.shape)], np.iinfo(np.int64).max)
        order = np.lexsort((id_rank, np.where(valid, -scores, np.inf)), axis=1)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)

    def close(self) -> None:
        self.pool.shutdown()
        os.close(self.fd)

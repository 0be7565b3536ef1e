"""A content-addressed embedding cache: a record's vector found again by the text it was made from.

Layout, under ``<cache>/embeddings`` (``$VECPIPE_CACHE_DIR`` or ``$XDG_CACHE_HOME/vecpipe``, or
``embed --cache DIR``)::

    SPACE/space.json                 what shapes the vectors: model sha256, pooling, normalisation,
                                     max length, prefix, precision, device class, dimension
    SPACE/seg-TIME-PID-RAND.arrow    segments: Arrow IPC files of (key, vector)

``SPACE`` is a digest of ``space.json``; a key is the first 16 bytes of the sha256 of the exact text
given to the tokenizer (the prefix is part of the space). A segment is written whole to a temporary
name and renamed into place, so a reader never sees a torn one (a SIGKILL leaves a temporary file,
never read, removed by ``prune``); concurrent writers each write their own segments, and a key two
of them add is kept once. Hits touch their segments' mtime; ``prune`` removes the least recently used
segments past the size cap (``--cache-size``, default 4 GiB), whole segments at a time.

Why Arrow files and not an embedded database: segments are append-only and memory-mapped (a hit
copies one row), written atomically with a rename and safe for any number of concurrent writers
without a lock server; SQLite would serialise writers and store vectors as blobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.encode.model import cache_root
from vecpipe.formats.units import parse_size  # noqa: F401  (re-exported: the cache size option)

FORMAT = 1
DEFAULT_CAP = 4 << 30
SEGMENT_ROWS = 65536  # rows buffered before a segment is written
KEY_BYTES = 16
TMP_MARK = ".vecpipe-tmp-"  # in the names of files being written (vecpipe.formats.targets.atomic_path)


def default_dir() -> Path:
    return cache_root() / "embeddings"


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:KEY_BYTES]


def _segments(space: Path) -> list[Path]:
    try:
        return sorted(p for p in space.iterdir() if p.name.startswith("seg-") and p.name.endswith(".arrow"))
    except FileNotFoundError:
        return []


class EmbeddingCache:
    """The vectors of one space (one model configuration), looked up by text."""

    def __init__(self, root: Path, space: dict[str, Any]) -> None:
        self.root = Path(root)
        described = {"format": FORMAT, **space}
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]
        self.dir = self.root / digest
        self.dim = int(space["dim"])
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "space.json"
        if not info.exists():
            _atomic_write(info, (json.dumps(described, indent=1, sort_keys=True) + "\n").encode())
        self._index: dict[bytes, tuple[int, int]] = {}
        self._tables: list[pa.Table] = []
        self._paths: list[Path] = []
        self._used: set[int] = set()
        self._buffer_keys: list[bytes] = []
        self._buffer_vecs: list[np.ndarray] = []
        self.hits = 0
        self.misses = 0
        for path in _segments(self.dir):
            self._open(path)

    def _open(self, path: Path) -> None:
        try:
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid):  # removed by a concurrent prune, or not a whole segment: a miss
            return
        if table.num_columns != 2 or table.schema.field(1).type != pa.list_(pa.float32(), self.dim):
            return
        seg = len(self._tables)
        self._tables.append(table)
        self._paths.append(path)
        for row, key in enumerate(table.column(0).to_pylist()):
            self._index.setdefault(key, (seg, row))

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, the found rows' vectors in key order), gathered one segment at a time."""
        where = [self._index.get(key) for key in keys]
        found = np.array([w is not None for w in where], dtype=bool)
        out = np.empty((int(found.sum()), self.dim), np.float32)
        hits = [w for w in where if w is not None]
        segs = np.array([w[0] for w in hits], dtype=np.int64)
        rows = np.array([w[1] for w in hits], dtype=np.int64)
        for seg in np.unique(segs):
            at = np.flatnonzero(segs == seg)
            column = self._tables[seg].column(1).combine_chunks().take(pa.array(rows[at]))
            out[at] = column.flatten().to_numpy(zero_copy_only=False).reshape(len(at), self.dim)
            self._used.add(int(seg))
        self.hits += len(hits)
        self.misses += len(keys) - len(hits)
        return found, out

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self._buffer_keys.extend(keys)
        self._buffer_vecs.append(np.asarray(vectors, dtype=np.float32))
        if len(self._buffer_keys) >= SEGMENT_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer_keys:
            return
        keys, vecs = self._buffer_keys, np.concatenate(self._buffer_vecs)
        self._buffer_keys, self._buffer_vecs = [], []
        table = pa.table({"key": pa.array(keys, pa.binary(KEY_BYTES)),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), self.dim)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        name = f"seg-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.arrow"
        _atomic_write(self.dir / name, sink.getvalue().to_pybytes())

    def close(self) -> None:
        """Write what is buffered and mark the segments that served hits as recently used."""
        self.flush()
        now = time.time()
        for seg in self._used:
            with contextlib.suppress(OSError):
                os.utime(self._paths[seg], (now, now))
        self._used.clear()


def _atomic_write(path: Path, data: bytes) -> None:
    from vecpipe.formats.targets import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# -- whole-cache operations: stats, prune, clear -----------------------------------------------------


def spaces(root: Path) -> Iterator[Path]:
    try:
        yield from sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "space.json").exists())
    except FileNotFoundError:
        return


def stats(root: Path) -> list[dict[str, Any]]:
    out = []
    for space in spaces(root):
        segs = _segments(space)
        size = sum(_size(p) for p in segs)
        rows = 0
        for p in segs:
            with contextlib.suppress(OSError, pa.ArrowInvalid):
                rows += _rows(p)
        try:
            desc = json.loads((space / "space.json").read_text())
        except (OSError, ValueError):
            desc = {}
        model = desc.get("model") or {}
        out.append({"space": space.name, "model": model.get("name"), "dim": desc.get("dim"), "segments": len(segs),
                    "vectors": rows, "bytes": size,
                    "last_used": max((p.stat().st_mtime for p in segs), default=None)})
    return out


def _rows(path: Path) -> int:
    reader = pa.ipc.open_file(pa.memory_map(str(path)))
    return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def prune(root: Path, cap: int, stale_after: float = 3600.0, on_removed: Callable[[Path], object] | None = None) -> tuple[int, int]:
    """Remove the least recently used segments until the cache holds at most ``cap`` bytes, and
    temporary files older than ``stale_after`` seconds (left by killed writers). Returns (removed
    segments, bytes freed)."""
    now = time.time()
    segs: list[tuple[float, int, Path]] = []
    for space in spaces(root):
        for p in space.iterdir():
            if p.name.startswith(".tmp-") or TMP_MARK in p.name:
                with contextlib.suppress(OSError):
                    if now - p.stat().st_mtime > stale_after:
                        p.unlink()
            elif p.name.startswith("seg-"):
                with contextlib.suppress(OSError):
                    st = p.stat()
                    segs.append((st.st_mtime, st.st_size, p))
    total = sum(s for _, s, _ in segs)
    removed = freed = 0
    for _mtime, size, path in sorted(segs):
        if total <= cap:
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
            freed += size
            total -= size
            if on_removed:
                on_removed(path)
    return removed, freed


def clear(root: Path) -> int:
    """Remove every space; returns the bytes freed."""
    import shutil

    freed = 0
    for space in list(spaces(root)):
        freed += sum(_size(p) for p in space.iterdir())
        shutil.rmtree(space, ignore_errors=True)
    return freed


class CachedEncoder:
    """An encoder that takes each text's vector from the cache when it is there and embeds the rest
    (in the inner encoder's batches, in order), adding them to the cache."""

    def __init__(self, inner: Any, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_batches(self, batches: Iterable[Sequence[str]], on_progress: Any = None) -> Iterator[np.ndarray]:
        import collections

        pending: collections.deque[tuple[int, list[bytes], np.ndarray, np.ndarray]] = collections.deque()
        hits = [0]
        inner_done = [0, 0]

        def misses() -> Iterator[list[str]]:
            for lst in batches:
                texts = list(lst)
                keys = [text_key(t) for t in texts]
                found, vecs = self.cache.lookup(keys)
                pending.append((len(texts), keys, found, vecs))
                yield [t for t, f in zip(texts, found) if not f]

        def progress(n_texts: int, n_tokens: int) -> None:
            inner_done[0], inner_done[1] = n_texts, n_tokens
            if on_progress:
                on_progress(n_texts + hits[0], n_tokens)

        for miss_vecs in self.inner.encode_batches(misses(), on_progress=progress):
            n, keys, found, vecs = pending.popleft()
            out = np.empty((n, self.inner.dim), dtype=np.float32)
            out[found] = vecs
            out[~found] = miss_vecs
            self.cache.add([k for k, f in zip(keys, found) if not f], miss_vecs)
            hits[0] += int(found.sum())
            if on_progress:
                on_progress(inner_done[0] + hits[0], inner_done[1])
            yield out

    def close(self) -> None:
        self.cache.close()
        self.inner.close()

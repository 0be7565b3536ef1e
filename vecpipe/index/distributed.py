"""Adding vectors to a trained faiss index on many workers, then merging (``build-index --engine ray``).

The index is trained once, on the driver, on the same seeded sample as a local build. Its trained,
empty form is serialised and shipped to the workers; each adds one contiguous range of the rows
(chunk 0 holds rows 0..n0-1, chunk 1 the next, ...) and sends its filled index back; the driver
merges the chunks in row order with faiss's ``merge_from`` (IVF inverted lists, flat codes), shifting
each chunk's ids by the rows before it. Every vector is encoded the same way wherever it is added,
and the lists receive their entries in row order, so the merged index holds what a local build holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vecpipe.errors import UsageError


def check_mergeable(index: Any, spec: str) -> None:
    """Refuse a spec whose index faiss cannot merge (HNSW graphs, refine and pre-transform wrappers)."""
    import faiss

    if not isinstance(index, (faiss.IndexIVF, faiss.IndexFlatCodes)):
        raise UsageError(f"--spec {spec}: --engine ray builds IVF indexes (IVFn,Flat / IVFn,PQm / IVFn,SQ8) and flat-code "
                         "indexes (Flat, PQm, SQ8), whose parts faiss merges; build this one on the local engine")


def chunks(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (start, stop) row ranges covering ``n`` rows (none empty)."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def serialize(index: Any) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(blob: bytes) -> Any:
    import faiss

    return faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))


def make_adder(blob: bytes, threads: int) -> Callable[[np.ndarray], bytes]:
    """A worker: the trained index (from ``blob``) filled with one chunk of rows, serialised."""
    import faiss

    faiss.omp_set_num_threads(threads)

    def add(rows: np.ndarray) -> bytes:
        index = deserialize(blob)
        index.add(np.ascontiguousarray(rows))
        return serialize(index)

    return add


def merge_into(index: Any, filled: Iterator[bytes]) -> None:
    """Merge filled chunks (in row order) into the trained, empty ``index``."""
    for blob in filled:
        part = deserialize(blob)
        index.merge_from(part, index.ntotal)

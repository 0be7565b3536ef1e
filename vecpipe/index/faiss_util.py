"""faiss plumbing shared by every index builder: metrics, training samples, search parameters and
faiss's error text turned into a reason a user can read."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from vecpipe.compress.codecs import train_sample
from vecpipe.errors import InputError
from vecpipe.native import captured_native_stderr, summarize_faiss_warnings

DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128


def faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def faiss_reason(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"Error: '([^']*)' failed", text) or re.search(r"Error:\s*(.*)", text)
    reason = (m.group(1) if m else text).strip().splitlines()
    return reason[0] if reason else "faiss error"


def search_defaults(spec: str, nprobe: int | None, ef_search: int | None) -> dict[str, int]:
    """The search parameters an index of ``spec`` records (nprobe for IVF, efSearch for HNSW)."""
    params = {}
    if re.search(r"IVF", spec):
        params["nprobe"] = nprobe or DEFAULT_NPROBE
    if re.search(r"HNSW", spec):
        params["efSearch"] = ef_search or DEFAULT_EF_SEARCH
    return params


def apply_params(index: Any, params: dict[str, int]) -> None:
    import faiss

    if isinstance(index, faiss.IndexBinary):
        if hasattr(index, "query_batch_size"):
            # Flat Hamming scans reuse each block of codes across this many queries: on 1M x 384 bits,
            # 512 gave 1,730 q/s against 1,470 for 4096 and 1,000 for faiss's default 32.
            index.query_batch_size = 512
        if "nprobe" in params and hasattr(index, "nprobe"):
            index.nprobe = int(params["nprobe"])
        if "efSearch" in params and hasattr(index, "hnsw"):
            index.hnsw.efSearch = int(params["efSearch"])
        return
    space = faiss.ParameterSpace()
    for key, value in params.items():
        try:
            space.set_index_parameter(index, key, int(value))
        except RuntimeError:
            pass  # the parameter does not apply to this index type


def train_and_add(index: Any, data: np.ndarray, spec: str, train_size: int, seed: int, threads: int | None,
                  on_progress: Callable[[str], None] | None, name: str, unit: str = "vectors",
                  deterministic: bool = False, adder: Callable[[Any, np.ndarray], None] | None = None) -> None:
    """Train ``index`` on a seeded sample of ``data`` when it needs training, then add all of ``data``.

    Every core is used (or ``threads``). HNSW insertion in parallel depends on thread timing: with
    ``deterministic`` an HNSW graph is built on one thread, so identical input gives identical bytes
    (reruns and merges rely on manifests, not on bytes, so the default need not be).
    """
    import faiss

    old_threads = faiss.omp_get_max_threads()
    try:
        if not index.is_trained:
            sample = train_sample(len(data), train_size, seed)
            train = data if sample is None else data[sample]
            if on_progress:
                on_progress(f"training {spec} on {len(train)} {unit}")
            try:
                quietly(lambda: index.train(train), on_progress)
            except RuntimeError as exc:
                raise InputError(f"{name}: cannot train {spec} on {len(train)} {unit} ({faiss_reason(exc)}); use a smaller spec or more data") from None
        if deterministic and "HNSW" in spec:
            faiss.omp_set_num_threads(1)
        elif threads:
            faiss.omp_set_num_threads(threads)
        if on_progress:
            on_progress(f"adding {len(data)} {unit}")
        if adder is not None:  # elsewhere (a cluster: vecpipe.index.distributed)
            adder(index, data)
        else:
            quietly(lambda: index.add(data), on_progress)
    finally:
        faiss.omp_set_num_threads(old_threads)


def quietly(work: Callable[[], Any], on_progress: Callable[[str], None] | None) -> Any:
    """Run faiss code with its own stderr output captured and summarised in one note."""
    with captured_native_stderr() as cap:
        result = work()
    summary = summarize_faiss_warnings(cap.lines)
    if summary and on_progress:
        on_progress(summary)
    return result


def write_index_to(index: Any, sink: Callable[[bytes], int], binary: bool = False) -> None:
    """Serialise ``index`` chunk by chunk into ``sink`` (1 MiB at a time: no whole copy in memory)."""
    import faiss

    writer = faiss.PyCallbackIOWriter(sink, 1 << 20)  # type: ignore[attr-defined]  # not in faiss's stub
    (faiss.write_index_binary if binary else faiss.write_index)(index, writer)


class FlatRows:
    """A Flat index (faiss ``IndexFlatIP`` / ``IndexFlatL2``) whose rows stay the arrays they were
    added as (views of a memory-mapped input where the input allows), serialised exactly as faiss
    serialises the same index, without faiss ever holding a copy of them.

    faiss writes an IndexFlat as a header (which records the row count) followed by its codes, the
    rows' bytes in order. The header for ``n`` rows is faiss's own serialisation of an index of the
    same dimension and metric with ``ntotal`` set to ``n`` and no codes, its last field (the codes'
    length) set for ``n`` rows; that layout is checked once per (dim, metric) against faiss's
    serialisation of real rows, and where it does not hold (another faiss), :meth:`write_to` hands
    the rows to faiss and serialises that instead: the bytes are faiss's either way.
    """

    def __init__(self, d: int, metric: str):
        self.d = d
        self.metric = metric
        self.parts: list[np.ndarray] = []
        self.ntotal = 0

    def add(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        assert rows.ndim == 2 and rows.shape[1] == self.d
        self.parts.append(rows)
        self.ntotal += len(rows)

    def _empty(self) -> Any:
        import faiss

        return faiss.IndexFlatL2(self.d) if self.metric == "l2" else faiss.IndexFlatIP(self.d)

    def header(self) -> bytes | None:
        """faiss's serialisation of this index up to its codes; ``None`` when the layout differs."""
        per_row = _flat_layout(self.d, self.metric)
        if per_row is None:
            return None
        import faiss

        index = self._empty()
        index.ntotal = self.ntotal
        head = bytes(faiss.serialize_index(index))
        return head[:-8] + int(per_row * self.ntotal).to_bytes(8, "little")

    def to_faiss(self) -> Any:
        """The rows in a faiss index (a copy): for a caller that needs faiss's object."""
        index = self._empty()
        for part in self.parts:
            index.add(part)
        return index

    def write_to(self, sink: Callable[[Any], int]) -> None:
        """The serialisation into ``sink`` (bytes-like chunks: the header, then views of the rows)."""
        head = self.header()
        if head is None:
            write_index_to(self.to_faiss(), sink)
            return
        sink(head)
        step = max(1, (1 << 24) // (4 * self.d))  # 16 MiB a write
        for part in self.parts:
            for start in range(0, len(part), step):
                sink(part[start : start + step].data.cast("B"))


_FLAT_LAYOUTS: dict[tuple[int, str], int | None] = {}


def _flat_layout(d: int, metric: str) -> int | None:
    """The codes-length field's value per row in faiss's IndexFlat serialisation (checked: the
    header plus the rows equals faiss's bytes for 1, 2 and 3 real rows), or ``None``."""
    key = (d, metric)
    if key not in _FLAT_LAYOUTS:
        import faiss

        rows = np.random.default_rng(0).standard_normal((3, d)).astype(np.float32)
        result: int | None = None
        try:
            probe = FlatRows(d, metric)
            one = probe._empty()
            one.add(rows[:1])
            blob = bytes(faiss.serialize_index(one))
            per_row = int.from_bytes(blob[len(blob) - 4 * d - 8 : len(blob) - 4 * d], "little")
            _FLAT_LAYOUTS[key] = per_row
            result = per_row
            for n in (1, 2, 3):
                probe = FlatRows(d, metric)
                probe.add(rows[:n])
                real = probe.to_faiss()
                if probe.header() + rows[:n].tobytes() != bytes(faiss.serialize_index(real)):  # type: ignore[operator]
                    result = None
                    break
        except Exception:  # noqa: BLE001 - any surprise in faiss's layout: let faiss serialise
            result = None
        _FLAT_LAYOUTS[key] = result
    return _FLAT_LAYOUTS[key]


class Serialized:
    """An index's faiss bytes as a uint8 view of faiss's own buffer (no copy); keep this object alive
    while the view is used."""

    def __init__(self, index: Any, binary: bool = False):
        import faiss

        self._writer = faiss.VectorIOWriter()
        (faiss.write_index_binary if binary else faiss.write_index)(index, self._writer)
        self.view = faiss.rev_swig_ptr(self._writer.data.data(), self._writer.data.size())

    def view_owner(self) -> np.ndarray:
        """The view, holding a reference to this object (so the buffer lives as long as the view)."""
        view = self.view.view()
        view.flags.writeable = False
        return _Owned(view, self)


class _Owned(np.ndarray):
    """A uint8 array view that keeps the faiss buffer it points into alive."""

    owner: Any = None

    def __new__(cls, view: np.ndarray, owner: Any) -> _Owned:
        obj = view.view(cls)
        obj.owner = owner
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.owner = getattr(obj, "owner", None)


def flat_codes(index: Any) -> np.ndarray:
    """The stored codes of a flat-code index (IndexFlat, SQ, PQ: ``codes``; IndexBinaryFlat: ``xb``) as
    a uint8 ``[ntotal, code_size]`` view of faiss's memory (valid while the index lives)."""
    import faiss

    n, size = int(index.ntotal), int(index.code_size)
    if not n:
        return np.zeros((0, size), np.uint8)
    store = index.xb if isinstance(index, faiss.IndexBinaryFlat) else index.codes  # type: ignore[attr-defined]  # xb: not in the stub
    return np.asarray(faiss.rev_swig_ptr(store.data(), n * size)).reshape(n, size)


def read_index_view(buffer: np.ndarray, binary: bool = False) -> tuple[Any, tuple[Any, ...]]:
    """An index read from ``buffer`` without copying its flat codes, and what must outlive it: the
    codes stay views into ``buffer`` (a mapped file, for an index stored raw)."""
    import faiss

    buffer = np.asarray(buffer, dtype=np.uint8).reshape(-1)
    reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(buffer), buffer.size)  # type: ignore[attr-defined]  # not in faiss's stub
    index: Any = (faiss.read_index_binary if binary else faiss.read_index)(reader, faiss.IO_FLAG_MMAP_IFC)
    return index, (buffer, reader)

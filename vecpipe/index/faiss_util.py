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

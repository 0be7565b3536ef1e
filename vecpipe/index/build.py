"""Build a faiss index from a vectors artifact and store it in a ``.vpi`` container."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, vpi
from vecpipe.formats.vectors import Vectors, read_vectors
from vecpipe.index.metric import check_metric, faiss_metric, prepare

DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128
DEFAULT_TRAIN_SIZE = 100_000


def default_metric(meta: dict[str, Any]) -> str:
    metric = meta.get("metric")
    return metric if metric in ("ip", "l2", "cos") else "ip"


def search_defaults(spec: str, nprobe: int | None, ef_search: int | None) -> dict[str, int]:
    params = {}
    if re.search(r"IVF", spec):
        params["nprobe"] = nprobe or DEFAULT_NPROBE
    if re.search(r"HNSW", spec):
        params["efSearch"] = ef_search or DEFAULT_EF_SEARCH
    return params


def apply_params(index, params: dict[str, int]) -> None:
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


def train_sample(n: int, train_size: int, seed: int) -> np.ndarray | None:
    if n <= train_size:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=train_size, replace=False))


def train_and_add(index, data, spec: str, train_size: int, seed: int, threads: int | None,
                  on_progress: Callable[[str], None] | None, name: str, unit: str = "vectors") -> None:
    """Train ``index`` on a seeded sample of ``data`` when it needs training, then add all of ``data``.

    HNSW insertion in parallel depends on thread timing, so HNSW graphs are built on one thread
    (identical input gives identical bytes) unless ``threads`` asks for more.
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
                index.train(train)
            except RuntimeError as exc:
                raise InputError(f"{name}: cannot train {spec} on {len(train)} {unit} ({_faiss_reason(exc)}); use a smaller spec or more data") from None
        if threads:
            faiss.omp_set_num_threads(threads)
        elif "HNSW" in spec:
            faiss.omp_set_num_threads(1)
        if on_progress:
            on_progress(f"adding {len(data)} {unit}")
        index.add(data)
    finally:
        faiss.omp_set_num_threads(old_threads)


def build_index(
    vectors: str | Path | Vectors,
    out: str | Path,
    spec: str = "Flat",
    metric: str | None = None,
    train_size: int = DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    nprobe: int | None = None,
    ef_search: int | None = None,
    threads: int | None = None,
    compress: bool = True,
    on_progress: Callable[[str], None] | None = None,
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build ``spec`` over the vectors and write the container to ``out``; return its metadata."""
    import faiss

    vecs = vectors if isinstance(vectors, Vectors) else read_vectors(vectors)
    from vecpipe.index.compressed import compression_of

    comp = compression_of(vecs)
    if comp is not None:
        return _build_compressed(vecs, comp, out, spec, metric, train_size, seed, nprobe, ef_search, compress,
                                 on_progress, manifest)
    metric = check_metric(metric or default_metric(vecs.meta))
    if metric == "hamming":
        raise UsageError("--metric hamming needs binary vectors (vecpipe binarize) and a binary spec such as BFlat")
    if vecs.matrix.dtype.kind != "f":
        raise InputError(f"{vecs.name}: holds {vecs.matrix.dtype} codes; build-index over float vectors here")
    dim = vecs.matrix.shape[1]
    try:
        index = faiss.index_factory(dim, spec, faiss_metric(metric))
    except RuntimeError as exc:
        raise UsageError(f"--spec {spec!r}: faiss cannot build it ({_faiss_reason(exc)}); see the faiss index_factory syntax") from None
    train_and_add(index, prepare(vecs.matrix, metric), spec, train_size, seed, threads, on_progress, vecs.name)
    params = search_defaults(spec, nprobe, ef_search)
    meta = index_metadata(vecs, spec, metric, params, train_size, seed, manifest)
    blob = faiss.serialize_index(index)
    vpi.write(out, meta, vecs.ids, blob, compress=compress)
    return meta


def _build_compressed(vecs: Vectors, comp: dict[str, Any], out, spec: str, metric: str | None, train_size: int,
                      seed: int, nprobe: int | None, ef_search: int | None, compress: bool, on_progress,
                      manifest: dict[str, Any] | None) -> dict[str, Any]:
    import faiss

    from vecpipe.index.compressed import build_compressed

    if metric is not None:
        check_metric(metric)
    index, spec, metric, binary = build_compressed(vecs, comp, spec, metric, train_size, seed, on_progress)
    params = search_defaults(spec, nprobe, ef_search)
    meta = index_metadata(vecs, spec, metric, params, train_size, seed, manifest)
    meta["dim"] = int(comp.get("dim") or vecs.meta.get("dim") or vecs.matrix.shape[1])
    if binary:
        meta["binary"] = True
        meta["normalized"] = None
    blob = faiss.serialize_index_binary(index) if binary else faiss.serialize_index(index)
    vpi.write(out, {k: v for k, v in meta.items() if v is not None}, vecs.ids, blob, compress=compress)
    return meta


def index_metadata(vecs: Vectors, spec: str, metric: str, params: dict, train_size: int, seed: int,
                   manifest: dict[str, Any] | None) -> dict[str, Any]:
    source = vecs.meta
    return metadata.new(
        "index",
        spec=spec,
        metric=metric,
        dim=int(vecs.matrix.shape[1]),
        count=len(vecs),
        search_params=params,
        train_size=train_size,
        seed=seed,
        model=source.get("model"),
        vectors=source.get("compression"),
        normalized=True if metric == "cos" else source.get("normalized"),
        manifest=manifest,
    )


def _faiss_reason(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"Error: '([^']*)' failed", text) or re.search(r"Error:\s*(.*)", text)
    reason = (m.group(1) if m else text).strip().splitlines()
    return reason[0] if reason else "faiss error"

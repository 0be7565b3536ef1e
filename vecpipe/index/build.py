"""Build a faiss index over a vectors artifact in memory; the build-index stage stores it in a
``.vpi`` container (:mod:`vecpipe.formats.vpi`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata
from vecpipe.formats.vectors import Vectors
from vecpipe.index.compressed import build_compressed, compression_of
from vecpipe.index.faiss_util import search_defaults, train_and_add
from vecpipe.index.specs import check_spec, make_index
from vecpipe.metric import check_metric, default_metric, prepare

DEFAULT_TRAIN_SIZE = 100_000


@dataclass
class BuiltIndex:
    """A built index ready to be stored: metadata, ids and the serialised faiss bytes."""

    meta: dict[str, Any]
    ids: pa.Array
    blob: Any


def build_index(
    vecs: Vectors,
    spec: str = "Flat",
    metric: str | None = None,
    train_size: int = DEFAULT_TRAIN_SIZE,
    seed: int = 0,
    nprobe: int | None = None,
    ef_search: int | None = None,
    threads: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> BuiltIndex:
    """Build ``spec`` over the vectors (float, or the codes of a compressed artifact)."""
    import faiss

    comp = compression_of(vecs)
    if comp is not None:
        if metric is not None:
            check_metric(metric)
        index, spec, metric, binary = build_compressed(vecs, comp, spec, metric, train_size, seed, on_progress)
        params = search_defaults(spec, nprobe, ef_search)
        meta = index_metadata(vecs, spec, metric, params, train_size, seed)
        meta["dim"] = int(comp.get("dim") or vecs.meta.get("dim") or vecs.matrix.shape[1])
        if binary:
            meta["binary"] = True
            meta["normalized"] = None
        blob = faiss.serialize_index_binary(index) if binary else faiss.serialize_index(index)
        return BuiltIndex({k: v for k, v in meta.items() if v is not None}, vecs.ids, blob)
    metric = check_metric(metric or default_metric(vecs.meta))
    if metric == "hamming":
        raise UsageError("--metric hamming needs binary vectors (vecpipe binarize) and a binary spec such as BFlat")
    if vecs.matrix.dtype.kind != "f":
        raise InputError(f"{vecs.name}: holds {vecs.matrix.dtype} codes; build-index over float vectors here")
    dim = vecs.matrix.shape[1]
    info = check_spec(spec, dim=dim, n_vectors=len(vecs), train_size=train_size, metric=metric)
    if info.warning and on_progress:
        on_progress(info.warning)
    index = make_index(info, metric)
    train_and_add(index, prepare(vecs.matrix, metric), spec, train_size, seed, threads, on_progress, vecs.name)
    params = search_defaults(spec, nprobe, ef_search)
    meta = index_metadata(vecs, spec, metric, params, train_size, seed)
    return BuiltIndex(meta, vecs.ids, faiss.serialize_index(index))


def index_metadata(vecs: Vectors, spec: str, metric: str, params: dict, train_size: int, seed: int) -> dict[str, Any]:
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
    )

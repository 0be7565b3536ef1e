"""The quantize and binarize stages as library functions: float vectors in, compressed vectors out.

The calibration (scalar ranges, PQ codebooks, binarization thresholds, residual mean and scales) is
learned on the input corpus, or taken from another artifact with ``like`` so that queries are coded
with the corpus calibration (a single query is never quantized against its own range). It is stored
in the ``compression`` entry of the output's ``vecpipe`` metadata, with ``source_dim`` (the float
dimension the input had) and ``dim`` (after Matryoshka truncation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from vecpipe.compress import codecs
from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.tables import TableSink
from vecpipe.formats.vectors import Vectors, read_vectors, vectors_batch, vectors_schema

QUANTIZE_METHODS = ("int8", "uint8", "fp16", "pq", "float32")
BINARY_METHODS = ("binary", "residual")
CHUNK = 65536


def read_artifact_meta(path: str | Path) -> dict[str, Any]:
    """The ``vecpipe`` metadata of a vectors artifact or a .vpi index (reads the schema/header only)."""
    from vecpipe.formats import vpi
    from vecpipe.formats.records import open_arrow_batches

    with sniff.Input(path) as inp:
        if inp.format == sniff.VPI:
            meta = vpi.read_header(path)["meta"]
            return {"kind": "vectors", "dim": meta.get("dim"), "model": meta.get("model"),
                    "compression": meta.get("vectors"), "metric": meta.get("metric"), "_index": True}
        if inp.format not in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            raise InputError(f"{inp.name}: not a vectors artifact; --like needs a file written by vecpipe quantize or binarize")
        schema, _ = open_arrow_batches(inp, 1)
        return metadata.read(schema)


def _check_same_model(source: dict, other: dict, src_name: str, other_name: str) -> None:
    a, b = source.get("model") or {}, other.get("model") or {}
    if a.get("sha256") and b.get("sha256") and a["sha256"] != b["sha256"]:
        raise InputError(
            f"{src_name}: embedded with {a.get('name')} but {other_name} was made from {b.get('name')} vectors; "
            "use artifacts of one model"
        )


def _like_params(like: str | Path, kinds: tuple[str, ...], command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    other = read_artifact_meta(like)
    params = other.get("compression")
    if not isinstance(params, dict) or params.get("method") not in kinds:
        what = params.get("method") if isinstance(params, dict) else "uncompressed"
        fix = "vecpipe binarize --like" if what in BINARY_METHODS else "vecpipe quantize --like" if what in QUANTIZE_METHODS else f"an artifact written by vecpipe {command}"
        raise InputError(f"{like}: is a {what} artifact; --like here needs {'/'.join(kinds)} (use {fix})")
    return other, params


def _float_input(vecs: Vectors) -> np.ndarray:
    if vecs.matrix.dtype.kind != "f":
        comp = (vecs.meta.get("compression") or {}).get("method", str(vecs.matrix.dtype))
        raise InputError(f"{vecs.name}: holds {comp} codes, not float vectors; compress the float vectors from vecpipe embed")
    return vecs.matrix


def _prepare(vecs: Vectors, dim: int | None) -> tuple[np.ndarray, int]:
    from vecpipe.index.metric import prepare

    matrix = _float_input(vecs)
    source_dim = matrix.shape[1]
    metric = vecs.meta.get("metric", "ip")
    if dim is not None and dim != source_dim:
        if not 1 <= dim <= source_dim:
            raise InputError(f"{vecs.name}: --dim {dim} is outside 1..{source_dim} (the vectors' dimension)")
        return codecs.truncate(matrix, dim, renormalize=True), source_dim
    return prepare(matrix, "cos" if metric == "cos" else "ip"), source_dim


def _normalizes(vecs: Vectors, source_dim: int, dim: int) -> bool:
    """Whether inputs are L2-normalised before coding (cos metric, or renormalised truncation)."""
    return vecs.meta.get("metric") == "cos" or source_dim != dim


def _sample(matrix: np.ndarray, train_size: int, seed: int) -> np.ndarray:
    from vecpipe.index.build import train_sample

    idx = train_sample(len(matrix), train_size, seed)
    return matrix if idx is None else matrix[idx]


def _write(vecs: Vectors, matrix: np.ndarray, params: dict[str, Any], out, fmt: str | None,
           manifest: dict | None) -> dict[str, Any]:
    dim = matrix.shape[1]
    width = codecs.code_width(params, dim)
    dtype = codecs.code_dtype(params)
    src = vecs.meta
    meta = metadata.new(
        "vectors", dim=dim, dtype=dtype, metric=src.get("metric"),
        normalized=True if (params.get("source_dim") != dim or src.get("normalized")) else src.get("normalized"),
        model=src.get("model"), fields=src.get("fields"), compression=params, manifest=manifest,
    )
    schema = vectors_schema(width, dtype, meta)
    # Encode everything before opening the sink: nothing is written when encoding fails.
    batches = []
    for start in range(0, len(matrix), CHUNK):
        codes = codecs.encode(matrix[start : start + CHUNK], params, dim)
        batches.append(vectors_batch(vecs.ids.slice(start, len(codes)), codes, schema))
    with TableSink(out, schema, fmt) as sink:
        for batch in batches:
            sink.write(batch)
    return meta


def quantize(vectors: str | Path | Vectors, out: str | Path | None, to: str | None = None,
             like: str | Path | None = None, dim: int | None = None, m: int | None = None, nbits: int = 8,
             train_size: int = 100_000, seed: int = 0, fmt: str | None = None, manifest: dict | None = None,
             on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Quantize float vectors to int8/uint8 (per-dimension ranges), fp16, PQ codes, or truncate them."""
    if to is not None and to not in QUANTIZE_METHODS:
        raise InputError(f"--to {to!r}: choose one of {', '.join(QUANTIZE_METHODS)}")
    if to is None and like is None and dim is None:
        raise InputError("give --to int8|uint8|fp16|pq (or --like ARTIFACT, or --dim N alone to truncate)")
    other, params = ({}, None)
    if like is not None:
        other, params = _like_params(like, QUANTIZE_METHODS, "quantize")
        if to is not None and to != params["method"]:
            raise InputError(f"{like}: is a {params['method']} artifact but --to is {to}; drop --to or --like a {to} artifact")
        if dim is not None and dim != params.get("dim"):
            raise InputError(f"{like}: holds {params.get('dim')}-dimensional codes but --dim is {dim}; drop --dim")
        dim = params.get("dim")
    vecs = vectors if isinstance(vectors, Vectors) else read_vectors(vectors)
    if params is not None:
        _check_same_model(vecs.meta, other, vecs.name, str(like))
        _check_source_dim(vecs, params, like)
    matrix, source_dim = _prepare(vecs, dim)
    dim = matrix.shape[1]
    if params is None:
        method = to or "float32"
        if method in codecs.SCALAR:
            params = codecs.scalar_train(matrix, method)
        elif method == "pq":
            m = m or _default_m(dim)
            if m < 1 or dim % m:
                raise InputError(f"{vecs.name}: --m {m} does not divide the dimension {dim}; pick a divisor of {dim} such as {_default_m(dim)}")
            if not 1 <= nbits <= 16:
                raise InputError(f"--nbits {nbits} is outside 1..16")
            train = _sample(matrix, train_size, seed)
            if len(train) < (1 << nbits):
                raise InputError(f"{vecs.name}: {len(train)} training vectors cannot train {1 << nbits} centroids (--nbits {nbits}); use fewer --nbits or more vectors")
            if on_progress:
                on_progress(f"training PQ m={m} nbits={nbits} on {len(train)} vectors")
            params = codecs.pq_train(train, m, nbits, seed)
            params["train_size"] = train_size
        else:
            params = {"method": method}
        params["source_dim"] = source_dim
        params["dim"] = dim
        params["normalize"] = _normalizes(vecs, source_dim, dim)
    return _write(vecs, matrix, params, out, fmt, manifest)


def _default_m(dim: int) -> int:
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m >= 1 and dim % m == 0:
            return m
    return dim


def _check_source_dim(vecs: Vectors, params: dict[str, Any], like) -> None:
    have = vecs.matrix.shape[1]
    want = params.get("source_dim") or params.get("dim")
    if want and have != want:
        raise InputError(f"{vecs.name}: has dimension {have} but {like} was made from {want}-dimensional vectors; "
                         "use vectors of the same model")


def binarize(vectors: str | Path | Vectors, out: str | Path | None, bits: int | None = None, center: bool = False,
             like: str | Path | None = None, fmt: str | None = None, manifest: dict | None = None) -> dict[str, Any]:
    """1-bit sign binarization (threshold 0 or the corpus mean) or 2..8-bit residual binarization."""
    if bits is not None and not 1 <= bits <= 8:
        raise InputError(f"--bits {bits} is outside 1..8; use 1 for sign bits or 2..8 for residual binarization")
    params = None
    other: dict = {}
    if like is not None:
        other, params = _like_params(like, BINARY_METHODS, "binarize")
        if bits is not None and bits != int(params["bits"]):
            raise InputError(f"{like}: holds {params['bits']}-bit codes but --bits is {bits}; drop --bits")
    elif bits is None:
        raise InputError("give --bits N (1..8) or --like ARTIFACT")
    vecs = vectors if isinstance(vectors, Vectors) else read_vectors(vectors)
    if params is not None:
        _check_same_model(vecs.meta, other, vecs.name, str(like))
        _check_source_dim(vecs, params, like)
    matrix, source_dim = _prepare(vecs, params.get("dim") if params else None)
    if params is None:
        if bits == 1:
            params = codecs.binary_train(matrix, center)
        else:
            params = codecs.residual_train(matrix, bits)
        params["source_dim"] = source_dim
        params["dim"] = matrix.shape[1]
        params["normalize"] = _normalizes(vecs, source_dim, matrix.shape[1])
    return _write(vecs, matrix, params, out, fmt, manifest)

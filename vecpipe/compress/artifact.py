"""Quantization and binarization of a whole vectors artifact, in memory: float vectors in, coded
vectors (and the metadata that describes them) out. No file I/O: the quantize and binarize stages
(:mod:`vecpipe.stages.compress`) read and write.

The calibration (scalar ranges, PQ codebooks, binarization thresholds, residual mean and scales) is
learned on the input corpus, or taken from another artifact's metadata (``like``) so that queries
are coded with the corpus calibration (a single query is never quantized against its own range).
It is stored in the ``compression`` entry of the output's ``vecpipe`` metadata, with ``source_dim``
(the float dimension the input had) and ``dim`` (after Matryoshka truncation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.compress import codecs
from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata
from vecpipe.formats.vectors import Vectors, vectors_batch, vectors_schema
from vecpipe.metric import prepare

QUANTIZE_METHODS = ("int8", "uint8", "fp16", "pq", "float32")
BINARY_METHODS = ("binary", "residual")
CHUNK = 65536
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass
class Coded:
    """A coded artifact: its schema (metadata attached) and record batches."""

    meta: dict[str, Any]
    schema: pa.Schema
    batches: list[pa.RecordBatch]


def like_params(like: dict[str, Any], like_name: str, kinds: tuple[str, ...], command: str) -> dict[str, Any]:
    """The calibration recorded in ``like`` (an artifact's metadata), checked to be of ``kinds``."""
    params = like.get("compression")
    if not isinstance(params, dict) or params.get("method") not in kinds:
        what = params.get("method") if isinstance(params, dict) else "uncompressed"
        fix = ("vecpipe binarize --like" if what in BINARY_METHODS else "vecpipe quantize --like" if what in QUANTIZE_METHODS
               else f"an artifact written by vecpipe {command}")
        raise InputError(f"{like_name}: is a {what} artifact; --like here needs {'/'.join(kinds)} (use {fix})")
    return params


def _float_input(vecs: Vectors) -> np.ndarray:
    if vecs.matrix.dtype.kind != "f":
        comp = (vecs.meta.get("compression") or {}).get("method", str(vecs.matrix.dtype))
        raise InputError(f"{vecs.name}: holds {comp} codes, not float vectors; compress the float vectors from vecpipe embed")
    return vecs.matrix


def _prepare(vecs: Vectors, dim: int | None) -> tuple[np.ndarray, int]:
    matrix = _float_input(vecs)
    source_dim = matrix.shape[1]
    metric = vecs.meta.get("metric", "ip")
    if dim is not None and dim != source_dim:
        if not 1 <= dim <= source_dim:
            raise UsageError(f"{vecs.name}: --dim {dim} is outside 1..{source_dim} (the vectors' dimension)")
        return codecs.truncate(matrix, dim, renormalize=True), source_dim
    return prepare(matrix, "cos" if metric == "cos" else "ip"), source_dim


def _normalizes(vecs: Vectors, source_dim: int, dim: int) -> bool:
    """Whether inputs are L2-normalised before coding (cos metric, or renormalised truncation)."""
    return vecs.meta.get("metric") == "cos" or source_dim != dim


def _sample(matrix: np.ndarray, train_size: int, seed: int) -> np.ndarray:
    idx = codecs.train_sample(len(matrix), train_size, seed)
    return matrix if idx is None else matrix[idx]


def _coded(vecs: Vectors, matrix: np.ndarray, params: dict[str, Any]) -> Coded:
    dim = matrix.shape[1]
    width = codecs.code_width(params, dim)
    dtype = codecs.code_dtype(params)
    src = vecs.meta
    meta = metadata.new(
        "vectors", dim=dim, dtype=dtype, metric=src.get("metric"),
        normalized=True if (params.get("source_dim") != dim or src.get("normalized")) else src.get("normalized"),
        model=src.get("model"), fields=src.get("fields"), compression=params,
    )
    schema = vectors_schema(width, dtype, meta)
    # Everything is encoded before anything is written: nothing is written when encoding fails.
    batches = []
    for start in range(0, len(matrix), CHUNK):
        codes = codecs.encode(matrix[start : start + CHUNK], params, dim)
        batches.append(vectors_batch(vecs.ids.slice(start, len(codes)), codes, schema))
    return Coded(meta, schema, batches)


def check_source_dim(vecs: Vectors, params: dict[str, Any], like_name: str) -> None:
    have = vecs.matrix.shape[1]
    want = params.get("source_dim") or params.get("dim")
    if want and have != want:
        raise InputError(f"{vecs.name}: has dimension {have} but {like_name} was made from {want}-dimensional vectors; "
                         "use vectors of the same model")


def default_m(dim: int) -> int:
    for m in (dim // 8, dim // 4, dim // 2, dim):
        if m >= 1 and dim % m == 0:
            return m
    return dim


def quantize(vecs: Vectors, to: str | None = None, like: dict[str, Any] | None = None, like_name: str = "",
             dim: int | None = None, m: int | None = None, nbits: int = 8, train_size: int = 100_000, seed: int = 0,
             on_progress: Callable[[str], None] | None = None) -> Coded:
    """Quantize float vectors to int8/uint8 (per-dimension ranges), fp16, PQ codes, or truncate them.

    ``like``: the metadata of an artifact whose calibration to apply instead of learning one.
    """
    if to is not None and to not in QUANTIZE_METHODS:
        raise UsageError(f"--to {to!r}: choose one of {', '.join(QUANTIZE_METHODS)}")
    if to is None and like is None and dim is None:
        raise UsageError("give --to int8|uint8|fp16|pq (or --like ARTIFACT, or --dim N alone to truncate)")
    params = None
    if like is not None:
        params = like_params(like, like_name, QUANTIZE_METHODS, "quantize")
        if to is not None and to != params["method"]:
            raise UsageError(f"{like_name}: is a {params['method']} artifact but --to is {to}; drop --to or --like a {to} artifact")
        if dim is not None and dim != params.get("dim"):
            raise UsageError(f"{like_name}: holds {params.get('dim')}-dimensional codes but --dim is {dim}; drop --dim")
        dim = params.get("dim")
        check_source_dim(vecs, params, like_name)
    matrix, source_dim = _prepare(vecs, dim)
    dim = matrix.shape[1]
    if params is None:
        method = to or "float32"
        if method in codecs.SCALAR:
            params = codecs.scalar_train(matrix, method)
        elif method == "pq":
            m = m or default_m(dim)
            if m < 1 or dim % m:
                raise UsageError(f"{vecs.name}: --m {m} does not divide the dimension {dim}; pick a divisor of {dim} such as {default_m(dim)}")
            if not 1 <= nbits <= 16:
                raise UsageError(f"--nbits {nbits} is outside 1..16")
            train = _sample(matrix, train_size, seed)
            if len(train) < (1 << nbits):
                raise UsageError(f"{vecs.name}: {len(train)} training vectors cannot train {1 << nbits} centroids (--nbits {nbits}); use fewer "
                                 f"--nbits or more vectors")
            if on_progress:
                on_progress(f"training PQ m={m} nbits={nbits} on {len(train)} vectors")
            params = codecs.pq_train(train, m, nbits, seed)
            params["train_size"] = train_size
        else:
            params = {"method": method}
        params["source_dim"] = source_dim
        params["dim"] = dim
        params["normalize"] = _normalizes(vecs, source_dim, dim)
    if params["method"] == "fp16":
        big = np.abs(matrix) > FP16_MAX
        if big.any():
            row = int(np.flatnonzero(big.any(axis=1))[0])
            raise InputError(f"{vecs.name}: id {vecs.ids[row].as_py()!r} has a value beyond the float16 range (|x| > {FP16_MAX:g}); "
                             "use --to int8 or keep float32")
    return _coded(vecs, matrix, params)


def sign_binarize_parts(parts: Iterable[Vectors]) -> Iterator[Coded]:
    """1-bit sign codes (threshold 0) of each part as it comes: the threshold needs no pass over the
    corpus, so a large input is coded while it is read, one part in memory at a time. The codes and
    metadata are those :func:`binarize` gives the whole input (a row's sign does not depend on
    whether it is L2-normalised first)."""
    params: dict[str, Any] | None = None
    for vecs in parts:
        matrix, source_dim = _prepare(vecs, None)
        if params is None:
            params = codecs.binary_train(matrix, center=False)
            params.update(source_dim=source_dim, dim=matrix.shape[1], normalize=_normalizes(vecs, source_dim, matrix.shape[1]))
        yield _coded(vecs, matrix, params)


def binarize(vecs: Vectors, bits: int | None = None, center: bool = False, like: dict[str, Any] | None = None,
             like_name: str = "") -> Coded:
    """1-bit sign binarization (threshold 0 or the corpus mean) or 2..8-bit residual binarization."""
    if bits is not None and not 1 <= bits <= 8:
        raise UsageError(f"--bits {bits} is outside 1..8; use 1 for sign bits or 2..8 for residual binarization")
    params = None
    if like is not None:
        params = like_params(like, like_name, BINARY_METHODS, "binarize")
        if bits is not None and bits != int(params["bits"]):
            raise UsageError(f"{like_name}: holds {params['bits']}-bit codes but --bits is {bits}; drop --bits")
        check_source_dim(vecs, params, like_name)
    elif bits is None:
        raise UsageError("give --bits N (1..8) or --like ARTIFACT")
    matrix, source_dim = _prepare(vecs, params.get("dim") if params else None)
    if params is None:
        if bits == 1:
            params = codecs.binary_train(matrix, center)
        else:
            params = codecs.residual_train(matrix, int(bits or 2))
        params["source_dim"] = source_dim
        params["dim"] = matrix.shape[1]
        params["normalize"] = _normalizes(vecs, source_dim, matrix.shape[1])
    return _coded(vecs, matrix, params)

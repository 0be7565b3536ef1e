"""Multi-vector tables: one vector per token (late interaction), ``embedding: list<fixed_size_list<float32>[d]>``.

Written by ``vecpipe embed --multi-vector``; read by ``vecpipe fde`` (fixed-dimensional encodings)
and ``vecpipe rerank --chamfer``. The ``vecpipe`` metadata says ``kind: multivectors`` with the
dimension of each token vector, the model (its ``tokens`` entry says whether special tokens were kept)
and ``multi_vector: true``. Parquet drops the inner ``fixed_size_list``; it is restored on read.

A batch is read as ``(ids, flat, offsets)``: ``flat`` the float32 token vectors of all rows one after
the other ``[sum n_i, d]``, row ``i`` owning ``flat[offsets[i]:offsets[i+1]]``, with no per-row copy.
Every input is checked as vectors are: ids present, non-empty and unique; no null list, token vector
or value; one dimension; finite values. A row may hold no token vectors (an empty text with special
tokens dropped).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import CORRUPT, _first_line, open_arrow_batches
from vecpipe.formats.vectors import UniqueIds, _first_id, check_finite, check_ids, embedding_column, id_column, numeric_values

KIND = "multivectors"
#: What a multi-vector input may be, for refusals.
MULTIVECTORS = "multi-vector tables (vecpipe embed --multi-vector)"


def multivectors_schema(dim: int, meta: dict[str, Any]) -> pa.Schema:
    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.list_(pa.float32(), dim)))])
    return metadata.attach(schema, meta)


def multivectors_batch(ids: Any, rows: Sequence[np.ndarray], schema: pa.Schema) -> pa.RecordBatch:
    """One record batch from the token-vector arrays of its rows (each ``[n_i, d]`` float32)."""
    inner = schema.field("embedding").type.value_type
    dim = inner.list_size
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(r, dtype=np.float32).reshape(-1, dim) for r in rows]) if rows else np.zeros((0, dim), np.float32)
    tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float32()), dim)
    emb = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), tokens)
    id_arr = ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())
    return pa.RecordBatch.from_arrays([id_arr, emb], schema=schema)


def is_multivector(schema: pa.Schema) -> bool:
    """Whether a vectors-like table holds a list of vectors per row."""
    meta = metadata.read(schema)
    if meta.get("kind") == KIND:
        return True
    for name in ("embedding", "embeddings"):
        if name in schema.names:
            t = schema.field(name).type
            return (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
                pa.types.is_list(t.value_type) or pa.types.is_fixed_size_list(t.value_type) or pa.types.is_large_list(t.value_type))
    return False


def _batch_tokens(col: pa.Array | pa.ChunkedArray, name: str, dim: int | None, ids: pa.Array, row0: int,
                  column: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat ``[T, d]`` float32, offsets ``[n + 1]``) of one batch's list-of-vectors column, checked."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not (
            pa.types.is_list(t.value_type) or pa.types.is_large_list(t.value_type) or pa.types.is_fixed_size_list(t.value_type)):
        raise InputError(f"{name}: {column} column has type {t}, expected a list of vectors per row (vecpipe embed --multi-vector)")
    if col.null_count:
        rows = np.flatnonzero(np.asarray(col.is_null()))
        raise InputError(f"{name}: {_first_id(ids, rows, row0)} has no {column} (null); every row needs a list of token vectors")
    offsets = np.asarray(col.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    tokens = col.flatten()
    row_of = np.repeat(np.arange(len(col)), np.diff(offsets))
    if tokens.null_count:
        bad = np.flatnonzero(np.asarray(tokens.is_null()))
        raise InputError(f"{name}: {_first_id(ids, row_of[bad], row0)} has a null token vector in {column}")
    if pa.types.is_fixed_size_list(tokens.type):
        w = tokens.type.list_size
        values = tokens.flatten()
    else:
        inner = np.asarray(tokens.offsets, dtype=np.int64)
        lengths = np.diff(inner)
        w = int(lengths[0]) if len(lengths) else (dim or 0)
        if len(lengths) and lengths.min() != lengths.max():
            bad = np.flatnonzero(lengths != w)
            raise InputError(f"{name}: token vectors have different lengths ({lengths.min()}..{lengths.max()}, first at "
                             f"{_first_id(ids, row_of[bad], row0)}); all need one dimension")
        values = tokens.flatten()
    if len(tokens) and w == 0:
        raise InputError(f"{name}: token vectors have dimension 0; every vector needs at least one value")
    if dim is not None and len(tokens) and w != dim:
        raise InputError(f"{name}: token vectors have dimension {w}, expected {dim}")
    arr = numeric_values(values, w, name, ids, row0, column, row_of)
    flat = np.ascontiguousarray(arr.reshape(len(tokens), w if len(tokens) else (dim or 0)), dtype=np.float32)
    if len(flat):
        try:
            check_finite(flat, name, None, 0, column)
        except InputError:
            bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
            raise InputError(f"{name}: {_first_id(ids, row_of[bad], row0)} has a non-finite value in {column}; "
                             "token vectors must hold finite numbers") from None
    return flat, offsets


def iter_multivectors(path: str | Path | sniff.Input, batch_size: int = 4096
                      ) -> Iterator[tuple[pa.Array, np.ndarray, np.ndarray, dict[str, Any]]]:
    """Stream checked ``(ids, flat, offsets, meta)`` batches of a multi-vector table (file or stdin)."""
    inp = path if isinstance(path, sniff.Input) else sniff.Input(path)
    try:
        if inp.format in (sniff.JSONL, sniff.TEXT):
            raise InputError(f"{inp.name}: holds text, not token vectors; run vecpipe embed --multi-vector on it first")
        if inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index, not {MULTIVECTORS}")
        if inp.format in (sniff.NPY, sniff.NPZ, sniff.ZIP):
            raise InputError(f"{inp.name}: is a NumPy file; expected {MULTIVECTORS}")
        schema, batches = open_arrow_batches(inp, batch_size)
        meta = metadata.read(schema)
        if meta.get("kind") not in (None, KIND):
            hint = " (one vector per text: embed with --multi-vector)" if meta.get("kind") == "vectors" else ""
            raise InputError(f"{inp.name}: is a {meta.get('kind')} table, expected {MULTIVECTORS}{hint}")
        emb_col, id_col = embedding_column(schema, inp.name), id_column(schema, inp.name)
        dim = meta.get("dim") if isinstance(meta.get("dim"), int) else None
        seen = UniqueIds(inp.name)
        rows = 0
        try:
            for batch in batches:
                ids = check_ids(batch.column(batch.schema.names.index(id_col)), inp.name, rows, id_col)
                flat, offsets = _batch_tokens(batch.column(batch.schema.names.index(emb_col)), inp.name, dim, ids, rows, emb_col)
                if len(flat):
                    dim = flat.shape[1]
                seen.add(ids)
                rows += len(ids)
                yield ids, flat, offsets, meta
        except CORRUPT as exc:
            raise InputError(f"{inp.name}: unreadable data after row {rows} ({_first_line(exc)}); the file may be truncated or corrupt") from None
        if rows == 0:
            raise InputError(f"{inp.name}: no rows in the input")
    finally:
        if not isinstance(path, sniff.Input):
            inp.close()


def read_multivectors(path: str | Path | sniff.Input) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any]]:
    """A whole multi-vector table: (ids, flat ``[T, d]``, offsets ``[n + 1]``, meta)."""
    ids: list[str] = []
    flats, lens = [], []
    meta: dict[str, Any] = {}
    for batch_ids, flat, offsets, batch_meta in iter_multivectors(path):
        meta = batch_meta
        ids.extend(batch_ids.to_pylist())
        flats.append(flat)
        lens.append(np.diff(offsets))
    dims = {f.shape[1] for f in flats if len(f)}
    dim = dims.pop() if dims else int(meta.get("dim") or 0)
    flat = np.concatenate([f.reshape(-1, dim) for f in flats]) if flats else np.zeros((0, dim), np.float32)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lens), out=offsets[1:])
    return ids, flat, offsets, meta

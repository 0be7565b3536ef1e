"""Vector tables: ``id: string``, ``embedding: fixed_size_list<float32|float16|int8|uint8>[n]``.

Packed bits are ``uint8`` with ``n = ceil(dim * bits / 8)``. ``embeddings`` is accepted as the column
name too (autofaiss). Parquet drops Arrow's ``fixed_size_list``; it is restored on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import CORRUPT, _first_line, open_arrow_batches

DTYPES = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8()}
VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "emb")


def dtype_name(value_type: pa.DataType) -> str:
    """The vocabulary name (float32, float16, int8, uint8) of an embedding value type."""
    for name, t in DTYPES.items():
        if t == value_type:
            return name
    raise InputError(f"embedding values of type {value_type} are not supported; use float32, float16, int8 or uint8")


def vectors_schema(width: int, dtype: str, meta: dict[str, Any]) -> pa.Schema:
    if dtype not in DTYPES:
        raise ValueError(f"unsupported vector dtype {dtype}")
    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(DTYPES[dtype], width))])
    return metadata.attach(schema, meta)


def vectors_batch(ids, matrix: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
    value_type = schema.field("embedding").type.value_type
    width = schema.field("embedding").type.list_size
    matrix = np.ascontiguousarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(f"matrix of shape {matrix.shape} does not fit width {width}")
    flat = pa.array(matrix.reshape(-1), type=value_type)
    emb = pa.FixedSizeListArray.from_arrays(flat, width)
    id_arr = ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())
    return pa.RecordBatch.from_arrays([id_arr, emb], schema=schema)


@dataclass
class Vectors:
    """A whole vectors artifact in memory: ids, a 2-D matrix and its ``vecpipe`` metadata."""

    ids: pa.Array
    matrix: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def dim(self) -> int:
        return int(self.meta.get("dim") or self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.ids)


def _column(schema: pa.Schema, name: str) -> str:
    for col in VECTOR_COLUMNS:
        if col in schema.names:
            return col
    raise InputError(
        f"{name}: no embedding column (expected one of {', '.join(VECTOR_COLUMNS)}; found {', '.join(schema.names)}); "
        "give a vectors file written by vecpipe embed"
    )


def _id_column(schema: pa.Schema, name: str) -> str:
    for col in ("id", "_id", "docid", "qid"):
        if col in schema.names:
            return col
    raise InputError(f"{name}: no id column (found {', '.join(schema.names)}); vectors need an 'id' column")


def _batch_matrix(col: pa.Array, name: str, width: int | None) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if col.null_count:
        raise InputError(f"{name}: {col.null_count} rows have no embedding; every row needs a vector")
    if pa.types.is_fixed_size_list(col.type):
        w = col.type.list_size
        values = col.flatten()
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        values = col.flatten()
        lengths = np.diff(np.asarray(col.offsets))
        if n and (lengths.min() != lengths.max()):
            raise InputError(f"{name}: embeddings have different lengths ({lengths.min()}..{lengths.max()}); all vectors need one dimension")
        w = int(lengths[0]) if n else (width or 0)
    else:
        raise InputError(f"{name}: embedding column has type {col.type}, expected a list of numbers")
    if width is not None and n and w != width:
        raise InputError(f"{name}: embedding width changes from {width} to {w} inside the file")
    arr = values.to_numpy(zero_copy_only=False)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: embedding values have type {values.type}, expected numbers")
    return arr.reshape(n, w)


def has_vectors(schema: pa.Schema) -> bool:
    return any(col in schema.names for col in VECTOR_COLUMNS)


def iter_vectors(path: "str | Path | sniff.Input", batch_size: int = 65536) -> Iterator[tuple[pa.Array, np.ndarray, dict]]:
    """Stream (ids, matrix, meta) batches from a vectors file or stdin."""
    inp = path if isinstance(path, sniff.Input) else sniff.Input(path)
    try:
        if inp.format in (sniff.JSONL, sniff.TEXT):
            raise InputError(f"{inp.name}: holds text, not vectors; run vecpipe embed on it first")
        if inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index, not a vectors table")
        schema, batches = open_arrow_batches(inp, batch_size)
        yield from vectors_from_arrow(inp.name, schema, batches)
    finally:
        inp.close()


def vectors_from_arrow(name: str, schema: pa.Schema, batches) -> Iterator[tuple[pa.Array, np.ndarray, dict]]:
    meta = metadata.read(schema)
    if meta and meta.get("kind") not in (None, "vectors"):
        raise InputError(f"{name}: is a {meta.get('kind')} table, expected vectors")
    emb_col, id_col = _column(schema, name), _id_column(schema, name)
    width = None
    rows = 0
    try:
        for batch in batches:
            ids = batch.column(batch.schema.names.index(id_col)).cast(pa.string())
            mat = _batch_matrix(batch.column(batch.schema.names.index(emb_col)), name, width)
            width = mat.shape[1]
            rows += len(ids)
            yield ids, mat, meta
    except CORRUPT as exc:
        raise InputError(f"{name}: unreadable data after row {rows} ({_first_line(exc)}); the file may be truncated or corrupt") from None
    if rows == 0:
        raise InputError(f"{name}: no vectors in the input")


def read_vectors(path: str | Path) -> Vectors:
    """Read a whole vectors artifact; the matrix keeps its stored dtype."""
    ids_parts, mats, meta = [], [], {}
    for ids, mat, meta in iter_vectors(path):
        ids_parts.append(ids)
        mats.append(mat)
    ids = pa.concat_arrays(ids_parts) if len(ids_parts) > 1 else ids_parts[0]
    matrix = np.concatenate(mats) if len(mats) > 1 else mats[0]
    return Vectors(ids=ids, matrix=matrix, meta=dict(meta), name=sniff.display_name(path))


def float_matrix(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float32)

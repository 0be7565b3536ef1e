"""Vector tables: ``id: string``, ``embedding: fixed_size_list<float32|float16|int8|uint8>[n]``.

Packed bits are ``uint8`` with ``n = ceil(dim * bits / 8)``. ``embeddings`` is accepted as the column
name too (autofaiss). Parquet drops Arrow's ``fixed_size_list``; it is restored on read.

Every vectors input is checked here, once, batch by batch (vectorised): ids present, non-empty and
unique; an embedding on every row with no null element; a dimension of at least 1; float values
finite. A refusal names the input, the first offending id and the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import CORRUPT, _first_line, open_arrow_batches

DTYPES = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8()}
VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "emb")
ID_COLUMNS = ("id", "_id", "docid", "qid")


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


def vectors_batch(ids: Any, matrix: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
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


def embedding_column(schema: pa.Schema, name: str) -> str:
    for col in VECTOR_COLUMNS:
        if col in schema.names:
            return col
    raise InputError(
        f"{name}: no embedding column (expected one of {', '.join(VECTOR_COLUMNS)}; found {', '.join(schema.names)}); "
        "give a vectors file written by vecpipe embed"
    )


def id_column(schema: pa.Schema, name: str) -> str:
    for col in ID_COLUMNS:
        if col in schema.names:
            return col
    raise InputError(f"{name}: no id column (found {', '.join(schema.names)}); vectors need an 'id' column")


def _first_id(ids: pa.Array, rows: np.ndarray, row0: int) -> str:
    i = int(rows[0])
    value = ids[i].as_py() if i < len(ids) else None
    return f"id {value!r}" if value not in (None, "") else f"row {row0 + i + 1}"


def batch_matrix(col: pa.Array | pa.ChunkedArray, name: str, width: int | None, ids: pa.Array | None = None,
                 row0: int = 0, column: str = "embedding") -> np.ndarray:
    """The rows of an embedding column as a 2-D numpy array, checked: no null row or element, a
    dimension of at least 1, the same width as earlier batches, finite float values."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    ids = ids if ids is not None else pa.nulls(len(col), pa.string())
    n = len(col)
    if col.null_count:
        rows = np.flatnonzero(np.asarray(col.is_null()))
        raise InputError(f"{name}: {_first_id(ids, rows, row0)} has no {column} (null); every row needs a vector")
    if pa.types.is_fixed_size_list(col.type):
        w = col.type.list_size
        values = col.flatten()
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        values = col.flatten()
        offsets = np.asarray(col.offsets)
        lengths = np.diff(offsets)
        if n and (lengths.min() != lengths.max()):
            rows = np.flatnonzero(lengths != lengths[0])
            raise InputError(f"{name}: embeddings have different lengths ({lengths.min()}..{lengths.max()}, "
                             f"first at {_first_id(ids, rows, row0)}); all vectors need one dimension")
        w = int(lengths[0]) if n else (width or 0)
    else:
        raise InputError(f"{name}: {column} column has type {col.type}, expected a list of numbers")
    if n and w == 0:
        raise InputError(f"{name}: {column} vectors have dimension 0; every vector needs at least one value")
    if width is not None and n and w != width:
        raise InputError(f"{name}: embedding width changes from {width} to {w} inside the file")
    if values.null_count:
        rows = np.flatnonzero(np.asarray(values.is_null())) // max(w, 1)
        raise InputError(f"{name}: {_first_id(ids, rows, row0)} has a null value in {column}; every value must be a number")
    arr = values.to_numpy(zero_copy_only=False)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: {column} values have type {values.type}, expected numbers")
    mat = arr.reshape(n, w)
    check_finite(mat, name, ids, row0, column)
    return mat


def check_finite(mat: np.ndarray, name: str, ids: pa.Array | None = None, row0: int = 0, column: str = "embedding") -> None:
    """Refuse NaN and infinite values, naming the first offending row's id."""
    if mat.dtype.kind != "f" or mat.size == 0:
        return
    if mat.dtype.itemsize >= 4:  # one BLAS pass at memory speed: a NaN or inf makes its row's sum non-finite
        if np.isfinite(mat @ np.ones(mat.shape[1], dtype=mat.dtype)).all():
            return
    elif np.isfinite(mat).all():
        return
    bad = ~np.isfinite(mat).all(axis=1)
    if not bad.any():
        return  # finite values whose sum overflowed
    rows = np.flatnonzero(bad)
    where = _first_id(ids if ids is not None else pa.nulls(len(mat), pa.string()), rows, row0)
    value = mat[rows[0]][~np.isfinite(mat[rows[0]])][0]
    raise InputError(f"{name}: {where} has a non-finite value ({value}) in {column}; vectors must hold finite numbers")


def check_ids(ids: pa.Array, name: str, row0: int = 0, column: str = "id") -> pa.Array:
    """Ids as strings, none null or empty."""
    try:
        ids = ids.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: column {column!r} cannot be read as strings ({_first_line(exc)})") from None
    if ids.null_count:
        row = int(np.flatnonzero(np.asarray(ids.is_null()))[0])
        raise InputError(f"{name}: row {row0 + row + 1} has no {column} (null); every row needs an id")
    empty = pc.equal(pc.binary_length(ids), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(np.asarray(empty))[0])
        raise InputError(f"{name}: row {row0 + row + 1} has an empty {column}; every row needs a non-empty id")
    return ids


def first_duplicate(ids: pa.Array | pa.ChunkedArray) -> str | None:
    """The first id (in order) that occurs again, or ``None`` when all are unique."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if len(ids) == 0 or pc.count_distinct(ids).as_py() == len(ids):
        return None
    codes = np.asarray(pc.index_in(ids, value_set=pc.unique(ids)))
    seen = np.zeros(len(codes), dtype=bool)
    for c in codes:  # only on failure: find the first repeat
        if seen[c]:
            return str(ids[int(np.flatnonzero(codes == c)[0])].as_py())
        seen[c] = True
    return None


class UniqueIds:
    """Refuse an id seen before, across the batches of a stream."""

    def __init__(self, name: str, what: str = "id"):
        self.name, self.what = name, what
        self.seen: set[str] = set()

    def add(self, ids: pa.Array) -> None:
        values = ids.to_pylist()
        batch = set(values)
        if len(batch) != len(values) or not self.seen.isdisjoint(batch):
            local: set[str] = set()
            for v in values:
                if v in self.seen or v in local:
                    raise InputError(f"{self.name}: {self.what} {v!r} occurs more than once; ids must be unique")
                local.add(v)
        self.seen |= batch


def has_vectors(schema: pa.Schema) -> bool:
    return any(col in schema.names for col in VECTOR_COLUMNS)


def iter_vectors(path: "str | Path | sniff.Input", batch_size: int = 65536,
                 unique: bool = True) -> Iterator[tuple[pa.Array, np.ndarray, dict]]:
    """Stream checked (ids, matrix, meta) batches from a vectors file or stdin."""
    inp = path if isinstance(path, sniff.Input) else sniff.Input(path)
    try:
        if inp.format in (sniff.JSONL, sniff.TEXT):
            raise InputError(f"{inp.name}: holds text, not vectors; run vecpipe embed on it first")
        if inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index, not a vectors table")
        schema, batches = open_arrow_batches(inp, batch_size)
        yield from vectors_from_arrow(inp.name, schema, batches, unique=unique)
    finally:
        if not isinstance(path, sniff.Input):
            inp.close()


def vectors_from_arrow(name: str, schema: pa.Schema, batches: Any,
                       unique: bool = True) -> Iterator[tuple[pa.Array, np.ndarray, dict]]:
    """Checked (ids, matrix, meta) batches of an Arrow/Parquet vectors table.

    ``unique``: refuse an id repeated across the whole stream (set-based; for whole reads
    :func:`read_vectors` checks uniqueness once at the end instead).
    """
    meta = metadata.read(schema)
    if meta and meta.get("kind") not in (None, "vectors"):
        raise InputError(f"{name}: is a {meta.get('kind')} table, expected vectors")
    emb_col, id_col = embedding_column(schema, name), id_column(schema, name)
    seen = UniqueIds(name) if unique else None
    width = None
    rows = 0
    try:
        for batch in batches:
            ids = check_ids(batch.column(batch.schema.names.index(id_col)), name, rows, id_col)
            mat = batch_matrix(batch.column(batch.schema.names.index(emb_col)), name, width, ids, rows, emb_col)
            if seen is not None:
                seen.add(ids)
            width = mat.shape[1]
            rows += len(ids)
            yield ids, mat, meta
    except CORRUPT as exc:
        raise InputError(f"{name}: unreadable data after row {rows} ({_first_line(exc)}); the file may be truncated or corrupt") from None
    if rows == 0:
        raise InputError(f"{name}: no vectors in the input")


def read_vectors(path: "str | Path | sniff.Input") -> Vectors:
    """Read a whole vectors artifact, checked; the matrix keeps its stored dtype."""
    ids_parts, mats, meta = [], [], {}
    name = path.name if isinstance(path, sniff.Input) else sniff.display_name(path)
    for ids, mat, meta in iter_vectors(path, unique=False):
        ids_parts.append(ids)
        mats.append(mat)
    ids = pa.concat_arrays(ids_parts) if len(ids_parts) > 1 else ids_parts[0]
    dup = first_duplicate(ids)
    if dup is not None:
        raise InputError(f"{name}: id {dup!r} occurs more than once; ids must be unique")
    matrix = np.concatenate(mats) if len(mats) > 1 else mats[0]
    return Vectors(ids=ids, matrix=matrix, meta=dict(meta), name=name)


def float_matrix(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float32)

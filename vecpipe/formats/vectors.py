"""Vector tables: ``id: string``, ``embedding: fixed_size_list<float32|float16|int8|uint8>[n]``.

Packed bits are ``uint8`` with ``n = ceil(dim * bits / 8)``. ``embeddings`` is accepted as the column
name too (autofaiss). Parquet drops Arrow's ``fixed_size_list``; it is restored on read.

Every vectors input is checked here, once, batch by batch (vectorised): ids present, non-empty and
unique; an embedding on every row with no null element; a dimension of at least 1; float values
finite. A refusal names the input, the first offending id and the column.

NumPy inputs. A ``.npy`` file (magic bytes ``\\x93NUMPY``) or a ``.npz`` archive (a zip of ``.npy``
members, as ``numpy.savez`` writes it) is read as vectors wherever vectors are read, recognised by
its content, never its extension (:data:`sniff.FORMATS`):

- the vectors: a 2-D array (rows, dimension) of float32, float16, int8 or uint8; float64 is read as
  float32. In a .npz, the array named ``embeddings``, ``embedding`` or ``vectors``, else the only 2-D
  array. Other dtypes, other shapes and pickled object arrays are refused with one line.
- the ids, the first found of:

  1. a .npz array ``ids`` (or ``id``): 1-D, one per row, strings or integers;
  2. a companion file ``NAME.ids.txt`` beside ``NAME.npy`` or ``NAME.npz`` (a compression suffix is
     dropped too: ``x.npy.gz`` -> ``x.ids.txt``): UTF-8, one id per line, one line per row;
  3. the row numbers ``"0"``, ``"1"``, ... (stdin and other streams have no companion).

  Ids must be non-empty and unique, as everywhere.
- no ``vecpipe`` metadata (no model, metric or normalisation), as for Parquet written by other tools.

A .npy regular file is memory-mapped and read in blocks of rows; a stream (stdin, a FIFO, a gzip or
zstd file) is read once, block by block (a Fortran-order array from a stream is read whole); a .npz
member is decompressed block by block (the archive itself needs random access: a stream is spooled).
Every block becomes an Arrow batch (``id``, ``embedding``) and goes through the same checks as Arrow
input (:func:`numpy_table`, used by :func:`records.open_arrow_batches`).
"""

from __future__ import annotations

import io
import mmap
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn as pc
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import CORRUPT, _first_line, open_arrow_batches

DTYPES = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8()}
VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "emb")
ID_COLUMNS = ("id", "_id", "docid", "qid")
#: What a vectors input may be, for refusals of other inputs.
VECTORS = "vectors (Arrow/Parquet with id and embedding columns, .npy or .npz)"


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
        # the child values of these rows, zero-copy (Array.flatten would import pyarrow.compute)
        values = col.values.slice(col.offset * w, n * w)
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        offsets = np.asarray(col.offsets)  # of these rows (.values ignores a slice's offset)
        values = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
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
    mat = numeric_values(values, w, name, ids, row0, column).reshape(n, w)
    check_finite(mat, name, ids, row0, column)
    return mat


def numeric_values(values: pa.Array, width: int, name: str, ids: pa.Array | None, row0: int, column: str,
                   row_of: np.ndarray | None = None) -> np.ndarray:
    """The flat values of a column of vectors as NumPy; nulls and non-numbers are refused naming the
    first offending row (``row_of``: the row of each vector, where a row holds several)."""
    if values.null_count:
        vectors = np.flatnonzero(np.asarray(values.is_null())) // max(width, 1)
        rows = vectors if row_of is None else row_of[vectors]
        raise InputError(f"{name}: {_first_id(ids, rows, row0)} has a null value in {column}; every value must be a number")
    arr = values.to_numpy(zero_copy_only=False)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: {column} values have type {values.type}, expected numbers")
    return arr


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
        ids = pc.cast(ids, pa.string())
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


def iter_vectors(path: str | Path | sniff.Input, batch_size: int = 65536,
                 unique: bool = True) -> Iterator[tuple[pa.Array, np.ndarray, dict]]:
    """Stream checked (ids, matrix, meta) batches from a vectors file or stdin."""
    inp = path if isinstance(path, sniff.Input) else sniff.Input(path)
    try:
        if inp.format == sniff.TEXT:
            kind = sniff.text_kind(sniff.sample_lines(inp.stream))
            if kind is not None:
                raise sniff.misplaced(inp.name, kind, VECTORS)
        if inp.format in (sniff.JSONL, sniff.TEXT):
            raise InputError(f"{inp.name}: holds text, not vectors; run vecpipe embed on it first")
        if inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index, not a vectors table")
        if inp.format == sniff.ZIP:
            raise InputError(f"{inp.name}: is a zip archive, not a .npz of NumPy arrays; unzip it and give the file inside")
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
    if meta and meta.get("kind") == "multivectors":
        raise InputError(f"{name}: holds token vectors (one list per row, embed --multi-vector), not one vector per row; "
                         "encode them with vecpipe fde first, or score them with rerank --chamfer")
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


def read_vectors(path: str | Path | sniff.Input) -> Vectors:
    """Read a whole vectors artifact, checked; the matrix keeps its stored dtype."""
    name = path.name if isinstance(path, sniff.Input) else sniff.display_name(path)
    return collect_vectors(name, iter_vectors(path, unique=False))


def collect_vectors(name: str, batches: Iterator[tuple[pa.Array, np.ndarray, dict]]) -> Vectors:
    """Checked batches gathered into one :class:`Vectors` (ids checked unique once, at the end)."""
    ids_parts, mats, meta = [], [], {}
    for ids, mat, batch_meta in batches:
        ids_parts.append(ids)
        mats.append(mat)
        meta = batch_meta
    ids = pa.concat_arrays(ids_parts) if len(ids_parts) > 1 else ids_parts[0]
    dup = first_duplicate(ids)
    if dup is not None:
        raise InputError(f"{name}: id {dup!r} occurs more than once; ids must be unique")
    matrix = np.concatenate(mats) if len(mats) > 1 else mats[0]
    return Vectors(ids=ids, matrix=matrix, meta=dict(meta), name=name)


def float_matrix(matrix: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(matrix, dtype=np.float32)


# ------------------------------------------------------------------------------------ NumPy input

NUMPY_DTYPES = ("float32", "float16", "float64", "int8", "uint8")
NPZ_EMBEDDING_KEYS = ("embeddings", "embedding", "vectors")
NPZ_ID_KEYS = ("ids", "id")
_COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd")
_BLOCK_BYTES = 32 << 20  # at most this many bytes of vectors per batch read from a NumPy input
_NPZ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, NotImplementedError)  # zipfile/zlib on damaged data


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int = 0  # bytes before the data (a .npy file)


def _read_header(stream: IO[bytes], name: str) -> _Header:
    """The header of a .npy stream (positioned at its start); leaves the stream at the data."""
    from numpy.lib import format as npformat

    start = stream.tell() if stream.seekable() else 0
    try:
        version = npformat.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(stream)
        else:
            try:
                from numpy.lib._format_impl import _read_array_header  # type: ignore[attr-defined]  # numpy >= 2; private, not in its stubs
            except ImportError:  # pragma: no cover - numpy 1.x
                _read_array_header = npformat._read_array_header  # type: ignore[attr-defined]
            shape, fortran, dtype = _read_array_header(stream, version)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, MemoryError) as exc:  # bad magic, header or EOF
        raise InputError(f"{name}: damaged NumPy header ({_first_line(exc)}); is it a complete .npy file?") from None
    offset = stream.tell() - start if stream.seekable() else 0
    return _Header(tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran), offset)


def _dtype_problem(header: _Header) -> str | None:
    dt = header.dtype
    if dt.hasobject:
        return "holds Python objects (a pickled object array), which vecpipe never unpickles; save a numeric array"
    if dt.names is not None or dt.subdtype is not None:
        return f"has a structured dtype ({dt}); save a plain 2-D numeric array"
    if len(header.shape) != 2:
        return (f"is a {len(header.shape)}-D array of shape {header.shape}; vectors need a 2-D array "
                "(rows, dimension)")
    native = dt.newbyteorder("=")
    if native.name not in NUMPY_DTYPES:
        return (f"has dtype {native.name}; vectors must be float32, float16, float64 (read as float32), "
                "int8 or uint8")
    if header.shape[1] == 0 and header.shape[0] > 0:
        return "holds vectors of dimension 0; every vector needs at least one value"
    return None


def _dtype_label(dt: np.dtype) -> str:
    """A stored dtype as people write it: ``float32``; byte order and string widths kept (``>f4``, ``<U8``)."""
    return dt.name if dt.kind in "fiub" and dt.byteorder != ">" else dt.str


def _out_dtype(dt: np.dtype) -> np.dtype:
    native = dt.newbyteorder("=")
    return np.dtype(np.float32) if native.name == "float64" else native


def _read_exact(stream: IO[bytes], nbytes: int) -> bytearray:
    buf = bytearray(nbytes)
    view = memoryview(buf)
    pos = 0
    while pos < nbytes:
        n = stream.readinto(view[pos:])  # type: ignore[attr-defined]
        if not n:
            break
        pos += n
    del view
    if pos < nbytes:
        del buf[pos:]
    return buf


def _truncated(name: str, rows: int, complete: int) -> InputError:
    return InputError(f"{name}: truncated NumPy data: the header promises {rows} rows, the data ends after row "
                      f"{complete}; is the file complete?")


def _stream_blocks(stream: IO[bytes], header: _Header, name: str, block_rows: int) -> Iterator[np.ndarray]:
    """Blocks of rows of an array read once from a stream positioned at its data."""
    n, d = header.shape
    row_bytes = d * header.dtype.itemsize
    if header.fortran:  # column-major: no row is complete before the last column; read it whole
        data = _read_exact(stream, n * row_bytes)
        if len(data) < n * row_bytes:
            raise _truncated(name, n, 0)
        whole = np.frombuffer(data, dtype=header.dtype).reshape((n, d), order="F")
        for start in range(0, n, block_rows):
            yield np.ascontiguousarray(whole[start:start + block_rows])
        return
    done = 0
    while done < n:
        want = min(block_rows, n - done)
        data = _read_exact(stream, want * row_bytes)
        if len(data) < want * row_bytes:
            raise _truncated(name, n, done + len(data) // max(row_bytes, 1))
        yield np.frombuffer(data, dtype=header.dtype).reshape(want, d)
        done += want


def _mapped_blocks(fileno: int, header: _Header, name: str, block_rows: int) -> Iterator[np.ndarray]:
    """Blocks of rows of a regular .npy file, memory-mapped (only the pages of a block are touched)."""
    n, d = header.shape
    row_bytes = d * header.dtype.itemsize
    size = os.fstat(fileno).st_size
    if size < header.offset + n * row_bytes:
        raise _truncated(name, n, max(0, size - header.offset) // max(row_bytes, 1))
    if n == 0:
        return
    mm = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    whole = np.ndarray((n, d), dtype=header.dtype, buffer=mm, offset=header.offset, order="F" if header.fortran else "C")
    for start in range(0, n, block_rows):
        yield whole[start:start + block_rows]


def _mappable(inp: sniff.Input) -> bool:
    """Whether the input's stream is an uncompressed regular file (mapped rather than read)."""
    if inp.compression is not None or inp.path is None or not isinstance(inp.stream, io.BufferedReader):
        return False
    try:
        return stat.S_ISREG(os.fstat(inp.stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def companion_ids(path: str | Path) -> Path:
    """Where the ids of ``NAME.npy`` / ``NAME.npz`` (``.gz``/``.zst`` too) are looked for: ``NAME.ids.txt``."""
    p = Path(path)
    base = p.name
    for suffix in _COMPRESSION_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    for suffix in (".npy", ".npz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return p.with_name(base + ".ids.txt")


def _read_companion(path: Path, rows: int, name: str) -> pa.Array:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the ids of {name}: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8; the ids of {name} must be UTF-8 text, one per line") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if len(lines) != rows:
        raise InputError(f"{path}: {len(lines)} ids for the {rows} vectors of {name}; give one id per line, "
                         "one line per row")
    empty = next((i for i, line in enumerate(lines) if not line), None)
    if empty is not None:
        raise InputError(f"{path}:{empty + 1}: empty id; every vector of {name} needs a non-empty id")
    return pa.array(lines, pa.string())


def _ids_from_array(arr: np.ndarray, rows: int, name: str, key: str) -> pa.Array:
    where = f"{name}: array {key!r}"
    if arr.ndim != 1 or len(arr) != rows:
        raise InputError(f"{where} has shape {arr.shape}; ids need a 1-D array of one id per vector ({rows})")
    try:
        if arr.dtype.kind == "U":
            return pa.array(arr, pa.string())
        if arr.dtype.kind == "S":
            return pc.cast(pa.array(arr, pa.binary()), pa.string())
        if arr.dtype.kind in "iu":
            return pc.cast(pa.array(arr), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{where}: ids cannot be read as UTF-8 strings ({_first_line(exc)})") from None
    raise InputError(f"{where} has dtype {arr.dtype}; ids must be strings or integers")


@dataclass
class NumpyVectors:
    """A NumPy input opened for reading as vectors: what its headers say, before any data is read.

    ``problem`` is set (and :meth:`batches` refuses) where the input holds no usable vectors; the
    rest still describes it (``vecpipe inspect``)."""

    name: str
    format: str  # sniff.NPY or sniff.NPZ
    shape: tuple[int, ...] = ()
    dtype: str = ""  # the stored dtype (e.g. float64, >f4)
    fortran_order: bool = False
    member: str | None = None  # the .npz array holding the vectors
    ids: str = "row numbers"  # where the ids come from
    arrays: list[dict[str, Any]] = field(default_factory=list)  # a .npz: every array's name, shape and dtype
    problem: str | None = None
    _blocks: Callable[[int], Iterator[np.ndarray]] | None = None
    _ids: Callable[[], pa.Array | None] | None = None

    @property
    def value_dtype(self) -> str:
        """The dtype the vectors are read as (float64 -> float32)."""
        return _out_dtype(np.dtype(self.dtype)).name

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": list(self.shape), "dtype": self.dtype, "fortran_order": self.fortran_order}
        if self.format == sniff.NPZ:
            out.update(arrays=self.arrays, embeddings=self.member)
        if self.problem is None:
            out.update(read_as=self.value_dtype, ids=self.ids)
        else:
            out["problem"] = self.problem
        return out

    def batches(self, batch_size: int = 65536) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """(schema, record batches of ``id`` and ``embedding``); the schema carries no metadata."""
        if self.problem is not None:
            raise InputError(f"{self.name}: {self.problem}")
        assert self._blocks is not None and self._ids is not None
        d = self.shape[1]
        out = _out_dtype(np.dtype(self.dtype))
        schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(DTYPES[out.name], d))])
        ids = self._ids()
        block_rows = max(1, min(batch_size, _BLOCK_BYTES // max(1, d * np.dtype(self.dtype).itemsize)))
        return schema, self._record_batches(schema, ids, block_rows)

    def _record_batches(self, schema: pa.Schema, ids: pa.Array | None, block_rows: int) -> Iterator[pa.RecordBatch]:
        assert self._blocks is not None
        value_type = schema.field("embedding").type.value_type
        d = self.shape[1]
        out = _out_dtype(np.dtype(self.dtype))
        start = 0
        for block in self._blocks(block_rows):
            block = np.ascontiguousarray(block, dtype=out)
            rows = len(block)
            emb = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1), type=value_type), d)
            if ids is None:
                id_arr = pc.cast(pa.array(np.arange(start, start + rows, dtype=np.int64)), pa.string())
            else:
                id_arr = ids.slice(start, rows)
            start += rows
            yield pa.RecordBatch.from_arrays([id_arr, emb], schema=schema)


def _ids_loader(inp: sniff.Input, rows: int, npz_ids: tuple[str, Callable[[], pa.Array]] | None = None
                ) -> tuple[str, Callable[[], pa.Array | None]]:
    """(where the ids come from, a function that loads them): a .npz ids array, a companion file, row numbers."""
    if npz_ids is not None:
        return npz_ids
    if inp.path is not None:
        companion = companion_ids(inp.path)
        if companion.is_file():
            return str(companion), lambda: _read_companion(companion, rows, inp.name)
    return "row numbers", lambda: None


def open_numpy(inp: sniff.Input) -> NumpyVectors:
    """Read the headers of a .npy or .npz input (no data yet); damaged headers are refused."""
    if inp.format == sniff.NPY:
        return _open_npy(inp)
    return _open_npz(inp)


def _open_npy(inp: sniff.Input) -> NumpyVectors:
    name = inp.name
    mapped = _mappable(inp)
    header = _read_header(inp.stream, name)
    nv = NumpyVectors(name, sniff.NPY, header.shape, _dtype_label(header.dtype),
                      header.fortran, problem=_dtype_problem(header))
    if nv.problem is not None:
        return nv
    if mapped:
        fileno = inp.stream.fileno()
        nv._blocks = lambda rows: _mapped_blocks(fileno, header, name, rows)
    else:
        nv._blocks = lambda rows: _stream_blocks(inp.stream, header, name, rows)
    nv.ids, nv._ids = _ids_loader(inp, header.shape[0])
    return nv


def _open_npz(inp: sniff.Input) -> NumpyVectors:
    import zipfile
    import zlib

    name = inp.name
    errors = _NPZ_ERRORS + (zipfile.BadZipFile, zlib.error)
    try:
        zf = zipfile.ZipFile(inp.seekable())
        members = [info for info in zf.infolist() if not info.is_dir()]
    except errors as exc:
        raise InputError(f"{name}: damaged .npz (zip) archive ({_first_line(exc)}); is the file complete?") from None
    arrays = [info for info in members if info.filename.endswith(".npy")]
    if not arrays:
        listed = ", ".join(info.filename for info in members[:3]) or "nothing"
        raise InputError(f"{name}: is a zip archive without NumPy arrays (holds {listed}); unzip it and give the file inside")
    headers: dict[str, _Header] = {}
    infos = {}
    key: str | None
    for info in arrays:
        key = info.filename[: -len(".npy")]
        try:
            with zf.open(info) as fh:
                headers[key] = _read_header(fh, f"{name}: array {key!r}")
        except errors as exc:
            raise InputError(f"{name}: damaged .npz member {info.filename!r} ({_first_line(exc)}); is the file complete?") from None
        infos[key] = info
    listing: list[dict[str, Any]] = [{"name": k, "shape": list(h.shape), "dtype": _dtype_label(h.dtype)}
               for k, h in headers.items()]
    key = next((k for k in NPZ_EMBEDDING_KEYS if k in headers), None)
    if key is None:
        two_d = [k for k, h in headers.items() if len(h.shape) == 2 and not h.dtype.hasobject]
        key = two_d[0] if len(two_d) == 1 else None
    if key is None:
        shown = ", ".join(f"{a['name']} {tuple(a['shape'])}" for a in listing[:6])
        return NumpyVectors(name, sniff.NPZ, arrays=listing, problem=(
            f"no embeddings array among {shown}; name the vectors 'embeddings' "
            "(numpy.savez(path, embeddings=X, ids=I))"))
    header = headers[key]
    nv = NumpyVectors(name, sniff.NPZ, header.shape, listing[list(headers).index(key)]["dtype"], header.fortran,
                      member=key, arrays=listing, problem=_dtype_problem(header))
    if nv.problem is not None:
        nv.problem = f"array {key!r} {nv.problem}"
        return nv
    rows = header.shape[0]

    def blocks(block_rows: int) -> Iterator[np.ndarray]:
        try:
            with zf.open(infos[key]) as fh:
                _read_header(fh, f"{name}: array {key!r}")
                yield from _stream_blocks(fh, header, f"{name}: array {key!r}", block_rows)
        except errors as exc:
            raise InputError(f"{name}: damaged .npz member {key + '.npy'!r} ({_first_line(exc)}); is the file complete?") from None

    nv._blocks = blocks
    id_key = next((k for k in NPZ_ID_KEYS if k in headers and k != key), None)
    npz_ids = None
    if id_key is not None:
        def load_ids() -> pa.Array:
            from numpy.lib import format as npformat

            try:
                with zf.open(infos[id_key]) as fh:
                    arr = npformat.read_array(fh, allow_pickle=False)
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise InputError(f"{name}: array {id_key!r} holds Python objects (a pickled object array), which "
                                     "vecpipe never unpickles; save the ids as strings (numpy.array(ids, dtype=str))") from None
                raise InputError(f"{name}: damaged .npz member {id_key + '.npy'!r} ({_first_line(exc)})") from None
            except errors as exc:
                raise InputError(f"{name}: damaged .npz member {id_key + '.npy'!r} ({_first_line(exc)})") from None
            return _ids_from_array(arr, rows, name, id_key)

        npz_ids = (f"array {id_key!r}", load_ids)
    nv.ids, nv._ids = _ids_loader(inp, rows, npz_ids)
    return nv


def numpy_table(inp: sniff.Input, batch_size: int = 65536) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A .npy/.npz input as (schema, record batches) of a vectors table (``id``, ``embedding``)."""
    return open_numpy(inp).batches(batch_size)

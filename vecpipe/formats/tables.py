"""Table sinks: record batches of one schema written as Arrow or Parquet, streaming.

A sink writes to a *destination*: a path (a temporary file that the caller renames into place, or a
device or FIFO written directly) or ``None`` for standard output. Arrow goes to files in the IPC
file format and to stdout as an IPC stream; Parquet needs a file. Where a destination comes from is
:mod:`vecpipe.formats.targets`' business; :func:`write_table` puts the two together for library
callers.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from vecpipe.errors import UsageError

ARROW = "arrow"  # IPC stream (stdout) / IPC file (.arrow)
PARQUET = "parquet"


def refuse_terminal(binary: bool = True) -> None:
    """Binary data is never written to a terminal (a usage error, as gzip refuses it)."""
    if binary and sys.stdout is not None and sys.stdout.isatty():
        raise UsageError(
            "refusing to write binary Arrow data to a terminal; pipe it into another stage, redirect it, or give -o FILE"
        )


class Sink(ABC):
    """A writer used as a context manager: ``close()`` on success, ``abort()`` on an exception."""

    @abstractmethod
    def close(self) -> None:
        """Finish the output."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the partial output."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TableSink(Sink):
    """Write record batches of one schema to a destination path, or to stdout (``dest=None``)."""

    def __init__(self, dest: Path | None, schema: pa.Schema, fmt: str = ARROW, compression: str = "zstd",
                 custom_metadata_last: dict[str, str] | None = None):
        self.schema = schema
        self.format = fmt
        self.rows = 0
        self._stdout = dest is None
        self._writer: Any
        if self._stdout:
            if fmt != ARROW:
                raise UsageError(f"--format {fmt} cannot be written to stdout; give -o FILE")
            self._writer = ipc.new_stream(sys.stdout.buffer, schema)
        else:
            assert dest is not None  # self._stdout is (dest is None)
            where: Any = str(dest)
            if not _regular_or_new(dest):  # a FIFO or a device: no seeking, so count the position ourselves
                self._stream = _Sequential(open(dest, "wb", buffering=0))
                where = pa.PythonFile(self._stream, mode="w")
            else:
                from vecpipe.formats.targets import WriteBehind

                self._behind = WriteBehind(dest)
            if fmt == PARQUET:
                import pyarrow.parquet as pq  # not at import: a text-only command never loads it

                self._writer = pq.ParquetWriter(
                    where, schema, compression=parquet_compression(schema, compression), write_statistics=False,
                    store_schema=True, write_page_checksum=True,
                )
            else:
                self._writer = ipc.new_file(where, schema)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.Table):
            for b in batch.to_batches():
                self._write_batch(b)
        else:
            self._write_batch(batch)

    def _write_batch(self, batch: pa.RecordBatch, custom_metadata: dict[str, str] | None = None) -> None:
        if batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        if custom_metadata and self.format == ARROW:
            self._writer.write_batch(batch, custom_metadata=custom_metadata)
        else:
            self._writer.write_batch(batch)
        self.rows += batch.num_rows
        if self._stdout:
            sys.stdout.buffer.flush()
        elif self._behind is not None:
            self._behind.poll()

    def write_last(self, batch: pa.RecordBatch, custom_metadata: dict[str, str]) -> None:
        """Write a batch carrying ``custom_metadata`` (Arrow; Parquet keeps it in its footer)."""
        if self.format == PARQUET:
            self._write_batch(batch)
            self._writer.add_key_value_metadata(custom_metadata)
        else:
            self._write_batch(batch, custom_metadata)

    _stream: _Sequential | None = None
    _behind: Any = None  # a WriteBehind on a regular file

    def close(self) -> None:
        self._writer.close()
        if self._stream is not None:
            self._stream.close()
        if self._behind is not None:
            self._behind.close()
        if self._stdout:
            sys.stdout.buffer.flush()

    def abort(self) -> None:
        if self._behind is not None:
            self._behind.close()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


def parquet_compression(schema: pa.Schema, codec: str) -> str | dict[str, str]:
    """Parquet compression per column: ``codec``, except columns of float vectors (a list of floats
    per row), stored plain. Float embeddings shrink by about 7% under zstd (14% with byte-stream
    split) and decode at half the speed, so a table of them reads faster plain
    (``bench/bench_commands.py``); codes, ids and text keep ``codec``. Decided by the schema alone,
    so a resumed or merged table is byte-identical to one written at once."""
    if codec == "none":
        return codec
    def is_list(t: pa.DataType) -> bool:
        return pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)

    chosen: dict[str, str] = {}
    for field in schema:
        t, vector = field.type, False
        while is_list(t):  # a vector, or a list of vectors (multi-vector tables)
            t, vector = t.value_type, True
        chosen[field.name] = "none" if vector and pa.types.is_floating(t) else codec
    return chosen


def _regular_or_new(path: Path) -> bool:
    import os
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


class _Sequential:
    """A write-only file that knows its position without seeking (for FIFOs and devices)."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.pos = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        while view:
            n = self.raw.write(view)
            view = view[n:]
        self.pos += len(memoryview(data))
        return len(memoryview(data))

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close()


def write_table(table: pa.Table, out: str | Path | None, fmt: str | None = None) -> None:
    """Write a whole table to ``out`` (a file written atomically, a device, or stdout)."""
    write_batches(table.to_batches(), table.schema, out, fmt)


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: str | Path | None, fmt: str | None = None) -> int:
    from vecpipe.formats import registry
    from vecpipe.formats.targets import resolve_target

    target = resolve_target(out)
    form = registry.output_format(registry.VECTORS, out, fmt)
    if target.kind == "stdout":
        refuse_terminal(form.binary)
    with target.writing() as dest, TableSink(dest, schema, form.name) as sink:
        for b in batches:
            sink.write(b)
        return sink.rows

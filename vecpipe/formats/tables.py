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
import pyarrow.parquet as pq

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
            if fmt == PARQUET:  # opened at the first batch, whose vectors decide their columns' compression
                self._where, self._compression, self._writer = where, compression, None
            else:
                self._writer = ipc.new_file(where, schema)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.Table):
            for b in batch.to_batches():
                self._write_batch(b)
        else:
            self._write_batch(batch)

    def _open_parquet(self, first: pa.RecordBatch | None) -> None:
        self._writer = pq.ParquetWriter(
            self._where, self.schema, compression=parquet_compression(self.schema, first, self._compression),
            write_statistics=False, store_schema=True, write_page_checksum=True,
        )

    def _write_batch(self, batch: pa.RecordBatch, custom_metadata: dict[str, str] | None = None) -> None:
        if batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        if self._writer is None:
            self._open_parquet(batch)
        if custom_metadata and self.format == ARROW:
            self._writer.write_batch(batch, custom_metadata=custom_metadata)
        else:
            self._writer.write_batch(batch)
        self.rows += batch.num_rows
        if self._stdout:
            sys.stdout.buffer.flush()

    def write_last(self, batch: pa.RecordBatch, custom_metadata: dict[str, str]) -> None:
        """Write a batch carrying ``custom_metadata`` (Arrow; Parquet keeps it in its footer)."""
        if self.format == PARQUET:
            self._write_batch(batch)
            self._writer.add_key_value_metadata(custom_metadata)
        else:
            self._write_batch(batch, custom_metadata)

    _stream: _Sequential | None = None
    _writer: Any = None

    def close(self) -> None:
        if self._writer is None:
            self._open_parquet(None)
        self._writer.close()
        if self._stream is not None:
            self._stream.close()
        if self._stdout:
            sys.stdout.buffer.flush()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()


#: A Parquet column of vectors (a list of numbers per row) is stored zstd-compressed only when a
#: sample of its first batch shrinks below this share. Float embeddings shrink by about 7%: stored
#: plain, they decode in half the time (``bench/bench_commands.py``); codes that do compress keep zstd.
COMPRESS_BELOW = 0.9
_SAMPLE_BYTES = 1 << 20


def parquet_compression(schema: pa.Schema, first: pa.RecordBatch | None, codec: str) -> str | dict[str, str]:
    """Parquet compression per column: ``codec`` everywhere, except vector columns that do not pay."""
    if first is None or codec == "none":
        return codec
    import zstandard

    chosen: dict[str, str] = {}
    for i, field in enumerate(schema):
        chosen[field.name] = codec
        t = field.type
        if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
            continue
        if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
            continue
        values = first.column(i).flatten()
        width = t.value_type.bit_width // 8
        sample = values.slice(0, max(1, _SAMPLE_BYTES // width))
        buf = sample.buffers()[1]
        if buf is None or sample.null_count:
            continue
        raw = memoryview(buf)[sample.offset * width:(sample.offset + len(sample)) * width]
        if len(raw) >= 4096 and len(zstandard.ZstdCompressor(level=1).compress(raw)) >= COMPRESS_BELOW * len(raw):
            chosen[field.name] = "none"
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

"""Table sinks: Arrow IPC stream on stdout, or a file chosen by extension, written atomically.

Batches are written as they are produced (streaming). A file appears under its final name only when
the sink closes without error.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
import sys
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from vecpipe.errors import InputError, UsageError
from vecpipe.pipeline.atomic import atomic_path

ARROW = "arrow"  # IPC stream (stdout) / IPC file (.arrow)
PARQUET = "parquet"

_EXT_FORMATS = {".parquet": PARQUET, ".pq": PARQUET, ".arrow": ARROW, ".arrows": ARROW, ".ipc": ARROW, ".feather": ARROW}


def is_stdout(out: str | Path | None) -> bool:
    return out is None or str(out) == "-"


def format_for(out: str | Path | None, fmt: str | None = None, extra: dict[str, str] | None = None) -> str:
    """The output format: ``fmt`` if given, else by the file's extension, else Arrow."""
    if fmt:
        return fmt
    if is_stdout(out):
        return ARROW
    suffix = Path(str(out)).suffix.lower()
    known = dict(_EXT_FORMATS)
    known.update(extra or {})
    if suffix not in known:
        names = ", ".join(sorted(known))
        raise UsageError(f"{out}: unknown output extension {suffix or '(none)'!r}; use one of {names} or --format")
    return known[suffix]


def refuse_terminal(binary: bool = True) -> None:
    if binary and sys.stdout.isatty():
        raise InputError(
            "refusing to write binary Arrow data to a terminal; pipe it into another stage, redirect it, or give -o FILE"
        )


def stdout_binary():
    return sys.stdout.buffer


class Sink(ABC):
    """A writer used as a context manager: ``close()`` on success, ``abort()`` on an exception."""

    @abstractmethod
    def close(self) -> None:
        """Finish the output and put it in place."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the partial output."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TableSink(Sink):
    """Write record batches of one schema to stdout or a file, atomically for files."""

    def __init__(self, out: str | Path | None, schema: pa.Schema, fmt: str | None = None, compression: str = "zstd"):
        self.out = out
        self.schema = schema
        self.format = format_for(out, fmt)
        self.rows = 0
        self._stack = contextlib.ExitStack()
        if is_stdout(out):
            if self.format != ARROW:
                raise UsageError(f"--format {self.format} cannot be written to stdout; give -o FILE")
            refuse_terminal()
            self._writer = ipc.new_stream(stdout_binary(), schema)
        else:
            tmp = self._stack.enter_context(atomic_path(out))
            if self.format == PARQUET:
                self._writer = pq.ParquetWriter(
                    tmp, schema, compression=compression, write_statistics=False, store_schema=True,
                    write_page_checksum=True,
                )
            else:
                self._writer = ipc.new_file(str(tmp), schema)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(batch, pa.Table):
            for b in batch.to_batches():
                self._write_batch(b)
        else:
            self._write_batch(batch)

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        if self.format == PARQUET:
            self._writer.write_batch(batch)
        else:
            self._writer.write_batch(batch)
        self.rows += batch.num_rows
        if is_stdout(self.out):
            stdout_binary().flush()

    def close(self) -> None:
        self._writer.close()
        if is_stdout(self.out):
            stdout_binary().flush()
        self._stack.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_table(table: pa.Table, out: str | Path | None, fmt: str | None = None) -> None:
    with TableSink(out, table.schema, fmt) as sink:
        sink.write(table)


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, out: str | Path | None, fmt: str | None = None) -> int:
    with TableSink(out, schema, fmt) as sink:
        for b in batches:
            sink.write(b)
        return sink.rows

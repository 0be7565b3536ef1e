"""The embed stage as a library function: text records in, a vectors table out, streamed."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import Fields, read_records
from vecpipe.formats.tables import TableSink
from vecpipe.formats.vectors import vectors_batch, vectors_schema
from vecpipe.pipeline.manifest import fingerprint
from vecpipe.pipeline.progress import Progress

READ_BATCH = 2048  # texts handed to the encoder at a time: the window it sorts by length


def vectors_metadata(encoder, fields: Fields, inputs: dict[str, Any] | None) -> dict[str, Any]:
    info = dict(encoder.info)
    normalized = bool(info.get("normalize", True))
    return metadata.new(
        "vectors",
        dim=encoder.dim,
        dtype="float32",
        metric="cos" if normalized else "ip",
        normalized=normalized,
        model=info,
        fields={k: v for k, v in vars(fields).items() if v is not None} or None,
        inputs=inputs,
    )


def count_rows(path: str | Path) -> int | None:
    """Cheap row count of a file input for progress totals (lines of text, Parquet metadata)."""
    if str(path) == "-":
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            fmt = sniff.sniff_bytes(head)
            if fmt == sniff.PARQUET:
                import pyarrow.parquet as pq

                return pq.ParquetFile(path).metadata.num_rows
            if fmt in (sniff.JSONL, sniff.TEXT):
                fh.seek(0)
                n, last = 0, b"\n"
                while chunk := fh.read(1 << 22):
                    n += chunk.count(b"\n")
                    last = chunk[-1:]
                return n + (last != b"\n")
    except OSError:
        return None
    return None


def embed_records(encoder, batches: Iterator[pa.RecordBatch], progress: Progress) -> Iterator[tuple[pa.Array, Any]]:
    """(ids, float32 matrix) per input batch, in input order."""
    pending: collections.deque = collections.deque()

    def texts():
        for batch in batches:
            pending.append(batch.column(0))
            yield batch.column(1).to_pylist()

    for matrix in encoder.encode_batches(texts(), on_progress=lambda n, tokens: progress.advance(n, tokens)):
        yield pending.popleft(), matrix


def embed_file(input: str | Path, out: str | Path | None, encoder, fields: Fields = Fields(),
               fmt: str | None = None, progress: Progress | None = None) -> int:
    """Embed every record of ``input`` and write the vectors to ``out`` (stdout when None); return rows."""
    progress = progress or Progress()
    inputs = {"input": fingerprint(input)} if str(input) != "-" else None
    schema = vectors_schema(encoder.dim, "float32", vectors_metadata(encoder, fields, inputs))
    records = read_records(input, fields, READ_BATCH)
    progress.start("embed", total=count_rows(input), unit="docs")
    try:
        with TableSink(out, schema, fmt) as sink:
            for ids, matrix in embed_records(encoder, records, progress):
                sink.write(vectors_batch(ids, matrix, schema))
            return sink.rows
    finally:
        progress.close()

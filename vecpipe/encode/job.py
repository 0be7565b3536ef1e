"""The embed stage as a library function: text records in, a vectors table out, streamed.

The unit of work is a *block* of consecutive input records (the encoder's window: it sorts and
batches within a block only). Blocks are what make long jobs safe to interrupt and split:

* output record batches are blocks, so the bytes depend only on the input, not on how the work ran;
* with a file output, each finished block is checkpointed beside it (``.NAME.vecpipe-partial/``);
  rerunning the same command after a kill reuses the finished blocks and embeds only the rest, and
  the final file is byte-identical to an uninterrupted run;
* ``shard=(i, n)`` embeds blocks ``i, i+n, i+2n, ...``; :func:`vecpipe.pipeline.merge` interleaves
  the shards back into input order, byte-identical to the unsharded output.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc

from vecpipe.errors import InputError, UsageError, VecpipeError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import Fields, read_records
from vecpipe.formats.tables import TableSink, is_stdout
from vecpipe.formats.vectors import vectors_batch, vectors_schema
from vecpipe.pipeline.atomic import atomic_open
from vecpipe.pipeline.progress import Progress

BLOCK = 2048  # records per block: the encoder's sorting window, checkpoint and shard unit


def vectors_metadata(encoder, fields: Fields, manifest: dict[str, Any] | None = None,
                     shard: tuple[int, int] | None = None, block: int = BLOCK) -> dict[str, Any]:
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
        block=block,
        shard={"index": shard[0], "count": shard[1]} if shard else None,
        manifest=manifest,
    )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (0 <= I < N) to ``(I, N)``."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N")
    return i, n


def count_rows(path: str | Path) -> int | None:
    """Cheap row count of a file input for progress totals (lines of text, Parquet metadata)."""
    if str(path) == "-":
        return None
    try:
        with open(path, "rb") as fh:
            fmt = sniff.sniff_bytes(fh.read(8))
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


def blocks(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut record batches into blocks of exactly ``size`` rows (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - n, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch = batch.slice(take)
            n += take
            if n == size:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
                pending, n = [], 0
    if n:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def embed_records(encoder, batches: Iterator[pa.RecordBatch], progress: Progress) -> Iterator[tuple[pa.Array, Any]]:
    """(ids, float32 matrix) per input batch, in input order."""
    pending: list[pa.Array] = []
    done = [0, 0]

    def texts():
        for batch in batches:
            pending.append(batch.column(0))
            yield batch.column(1).to_pylist()

    def advance(n_texts: int, n_tokens: int) -> None:
        progress.advance(n_texts - done[0], n_tokens - done[1])
        done[0], done[1] = n_texts, n_tokens

    for matrix in encoder.encode_batches(texts(), on_progress=advance):
        yield pending.pop(0), matrix


class Checkpoint:
    """Finished blocks of one embed job, kept beside its output until the output is complete."""

    def __init__(self, out: Path, schema: pa.Schema):
        self.dir = out.parent / f".{out.name}.vecpipe-partial"
        self.schema = schema
        self._stamp = metadata.dumps(metadata.read(schema)).decode()

    def reusable(self) -> int:
        """How many leading blocks a previous run of the same job finished; stale state is removed."""
        stamp = self.dir / "job.json"
        if stamp.is_file():
            try:
                if json.loads(stamp.read_text()).get("meta") == self._stamp:
                    n = 0
                    while (self.dir / self._name(n)).is_file():
                        n += 1
                    return n
            except ValueError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(stamp, "w") as fh:
            json.dump({"meta": self._stamp}, fh)
        return 0

    @staticmethod
    def _name(k: int) -> str:
        return f"block-{k:08d}.arrow"

    def load(self, k: int) -> pa.RecordBatch:
        with ipc.open_file(self.dir / self._name(k)) as reader:
            return reader.get_batch(0)

    def save(self, k: int, batch: pa.RecordBatch) -> None:
        with atomic_open(self.dir / self._name(k)) as fh:
            with ipc.new_file(fh, self.schema) as writer:
                writer.write_batch(batch)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def embed_file(input: str | Path, out: str | Path | None, encoder, fields: Fields = Fields(),
               fmt: str | None = None, progress: Progress | None = None, manifest: dict[str, Any] | None = None,
               shard: tuple[int, int] | None = None, skip_bad: Callable[[str, str], None] | None = None,
               checkpoint: bool = True) -> dict[str, int]:
    """Embed the records of ``input`` (or one shard of them) and write the vectors to ``out``.

    Returns counts: ``rows`` written, ``reused`` rows taken from a checkpoint, ``embedded`` rows.
    """
    progress = progress or Progress()
    block = int(getattr(encoder, "window", BLOCK))
    schema = vectors_schema(encoder.dim, "float32", vectors_metadata(encoder, fields, manifest, shard, block))
    records: Iterator[pa.RecordBatch] = blocks(read_records(input, fields, block, skip_bad=skip_bad), block)
    if shard:
        index, count = shard
        records = (b for k, b in enumerate(records) if k % count == index)
    records = iter(records)
    total = count_rows(input)
    if total is not None and shard:
        total = None
    ckpt = Checkpoint(Path(out), schema) if checkpoint and not is_stdout(out) and manifest is not None else None
    reuse = ckpt.reusable() if ckpt else 0
    counts = {"rows": 0, "reused": 0, "embedded": 0}
    progress.start("embed", total=total, unit="docs")
    try:
        with TableSink(out, schema, fmt) as sink:
            k = 0
            for batch in itertools.islice(records, reuse):
                saved = ckpt.load(k)
                if not saved.column(0).equals(batch.column(0)):
                    ckpt.remove()
                    raise InputError(f"{ckpt.dir}: checkpoint does not match the input; rerun to start over")
                sink.write(saved)
                counts["reused"] += saved.num_rows
                progress.advance(saved.num_rows)
                k += 1
            if counts["reused"]:
                progress.note(f"resumed from checkpoint: reused {counts['reused']} rows")
            for ids, matrix in embed_records(encoder, records, progress):
                out_batch = vectors_batch(ids, matrix, schema)
                if ckpt:
                    ckpt.save(k, out_batch)
                k += 1
                sink.write(out_batch)
                counts["embedded"] += out_batch.num_rows
            counts["rows"] = sink.rows
        if ckpt:
            ckpt.remove()
        return counts
    except VecpipeError:
        # Bad data or a failed model: the checkpoint cannot be resumed (fixing the input changes its
        # fingerprint). Interrupts and kills keep it, to be resumed.
        if ckpt:
            ckpt.remove()
        raise
    finally:
        progress.close()

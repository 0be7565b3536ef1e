"""The merge stage: join the shards of a sharded embed (``--shard I/N``) back into one artifact, in input order.

Shard ``I`` of ``N`` holds blocks ``I, I+N, I+2N, ...`` of the input; merging interleaves the blocks
round-robin. Shards must come from the same job: same model, dimension, parameters and input
fingerprint; they differ only in their shard index. Each shard must be complete: its last block
carries the number of rows the shard holds (a shard streamed to stdout and cut short is refused).
The merged table carries the metadata of the unsharded job, so it is byte-identical to an unsharded
run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import CORRUPT, corrupt_error, guarded_batches
from vecpipe.formats.vectors import UniqueIds, dtype_name, vectors_schema
from vecpipe.pipeline.runner import Context, Stage, opt, rec
from vecpipe.stages.embed import SHARD_END, blocks


def _unsharded(meta: dict[str, Any]) -> dict[str, Any]:
    base = copy.deepcopy(meta)
    base.pop("shard", None)
    params = (base.get("manifest") or {}).get("params")
    if isinstance(params, dict):
        params.pop("shard", None)
    return base


def _diff(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                return _diff(a[key], b[key], f"{prefix}{key}.")
            return f"{prefix}{key}"
    return ""


def _declared_rows(custom: Any) -> int | None:
    """The row count a shard's end mark records (see :data:`vecpipe.stages.embed.SHARD_END`)."""
    if not custom:
        return None
    value = dict(custom).get(SHARD_END.encode(), dict(custom).get(SHARD_END))
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _Shard:
    def __init__(self, path: str | Path):
        self.name = str(path)
        self.inp = sniff.Input(path)
        if self.inp.format not in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            raise InputError(f"{self.name}: not a vectors table; merge takes the outputs of vecpipe embed --shard")
        self.declared: int | None = None
        self.rows = 0
        try:
            self.schema, batches = self._open()
        except CORRUPT as exc:
            raise corrupt_error(self.name, self.inp.format, exc) from None
        self.batches = self._counted(guarded_batches(batches, self.name, self.inp.format))
        self.meta = metadata.read(self.schema)
        shard = self.meta.get("shard")
        if self.meta.get("kind") != "vectors" or not isinstance(shard, dict):
            raise InputError(f"{self.name}: not a shard (no shard in its metadata); make shards with vecpipe embed --shard I/N")
        self.index, self.count = int(shard["index"]), int(shard["count"])
        self.block = int(self.meta.get("block") or 0)

    def _open(self) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The schema and batches, noting the end mark (Parquet footer, last Arrow batch)."""
        if self.inp.format == sniff.PARQUET:
            pf = pq.ParquetFile(self.inp.arrow_source(), page_checksum_verification=True)
            self.declared = _declared_rows(pf.metadata.metadata)
            return pf.schema_arrow, pf.iter_batches(batch_size=65536)
        if self.inp.format == sniff.ARROW_FILE:
            reader = ipc.open_file(self.inp.arrow_source())
            n = reader.num_record_batches
            if n:
                self.declared = _declared_rows(reader.get_batch_with_custom_metadata(n - 1).custom_metadata)
            return reader.schema, (reader.get_batch(i) for i in range(n))
        stream = ipc.open_stream(self.inp.stream)
        return stream.schema, self._stream(stream)

    def _stream(self, reader: Any) -> Iterator[pa.RecordBatch]:
        while True:
            try:
                item = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                return
            self.declared = _declared_rows(item.custom_metadata)  # the last batch's mark is what counts
            yield item.batch

    def _counted(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            yield batch

    def check_complete(self) -> None:
        """Refuse a shard cut short: its rows must be the count its end mark records."""
        if self.declared is None:
            raise InputError(f"{self.name}: incomplete shard (it lacks the end mark vecpipe embed --shard writes "
                             "last); rerun that shard")
        if self.rows != self.declared:
            raise InputError(f"{self.name}: incomplete shard: holds {self.rows} rows but was written with "
                             f"{self.declared}; rerun that shard")


def merged_metadata(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The metadata the merged table will carry (validates the shards without reading their rows)."""
    shards = [_Shard(p) for p in paths]
    try:
        return _check(shards)
    finally:
        for s in shards:
            s.inp.close()


def _check(shards: list[_Shard]) -> dict[str, Any]:
    first = shards[0]
    base = _unsharded(first.meta)
    for s in shards[1:]:
        other = _unsharded(s.meta)
        if other != base:
            raise InputError(
                f"{s.name}: not a shard of the same job as {first.name} ({_diff(base, other)} differs); "
                "merge only shards made by one command with different --shard indices"
            )
    count = first.count
    indices = sorted(s.index for s in shards)
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        dup = sorted({i for i in indices if indices.count(i) > 1})
        detail = f"missing {', '.join(f'{i}/{count}' for i in missing)}" if missing else f"repeated {dup}"
        raise InputError(f"{first.name}: shards do not cover {count} of {count} ({detail}); give every shard exactly once")
    return base


@dataclass
class Merge(Stage):
    """Merge the shards of one embed job into one vectors table, in input order."""

    name = "merge"

    shards: list[str] = field(default_factory=list)
    output: str | None = opt(None)
    format: str | None = rec(None)

    def inputs(self) -> dict[str, str | None]:
        return {f"shard{i}": p for i, p in enumerate(self.shards)}

    def check(self) -> None:
        if not self.shards:
            raise UsageError("merge needs the shard files of one vecpipe embed --shard job")

    def manifest(self) -> dict[str, Any] | None:
        # The merged table records the unsharded job's manifest: it is up to date when that matches.
        return merged_metadata(self.shards).get("manifest")

    def run(self, ctx: Context) -> int:
        opened = shards = [_Shard(p) for p in self.shards]
        try:
            base = _check(shards)
            first = shards[0]
            shards.sort(key=lambda s: s.index)
            emb_type = first.schema.field("embedding").type
            # Parquet names the list item "element": rebuild the canonical schema of an embed output.
            schema = vectors_schema(emb_type.list_size, dtype_name(emb_type.value_type), base)
            iters: list[Iterator[pa.RecordBatch]] = [blocks(s.batches, s.block) for s in shards]
            seen = UniqueIds("merged shards")
            rows = 0
            with ctx.table_sink(schema) as sink:
                short = None
                while iters:
                    alive = []
                    for s, it in zip(shards, iters):
                        batch = next(it, None)
                        if batch is None:
                            continue
                        if short is not None:
                            raise InputError(f"{short}: a short block before the end of the input; the shard is incomplete or from another job")
                        if batch.num_rows < s.block:
                            short = s.name
                        seen.name = s.name
                        seen.add(batch.column(0))
                        sink.write(pa.RecordBatch.from_arrays(
                            [batch.column(0), batch.column(1).cast(sink.schema.field("embedding").type)], schema=sink.schema))
                        rows += batch.num_rows
                        alive.append((s, it))
                    shards = [s for s, _ in alive]
                    iters = [it for _, it in alive]
                for s in opened:
                    s.check_complete()
            if ctx.target.kind != "stdout":
                ctx.done(f"wrote {ctx.target.display}: {rows} rows from {len(self.shards)} shards")
            return rows
        finally:
            for s in opened:
                s.inp.close()

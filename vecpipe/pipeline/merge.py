"""Join the shards of a sharded embed (``--shard I/N``) back into one artifact, in input order.

Shard ``I`` of ``N`` holds blocks ``I, I+N, I+2N, ...`` of the input; merging interleaves the blocks
round-robin. Shards must come from the same job: same model, dimension, parameters and input
fingerprint; they differ only in their shard index. The merged table carries the metadata of the
unsharded job, so it is byte-identical to an unsharded run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import open_arrow_batches
from vecpipe.formats.tables import TableSink
from vecpipe.formats.vectors import dtype_name, vectors_schema


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


class _Shard:
    def __init__(self, path: str | Path):
        self.name = str(path)
        self.inp = sniff.Input(path)
        if self.inp.format not in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            raise InputError(f"{self.name}: not a vectors table; merge takes the outputs of vecpipe embed --shard")
        self.schema, self.batches = open_arrow_batches(self.inp)
        self.meta = metadata.read(self.schema)
        shard = self.meta.get("shard")
        if self.meta.get("kind") != "vectors" or not isinstance(shard, dict):
            raise InputError(f"{self.name}: not a shard (no shard in its metadata); make shards with vecpipe embed --shard I/N")
        self.index, self.count = int(shard["index"]), int(shard["count"])
        self.block = int(self.meta.get("block") or 0)


def merged_metadata(paths: list[str | Path]) -> dict[str, Any]:
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


def merge_shards(paths: list[str | Path], out: str | Path | None, fmt: str | None = None) -> int:
    """Merge shard files into ``out``; return the number of rows."""
    from vecpipe.encode.job import blocks

    shards = [_Shard(p) for p in paths]
    try:
        base = _check(shards)
        first = shards[0]
        shards.sort(key=lambda s: s.index)
        emb_type = first.schema.field("embedding").type
        # Parquet names the list item "element": rebuild the canonical schema of an embed output.
        schema = vectors_schema(emb_type.list_size, dtype_name(emb_type.value_type), base)
        iters: list[Iterator[pa.RecordBatch]] = [blocks(s.batches, s.block) for s in shards]
        rows = 0
        with TableSink(out, schema, fmt) as sink:
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
                    sink.write(pa.RecordBatch.from_arrays(
                        [batch.column(0), batch.column(1).cast(schema.field("embedding").type)], schema=schema))
                    rows += batch.num_rows
                    alive.append((s, it))
                shards = [s for s, _ in alive]
                iters = [it for _, it in alive]
        return rows
    finally:
        for s in shards:
            s.inp.close()

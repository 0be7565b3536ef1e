"""The embed stage: text records in, a vectors table out, streamed.

The unit of work is a *block* of consecutive input records (the encoder's window: it sorts and
batches within a block only). Blocks are what make long jobs safe to interrupt and split:

* output record batches are blocks, so the bytes depend only on the input, not on how the work ran;
* with a file output, each finished block is checkpointed beside it (``.NAME.vecpipe-partial/``);
  rerunning the same command after a kill reuses the finished blocks and embeds only the rest, and
  the final file is byte-identical to an uninterrupted run;
* ``shard=(i, n)`` embeds blocks ``i, i+n, i+2n, ...``; :mod:`vecpipe.stages.merge` interleaves the
  shards back into input order, byte-identical to the unsharded output. The last block of a shard
  carries the shard's row count, so merge can tell a complete shard from a cut one.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata
from vecpipe.formats.multivectors import KIND, multivectors_batch, multivectors_schema
from vecpipe.formats.records import Fields, count_rows, read_records
from vecpipe.formats.vectors import vectors_batch, vectors_schema
from vecpipe.pipeline.background import Background
from vecpipe.pipeline.progress import Progress
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec

#: special tokens ([CLS], [SEP]) of a --multi-vector embedding: dropped unless --special-tokens keep
DEFAULT_TOKENS = "drop"
TOKEN_MODES = ("keep", "drop")
BLOCK = 2048  # records per block: the encoder's sorting window, checkpoint and shard unit
SHARD_END = "vecpipe.shard_rows"  # custom metadata of a shard's last block: the rows the shard holds


def vectors_metadata(encoder: Any, fields: Fields, shard: tuple[int, int] | None = None, block: int = BLOCK) -> dict[str, Any]:
    info = dict(encoder.info)
    normalized = bool(info.get("normalize", True))
    multi = getattr(encoder, "tokens", None) is not None
    return metadata.new(
        KIND if multi else "vectors",
        multi_vector=True if multi else None,
        dim=encoder.dim,
        dtype="float32",
        metric="cos" if normalized else "ip",
        normalized=normalized,
        model=info,
        fields={k: v for k, v in vars(fields).items() if v is not None} or None,
        block=block,
        shard={"index": shard[0], "count": shard[1]} if shard else None,
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


def embed_records(encoder: Any, batches: Any, progress: Progress) -> Iterator[tuple[pa.Array, Any]]:
    """(ids, float32 matrix) per input batch of text records, in input order."""
    pending: list[pa.Array] = []
    done = [0, 0]

    def texts() -> Iterator[list[str]]:
        for batch in batches:
            pending.append(batch.column(0))
            yield batch.column(1).to_pylist()

    def advance(n_texts: int, n_tokens: int) -> None:
        progress.advance(n_texts - done[0], n_tokens - done[1])
        done[0], done[1] = n_texts, n_tokens

    for matrix in encoder.encode_batches(texts(), on_progress=advance):
        yield pending.pop(0), matrix


def model_ref(model: str | Path | None) -> dict[str, str]:
    """How a manifest records a model: its name and the sha256 of its weights."""
    from vecpipe.encode.model import resolve_model

    spec = resolve_model(model)
    return {"name": spec.name, "sha256": spec.sha256}


def announce_device(ctx: Context, encoder: Any) -> None:
    """``--device auto`` says once on stderr when it took the GPU."""
    if ctx.device == "auto" and getattr(encoder, "device", "cpu") == "cuda":
        ctx.note(f"--device auto: the model runs on CUDA ({getattr(encoder, 'precision', None) or 'fp32'})")


@dataclass
class Embed(Stage):
    """Embed text records (BEIR/generic JSONL, TSV, Parquet, Arrow) into a vectors table."""

    name = "embed"
    devices = ("auto", "cpu", "cuda")
    engines = ("local", "ray")

    input: str | list[str] = inp("-")
    output: str | None = opt(None)
    model: str | None = rec(None)
    pooling: str | None = rec(None)
    max_length: int | None = rec(None)
    prefix: str = rec("")
    batch_size: int | None = rec(None, omit_default=True)
    precision: str = rec("auto")
    fields: Fields = rec(Fields())
    shard: str | None = rec(None)
    skip_bad: bool = rec(False)
    format: str | None = rec(None)
    threads: int | None = opt(None)
    checkpoints: bool = opt(True)
    cache: str | None = opt(None)
    no_cache: bool = opt(False)
    cache_size: str | None = opt(None)
    multi_vector: bool = rec(False, omit_default=True)
    special_tokens: str | None = rec(None, omit_default=True)

    def sources(self) -> list[str]:
        """The inputs, each file, directory, glob or URI expanded in order (formats.dataset)."""
        from vecpipe.formats.dataset import expand_inputs

        given = [self.input] if isinstance(self.input, str) else list(self.input)
        return expand_inputs(given or ["-"])

    def inputs(self) -> dict[str, str | None]:
        paths = self.sources()
        if len(paths) == 1:
            return {"input": paths[0]}
        return {f"input{i}": p for i, p in enumerate(paths)}

    def directory_writer(self, engine: Any) -> Any:
        if engine.name != "ray":
            return None
        from vecpipe.stages.embed_ray import run_ray_embed

        return lambda engine, options: run_ray_embed(self, engine, options)

    def check(self) -> None:
        parse_shard(self.shard)
        if self.special_tokens is not None and not self.multi_vector:
            raise UsageError("--special-tokens applies with --multi-vector only")
        if self.special_tokens is not None and self.special_tokens not in TOKEN_MODES:
            raise UsageError(f"--special-tokens {self.special_tokens}: expected one of {', '.join(TOKEN_MODES)}")
        if self.multi_vector and self.shard:
            raise UsageError("--shard: vecpipe merge joins one-vector-per-row shards only; embed a --multi-vector table in one run")
        if self.multi_vector and (self.pooling is not None or self.precision not in (None, "auto")):
            raise UsageError("--multi-vector keeps one vector per token: --pooling and --precision do not apply")
        if self.no_cache and (self.cache is not None or self.cache_size is not None):
            raise UsageError("--no-cache: --cache and --cache-size do not apply")
        if self.cache_size is not None:
            from vecpipe.encode.cache import parse_size

            try:
                parse_size(self.cache_size)
            except ValueError:
                raise UsageError(f"--cache-size {self.cache_size}: give a size such as 4GiB, 500MB or 1048576") from None

    def open_cache(self, ctx: Context, encoder: Any) -> Any:
        """The encoder behind the embedding cache (vecpipe.encode.cache), or as it is with --no-cache
        (or VECPIPE_EMBED_CACHE=off); a cache that cannot be opened is a note, not a failure."""
        import os

        if self.no_cache or os.environ.get("VECPIPE_EMBED_CACHE", "").lower() in ("off", "0", "no"):
            return encoder
        if self.multi_vector:  # the cache holds one vector per text
            return encoder
        from vecpipe.encode.cache import CachedEncoder, EmbeddingCache, default_dir

        space = {"model": {k: v for k, v in encoder.info.items()}, "device": getattr(encoder, "device", "cpu")}
        space["dim"] = encoder.dim
        root = Path(self.cache) if self.cache else default_dir()
        try:
            return CachedEncoder(encoder, EmbeddingCache(root, space))
        except OSError as exc:
            ctx.note(f"the embedding cache {root} cannot be used ({exc.strerror or exc}); embedding everything")
            return encoder

    def close_cache(self, ctx: Context, encoder: Any) -> None:
        cache = getattr(encoder, "cache", None)
        if cache is None:
            return
        from vecpipe.encode.cache import DEFAULT_CAP, parse_size, prune

        try:
            cache.close()
            cap = parse_size(self.cache_size) if self.cache_size else DEFAULT_CAP
            prune(cache.root, cap)
        except OSError as exc:
            ctx.note(f"the embedding cache {cache.root} could not be updated ({exc.strerror or exc})")
        if cache.hits:
            ctx.done(f"cache: {cache.hits} vectors reused, {cache.misses} embedded")

    def recorded(self, name: str, value: Any) -> Any:
        if name == "model":
            return model_ref(value)
        return super().recorded(name, value)

    def run(self, ctx: Context) -> dict[str, int]:
        from vecpipe.encode import load_encoder

        shard = parse_shard(self.shard)
        encoder = load_encoder(model=self.model, pooling=self.pooling, max_length=self.max_length, prefix=self.prefix,
                               batch_size=self.batch_size, threads=self.threads, device=ctx.device, precision=self.precision,
                               on_note=ctx.note, tokens=(self.special_tokens or DEFAULT_TOKENS) if self.multi_vector else None)
        announce_device(ctx, encoder)
        encoder = self.open_cache(ctx, encoder)
        try:
            return self._embed(ctx, encoder, shard)
        finally:
            self.close_cache(ctx, encoder)

    def _embed(self, ctx: Context, encoder: Any, shard: tuple[int, int] | None) -> dict[str, int]:
        skipped: list[str] = []

        def on_bad(where: str, reason: str) -> None:
            skipped.append(where)
            ctx.note(f"skipped {where}: {reason}")

        block = int(getattr(encoder, "window", BLOCK))
        paths = self.sources()
        opened = [ctx.input("input", p) for p in paths]
        # blocks are cut per input: the same blocks --engine ray embeds, so the same vectors
        records: Iterator[pa.RecordBatch] = itertools.chain.from_iterable(
            blocks(read_records(source, self.fields, block, skip_bad=on_bad if self.skip_bad else None), block) for source in opened)
        if len(opened) > 1:
            records = _unique_across(records, paths)
        if shard:
            index, count = shard
            records = (b for k, b in enumerate(records) if k % count == index)
        records = iter(records)
        counted = [count_rows(source) for source in opened]
        total = None if shard or None in counted else sum(c for c in counted if c is not None)
        counts = {"rows": 0, "reused": 0, "embedded": 0}
        progress = ctx.progress
        progress.start("embed", total=total, unit="docs")
        meta = vectors_metadata(encoder, self.fields, shard, block)
        schema = multivectors_schema(encoder.dim, meta) if self.multi_vector else vectors_schema(encoder.dim, "float32", meta)
        to_batch = multivectors_batch if self.multi_vector else vectors_batch
        with ctx.table_sink(schema) as sink:
            ckpt = ctx.checkpoint(sink.schema) if self.checkpoints else None
            reuse = ckpt.reusable() if ckpt else 0
            try:
                out = _ShardEnd(sink) if shard else sink
                k = 0
                for batch in itertools.islice(records, reuse):
                    assert ckpt is not None
                    saved = ckpt.load(k)
                    if not saved.column(0).equals(batch.column(0)):
                        ckpt.remove()
                        raise InputError(f"{ckpt.dir}: checkpoint does not match the input; rerun to start over")
                    out.write(saved)
                    counts["reused"] += saved.num_rows
                    progress.advance(saved.num_rows)
                    k += 1
                if counts["reused"]:
                    progress.note(f"resumed from checkpoint: reused {counts['reused']} rows")

                def worker(batches: Any) -> Iterator[tuple[pa.Array, Any]]:
                    return embed_records(encoder, batches, progress)

                def save(index: int, batch: pa.RecordBatch) -> None:
                    if ckpt:
                        ckpt.save(index, batch)
                    out.write(batch)

                # the blocks are written by a background thread while the encoder works on the next
                with Background() as writer:
                    for ids, matrix in ctx.engine.map_batches(lambda: worker, records):
                        out_batch = to_batch(ids, matrix, sink.schema)
                        writer.submit(functools.partial(save, k, out_batch))
                        k += 1
                        counts["embedded"] += out_batch.num_rows
                if isinstance(out, _ShardEnd):
                    out.finish()
                counts["rows"] = sink.rows
            except Exception:
                # Bad data, a failed model, a full disk: nothing is left behind (fixing the input
                # changes its fingerprint anyway). Interrupts and kills keep it, to be resumed.
                if ckpt:
                    ckpt.remove()
                raise
        if ckpt:
            ckpt.remove()
        if skipped:
            ctx.done(f"skipped {len(skipped)} bad records")
        if counts["reused"]:
            ctx.done(f"reused {counts['reused']} rows from the checkpoint, embedded {counts['embedded']}")
        return counts


def _unique_across(records: Iterator[pa.RecordBatch], paths: list[str]) -> Iterator[pa.RecordBatch]:
    """Refuse an id that occurs in two inputs (each input checks its own ids as it is read)."""
    from vecpipe.formats.vectors import UniqueIds

    seen = UniqueIds(", ".join(paths) if len(paths) <= 3 else f"{paths[0]} ... {paths[-1]}")
    for batch in records:
        seen.add(batch.column(0))
        yield batch


class _ShardEnd:
    """Holds back one block so that a shard's last block can carry the shard's row count."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.held: pa.RecordBatch | None = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.held is not None:
            self.sink.write(self.held)
        self.held = batch
        self.rows += batch.num_rows

    def finish(self) -> None:
        last = self.held if self.held is not None else pa.RecordBatch.from_pylist([], schema=self.sink.schema)
        self.sink.write_last(last, {SHARD_END: json.dumps(self.rows)})

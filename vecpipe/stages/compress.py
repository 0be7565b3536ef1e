"""The quantize and binarize stages: float vectors in, coded vectors out (see :mod:`vecpipe.compress`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vecpipe.compress import Coded, binarize, quantize
from vecpipe.compress.artifact import QUANTIZE_METHODS
from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, sniff
from vecpipe.formats.records import open_arrow_batches
from vecpipe.formats.vectors import Vectors, read_vectors
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec

DEFAULT_NBITS = 8
DEFAULT_TRAIN_SIZE = 100_000
DEFAULT_SEED = 0


def artifact_meta(source: sniff.Input) -> dict[str, Any]:
    """The ``vecpipe`` metadata of a vectors artifact or a .vpi index (its schema or header only)."""
    if source.format == sniff.VPI:
        from vecpipe.formats import vpi

        meta = vpi.read_header(source.local_path(), name=source.name)["meta"]
        return {"kind": "vectors", "dim": meta.get("dim"), "model": meta.get("model"),
                "compression": meta.get("vectors"), "metric": meta.get("metric"), "_index": True}
    if source.format not in sniff.ARROW_FORMATS:
        raise InputError(f"{source.name}: not a vectors artifact; --like needs a file written by vecpipe quantize or binarize")
    schema, _ = open_arrow_batches(source, 1)
    return metadata.read(schema)


def _write(ctx: Context, coded: Coded) -> None:
    with ctx.table_sink(coded.schema) as sink:
        for batch in coded.batches:
            sink.write(batch)


def _with_like(ctx: Context, vecs: Vectors, like: str | None, allow_mismatch: bool) -> dict[str, Any] | None:
    if like is None:
        return None
    source = ctx.input("like")
    other = artifact_meta(source)
    metadata.check_same_model(vecs.meta, other, vecs.name, source.name, "use artifacts of one model", allow_mismatch)
    return other


@dataclass
class Quantize(Stage):
    """Quantize float vectors; the calibration is stored in the output's metadata."""

    name = "quantize"

    vectors: str = inp("-")
    like: str | None = inp(None)
    output: str | None = opt(None)
    to: str | None = rec(None)
    dim: int | None = rec(None)
    m: int | None = rec(None)
    nbits: int | None = rec(None)
    train_size: int | None = rec(None)
    seed: int | None = rec(None)
    format: str | None = rec(None)
    allow_mismatch: bool = rec(False, omit_default=True)

    def check(self) -> None:
        if self.to is not None and self.to not in QUANTIZE_METHODS:
            raise UsageError(f"--to {self.to!r}: choose one of {', '.join(QUANTIZE_METHODS)}")
        if self.to is None and self.like is None and self.dim is None:
            raise UsageError("give --to int8|uint8|fp16|pq (or --like ARTIFACT, or --dim N alone to truncate)")
        pq_only = [name for name, value in (("--m", self.m), ("--nbits", self.nbits), ("--train-size", self.train_size),
                                            ("--seed", self.seed)) if value is not None]
        if pq_only and (self.to != "pq" or self.like is not None):
            why = "with --like the codebooks come from the artifact" if self.like is not None else "they apply to --to pq only"
            raise UsageError(f"{', '.join(pq_only)}: {why}")

    def recorded(self, name: str, value: Any) -> Any:
        defaults = {"nbits": DEFAULT_NBITS, "train_size": DEFAULT_TRAIN_SIZE, "seed": DEFAULT_SEED}
        return defaults[name] if value is None and name in defaults else value

    def run(self, ctx: Context) -> dict[str, Any]:
        vecs = read_vectors(ctx.input("vectors"))
        like = _with_like(ctx, vecs, self.like, self.allow_mismatch)
        coded = quantize(vecs, to=self.to, like=like, like_name=str(self.like), dim=self.dim, m=self.m,
                         nbits=self.recorded("nbits", self.nbits), train_size=self.recorded("train_size", self.train_size),
                         seed=self.recorded("seed", self.seed), on_progress=ctx.note)
        _write(ctx, coded)
        if ctx.target.kind != "stdout":
            ctx.done(f"wrote {ctx.target.display}: {coded.meta['compression']['method']}, dim {coded.meta['dim']}")
        return coded.meta


@dataclass
class Binarize(Stage):
    """Binarize float vectors into uint8 codes of ceil(dim * bits / 8) bytes."""

    name = "binarize"

    vectors: str = inp("-")
    like: str | None = inp(None)
    output: str | None = opt(None)
    bits: int | None = rec(None)
    center: bool = rec(False)
    format: str | None = rec(None)
    allow_mismatch: bool = rec(False, omit_default=True)

    def check(self) -> None:
        if self.bits is not None and not 1 <= self.bits <= 8:
            raise UsageError(f"--bits {self.bits} is outside 1..8; use 1 for sign bits or 2..8 for residual binarization")
        if self.bits is None and self.like is None:
            raise UsageError("give --bits N (1..8) or --like ARTIFACT")
        if self.center and self.like is not None:
            raise UsageError("--center does not apply with --like: the thresholds come from the --like artifact")
        if self.center and self.bits is not None and self.bits > 1:
            raise UsageError("--center applies to --bits 1 only (residual binarization always subtracts the mean)")

    def run(self, ctx: Context) -> dict[str, Any]:
        if self.bits == 1 and not self.center and self.like is None and ctx.target.is_file:
            meta = self._sign_bits_streamed(ctx)
        else:  # thresholds learnt over the whole corpus (or read from --like); stdout gets nothing on failure
            vecs = read_vectors(ctx.input("vectors"))
            like = _with_like(ctx, vecs, self.like, self.allow_mismatch)
            coded = binarize(vecs, bits=self.bits, center=self.center, like=like, like_name=str(self.like))
            _write(ctx, coded)
            meta = coded.meta
        if ctx.target.kind != "stdout":
            comp = meta["compression"]
            ctx.done(f"wrote {ctx.target.display}: {comp['method']} {comp['bits']} bit(s), dim {meta['dim']}")
        return meta

    def _sign_bits_streamed(self, ctx: Context) -> dict[str, Any]:
        """Sign bits batch by batch into the (atomically written) output file: the input is never
        held whole, nor copied into one matrix."""
        from vecpipe.compress.artifact import sign_binarize_parts
        from vecpipe.formats.vectors import iter_vectors

        source = ctx.input("vectors")
        parts = (Vectors(ids, mat, meta, source.name) for ids, mat, meta in iter_vectors(source, unique=True))
        with contextlib.ExitStack() as stack:
            sink = None
            for coded in sign_binarize_parts(parts):
                if sink is None:
                    sink = stack.enter_context(ctx.table_sink(coded.schema))
                for batch in coded.batches:
                    sink.write(batch)
        return coded.meta

"""The fde stage: a multi-vector table in, fixed-dimensional encodings (MUVERA) out, streamed.

The output is an ordinary vectors table (``metric: ip``): build-index, quantize, binarize and search
take it as they take embeddings. Its metadata keeps the source model and adds ``model.fde``: the
role and every parameter and the seed, so that queries encoded otherwise than the documents are
refused wherever the two meet (search, rerank, quantize --like), as vectors of another model are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vecpipe.compress.fde import DEFAULTS, ROLES, FdeEncoder, FdeParams, check_options, make_params, params_from_record
from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata
from vecpipe.formats.multivectors import iter_multivectors
from vecpipe.formats.vectors import vectors_batch, vectors_schema
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec

#: values of encodings held at once before they are written (rows per batch follow from it)
BATCH_VALUES = 1 << 25


@dataclass
class Fde(Stage):
    """Encode each row's set of token vectors as one fixed-dimensional vector (MUVERA)."""

    name = "fde"

    vectors: str = inp("-")
    like: str | None = inp(None)
    output: str | None = opt(None)
    role: str | None = rec(None)
    reps: int | None = rec(None)
    ksim: int | None = rec(None)
    dproj: int | None = rec(None)
    final_dim: int | None = rec(None)
    seed: int | None = rec(None)
    format: str | None = rec(None)
    allow_mismatch: bool = rec(False, omit_default=True)

    def check(self) -> None:
        if self.role is None:
            raise UsageError("give --role query or --role doc (queries' blocks are summed, documents' averaged and filled)")
        if self.role not in ROLES:
            raise UsageError(f"--role {self.role}: expected query or doc")
        given = [flag for flag, v in (("--reps", self.reps), ("--ksim", self.ksim), ("--dproj", self.dproj),
                                      ("--final-dim", self.final_dim), ("--seed", self.seed)) if v is not None]
        if self.like is not None:
            if given:
                raise UsageError(f"{', '.join(given)}: does not apply with --like (the parameters come from the --like encodings)")
            return
        check_options(*self._numbers())

    def _numbers(self) -> tuple[int, int, int, int | None, int]:
        return (DEFAULTS["reps"] if self.reps is None else self.reps, DEFAULTS["ksim"] if self.ksim is None else self.ksim,
                DEFAULTS["dproj"] if self.dproj is None else self.dproj, self.final_dim,
                DEFAULTS["seed"] if self.seed is None else self.seed)

    def recorded(self, name: str, value: Any) -> Any:
        if value is None and name in DEFAULTS and self.like is None:
            return DEFAULTS[name]
        return super().recorded(name, value)

    def _like_params(self, ctx: Context, dim: int, model: dict[str, Any]) -> FdeParams:
        from vecpipe.stages.compress import artifact_meta

        source = ctx.input("like")
        other = artifact_meta(source)
        like_model = dict(other.get("model") or {})
        rec_ = like_model.pop("fde", None)
        if not isinstance(rec_, dict):
            raise InputError(f"{source.name}: holds no fixed-dimensional encodings; --like needs the output of vecpipe fde "
                             "(or an artifact or index made from it)")
        params = params_from_record(rec_, source.name)
        if params.dim != dim:
            raise InputError(f"{self.vectors}: token vectors of dimension {dim}, but {source.name} encodes {params.dim}-dimensional "
                             "ones; embed with the documents' model")
        src = {k: v for k, v in model.items() if k != "fde"}
        metadata.check_same_model({"model": src}, {"model": like_model}, str(self.vectors), source.name,
                                  "embed the queries with the documents' model", self.allow_mismatch)
        return params

    def run(self, ctx: Context) -> dict[str, Any]:
        assert self.role is not None
        source = ctx.input("vectors")
        stream = iter_multivectors(source, batch_size=256)
        first = next(stream)  # iter_multivectors refuses an empty input
        ids, flat, offsets, meta = first
        if meta.get("kind") not in (None, "multivectors"):  # pragma: no cover - iter_multivectors refuses it
            raise InputError(f"{source.name}: expected a multi-vector table")
        dim = int(flat.shape[1] if flat.size else (meta.get("dim") or 0))
        if dim < 1:
            raise InputError(f"{source.name}: its first rows hold no token vectors and it records no dimension")
        model = dict(meta.get("model") or {})
        if "fde" in model:  # pragma: no cover - such a table is a vectors table
            raise InputError(f"{source.name}: already holds fixed-dimensional encodings")
        params = self._like_params(ctx, dim, model) if self.like is not None else make_params(dim, *self._numbers(), name=source.name)
        encoder = FdeEncoder(params, self.role)
        model["fde"] = {**params.record(), "role": self.role}
        out_meta = metadata.new("vectors", dim=params.out_dim, dtype="float32", metric="ip", normalized=False, model=model,
                                fields=meta.get("fields"))
        schema = vectors_schema(params.out_dim, "float32", out_meta)
        rows_per = max(1, BATCH_VALUES // params.raw_dim)
        progress = ctx.progress
        progress.start("fde", unit="rows")
        rows = 0
        with ctx.table_sink(schema) as sink:
            for ids, flat, offsets, _meta in _chain(first, stream):
                if flat.size and flat.shape[1] != dim:
                    raise InputError(f"{source.name}: token vectors change dimension from {dim} to {flat.shape[1]}")
                for start in range(0, len(ids), rows_per):
                    stop = min(len(ids), start + rows_per)
                    a, b = int(offsets[start]), int(offsets[stop])
                    enc = encoder.encode(flat[a:b].reshape(-1, dim), offsets[start:stop + 1] - a)
                    sink.write(vectors_batch(ids.slice(start, stop - start), enc, sink.schema))
                rows += len(ids)
                progress.advance(len(ids))
        if ctx.target.kind != "stdout":
            ctx.done(f"wrote {ctx.target.display}: {rows} {self.role} encodings of dimension {params.out_dim} "
                     f"(reps {params.reps}, ksim {params.ksim}, dproj {params.dproj}"
                     + (f", final dim {params.final_dim}" if params.final_dim else "") + f", seed {params.seed})")
        return out_meta


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest

"""The build-index stage: a vectors table in, a ``.vpi`` index container out."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any

from vecpipe.errors import UsageError
from vecpipe.formats import registry, vpi
from vecpipe.formats.vectors import collect_vectors, iter_vectors
from vecpipe.index.build import DEFAULT_TRAIN_SIZE, build_flat, build_index
from vecpipe.index.specs import applies, parse_spec
from vecpipe.metric import check_metric
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec


@dataclass
class BuildIndex(Stage):
    """Build a faiss index over a vectors table and store it, with ids and metadata, in a .vpi file."""

    name = "build-index"
    output_kind = registry.INDEX

    vectors: str = inp("-")
    output: str | None = opt(None)
    spec: str = rec("Flat")
    metric: str | None = rec(None)
    train_size: int = rec(DEFAULT_TRAIN_SIZE)
    seed: int = rec(0)
    nprobe: int | None = rec(None)
    ef_search: int | None = rec(None)
    threads: int | None = rec(None)
    deterministic: bool = rec(False, omit_default=True)
    compress: bool = rec(True)

    def check(self) -> None:
        if self.metric is not None:
            check_metric(self.metric)
        info = parse_spec(self.spec, binary=self.spec.startswith("B"))  # the spec's grammar, before any work
        for option, value, param, what in (("--nprobe", self.nprobe, "nprobe", "IVF"), ("--ef-search", self.ef_search, "efSearch", "HNSW")):
            if value is not None and not applies(info, param):
                raise UsageError(f"{option} does not apply to --spec {self.spec!r}: it sets the search default of {what} indexes only")

    def run(self, ctx: Context) -> dict[str, Any]:
        source = ctx.input("vectors")
        batches = iter_vectors(source, unique=False)
        first = next(batches)
        rest = itertools.chain([first], batches)
        if self.spec == "Flat" and first[1].dtype.kind == "f" and not isinstance(first[2].get("compression"), dict):
            built = build_flat(rest, source.name, self.metric, self.train_size, self.seed)  # streamed: no whole copy
        else:
            built = build_index(collect_vectors(source.name, rest), spec=self.spec, metric=self.metric,
                                train_size=self.train_size, seed=self.seed, nprobe=self.nprobe, ef_search=self.ef_search,
                                threads=self.threads, on_progress=ctx.note, deterministic=self.deterministic)
        meta = ctx.with_manifest(built.meta)
        dest = ctx.output_path()
        if dest is not None and ctx.target.is_file and built.flat:
            vpi.write_streamed(dest, meta, built.ids, built.write_to, compress=self.compress)  # no copy of the vectors
        else:
            vpi.write(dest if dest is not None else sys.stdout.buffer, meta, built.ids, built.blob, compress=self.compress)
        ctx.done(f"wrote {ctx.target.display}: {meta['count']} vectors, {meta['spec']}, metric {meta['metric']}")
        return meta

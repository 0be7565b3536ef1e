"""The build-index stage: a vectors table in, a ``.vpi`` index container out."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Any

from vecpipe.errors import UsageError
from vecpipe.formats import registry, vpi
from vecpipe.formats.records import Fields
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
    k1: float | None = rec(None, omit_default=True)
    b: float | None = rec(None, omit_default=True)
    bm25_method: str | None = rec(None, omit_default=True)
    stemmer: str | None = rec(None, omit_default=True)
    stopwords: str | None = rec(None, omit_default=True)
    fields: Fields = rec(Fields(), omit_default=True)
    skip_bad: bool = rec(False, omit_default=True)

    @property
    def bm25(self) -> bool:
        return self.spec.strip().upper() == "BM25"

    def bm25_options(self) -> dict[str, Any]:
        from vecpipe.index.bm25 import DEFAULTS

        given = {"k1": self.k1, "b": self.b, "method": self.bm25_method, "stemmer": self.stemmer, "stopwords": self.stopwords}
        return {key: DEFAULTS[key] if value is None else value for key, value in given.items()}

    def check(self) -> None:
        text_only = [flag for flag, value in (("--k1", self.k1), ("--b", self.b), ("--bm25-method", self.bm25_method),
                                              ("--stemmer", self.stemmer), ("--stopwords", self.stopwords),
                                              ("--id-field/--text-field/--title-field", self.fields != Fields() or None),
                                              ("--skip-bad", self.skip_bad or None)) if value is not None]
        if self.bm25:
            from vecpipe.index.bm25 import check_options

            opts = self.bm25_options()
            check_options(opts["k1"], opts["b"], opts["method"], opts["stemmer"], opts["stopwords"])
            for option, value in (("--metric", self.metric), ("--nprobe", self.nprobe), ("--ef-search", self.ef_search)):
                if value is not None:
                    raise UsageError(f"{option} does not apply to --spec BM25")
            return
        if text_only:
            raise UsageError(f"{', '.join(text_only)}: apply to --spec BM25 only (a BM25 index over text records)")
        if self.metric is not None:
            check_metric(self.metric)
        info = parse_spec(self.spec, binary=self.spec.startswith("B"))  # the spec's grammar, before any work
        for option, value, param, what in (("--nprobe", self.nprobe, "nprobe", "IVF"), ("--ef-search", self.ef_search, "efSearch", "HNSW")):
            if value is not None and not applies(info, param):
                raise UsageError(f"{option} does not apply to --spec {self.spec!r}: it sets the search default of {what} indexes only")

    def run(self, ctx: Context) -> dict[str, Any]:
        if self.bm25:
            return self.run_bm25(ctx)
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

    def run_bm25(self, ctx: Context) -> dict[str, Any]:
        from vecpipe.formats import metadata
        from vecpipe.formats.records import read_records
        from vecpipe.index import bm25

        source = ctx.input("vectors")
        opts = self.bm25_options()
        skipped: list[str] = []

        def on_bad(where: str, reason: str) -> None:
            skipped.append(where)
            ctx.note(f"skipped {where}: {reason}")

        progress = ctx.progress
        progress.start("index", total=None, unit="docs")
        records = read_records(source, self.fields, 4096, skip_bad=on_bad if self.skip_bad else None)
        ids, blob, info = bm25.build(records, source.name, opts["k1"], opts["b"], opts["method"], opts["stemmer"],
                                     opts["stopwords"], on_rows=progress.advance)
        meta = ctx.with_manifest(metadata.new("index", **info))
        dest = ctx.output_path()
        vpi.write(dest if dest is not None else sys.stdout.buffer, meta, ids, blob, compress=self.compress)
        if skipped:
            ctx.done(f"skipped {len(skipped)} bad records")
        ctx.done(f"wrote {ctx.target.display}: BM25 over {info['count']} documents, {info['bm25']['vocabulary']} terms")
        return meta

"""The rerank stage: rescore a run exactly with full-precision vectors read by id."""

from __future__ import annotations

from dataclasses import dataclass

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import registry
from vecpipe.formats.runs import DEFAULT_TAG, check_tag, first_duplicate_pair, read_run
from vecpipe.formats.vectors import read_vectors
from vecpipe.index.rescore import DocVectors, rerank
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec


@dataclass
class Rerank(Stage):
    """Rescore each query's candidates exactly (ip, cos or l2 as the vectors record), re-sort and keep k."""

    name = "rerank"
    output_kind = registry.RUN
    devices = ("auto", "cpu", "cuda")

    run_input: str = inp("-")
    vectors: str = inp(None)
    queries: str = inp(None)
    output: str | None = opt(None)
    k: int = rec(100)
    metric: str | None = rec(None)
    allow_missing: bool = rec(False)
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)
    allow_mismatch: bool = rec(False, omit_default=True)

    def inputs(self) -> dict[str, str | None]:
        roles = super().inputs()
        return {"run" if role == "run_input" else role: path for role, path in roles.items()}

    def check(self) -> None:
        check_tag(self.tag)
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if self.metric is not None and self.metric not in ("ip", "l2", "cos"):
            raise UsageError(f"--metric {self.metric}: rerank scores float vectors; use ip, l2 or cos")
        if self.vectors is None or self.queries is None:
            raise UsageError("rerank needs --vectors DOC_VECTORS and --queries QUERY_VECTORS")
        if str(self.vectors) == "-":
            raise InputError("--vectors -: full-precision vectors are read by random access; give a file, not stdin")

    def run(self, ctx: Context) -> int:
        path, name = ctx.local_path("vectors")
        docs = DocVectors(path, name)
        queries = read_vectors(ctx.input("queries"))
        table = read_run(self.run_input)
        dup = first_duplicate_pair(table)
        if dup is not None:
            raise InputError(f"{'<stdin>' if self.run_input == '-' else self.run_input}: query {dup[0]!r} lists "
                             f"document {dup[1]!r} more than once; keep one row per (query, document)")
        out, meta = rerank(table, docs, queries, self.k, allow_missing=self.allow_missing, metric=self.metric,
                           on_note=ctx.note, allow_mismatch=self.allow_mismatch, device=ctx.device)
        with ctx.run_writer(meta, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)

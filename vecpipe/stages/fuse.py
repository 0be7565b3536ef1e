"""The fuse stage: runs in (any run format; one may be stdin), one fused run out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vecpipe.errors import UsageError
from vecpipe.formats import metadata, registry
from vecpipe.formats.runs import DEFAULT_TAG, check_tag, read_run, refuse_duplicate_pairs
from vecpipe.index.fusion import DEFAULT_METHOD, DEFAULT_RRF_K, METHODS, fuse
from vecpipe.pipeline.runner import Context, Stage, opt, rec


@dataclass
class Fuse(Stage):
    """Fuse runs (reciprocal rank fusion or normalised scores) into one run, k kept per query."""

    name = "fuse"
    output_kind = registry.RUN

    runs: list[str] = field(default_factory=list)
    output: str | None = opt(None)
    method: str = rec(DEFAULT_METHOD)
    weights: list[float] | None = rec(None)
    rrf_k: float = rec(float(DEFAULT_RRF_K))
    k: int = rec(100)
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)

    def inputs(self) -> dict[str, str | None]:
        return {f"run{i}": p for i, p in enumerate(self.runs)}

    def check(self) -> None:
        check_tag(self.tag)
        if len(self.runs) < 2:
            raise UsageError("fuse needs two runs or more")
        if sum(1 for r in self.runs if r == "-") > 1:
            raise UsageError("only one run can come from stdin ('-')")
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method}: choose one of {', '.join(METHODS)}")
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if not self.rrf_k >= 0:
            raise UsageError(f"--rrf-k {self.rrf_k}: must be 0 or more")
        if self.rrf_k != DEFAULT_RRF_K and self.method != "rrf":
            raise UsageError("--rrf-k applies with --method rrf only")

    def run(self, ctx: Context) -> int:
        tables = [read_run(path) for path in self.runs]
        names = ["<stdin>" if p == "-" else p for p in self.runs]
        for table, name in zip(tables, names):
            refuse_duplicate_pairs(table, name)
        out = fuse(tables, names, method=self.method, weights=self.weights, rrf_k=self.rrf_k, k=self.k)
        params: dict[str, Any] = {"method": self.method, "runs": len(tables), "weights": self.weights}
        if self.method == "rrf":
            params["rrf_k"] = self.rrf_k
        meta = metadata.new("run", k=self.k, fusion=params)
        with ctx.run_writer(meta, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)

"""The compare stage: runs and qrels in, a table of means with paired significance tests out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecpipe.errors import UsageError
from vecpipe.formats import registry
from vecpipe.pipeline.runner import Context, inp, opt, rec
from vecpipe.stages.evaluate import MeasuresStage


@dataclass
class Compare(MeasuresStage):
    """Compare runs: means per measure and paired tests against a baseline run."""

    name = "compare"
    output_kind = registry.COMPARISON

    runs: list[str] = field(default_factory=list)
    qrels: str | None = inp(None)
    output: str | None = opt(None)
    measures: list[str] | None = rec(None)
    baseline: int = rec(1)
    test: str = rec("t")
    correction: str = rec("holm")
    alpha: float = rec(0.05)
    seed: int = rec(0)
    permutations: int = rec(10_000)
    names: list[str] | None = rec(None)
    format: str | None = rec(None)
    per_query: bool = rec(False, omit_default=True)
    plot: str | None = opt(None)
    _parsed: list = field(default_factory=list, init=False, repr=False)
    _plot_target: Any = field(default=None, init=False, repr=False)

    def inputs(self) -> dict[str, str | None]:
        roles: dict[str, str | None] = {f"run{i}": p for i, p in enumerate(self.runs)}
        roles["qrels"] = self.qrels
        return roles

    def check(self) -> None:
        from vecpipe.evaluate.measures import parse_measures
        from vecpipe.evaluate.significance import CORRECTIONS, TESTS

        if self.qrels is None:
            raise UsageError("compare needs --qrels QRELS")
        if len(self.runs) < 2:
            raise UsageError("compare needs two runs or more")
        if sum(1 for r in self.runs if r == "-") > 1:
            raise UsageError("only one run can come from stdin ('-')")
        if not 1 <= self.baseline <= len(self.runs):
            raise UsageError(f"--baseline {self.baseline}: give the position of a run, 1 to {len(self.runs)}")
        if self.test not in TESTS:
            raise UsageError(f"--test {self.test}: choose one of {', '.join(TESTS)}")
        if self.correction not in CORRECTIONS:
            raise UsageError(f"--correction {self.correction}: choose one of {', '.join(CORRECTIONS)}")
        if not 0 < self.alpha < 1:
            raise UsageError(f"--alpha {self.alpha}: must be between 0 and 1")
        if self.permutations < 1:
            raise UsageError("--permutations must be at least 1")
        if self.names is not None and len(self.names) != len(self.runs):
            raise UsageError(f"--name given {len(self.names)} times for {len(self.runs)} runs; name every run or none")
        self._parsed = parse_measures(self.measures or None)
        self._plot_target = self.check_plot()

    def run(self, ctx: Context) -> Any:
        from vecpipe.evaluate.compare import RENDERERS, compare
        from vecpipe.formats.qrels import read_qrels
        from vecpipe.formats.runs import read_run

        assert self.qrels is not None  # check() refused its absence
        qrels = read_qrels(self.qrels)
        tables = [read_run(p) for p in self.runs]
        names = self.names or [("<stdin>" if p == "-" else Path(p).name) for p in self.runs]
        if len(set(names)) != len(names):
            names = ["<stdin>" if p == "-" else p for p in self.runs]
        if self.per_query and ctx.format.name not in ("tsv", "json"):
            raise UsageError(f"--per-query writes tsv or json, not {ctx.format.name}")
        comp = compare(tables, names, qrels, [m.name for m in self._parsed], baseline=self.baseline - 1, test=self.test,
                       correction=self.correction, alpha=self.alpha, seed=self.seed, permutations=self.permutations,
                       qrels_name=str(self.qrels), recall_curves=self._plot_target is not None)
        comp.per_query = self.per_query
        if self._plot_target is not None:
            from vecpipe.evaluate.plots import compare_figure, png_bytes

            ctx.write_side(self._plot_target, png_bytes(compare_figure(comp)))
        ctx.write_text(RENDERERS[ctx.format.name](comp))
        return comp

"""The eval stage: a run and qrels in, measures out (TSV, JSON or an aligned table)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from vecpipe.formats import registry
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec


def format_table(result: Any, per_query: bool) -> str:
    """An aligned plain-text table of the means (and per-query values), for terminals."""
    headers = (["qid"] if per_query else []) + list(result.aggregate)
    rows: list[list[str]] = []
    if per_query:
        for qid, values in zip(result.qids, result.values.tolist()):
            rows.append([str(qid)] + [f"{v:.4f}" for v in values])
        rows.append(["all"] + [f"{v:.4f}" for v in result.aggregate.values()])
    else:
        rows.append([f"{v:.4f}" for v in result.aggregate.values()])
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            left = per_query and i == 0
            out.append(cell.ljust(width) if left else cell.rjust(width))
        return "  ".join(out).rstrip()

    text = "\n".join(line(r) for r in [headers] + rows) + "\n"
    return text + f"{result.n_qrels_queries} queries ({result.missing_queries} missing from the run)\n"


class MeasuresStage(Stage):
    """What eval and compare share: the measures recorded by their parsed names, tsv by default, an
    aligned table on a terminal, and ``--plot FILE.png`` (a second output, not recorded: a run with
    it is never skipped as up to date)."""

    format: str | None
    output: str | None
    plot: str | None
    _parsed: list

    def skippable(self) -> bool:
        return self.plot is None

    def check_plot(self) -> Any:
        """The plot's resolved target (``None`` without ``--plot``): refused before any work when it
        is stdout, the metrics' own output, not a .png file, or matplotlib is missing."""
        from vecpipe.errors import UsageError
        from vecpipe.formats.targets import resolve_target

        if self.plot is None:
            return None
        if str(self.plot) in ("", "-"):
            raise UsageError("--plot needs a file name (a PNG image is not written to stdout)")
        if self.output not in (None, "-") and os.path.realpath(self.output) == os.path.realpath(self.plot):
            raise UsageError(f"--plot {self.plot} is also the -o output; give the plot its own file")
        target = resolve_target(self.plot)
        if target.is_file and not str(self.plot).lower().endswith(".png"):
            raise UsageError(f"--plot {self.plot}: the plot is a PNG image; give a file name ending in .png")
        from vecpipe.evaluate.plots import require

        require()
        return target

    def recorded(self, name: str, value: Any) -> Any:
        if name == "measures":
            return [m.name for m in self._parsed]
        if name == "format":
            return value or "tsv"
        return super().recorded(name, value)

    def output_format(self) -> registry.OutputFormat:
        if self.format is None and self.output is None and sys.stdout is not None and sys.stdout.isatty():
            return registry.get("table")
        return super().output_format()


@dataclass
class Evaluate(MeasuresStage):
    """Evaluate a run against qrels with trec_eval's definitions."""

    name = "eval"
    output_kind = registry.METRICS

    run_input: str = inp("-")
    qrels: str = inp(None)
    output: str | None = opt(None)
    measures: list[str] | None = rec(None)
    format: str | None = rec(None)
    per_query: bool = rec(False)
    plot: str | None = opt(None)
    _parsed: list = field(default_factory=list, init=False, repr=False)
    _plot_target: Any = field(default=None, init=False, repr=False)

    def inputs(self) -> dict[str, str | None]:
        return {"run": self.run_input, "qrels": self.qrels}

    def check(self) -> None:
        from vecpipe.errors import UsageError
        from vecpipe.evaluate.measures import parse_measures

        if self.qrels is None:
            raise UsageError("eval needs --qrels QRELS")
        self._parsed = parse_measures(self.measures or None)
        self._plot_target = self.check_plot()

    def run(self, ctx: Context) -> Any:
        from vecpipe.evaluate import evaluate, format_json, format_tsv
        from vecpipe.formats.qrels import read_qrels
        from vecpipe.formats.runs import read_run

        qrels_table = read_qrels(self.qrels)
        run_table = read_run(self.run_input)
        result = evaluate(run_table, qrels_table, [m.name for m in self._parsed],
                          run_name="run" if self.run_input == "-" else self.run_input, qrels_name=self.qrels)
        if result.missing_queries:
            ctx.note(f"the run lacks {result.missing_queries} of {result.n_qrels_queries} qrels queries; they score 0")
        for name in result.deeper_than_run:
            ctx.note(f"{name} looks deeper than the run, which holds at most {result.max_depth} documents per query")
        if self._plot_target is not None:
            from vecpipe.evaluate.plots import eval_figure, png_bytes

            name = "<stdin>" if self.run_input == "-" else os.path.basename(self.run_input)
            ctx.write_side(self._plot_target, png_bytes(eval_figure(
                result, title=f"{name}: per-query values, {result.n_qrels_queries} queries")))
        renderers = {"json": format_json, "tsv": format_tsv, "table": format_table}
        ctx.write_text(renderers[ctx.format.name](result, self.per_query))
        return result

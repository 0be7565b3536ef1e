"""vecpipe compare: runs side by side with paired significance tests against a baseline."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


class Test(str, Enum):
    t = "t"
    randomization = "randomization"
    wilcoxon = "wilcoxon"


class Correction(str, Enum):
    holm = "holm"
    bonferroni = "bonferroni"
    none = "none"


class CompareFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"
    markdown = "markdown"
    latex = "latex"


@app.command("compare")
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two runs or more (Arrow, Parquet, TREC or MS MARCO text); one may be '-' for stdin.")],
    qrels: Annotated[str, typer.Option("--qrels", metavar="FILE", help="Qrels: BEIR TSV (with header), TREC qrels or Parquet.")] = ...,  # type: ignore[assignment]
    measure: Annotated[list[str] | None, typer.Option("-m", "--measure", metavar="MEASURE", help="Measure in ir_measures notation "
                                                      "(repeatable), as eval takes them. Default: nDCG@10 R@100 RR@10 AP.",
                                                      show_default=False)] = None,
    baseline: Annotated[int, typer.Option("--baseline", min=1, max=o.INT_MAX, help="Position of the baseline run (1: the first).")] = 1,
    test: Annotated[Test, typer.Option("--test", help="Paired two-sided test: t (Student), randomization (Fisher, sign flips), "
                                                      "wilcoxon (signed-rank).")] = Test.t,
    correction: Annotated[Correction, typer.Option("--correction", help="For the runs compared with the baseline, per measure.")] = Correction.holm,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level for the marks.")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", min=0, max=o.INT_MAX, help="Seed of the randomization test (recorded).")] = 0,
    permutations: Annotated[int, typer.Option("--permutations", min=1, max=o.INT_MAX, help="Sign flips of the randomization test.")] = 10_000,
    name: Annotated[list[str] | None, typer.Option("--name", help="Name of each run, in order (repeat once per run; default: file names).",
                                                   show_default=False)] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="Each run's value for every query too (tsv and json; the means' rows "
                                                                "have qid all in tsv).")] = False,
    output: o.Output = None,
    plot: Annotated[str | None, typer.Option("--plot", metavar="FILE.png", help="Also draw each run's per-query differences from the "
                                             "baseline (sorted, one panel per run) and recall@k curves to this PNG file (needs pip install "
                                             "'vecpipe[plot]').", show_default=False)] = None,
    format: Annotated[CompareFormat | None, typer.Option("--format", help="table (default on a terminal), tsv (default otherwise), json, "
                                                         "markdown or latex; by extension for -o (.tsv .json .md .tex).",
                                                         show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Compare runs as a paper does: a row per run, a column per measure, paired tests against a baseline.

    Every qrels query counts (queries a run lacks score 0, as in eval). Differences from the baseline
    whose corrected p-value is at most --alpha are marked with *; JSON holds each p-value (raw and
    corrected), the mean difference and its 95% confidence interval.
    """
    from vecpipe.stages.compare import Compare

    run_stage(Compare(runs=runs, qrels=qrels, measures=measure, baseline=baseline, test=value(test), correction=value(correction),
                      alpha=alpha, seed=seed, permutations=permutations, names=name, output=output, format=value(format), per_query=per_query,
                      plot=plot),
              force, quiet)

"""vecpipe eval: a run and qrels to metrics."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


class EvalFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"


@app.command("eval")
def eval_(
    run: Annotated[str, typer.Argument(help="Run: Arrow stream/file, Parquet or TREC text; '-' for stdin.")] = "-",
    qrels: Annotated[str, typer.Option("--qrels", help="Qrels: BEIR TSV (with header), TREC qrels or Parquet.")] = ...,  # type: ignore[assignment]
    measure: Annotated[list[str] | None, typer.Option("--measure", "-m", help="Measure in ir_measures notation (repeatable): nDCG@10, R@100, RR@10, "
                                                                              "AP, P@10, Judged@10, or trec_eval's names; any other ir_measures "
                                                                              "measure (SetP, RBP(rel=1), alpha_nDCG@10, ...) through its providers. "
                                                                              "Default: nDCG@10 R@100 RR@10 AP.",
                                                                              show_default=False)] = None,
    format: Annotated[EvalFormat | None, typer.Option("--format", help="table (default on a terminal), tsv (default otherwise) or "
                                                                       "json.", show_default=False)] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="One value per query and measure, then the means (as trec_eval -q).")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the metrics to this file instead of stdout.", show_default=False)] = None,
    plot: Annotated[str | None, typer.Option("--plot", metavar="FILE.png", help="Also draw each measure's per-query distribution, one panel per "
                                             "measure, to this PNG file (needs pip install 'vecpipe[plot]').", show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Evaluate a run against qrels with trec_eval's definitions.

    Means are taken over every query in the qrels; queries the run lacks score 0 (trec_eval -c).
    vecpipe computes trec_eval's measures itself; every other measure ir_measures knows comes from
    ir_measures' providers, with their numbers (some need pip install 'vecpipe[measures]').
    """
    from vecpipe.stages.evaluate import Evaluate

    run_stage(Evaluate(run_input=run, qrels=qrels, output=output, measures=measure or None, format=value(format),
                       per_query=per_query, plot=plot), force, quiet)

"""vecpipe calibrate and vecpipe cut: calibrated relevance cutoffs for runs."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("calibrate")
def calibrate(
    run: Annotated[str, typer.Argument(help="Run of the training queries (Arrow, Parquet or TREC text); '-' for stdin.")] = "-",
    qrels: Annotated[str, typer.Option("--qrels", help="Training qrels: BEIR TSV (with header), TREC qrels or Parquet.")] = ...,  # type: ignore[assignment]
    depth: Annotated[int | None, typer.Option("--depth", min=1, max=o.INT_MAX, help="Results per query the query features are taken "
                                              "over (default: the deepest rank in the run).", show_default=False)] = None,
    output: o.Output = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Fit a map from a run's scores to probabilities of relevance, from training qrels (JSON out).

    A logistic regression (numpy, deterministic) over each result's score and its query's features:
    the top score, the gap from it to the k-th score, the spread and the mean of the query's scores.
    The file records the model and metric of the run, so a run of another model is refused by cut.
    """
    from vecpipe.stages.calibrate import Calibrate

    run_stage(Calibrate(run_input=run, qrels=qrels, depth=depth, output=output), force, quiet)


@app.command("cut")
def cut(
    run: Annotated[str, typer.Argument(help="Run to cut (Arrow, Parquet or TREC text); '-' for stdin.")] = "-",
    calibration: Annotated[str, typer.Option("--calibration", help="Calibration file from vecpipe calibrate.")] = ...,  # type: ignore[assignment]
    min_prob: o.MinProb = None,
    target_recall: o.TargetRecall = None,
    scores: o.ScoresOpt = o.CutScores.raw,
    output: o.Output = None,
    format: Annotated[o.RunFormat | None, typer.Option("--format", help="arrow, parquet, trec text or msmarco (default: by extension; "
                                                                        "Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Drop a run's results whose calibrated probability of relevance is under a threshold.

    --min-prob P keeps results with probability P or more; --target-recall R picks the P that kept a
    share R of the relevant training results. Ranks are renumbered; queries keep their order.
    """
    from vecpipe.stages.calibrate import Cut

    run_stage(Cut(run_input=run, calibration=calibration, min_prob=min_prob, target_recall=target_recall,
                  scores=value(scores), output=output, format=value(format), tag=tag), force, quiet)

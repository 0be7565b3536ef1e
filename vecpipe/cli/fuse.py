"""vecpipe fuse: several runs into one (reciprocal rank fusion or normalised scores)."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("fuse")
def fuse(
    runs: Annotated[list[str], typer.Argument(help="Two runs or more (Arrow, Parquet, TREC or MS MARCO text); one may be '-' for stdin.")],
    method: Annotated[o.FuseMethod, typer.Option("--method", help="rrf (reciprocal rank), zscore, minmax (normalised scores summed), "
                                                                  "combsum or combmnz (raw scores).")] = o.FuseMethod.rrf,
    weights: Annotated[str | None, typer.Option("--weights", help="One weight per run, comma-separated (default: all 1).",
                                                show_default=False)] = None,
    rrf_k: Annotated[float, typer.Option("--rrf-k", min=0, help="The constant of reciprocal rank fusion.")] = 60.0,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=o.INT_MAX, help="Results kept per query.")] = 100,
    output: o.Output = None,
    format: Annotated[o.RunFormat | None, typer.Option("--format", help="arrow, parquet, trec text or msmarco (default: by extension; "
                                                                        "Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Fuse runs into one: per query, each document's fused score sums what every run gives it.

    rrf: 1 / (rrf-k + rank), nothing from a run that lacks the document. zscore: the run's scores
    standardised per query; a run that lacks the document gives its lowest z-score. minmax: scores
    scaled to 0..1 per query; a run that lacks the document gives 0. combsum: raw scores summed;
    combmnz: combsum times the number of runs that retrieved the document. --weights scales each
    run's share. Ties are broken by docid; queries keep the order they first appear in.
    """
    from vecpipe.stages.fuse import Fuse

    run_stage(Fuse(runs=runs, method=value(method), weights=o.parse_weights(weights), rrf_k=rrf_k, k=k, output=output,
                   format=value(format), tag=tag), force, quiet)

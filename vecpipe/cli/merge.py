"""vecpipe merge: join the shards of a sharded embed."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("merge")
def merge(
    shards: Annotated[list[str], typer.Argument(help="Shard files written by vecpipe embed --shard I/N, in any order.")],
    output: o.Output = None,
    format: Annotated[o.TableFormat | None, typer.Option("--format", help="Output format (default: by extension; Arrow stream on "
                                                                          "stdout).", show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Merge the shards of one embed job into one vectors table, in input order.

    Refuses shards of different models, dimensions or parameters, and an incomplete set.
    """
    from vecpipe.stages.merge import Merge

    run_stage(Merge(shards=shards, output=output, format=value(format)), force, quiet)

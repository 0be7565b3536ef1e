"""vecpipe merge: join the shards of a sharded embed."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import note


@app.command("merge")
def merge(
    shards: Annotated[list[str], typer.Argument(help="Shard files written by vecpipe embed --shard I/N, in any order.")],
    output: o.Output = None,
    format: Annotated[Optional[o.TableFormat], typer.Option("--format", help="Output format (default: by extension; Arrow stream on stdout).", show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Merge the shards of one embed job into one vectors table, in input order.

    Refuses shards of different models, dimensions or parameters, and an incomplete set.
    """
    from vecpipe.pipeline.merge import merge_shards, merged_metadata
    from vecpipe.pipeline.uptodate import is_up_to_date

    # The merged table records the unsharded job's manifest: it is up to date when that matches.
    manifest = merged_metadata(shards).get("manifest")
    if is_up_to_date(output, manifest, force):
        note(f"up to date: {output}", quiet)
        raise typer.Exit(0)
    rows = merge_shards(shards, output, fmt=format.value if format else None)
    if output:
        note(f"wrote {output}: {rows} rows from {len(shards)} shards", quiet)

"""vecpipe rerank: rescore a run exactly with full-precision vectors read by id."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("rerank")
def rerank(
    run: Annotated[str, typer.Argument(help="The run to rerank (Arrow, Parquet or TREC text), a file or '-' for stdin.")] = "-",
    vectors: Annotated[str, typer.Option("--vectors", help="Full-precision document vectors (Arrow file or Parquet); only the candidate rows are read.")] = ...,  # type: ignore[assignment]
    queries: Annotated[str, typer.Option("--queries", help="Float query vectors (from vecpipe embed).")] = ...,  # type: ignore[assignment]
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=o.INT_MAX, help="Results kept per query.")] = 100,
    metric: Annotated[o.FloatMetric | None, typer.Option("--metric", help="ip, l2 or cos (default: what the vectors record).", show_default=False)] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Drop run rows whose docid (or qid) has no vector instead of failing.")] = False,
    output: o.Output = None,
    format: Annotated[o.RunFormat | None, typer.Option("--format", help="arrow, parquet, trec text or msmarco (qid, docid, rank TSV) (default: by "
                                                                        "extension; Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    allow_mismatch: o.AllowMismatch = False,
    device: o.DeviceOpt = o.Device.auto,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Rescore each query's candidates exactly (ip, cos or l2 as the vectors record), re-sort and keep k.

    Reads only the candidate rows of the document vectors: an Arrow IPC file is memory-mapped, a
    Parquet file is read by the row groups that hold candidates. Ties are broken by docid.
    """
    from vecpipe.stages.rerank import Rerank

    run_stage(Rerank(
        run_input=run, vectors=vectors, queries=queries, output=output, k=k, metric=value(metric),
        allow_missing=allow_missing, format=value(format), tag=tag, allow_mismatch=allow_mismatch,
    ), force, quiet, device.value)

"""vecpipe rerank: rescore a run exactly with full-precision vectors read by id."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import note
from vecpipe.cli._stage import begin


@app.command("rerank")
def rerank(
    run: Annotated[str, typer.Argument(help="The run to rerank (Arrow, Parquet or TREC text), a file or '-' for stdin.")] = "-",
    vectors: Annotated[str, typer.Option("--vectors", help="Full-precision document vectors (Arrow file or Parquet); only the candidate rows are read.")] = ...,  # type: ignore[assignment]
    queries: Annotated[str, typer.Option("--queries", help="Float query vectors (from vecpipe embed).")] = ...,  # type: ignore[assignment]
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Results kept per query.")] = 100,
    metric: Annotated[Optional[o.Metric], typer.Option("--metric", help="ip, l2 or cos (default: what the vectors record).", show_default=False)] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Drop run rows whose docid (or qid) has no vector instead of failing.")] = False,
    output: o.Output = None,
    format: Annotated[Optional[o.RunFormat], typer.Option("--format", help="arrow, parquet or trec text (default: by extension; Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Rescore each query's candidates exactly (ip, cos or l2 as the vectors record), re-sort and keep k.

    Reads only the candidate rows of the document vectors: an Arrow IPC file is memory-mapped, a
    Parquet file is read by the row groups that hold candidates. Ties are broken by docid.
    """
    from vecpipe.errors import UsageError
    from vecpipe.formats.runs import write_run
    from vecpipe.index.rescore import rerank as run_rerank

    from vecpipe.formats.runs import run_format_for
    from vecpipe.pipeline.uptodate import record_sidecar

    if metric is not None and metric.value == "hamming":
        raise UsageError("--metric hamming: rerank scores float vectors; use ip, l2 or cos")
    fmt = format.value if format else None
    manifest = begin("rerank", output, {"run": run, "vectors": vectors, "queries": queries}, {
        "k": k, "metric": metric.value if metric else None, "allow_missing": allow_missing, "format": fmt, "tag": tag,
    }, force, quiet)
    table, meta = run_rerank(run, vectors, queries, k, allow_missing=allow_missing,
                             metric=metric.value if metric else None, on_note=lambda msg: note(msg, quiet))
    meta["manifest"] = manifest
    write_run(table, output, fmt=fmt, tag=tag, metadata=meta)
    if output and run_format_for(output, fmt) == "trec":
        record_sidecar(output, manifest)

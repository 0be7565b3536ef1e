"""vecpipe inspect: describe any artifact."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage


class InspectFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("inspect")
def inspect(
    path: o.InputArg = "-",
    format: Annotated[InspectFormat, typer.Option("--format", help="text or json.")] = InspectFormat.text,
    system: Annotated[bool, typer.Option("--system", help="Describe this machine instead: the model runtime "
                                         "(onnxruntime or onnxruntime-gpu) and its usable providers, faiss, the CPU's "
                                         "SIMD features, the extras installed.")] = False,
    diagnose: Annotated[bool, typer.Option("--diagnose", help="For a float faiss index: recall@k against exact search per query "
                                           "(quantiles, worst queries), the local intrinsic dimensionality (MLE, 20 neighbours) "
                                           "of queries and documents, and how recall correlates with it.")] = False,
    queries: Annotated[str | None, typer.Option("--queries", metavar="QUERY_VECTORS", help="--diagnose: the query vectors.",
                                                show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=o.INT_MAX, help="--diagnose: recall@k.")] = 10,
) -> None:
    """Show an artifact's format, kind, schema, row count and vecpipe metadata (vectors, runs, qrels, .vpi, text)."""
    from vecpipe.stages.inspect import Inspect

    run_stage(Inspect(path=path, format=format.value, system=system, diagnose=diagnose, queries=queries, k=k))

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
) -> None:
    """Show an artifact's format, kind, schema, row count and vecpipe metadata (vectors, runs, qrels, .vpi, text)."""
    from vecpipe.stages.inspect import Inspect

    run_stage(Inspect(path=path, format=format.value, system=system))

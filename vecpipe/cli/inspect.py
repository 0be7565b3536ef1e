"""vecpipe inspect: describe any artifact."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o


class InspectFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("inspect")
def inspect(
    path: o.InputArg = "-",
    format: Annotated[InspectFormat, typer.Option("--format", help="text or json.")] = InspectFormat.text,
) -> None:
    """Show an artifact's format, kind, schema, row count and vecpipe metadata (vectors, runs, qrels, .vpi, text)."""
    from vecpipe.formats.describe import describe, render_text

    info = describe(path)
    print(json.dumps(info, indent=2, sort_keys=True) if format == InspectFormat.json else render_text(info))

"""The inspect stage: any artifact's format, kind, schema, row count and vecpipe metadata, and what its
kind is about (vectors, index, run, qrels, metrics, NumPy arrays, a dataset directory; see
:mod:`vecpipe.formats.describe`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vecpipe.formats import registry
from vecpipe.pipeline.runner import Context, Stage, inp, opt


@dataclass
class Inspect(Stage):
    """Show an artifact's format, kind, schema, row count and vecpipe metadata."""

    name = "inspect"
    output_kind = registry.REPORT

    path: str = inp("-")
    output: str | None = opt(None)
    format: str = opt("text")

    def manifest(self) -> dict[str, Any] | None:
        return None

    def run(self, ctx: Context) -> dict[str, Any]:
        from vecpipe.formats.describe import describe, render_text

        info = describe(self.path)
        text = json.dumps(info, indent=2, sort_keys=True) if ctx.format.name == "json" else render_text(info)
        ctx.write_text(text + "\n")
        return info

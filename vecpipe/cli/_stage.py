"""The one place every stage goes through for up-to-date checks and manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vecpipe.cli._progress import note
from vecpipe.pipeline.uptodate import build_manifest, is_up_to_date


def begin(stage: str, out: str | Path | None, inputs: dict[str, Any], params: dict[str, Any],
          force: bool = False, quiet: bool = False) -> dict[str, Any] | None:
    """The stage's manifest; exits 0 with ``up to date: OUT`` when ``out`` already matches it.

    Output to stdout is never up to date and records no manifest, so inputs are not fingerprinted.
    """
    if out is None or str(out) == "-":
        return None
    manifest = build_manifest(stage, inputs, params)
    if is_up_to_date(out, manifest, force):
        note(f"up to date: {out}", quiet)
        raise typer.Exit(0)
    return manifest

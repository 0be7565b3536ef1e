"""Up-to-date checks shared by every stage.

A stage describes its work as a *manifest*: its name, the content fingerprints of its inputs, the
parameters that shape its output and the vecpipe version. The manifest is recorded with the output
(in the ``vecpipe`` metadata of Arrow/Parquet tables and ``.vpi`` headers, or in a hidden sidecar
``.NAME.vecpipe.json`` for text outputs such as TREC runs and metric files). A rerun whose manifest
equals the recorded one is skipped; ``--force`` rebuilds. Stdin inputs cannot be fingerprinted, so
a stage reading stdin always runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vecpipe import __version__
from vecpipe.pipeline.atomic import atomic_open
from vecpipe.pipeline.manifest import fingerprint

MANIFEST_KEY = "manifest"


def build_manifest(stage: str, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a stage run, or ``None`` when an input is stdin (never up to date)."""
    prints: dict[str, Any] = {}
    for name, path in inputs.items():
        if path is None:
            continue
        if str(path) == "-":
            return None
        fp = fingerprint(path)
        if fp is None:
            return None
        prints[name] = fp
    clean = {k: v for k, v in params.items() if v is not None}
    return json.loads(json.dumps({"stage": stage, "inputs": prints, "params": clean, "vecpipe_version": __version__},
                                 sort_keys=True, default=str))


def sidecar(out: str | Path) -> Path:
    p = Path(out)
    return p.parent / f".{p.name}.vecpipe.json"


def recorded_manifest(out: str | Path) -> dict[str, Any] | None:
    """The manifest recorded with an existing output, or ``None``."""
    from vecpipe.formats import metadata, sniff

    p = Path(out)
    if not p.is_file():
        return None
    try:
        with open(p, "rb") as fh:
            fmt = sniff.sniff_bytes(fh.read(8))
        if fmt == sniff.VPI:
            from vecpipe.formats import vpi

            return vpi.read_header(p)["meta"].get(MANIFEST_KEY)
        if fmt == sniff.PARQUET:
            import pyarrow.parquet as pq

            return metadata.read(pq.read_schema(p)).get(MANIFEST_KEY)
        if fmt == sniff.ARROW_FILE:
            import pyarrow.ipc as ipc

            with ipc.open_file(p) as reader:
                return metadata.read(reader.schema).get(MANIFEST_KEY)
        side = sidecar(p)
        if side.is_file():
            recorded = json.loads(side.read_text())
            if recorded.get("output_size") == p.stat().st_size:
                return recorded.get(MANIFEST_KEY)
    except Exception:  # an unreadable output is simply not up to date
        return None
    return None


def is_up_to_date(out: str | Path | None, manifest: dict[str, Any] | None, force: bool = False) -> bool:
    if force or manifest is None or out is None or str(out) == "-":
        return False
    return recorded_manifest(out) == manifest


def record_sidecar(out: str | Path, manifest: dict[str, Any] | None) -> None:
    """Record the manifest of a text output (written after the output itself is in place)."""
    if manifest is None or str(out) == "-":
        return
    side = sidecar(out)
    with atomic_open(side, "w") as fh:
        json.dump({MANIFEST_KEY: manifest, "output_size": Path(out).stat().st_size}, fh, sort_keys=True)

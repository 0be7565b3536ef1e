"""Manifests and up-to-date checks shared by every stage.

A stage run is described by a *manifest*: the stage's name, the content fingerprints of its inputs,
the parameters that shape its output and the vecpipe version. The manifest is recorded with the
output: in the ``vecpipe`` metadata of Arrow/Parquet tables and ``.vpi`` headers, or in a hidden
sidecar ``.NAME.vecpipe.json`` beside a text output (TREC runs, metric files), together with the
sha256 of the output's bytes (computed while writing). A rerun whose manifest equals the recorded
one, on an output whose bytes are the recorded ones, is skipped; ``--force`` rebuilds. An input
that is not a regular file (stdin, a FIFO) cannot be fingerprinted, so such a run always runs and
records no manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vecpipe import __version__
from vecpipe.formats import metadata, sniff
from vecpipe.formats.targets import atomic_open

MANIFEST_KEY = "manifest"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | Path | None) -> dict[str, Any] | None:
    """Content fingerprint of a file input (sha256 and size); ``None`` for stdin or a stream."""
    if path is None or str(path) == "-":
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return {"sha256": sha256_file(p), "size": p.stat().st_size}


def build_manifest(stage: str, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a stage run, or ``None`` when an input is a stream (never up to date)."""
    prints: dict[str, Any] = {}
    for name, path in inputs.items():
        if path is None:
            continue
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
            if recorded.get("output_size") == p.stat().st_size and recorded.get("output_sha256") == sha256_file(p):
                return recorded.get(MANIFEST_KEY)
    except Exception:  # an unreadable output is simply not up to date
        return None
    return None


def is_up_to_date(out: str | Path | None, manifest: dict[str, Any] | None, force: bool = False) -> bool:
    if force or manifest is None or out is None or str(out) == "-":
        return False
    return recorded_manifest(out) == manifest


def record_sidecar(out: str | Path, manifest: dict[str, Any] | None, digest: str) -> None:
    """Record the manifest of a text output and the sha256 of its bytes (written after the output)."""
    if manifest is None:
        return
    side = sidecar(out)
    with atomic_open(side, "w") as fh:
        json.dump({MANIFEST_KEY: manifest, "output_size": Path(out).stat().st_size, "output_sha256": digest}, fh,
                  sort_keys=True)


def remove_sidecar(out: str | Path) -> None:
    sidecar(out).unlink(missing_ok=True)

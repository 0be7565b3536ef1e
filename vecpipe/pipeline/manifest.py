"""Input fingerprints: what an artifact records about the inputs it was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | Path | None) -> dict[str, Any] | None:
    """Content fingerprint of a file input (sha256 and size); ``None`` for stdin."""
    if path is None or str(path) == "-":
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return {"sha256": sha256_file(p), "size": p.stat().st_size}

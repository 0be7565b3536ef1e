"""The embedding cache's housekeeping for ``vecpipe cache``: where it is, what it holds, prune, clear.

The cache itself is :mod:`vecpipe.encode.cache`; the command line reaches it through this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vecpipe.encode import cache as store


def root(cache: str | None) -> Path:
    return Path(cache) if cache else store.default_dir()


def stats(cache: str | None) -> list[dict[str, Any]]:
    return store.stats(root(cache))


def prune(cache: str | None, cap: int) -> tuple[int, int]:
    return store.prune(root(cache), cap)


def clear(cache: str | None) -> int:
    return store.clear(root(cache))


parse_size = store.parse_size

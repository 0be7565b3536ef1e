"""Atomic file writes: a temporary file in the same directory, renamed into place when complete.

An interrupted write leaves the old output (or none), never a truncated file. Temporary files of
writers that died are removed by the next write to the same path.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

_TMP_MARK = ".vecpipe-tmp-"


def _tmp_prefix(final: Path) -> str:
    return f".{final.name}{_TMP_MARK}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> None:
    """Remove temporary files left next to ``final`` by writers that are no longer running."""
    prefix = _tmp_prefix(final)
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_part = entry.name[len(prefix):].split("-", 1)[0]
        if pid_part.isdigit() and _pid_alive(int(pid_part)) and int(pid_part) != os.getpid():
            continue
        with contextlib.suppress(OSError):
            entry.unlink()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    tmp = final.parent / f"{_tmp_prefix(final)}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(final: str | Path, mode: str = "wb") -> Iterator:
    with atomic_path(final) as tmp, open(tmp, mode) as fh:
        yield fh

"""faiss without the noise: capture what native code writes to the process's stderr.

faiss prints warnings from C++ straight to file descriptor 2 (``WARNING clustering 300 points to 64
centroids: please provide at least 2496 training points``), past ``sys.stderr`` and past ``-q``.
``captured_native_stderr`` points descriptor 2 at a temporary file for the length of a block and
hands back what was written; ``summarize_faiss_warnings`` condenses it into one line that the
caller prints once (or not at all under ``-q``)::

    with captured_native_stderr() as cap:
        index.train(x)
    note = summarize_faiss_warnings(cap.lines)
    if note and not quiet:
        print(note, file=sys.stderr)

Descriptor 2 belongs to the whole process: while a block runs, whatever any thread writes to it
(Python's ``sys.stderr`` included) lands in the capture. A temporary file, not a pipe, holds the
text, so a chatty block can never fill a pipe and deadlock on itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator

MAX_CAPTURE = 1 << 20  # bytes of captured text kept (the start of it)
CENTROID_POINTS = 39

_CLUSTERING = re.compile(
    r"WARNING clustering (\d+) points to (\d+) centroids: please provide at least (\d+) training points")


class Captured:
    """What native code wrote to descriptor 2 inside a ``captured_native_stderr`` block."""

    def __init__(self) -> None:
        self.text = ""
        self.lines: list[str] = []
        self.active = False  # whether descriptor 2 was redirected (False when it was closed)

    def __repr__(self) -> str:
        return f"Captured(lines={self.lines!r})"


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 into a temporary file for the block; ``cap.lines`` after it.

    Restored in a ``finally`` (also on ``KeyboardInterrupt``). When descriptor 2 is closed, or no
    temporary file can be made, the block just runs and nothing is captured.
    """
    cap = Captured()
    try:
        os.fstat(2)
    except OSError:
        yield cap
        return
    try:
        tmp = tempfile.TemporaryFile()
    except OSError:
        yield cap
        return
    _flush_all()
    saved = -1
    try:
        with _signals_blocked():
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            cap.active = True
        yield cap
    finally:
        with _signals_blocked():
            if saved >= 0:
                _flush_all()
                os.dup2(saved, 2)
                os.close(saved)
        try:
            tmp.seek(0)
            data = tmp.read(MAX_CAPTURE)
        finally:
            tmp.close()
        cap.text = data.decode("utf-8", "replace")
        cap.lines = [line.rstrip("\r") for line in cap.text.splitlines() if line.strip()]


def summarize_faiss_warnings(lines: list[str] | tuple[str, ...]) -> str | None:
    """One line for what faiss printed, or None when it printed nothing.

    Repeated clustering warnings (one per PQ sub-quantizer, one per IVF training...) become
    ``faiss: clustering N points to K centroids: fewer than the 39 per centroid faiss recommends``;
    other lines are kept, each once, prefixed with ``faiss:``.
    """
    clusterings: dict[tuple[int, int], int] = {}
    others: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        m = _CLUSTERING.search(line)
        if m:
            key = (int(m.group(1)), int(m.group(2)))
            clusterings[key] = clusterings.get(key, 0) + 1
            continue
        if line not in others:
            others.append(line)
    parts = []
    if clusterings:
        each = [f"{n:,} points to {k:,} centroids" + (f" ({count} times)" if count > 1 else "")
                for (n, k), count in clusterings.items()]
        parts.append(f"faiss: clustering {'; '.join(each)}: fewer than the {CENTROID_POINTS} per centroid faiss recommends")
    for line in others[:5]:
        parts.append(line if line.lower().startswith("faiss") else f"faiss: {line}")
    if len(others) > 5:
        parts.append(f"faiss: and {len(others) - 5} more lines")
    return "; ".join(parts) if parts else None


# --------------------------------------------------------------------------- helpers


def _flush_all() -> None:
    """Flush Python's and C's buffered stderr/stdout so that nothing crosses the redirection."""
    for stream in (sys.stderr, sys.stdout):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001 - no libc symbols (static or exotic platforms): C stderr is unbuffered anyway
        pass


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while descriptor 2 is being swapped, so that it is never left half-swapped.

    A signal that arrives meanwhile is delivered (KeyboardInterrupt raised) right after.
    """
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = mask(signal.SIG_BLOCK, sigs)
    except (OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)

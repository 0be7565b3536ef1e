"""Pick the progress reporter: rich bar on a terminal, periodic log lines otherwise, none with --quiet."""

from __future__ import annotations

import os
import sys

from vecpipe.pipeline.progress import LogProgress, Progress


class RichProgress(Progress):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self._console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
        self._bar = Bar(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self._console, transient=False,
        )
        self._task = None
        self._tokens = 0

    def start(self, label: str, total: int | None = None, unit: str = "rows") -> None:
        import time

        self._unit = unit
        self._t0 = time.monotonic()
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, rate="")

    def advance(self, n: int, tokens: int = 0) -> None:
        import time

        self._tokens += tokens
        task = self._bar.tasks[0] if self._task is not None else None
        if task is None:
            return
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        done = task.completed + n
        rate = f"{done / elapsed:.1f} {self._unit}/s"
        if self._tokens:
            rate += f" {self._tokens / elapsed:.0f} tok/s"
        self._bar.update(self._task, advance=n, rate=rate)

    def note(self, message: str) -> None:
        self._console.print(message, highlight=False)

    def close(self) -> None:
        self._bar.stop()

    def abort(self) -> None:
        self._bar.stop()


LOG_FORMATS = ("plain", "json")


def log_format() -> str:
    """``--log-format`` (root option) or ``VECPIPE_LOG_FORMAT``: plain or json."""
    value = os.environ.get("VECPIPE_LOG_FORMAT", "plain")
    return value if value in LOG_FORMATS else "plain"


def reporter(quiet: bool = False) -> Progress:
    """A rich bar on a terminal, periodic timestamped log lines otherwise (json with --log-format json)."""
    if quiet:
        return Progress()
    fmt = log_format()
    if sys.stderr is None:
        return Progress()
    if sys.stderr.isatty() and fmt == "plain":
        return RichProgress()
    interval = float(os.environ.get("VECPIPE_LOG_INTERVAL", "10"))
    return LogProgress(interval=interval, fmt=fmt)


def emit(line: str) -> None:
    """One line on stderr; nothing when stderr is closed (work never depends on it)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def note(message: str, quiet: bool = False) -> None:
    if not quiet:
        emit(f"vecpipe: {message}")

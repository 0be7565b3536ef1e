"""What the command line writes on stderr: notes, warnings, errors and progress, plain or JSON.

Plain (the default): ``vecpipe: MESSAGE`` lines, a rich bar on a terminal, periodic timestamped
progress lines otherwise. JSON (``vecpipe --log-format json`` or ``VECPIPE_LOG_FORMAT=json``): every
line is one JSON object (:func:`vecpipe.pipeline.progress.json_line` holds the schema), progress
included, on a terminal too. ``--quiet`` silences all but errors.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, TextIO

from vecpipe.pipeline.progress import LogProgress, Progress, json_line

if TYPE_CHECKING:
    from rich.progress import TaskID


class RichProgress(Progress):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
        self._bar = Bar(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self._console, transient=False,
        )
        self._task: TaskID | None = None
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
        assert self._task is not None  # else task is None
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

#: ``--log-format`` as given on this command line (None: not given; VECPIPE_LOG_FORMAT decides).
_log_format: str | None = None
#: The subcommand running (the ``stage`` of JSON lines), set when the command line is parsed.
_stage: str | None = None


def set_log_format(value: str | None) -> None:
    global _log_format
    _log_format = value if value in LOG_FORMATS else None


def log_format() -> str:
    """``--log-format`` (root option) or ``VECPIPE_LOG_FORMAT``: plain or json."""
    if _log_format is not None:
        return _log_format
    value = os.environ.get("VECPIPE_LOG_FORMAT", "plain").strip().lower()
    return value if value in LOG_FORMATS else "plain"


def set_stage(name: str | None) -> None:
    global _stage
    _stage = name


def log_interval() -> float:
    """Seconds between progress lines off a terminal (``VECPIPE_LOG_INTERVAL``, default 10)."""
    try:
        value = float(os.environ.get("VECPIPE_LOG_INTERVAL", "10"))
    except ValueError:
        return 10.0
    return value if value >= 0 else 10.0


def reporter(quiet: bool = False) -> Progress:
    """A rich bar on a terminal, periodic timestamped log lines otherwise (json with --log-format json)."""
    if quiet:
        return Progress()
    fmt = log_format()
    if sys.stderr is None:
        return Progress()
    if sys.stderr.isatty() and fmt == "plain":
        return RichProgress()
    return LogProgress(interval=log_interval(), fmt=fmt)


def emit(line: str) -> None:
    """One line on stderr; nothing when stderr is closed (work never depends on it)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):
        pass


#: What a note is, by its wording: (pattern at the start of the message, JSON event, level).
#: The library reports through one ``note(message)`` callback; this table gives collectors an
#: event and a level to filter on. Anything else is an ``info`` ``note``.
NOTE_KINDS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple((re.compile(p), e, lv) for p, e, lv in (
    (r"up to date: ", "up_to_date", "info"),
    (r"wrote ", "wrote", "info"),
    (r"skipped ", "skipped", "warning"),
    (r"waiting for ", "waiting", "info"),
    (r"faiss: ", "warning", "warning"),
    (r"--spec .*(fewer than|recall may suffer)", "warning", "warning"),
    (r"\S+ stores each value rounded", "warning", "warning"),
    (r"dropped \d+ ", "warning", "warning"),
    (r"the run lacks ", "warning", "warning"),
    (r".* looks deeper than the run", "warning", "warning"),
    (r"warning: ", "warning", "warning"),
))


def classify(message: str) -> tuple[str, str]:
    """(event, level) of a note, by :data:`NOTE_KINDS`."""
    for pattern, event, level in NOTE_KINDS:
        if pattern.match(message):
            return event, level
    return "note", "info"


def log(level: str, event: str, message: str, plain: str | None = None, **fields: object) -> None:
    """One stderr line: a JSON object with ``--log-format json``, else ``plain`` (default ``vecpipe: MESSAGE``)."""
    if log_format() == "json":
        emit(json_line(level, event, message, stage=_stage, **fields))
    else:
        emit(plain if plain is not None else f"vecpipe: {message}")


def note(message: str, quiet: bool = False) -> None:
    """A note from a stage (``vecpipe: MESSAGE``); nothing with ``--quiet``."""
    if quiet:
        return
    event, level = classify(message)
    log(level, event, message)


def error(message: str, exit_status: int, event: str = "error", plain: str | None = None) -> None:
    """An error line, whatever ``--quiet`` says: ``vecpipe: error: MESSAGE`` (or ``plain``), or JSON
    with ``exit_status``."""
    log("error", event, message, plain=f"vecpipe: error: {message}" if plain is None else plain,
        exit_status=exit_status)


def install_warning_hook() -> None:
    """Python warnings (from any library) become log lines too, so that JSON stderr stays JSON."""
    import warnings

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if log_format() == "json":
            log("warning", "warning", f"{category.__name__}: {message}", file=filename, line=lineno)
        else:
            _show(message, category, filename, lineno, file, line)

    _show = warnings.showwarning
    if getattr(_show, "_vecpipe", False):
        return
    show._vecpipe = True  # type: ignore[attr-defined]
    warnings.showwarning = show

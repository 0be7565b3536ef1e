"""Progress reporting without rich: a no-op reporter and periodic plain or JSON log lines.

The CLI swaps in a rich progress bar when stderr is a terminal; the library only calls the small
interface below.

JSON log lines (``--log-format json``) are one object a line, built by :func:`json_line`, the one
place that knows the schema: ``time`` (local time, ISO 8601 with its UTC offset), ``level``
(``info``, ``warning`` or ``error``), ``event`` (``note``, ``progress``, ``done``, ``up_to_date``,
``wrote``, ``skipped``, ``waiting``, ``warning``, ``error``, ``interrupted``, ``terminated``),
``stage`` (the subcommand, or null), ``message`` (the text the plain format prints), then the
event's own fields (progress: the unit's count under the unit's name, ``unit``, ``total``,
``rate``, ``elapsed_s``, ``eta_s``, ``tokens``; errors: ``exit_status``).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any, TextIO


class Progress:
    """Reporter interface; this base class reports nothing."""

    def start(self, label: str, total: int | None = None, unit: str = "rows") -> None:
        pass

    def advance(self, n: int, tokens: int = 0) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """The work failed: stop without a closing summary."""


class LogProgress(Progress):
    """Periodic timestamped lines on stderr (``--log-format plain|json``), for cron and log collectors."""

    def __init__(self, interval: float = 10.0, fmt: str = "plain", stream: TextIO | None = None):
        self.interval = interval
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.label = ""
        self.total: int | None = None
        self.unit = "rows"
        self.done = 0
        self.tokens = 0
        self._t0 = time.monotonic()
        self._last = self._t0

    def start(self, label: str, total: int | None = None, unit: str = "rows") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = self.tokens = 0
        self._t0 = self._last = time.monotonic()

    def advance(self, n: int, tokens: int = 0) -> None:
        self.done += n
        self.tokens += tokens
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def note(self, message: str) -> None:
        self._line({"event": "note", "message": message}, message)

    def close(self) -> None:
        if self.done:
            self._emit(final=True)

    def _emit(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if self.total and rate > 0 and not final else None
        total = f"/{self.total}" if self.total else ""
        text = f"{self.label}: {self.done}{total} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.tokens:
            text += f", {self.tokens / elapsed:.0f} tokens/s"
        text += f", ETA {_duration(eta)}" if eta is not None else f", {_duration(elapsed)} elapsed"
        record: dict[str, Any] = {"event": "done" if final else "progress", "message": text, self.unit: self.done,
                                  "unit": self.unit, "total": self.total, "rate": round(rate, 2),
                                  "elapsed_s": round(elapsed, 1)}
        if self.tokens:
            record["tokens"] = self.tokens
        if eta is not None:
            record["eta_s"] = round(eta, 1)
        self._line(record, text)

    def _line(self, record: dict, text: str) -> None:
        if self.fmt == "json":
            fields = {k: v for k, v in record.items() if k not in ("event", "message")}
            line = json_line("info", record["event"], record.get("message", text), stage=self.label or None, **fields)
        else:
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime())} vecpipe {text}"
        if self.stream is None:
            return
        try:
            print(line, file=self.stream, flush=True)
        except (OSError, ValueError):  # stderr closed: progress is never worth failing the work
            pass


def json_line(level: str, event: str, message: str, stage: str | None = None, **fields: Any) -> str:
    """One JSON log line (no newline): ``time``, ``level``, ``event``, ``stage``, ``message``, then ``fields``."""
    record = {"time": datetime.now().astimezone().isoformat(timespec="seconds"), "level": level, "event": event,
              "stage": stage, "message": message}
    for key, value in fields.items():
        if key not in record:
            record[key] = value
    return json.dumps(record, default=str)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

"""Progress reporting without rich: a no-op reporter and periodic plain or JSON log lines.

The CLI swaps in a rich progress bar when stderr is a terminal; the library only calls the small
interface below.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO


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
        record = {"event": "done" if final else "progress", "stage": self.label, self.unit: self.done,
                  "total": self.total, "rate": round(rate, 2), "elapsed_s": round(elapsed, 1)}
        if self.tokens:
            record["tokens"] = self.tokens
        if eta is not None:
            record["eta_s"] = round(eta, 1)
        total = f"/{self.total}" if self.total else ""
        text = f"{self.label}: {self.done}{total} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.tokens:
            text += f", {self.tokens / elapsed:.0f} tokens/s"
        text += f", ETA {_duration(eta)}" if eta is not None else f", {_duration(elapsed)} elapsed"
        self._line(record, text)

    def _line(self, record: dict, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        line = json.dumps({"time": stamp, **record}) if self.fmt == "json" else f"{stamp} vecpipe {text}"
        if self.stream is None:
            return
        try:
            print(line, file=self.stream, flush=True)
        except (OSError, ValueError):  # stderr closed: progress is never worth failing the work
            pass


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

"""One background thread that runs submitted calls in order (a writer that does not stall the GPU).

The stage's main thread hands each finished block's writes (checkpoint, sink) to the thread and
goes back to its kernel; the queue holds at most ``depth`` calls, so memory stays bounded and a slow
disk slows the producer instead of piling up blocks. The first error is re-raised in the main thread
at the next ``submit`` or at ``close``; later calls are then skipped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

_STOP = object()


class Background:
    def __init__(self, depth: int = 2, name: str = "vecpipe-writer") -> None:
        self._calls: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is _STOP:
                return
            if self._error is None:
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the submitting thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, call: Callable[[], object]) -> None:
        self._raise()
        self._calls.put(call)

    def close(self) -> None:
        """Wait for every submitted call; re-raise the first error."""
        if self._thread.is_alive():
            self._calls.put(_STOP)
            self._thread.join()
        self._raise()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
            return
        # the main thread failed: let the writes already queued finish (or fail) quietly, then go on unwinding
        if self._thread.is_alive():
            self._calls.put(_STOP)
            self._thread.join()

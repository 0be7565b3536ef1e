"""The encoder interface the commands use, independent of the runtime behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

#: ``on_progress(n_texts_done, n_tokens_done)``: running totals since the call began.
ProgressFn = Callable[[int, int], None]


class Encoder(ABC):
    """Turns texts into float32 vectors, one row per text, in input order."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the vectors."""

    @property
    @abstractmethod
    def info(self) -> dict[str, Any]:
        """JSON-able description for artifact metadata: name, sha256, pooling, max_length,
        prefix, normalize, dim. Deterministic: nothing in it varies between machines."""

    @abstractmethod
    def encode_batches(
        self,
        batches: Iterable[Sequence[str]],
        on_progress: ProgressFn | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield one float32 array ``[len(batch), dim]`` per input list, in order, lazily.

        ``on_progress`` gets the running totals of texts and (non-padding) tokens encoded so far.
        """

    def encode(self, texts: Sequence[str] | Iterable[str]) -> np.ndarray:
        """Encode one list of texts into a float32 array ``[n, dim]``."""
        texts = list(texts)
        for arr in self.encode_batches([texts]):
            return arr
        return np.zeros((0, self.dim), dtype=np.float32)  # pragma: no cover

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release the runtime session (optional; garbage collection does it too)."""

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Open inputs (a path or ``-``) and tell their format from the first bytes, never the extension."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import BinaryIO

from vecpipe.errors import InputError

PARQUET = "parquet"
ARROW_FILE = "arrow-file"
ARROW_STREAM = "arrow-stream"
JSONL = "jsonl"
TEXT = "text"  # TSV, TREC text and other line-oriented text
VPI = "vpi"

VPI_MAGIC = b"VPI1\x00\x00\x00\x00"
_ARROW_FILE_MAGIC = b"ARROW1"
_ARROW_STREAM_CONTINUATION = b"\xff\xff\xff\xff"


def sniff_bytes(head: bytes) -> str:
    """The format of a file that starts with ``head`` (at least 8 bytes where available)."""
    if head.startswith(b"PAR1"):
        return PARQUET
    if head.startswith(_ARROW_FILE_MAGIC):
        return ARROW_FILE
    if head.startswith(_ARROW_STREAM_CONTINUATION):
        return ARROW_STREAM
    if head.startswith(VPI_MAGIC):
        return VPI
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return JSONL
    return TEXT


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


class Input:
    """An opened input: its display name, sniffed format and a binary stream positioned at the start.

    ``-`` reads stdin. Stdin is buffered so the first bytes can be peeked without consuming them;
    Parquet and Arrow files from stdin are read whole (both formats need random access).
    """

    def __init__(self, path: str | Path):
        self.name = display_name(path)
        self.path: Path | None = None if str(path) == "-" else Path(path)
        if self.path is None:
            raw = sys.stdin.buffer
            self.stream: BinaryIO = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
        else:
            if not self.path.exists():
                raise InputError(f"{self.name}: no such file; check the path")
            if self.path.is_dir():
                raise InputError(f"{self.name}: is a directory, expected a file")
            try:
                self.stream = open(self.path, "rb")
            except OSError as exc:
                raise InputError(f"{self.name}: cannot open: {exc.strerror}") from None
        head = self._peek(8)
        if not head:
            raise InputError(f"{self.name}: input is empty; give a file with at least one record")
        self.format = sniff_bytes(head)

    def _peek(self, n: int) -> bytes:
        if self.path is not None:
            head = self.stream.read(n)
            self.stream.seek(0)
            return head
        buf = self.stream.peek(n)  # type: ignore[attr-defined]
        return buf[:n]

    def seekable(self) -> BinaryIO:
        """A seekable stream over the whole input (reads stdin into memory)."""
        if self.path is not None:
            return self.stream
        return io.BytesIO(self.stream.read())

    def close(self) -> None:
        if self.path is not None:
            self.stream.close()

    def __enter__(self) -> "Input":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Open inputs (a path or ``-``) and tell their format from the first bytes, never the extension.

Two registries decide what an input is:

* :data:`COMPRESSIONS`: stream codecs recognised by their magic bytes (gzip, zstd). A compressed
  input is decompressed as it is read, and its content sniffed again;
* :data:`FORMATS`: content formats recognised by their first bytes (Parquet, Arrow file, Arrow
  stream, .vpi, JSON lines; anything else is line-oriented text).

Adding a compression or a format is one entry here (and its reader where it is read). Every input
may be a stream: stdin, a FIFO, process substitution (``<(...)``) or a compressed file are read
once, in one pass; a reader that needs random access (Parquet, Arrow files, .vpi) gets the bytes
spooled to memory or a temporary file (:meth:`Input.seekable`, :meth:`Input.local_path`).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from vecpipe.errors import InputError

PARQUET = "parquet"
ARROW_FILE = "arrow-file"
ARROW_STREAM = "arrow-stream"
JSONL = "jsonl"
TEXT = "text"  # TSV, TREC text and other line-oriented text
VPI = "vpi"

VPI_MAGIC = b"VPI1\x00\x00\x00\x00"
ARROW_FORMATS = (PARQUET, ARROW_FILE, ARROW_STREAM)
_SPOOL_IN_MEMORY = 64 << 20  # bytes of a non-seekable input kept in memory before spooling to disk


@dataclass(frozen=True)
class ContentFormat:
    name: str
    detect: Callable[[bytes], bool]


def _jsonl(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


#: Content formats in the order they are tried; the first whose ``detect`` accepts the head wins.
FORMATS: list[ContentFormat] = [
    ContentFormat(PARQUET, lambda h: h.startswith(b"PAR1")),
    ContentFormat(ARROW_FILE, lambda h: h.startswith(b"ARROW1")),
    ContentFormat(ARROW_STREAM, lambda h: h.startswith(b"\xff\xff\xff\xff")),
    ContentFormat(VPI, lambda h: h.startswith(VPI_MAGIC)),
    ContentFormat(JSONL, _jsonl),
]


def _gunzip(stream: BinaryIO) -> BinaryIO:
    import gzip

    return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]


def _unzstd(stream: BinaryIO) -> BinaryIO:
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[return-value]


@dataclass(frozen=True)
class Compression:
    name: str
    magic: bytes
    open: Callable[[BinaryIO], BinaryIO]


#: Stream compressions recognised by their magic bytes.
COMPRESSIONS: list[Compression] = [
    Compression("gzip", b"\x1f\x8b", _gunzip),
    Compression("zstd", b"\x28\xb5\x2f\xfd", _unzstd),
]


def sniff_bytes(head: bytes) -> str:
    """The content format of data that starts with ``head`` (at least 8 bytes where available)."""
    for fmt in FORMATS:
        if fmt.detect(head):
            return fmt.name
    return TEXT


def compression_of(head: bytes) -> Compression | None:
    return next((c for c in COMPRESSIONS if head.startswith(c.magic)), None)


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def _stdin() -> BinaryIO:
    try:
        os.fstat(0)
    except OSError:
        raise InputError("<stdin>: standard input is closed; give an input file") from None
    if sys.stdin is None:
        raise InputError("<stdin>: standard input is closed; give an input file")
    raw = sys.stdin.buffer
    return raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose failures (damaged or truncated data) are one-line InputErrors."""

    def __init__(self, inner: BinaryIO, name: str, codec: str):
        self._inner, self._name, self._codec = inner, name, codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        try:
            data = self._inner.read(len(buffer))
        except InputError:
            raise
        except Exception as exc:  # gzip: OSError/EOFError; zstandard: ZstdError
            raise InputError(f"{self._name}: damaged or truncated {self._codec} data ({exc}); "
                             "recompress it or give the plain file") from None
        n = len(data)
        buffer[:n] = data
        return n


class Input:
    """An opened input: its display name, sniffed format and a binary stream positioned at the start.

    ``-`` reads stdin. ``compression`` names the codec the input was decompressed with (or None);
    ``regular`` tells whether the stream is an uncompressed regular file (seekable, mappable).
    """

    def __init__(self, path: str | Path):
        self.name = display_name(path)
        self.path: Path | None = None if str(path) == "-" else Path(path)
        self._spooled: Path | None = None
        self._closers: list[BinaryIO] = []
        self.compression: str | None = None
        if self.path is None:
            raw: BinaryIO = _stdin()
            self.regular = False
        else:
            self._check_path(self.path)
            try:
                raw = open(self.path, "rb")
            except OSError as exc:
                raise InputError(f"{self.name}: cannot open: {exc.strerror}") from None
            self._closers.append(raw)
            self.regular = stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
            if not self.regular:
                raw = io.BufferedReader(raw)  # type: ignore[arg-type]
        self.stream: BinaryIO = raw
        head = self._peek(8)
        codec = compression_of(head)
        if codec is not None:
            self.compression = codec.name
            self.regular = False
            self.stream = io.BufferedReader(_Decompressed(codec.open(self.stream), self.name, codec.name))
            head = self._peek(8)
        if not head:
            what = f"{self.compression}-compressed input" if self.compression else "input"
            raise InputError(f"{self.name}: {what} is empty; give a file with at least one record")
        self.format = sniff_bytes(head)

    def _check_path(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"{self.name}: no such file; check the path")
        if path.is_dir():
            raise InputError(f"{self.name}: is a directory, expected a file")

    def _peek(self, n: int) -> bytes:
        try:
            if self.regular:
                head = self.stream.read(n)
                self.stream.seek(0)
                return head
            return self.stream.peek(n)[:n]  # type: ignore[attr-defined]
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read: {exc.strerror or exc}") from None

    def seekable(self) -> BinaryIO:
        """A seekable stream over the whole input (a stream is spooled to memory or disk once)."""
        if self.regular:
            return self.stream
        spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        self._copy(spooled)
        spooled.seek(0)
        self.stream = spooled  # type: ignore[assignment]
        self.regular = True
        return self.stream

    def local_path(self) -> Path:
        """A path to the whole input in a regular file: the file itself, or a temporary copy."""
        if self.regular and self.path is not None and self.compression is None:
            return self.path
        if self._spooled is None:
            fd, name = tempfile.mkstemp(prefix="vecpipe-spool-")
            self._spooled = Path(name)
            with os.fdopen(fd, "wb") as fh:
                if self.regular:
                    self.stream.seek(0)
                self._copy(fh)
        return self._spooled

    def _copy(self, dest: BinaryIO) -> None:
        try:
            shutil.copyfileobj(self.stream, dest, 1 << 20)
        except (OSError, EOFError) as exc:
            raise InputError(f"{self.name}: cannot read the whole input ({exc}); is it complete?") from None

    def close(self) -> None:
        for fh in self._closers:
            fh.close()
        self._closers = []
        if self._spooled is not None:
            self._spooled.unlink(missing_ok=True)
            self._spooled = None

    def __enter__(self) -> "Input":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

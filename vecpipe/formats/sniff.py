"""Open inputs (a path or ``-``) and tell their format from the first bytes, never the extension.

Two registries decide what an input is:

* :data:`COMPRESSIONS`: stream codecs recognised by their magic bytes (gzip, zstd). A compressed
  input is decompressed as it is read, and its content sniffed again;
* :data:`FORMATS`: content formats recognised by their first bytes (Parquet, Arrow file, Arrow
  stream, .vpi, NumPy ``.npy`` (``\\x93NUMPY``) and ``.npz`` (a zip whose members are ``.npy``),
  other zip archives, JSON lines; anything else is line-oriented text).

Line-oriented text is told apart once more by its first lines (:data:`TEXT_KINDS`, :func:`text_kind`):
qrels (a BEIR header ``query-id<TAB>corpus-id<TAB>score``, or TREC ``qid 0 docid rel`` lines), TREC
runs (``qid Q0 docid rank score tag``) and metric files (``vecpipe eval``'s ``measure<TAB>value``),
so that a reader of text records or vectors can say what it was given instead (:func:`misplaced`).
A directory given where a file is expected is answered with the file to give (:func:`directory_hint`).

Adding a compression or a format is one entry here (and its reader where it is read). Every input
may be a stream: stdin, a FIFO, process substitution (``<(...)``) or a compressed file are read
once, in one pass; a reader that needs random access (Parquet, Arrow files, .vpi) gets the bytes
spooled to memory or a temporary file (:meth:`Input.seekable`, :meth:`Input.local_path`).
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from vecpipe.errors import InputError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PARQUET = "parquet"
ARROW_FILE = "arrow-file"
ARROW_STREAM = "arrow-stream"
JSONL = "jsonl"
TEXT = "text"  # TSV, TREC text and other line-oriented text
VPI = "vpi"
NPY = "npy"  # a NumPy array file (read as vectors by vecpipe.formats.vectors)
NPZ = "npz"  # a zip of .npy members (numpy.savez)
ZIP = "zip"  # any other zip archive: refused with a hint to unzip it

VPI_MAGIC = b"VPI1\x00\x00\x00\x00"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
NUMPY_FORMATS = (NPY, NPZ)
#: Formats read as Arrow record batches by :func:`vecpipe.formats.records.open_arrow_batches`; NumPy
#: arrays are presented there as a vectors table (``id``, ``embedding``) with no metadata.
ARROW_FORMATS = (PARQUET, ARROW_FILE, ARROW_STREAM, NPY, NPZ)
HEAD_BYTES = 64  # bytes sniffed: enough for a zip's first member name
_SPOOL_IN_MEMORY = 64 << 20  # bytes of a non-seekable input kept in memory before spooling to disk


@dataclass(frozen=True)
class ContentFormat:
    name: str
    detect: Callable[[bytes], bool]


def _jsonl(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def zip_first_member(head: bytes) -> str | None:
    """The name of the first member of a zip archive that starts with ``head`` (None: not in the head)."""
    if not head.startswith(ZIP_MAGIC) or len(head) < 30:
        return None
    length = int.from_bytes(head[26:28], "little")
    if len(head) < 30 + length:
        return None
    return head[30:30 + length].decode("utf-8", "replace")


def _npz(head: bytes) -> bool:
    """A zip whose first member is a .npy array (a name cut off by a short head counts as one)."""
    if not head.startswith(ZIP_MAGIC):
        return False
    name = zip_first_member(head)
    return name is None or name.endswith(".npy")


#: Content formats in the order they are tried; the first whose ``detect`` accepts the head wins.
FORMATS: list[ContentFormat] = [
    ContentFormat(PARQUET, lambda h: h.startswith(b"PAR1")),
    ContentFormat(ARROW_FILE, lambda h: h.startswith(b"ARROW1")),
    ContentFormat(ARROW_STREAM, lambda h: h.startswith(b"\xff\xff\xff\xff")),
    ContentFormat(VPI, lambda h: h.startswith(VPI_MAGIC)),
    ContentFormat(NPY, lambda h: h.startswith(NPY_MAGIC)),
    ContentFormat(NPZ, _npz),
    ContentFormat(ZIP, lambda h: h.startswith(ZIP_MAGIC)),
    ContentFormat(JSONL, _jsonl),
]


def _gunzip(stream: BinaryIO) -> BinaryIO:
    import gzip

    return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]


def _unzstd(stream: BinaryIO) -> BinaryIO:
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)


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
    """The content format of data that starts with ``head`` (at least 8 bytes where available,
    :data:`HEAD_BYTES` to tell a .npz from another zip)."""
    for fmt in FORMATS:
        if fmt.detect(head):
            return fmt.name
    return TEXT


def compression_of(head: bytes) -> Compression | None:
    return next((c for c in COMPRESSIONS if head.startswith(c.magic)), None)


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


# ----------------------------------------------------------------------------- kinds of text

SAMPLE_LINES = 3  # non-empty lines looked at to tell a qrels file or a run from text records

QRELS_QID_NAMES = frozenset({"query-id", "query_id", "qid", "queryid"})
QRELS_DOCID_NAMES = frozenset({"corpus-id", "corpus_id", "docid", "doc-id", "doc_id", "did"})
QRELS_REL_NAMES = frozenset({"score", "rel", "relevance", "label", "judgment", "judgement"})
_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


def line_fields(line: str) -> list[str]:
    """A text line's fields: split on tabs (each stripped) when it holds one, else on whitespace."""
    if "\t" in line:
        return [f.strip() for f in line.split("\t")]
    return line.split()


def _number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _header(rows: list[list[str]]) -> list[str]:
    return [f.lower() for f in rows[0]] if rows else []


def _beir_qrels(rows: list[list[str]]) -> bool:
    h = _header(rows)
    return len(h) == 3 and h[0] in QRELS_QID_NAMES and h[1] in QRELS_DOCID_NAMES and h[2] in QRELS_REL_NAMES


def _trec_qrels(rows: list[list[str]]) -> bool:
    return bool(rows) and all(len(r) == 4 and (r[1].isdigit() or r[1].upper() == "Q0") and _INTEGER.fullmatch(r[3])
                              for r in rows)


def _trec_run(rows: list[list[str]]) -> bool:
    return bool(rows) and all(len(r) == 6 and r[1].upper() in ("Q0", "0") and r[3].lstrip("+-").isdigit() and _number(r[4])
                              for r in rows)


def _metrics(rows: list[list[str]]) -> bool:
    return _header(rows) in (["measure", "value"], ["qid", "measure", "value"])


@dataclass(frozen=True)
class TextKind:
    """A kind of line-oriented text recognised by its first lines (their fields, see :func:`line_fields`)."""

    name: str  # qrels, run, metrics
    layout: str  # the layout it was recognised by (shown by inspect)
    what: str  # "a qrels file (...)", for messages
    use: str  # where it belongs, for messages
    detect: Callable[[list[list[str]]], bool]


#: Kinds of text in the order they are tried on the fields of the first :data:`SAMPLE_LINES` non-empty lines.
TEXT_KINDS: list[TextKind] = [
    TextKind("metrics", "measure<TAB>value", "a metrics file (measure, value) written by vecpipe eval",
             "vecpipe inspect shows it", _metrics),
    TextKind("qrels", "beir", "a qrels file (query-id, corpus-id, score)", "give it to vecpipe eval --qrels", _beir_qrels),
    TextKind("run", "trec", "a TREC run (qid Q0 docid rank score tag)", "give it to vecpipe eval or vecpipe rerank", _trec_run),
    TextKind("qrels", "trec", "a TREC qrels file (qid 0 docid rel)", "give it to vecpipe eval --qrels", _trec_qrels),
]


def text_kind(lines: list[str]) -> TextKind | None:
    """The kind of text whose first non-empty lines are ``lines`` (None: text records or unknown text)."""
    rows = [line_fields(line) for line in lines if line.strip()][:SAMPLE_LINES]
    return next((k for k in TEXT_KINDS if k.detect(rows)), None)


def sample_lines(stream: BinaryIO, n: int = SAMPLE_LINES, max_bytes: int = 1 << 16) -> list[str]:
    """Up to ``n`` non-empty lines from the start of ``stream`` (reads at most ``max_bytes``; consumes them)."""
    lines: list[str] = []
    left = max_bytes
    while len(lines) < n and left > 0:
        raw = stream.readline(left)
        if not raw:
            break
        left -= len(raw)
        line = raw.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
        if line.strip():
            lines.append(line)
    return lines


def misplaced(name: str, kind: TextKind, expected: str) -> InputError:
    """The refusal of a qrels file, run or metrics file given where ``expected`` is read."""
    return InputError(f"{name}: this is {kind.what}, not {expected}; {kind.use}")


# ------------------------------------------------------------------------------- directories

BEIR_CORPUS = ("corpus.jsonl", "corpus.jsonl.gz", "corpus.jsonl.zst")
BEIR_QUERIES = ("queries.jsonl", "queries.jsonl.gz", "queries.jsonl.zst")
_DIRECTORY_SCAN = 256  # entries of a directory looked at for files of known kinds


def is_beir_directory(path: Path) -> bool:
    return any((path / name).is_file() for name in BEIR_CORPUS)


def file_kind(path: Path) -> str | None:
    """What a regular file holds, in a word (its format, or the kind of its text), or None when unknown."""
    try:
        with Input(path) as inp:
            kind: str | None = inp.format
            if inp.format == TEXT:
                lines = sample_lines(inp.stream)
                found = text_kind(lines)
                kind = found.name if found else ("tsv" if lines and "\t" in lines[0] else None)
            if kind is not None and inp.compression:
                kind = f"{kind}, {inp.compression}"
            return kind
    except (InputError, OSError, EOFError):
        return None


def directory_files(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(name, kind) of the regular files of known kinds in a directory, in name order (hidden files left out)."""
    try:
        names = sorted(e.name for e in os.scandir(path) if not e.name.startswith("."))[:_DIRECTORY_SCAN]
    except OSError:
        return []
    found = []
    for name in names:
        child = path / name
        if not child.is_file():
            continue
        kind = file_kind(child)
        if kind is not None:
            found.append((name, kind))
            if limit is not None and len(found) >= limit:
                break
    return found


def directory_hint(path: Path, name: str) -> str:
    """The refusal of a directory given where a file is expected, naming the file to give instead."""
    def inside(child: str) -> str:
        return os.path.join(name, child)

    corpus = next((c for c in BEIR_CORPUS if (path / c).is_file()), None)
    if corpus is not None:
        queries = next((q for q in BEIR_QUERIES if (path / q).is_file()), None)
        alt = f" (or {inside(queries)})" if queries else ""
        return f"{name}: is a BEIR dataset directory; give {inside(corpus)}{alt}"
    files = directory_files(path, limit=3)
    if not files:
        return f"{name}: is a directory, expected a file"
    listed = ", ".join(f"{inside(f)} ({kind})" for f, kind in files)
    return f"{name}: is a directory, expected a file; give a file inside it, such as {listed}"


def _stdin() -> BinaryIO:
    try:
        os.fstat(0)
    except OSError:
        raise InputError("<stdin>: standard input is closed; give an input file") from None
    if sys.stdin is None:
        raise InputError("<stdin>: standard input is closed; give an input file")
    raw = sys.stdin.buffer
    return raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose failures (damaged or truncated data) are one-line InputErrors."""

    def __init__(self, inner: BinaryIO, name: str, codec: str):
        self._inner, self._name, self._codec = inner, name, codec

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = cast("memoryview | bytearray", buffer)  # from io.BufferedReader / RawIOBase.read
        try:
            data = self._inner.read(len(view))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - gzip: OSError/EOFError; zstandard: ZstdError
            raise InputError(f"{self._name}: damaged or truncated {self._codec} data ({exc}); "
                             "recompress it or give the plain file") from None
        n = len(data)
        view[:n] = data
        return n


class Input:
    """An opened input: its display name, sniffed format and a binary stream positioned at the start.

    ``-`` reads stdin. ``compression`` names the codec the input was decompressed with (or None);
    ``regular`` tells whether the stream is an uncompressed regular file (seekable, mappable).
    """

    def __new__(cls, path: str | Path) -> Any:
        # A directory of Parquet parts (a dataset, vecpipe.formats.dataset) is one input too.
        if cls is Input and str(path) != "-" and os.path.isdir(path):
            from vecpipe.formats.dataset import DatasetInput, is_dataset_dir

            if is_dataset_dir(Path(path)):
                return super().__new__(DatasetInput)  # then DatasetInput.__init__(path)
        return super().__new__(cls)

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
                raw = io.BufferedReader(raw)
        self.stream: BinaryIO = raw
        head = self._peek(HEAD_BYTES)
        codec = compression_of(head)
        if codec is not None:
            self.compression = codec.name
            self.regular = False
            self.stream = io.BufferedReader(_Decompressed(codec.open(self.stream), self.name, codec.name))
            head = self._peek(HEAD_BYTES)
        if not head:
            what = f"{self.compression}-compressed input" if self.compression else "input"
            raise InputError(f"{self.name}: {what} is empty; give a file with at least one record")
        self.format = sniff_bytes(head)

    def _check_path(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"{self.name}: no such file; check the path")
        if path.is_dir():
            raise InputError(directory_hint(path, self.name))

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
        import tempfile

        spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        self._copy(spooled)
        spooled.seek(0)
        self.stream = spooled  # type: ignore[assignment]
        self.regular = True
        return self.stream

    def arrow_source(self) -> Any:
        """What pyarrow reads best: a memory map of a regular uncompressed file (read at memory
        speed, no copies through Python), else the seekable stream of :meth:`seekable`."""
        if self.regular and self.path is not None and self.compression is None:
            import pyarrow as pa

            mapped = pa.memory_map(str(self.path))
            self._closers.append(mapped)  # closing it leaves buffers still in use alive
            return mapped
        return self.seekable()

    def local_path(self) -> Path:
        """A path to the whole input in a regular file: the file itself, or a temporary copy."""
        if self.regular and self.path is not None and self.compression is None:
            return self.path
        if self._spooled is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="vecpipe-spool-")
            self._spooled = Path(name)
            with os.fdopen(fd, "wb") as fh:
                if self.regular:
                    self.stream.seek(0)
                self._copy(fh)
        return self._spooled

    def _copy(self, dest: IO[bytes]) -> None:
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

    def __enter__(self) -> Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read a MiB at a time."""
    import hashlib  # OpenSSL's start-up, only for commands that hash

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

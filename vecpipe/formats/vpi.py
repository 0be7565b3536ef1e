"""The ``.vpi`` index container: a self-describing header, the ids and the faiss index bytes.

Layout::

    magic  b"VPI1\\0\\0\\0\\0"                      8 bytes
    header length (little-endian uint64)         8 bytes
    header JSON (utf-8)                          metadata + one entry per section
    sha256 of the header JSON                    32 bytes
    sections, each at the offset the header gives (64-byte aligned)

Each section records its stored length, raw length, compression (``zstd`` or ``none``) and the
sha256 of its stored bytes. Reading checks the sizes (a truncated file is refused) and the
checksums (a corrupt one is refused). ``compress=False`` stores the sections raw, aligned, so the
index bytes can be mapped from the file without decompression.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn
from vecpipe.formats.sniff import VPI_MAGIC

FORMAT_VERSION = 1
_ALIGN = 64
_ZSTD_LEVEL = 3


@dataclass
class Container:
    meta: dict[str, Any]
    ids: pa.Array
    index_bytes: np.ndarray  # uint8 view (of the mapped file when stored raw), for faiss's readers
    extra: dict[str, bytes]
    mapping: Any = None  # the file mapping the views point into: keep it alive as long as they are used
    sections: list[dict[str, Any]] | None = None  # the header's entries (offset, length, sha256) of each section

    def section(self, name: str) -> dict[str, Any]:
        for entry in self.sections or []:
            if entry["name"] == name:
                return entry
        raise KeyError(name)


def _ids_to_bytes(ids: pa.Array) -> bytes:
    ids = arrowfn.cast(ids, pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset : ids.offset + len(ids) + 1]
    data = ids.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    body = bytes(data)[start:end] if data is not None else b""
    return struct.pack("<Q", len(ids)) + (offsets - start).astype("<i8").tobytes() + body


def _ids_from_bytes(raw: bytes | memoryview) -> pa.Array:
    raw = memoryview(raw)
    (n,) = struct.unpack_from("<Q", raw, 0)
    offsets = np.frombuffer(raw, dtype="<i8", count=n + 1, offset=8)
    data_start = 8 + 8 * (n + 1)
    data = raw[data_start:]
    if len(data) != int(offsets[-1]):
        raise ValueError("ids section is inconsistent")
    return arrowfn.cast(pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets.copy()), pa.py_buffer(bytes(data))), pa.string())


#: A section is stored zstd-compressed only when a sample of it shrinks below this share (float
#: vectors shrink by ~7%: not worth decompressing at every load, nor mapping them is then possible).
COMPRESS_BELOW = 0.9
_SAMPLE = 1 << 20


def _worth_compressing(raw: memoryview, compressor: Any) -> bool:
    if len(raw) <= _SAMPLE:
        return True  # small sections (ids, small indexes): compress whatever they give
    step = len(raw) // 4
    sample = b"".join(bytes(raw[i * step : i * step + _SAMPLE // 4]) for i in range(4))
    return len(compressor.compress(sample)) < COMPRESS_BELOW * len(sample)


def write(dest: str | Path | BinaryIO, meta: dict[str, Any], ids: pa.Array, index_bytes: Any,
          compress: bool = True, extra: dict[str, bytes] | None = None) -> None:
    """Write a container to ``dest`` (a path the caller puts in place; see :mod:`vecpipe.formats.targets`).

    ``index_bytes`` is any buffer (bytes, a uint8 array, a memoryview): it is not copied.
    ``compress``: zstd for each section where that pays (see :data:`COMPRESS_BELOW`); False stores
    every section raw. Written front to back, so ``dest`` may be a FIFO or a device.
    """
    import zstandard

    sections: list[tuple[str, memoryview]] = [("ids", memoryview(_ids_to_bytes(ids))),
                                              ("index", memoryview(index_bytes).cast("B"))]
    for name, payload in sorted((extra or {}).items()):
        sections.append((f"extra:{name}", memoryview(payload)))
    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False, write_content_size=True)
    stored: list[tuple[dict, Any]] = []
    for name, raw in sections:
        packed = compress and _worth_compressing(raw, compressor)
        data: Any = compressor.compress(raw) if packed else raw
        entry: dict[str, Any] = {"name": name, "raw_length": len(raw), "length": len(data),
                                 "compression": "zstd" if packed else "none", "sha256": hashlib.sha256(data).hexdigest()}
        stored.append((entry, data))
    # Offsets depend on the header length, which depends on the offsets: fix the width of the
    # offsets by computing them twice.
    header = {"format_version": FORMAT_VERSION, "meta": meta, "sections": [e for e, _ in stored]}
    for _ in range(3):
        head_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        pos = _align(16 + len(head_bytes) + 32)
        for entry, data in stored:
            entry["offset"] = pos
            pos = _align(pos + len(data))
    head_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    with contextlib.ExitStack() as stack:
        fh = dest if hasattr(dest, "write") else stack.enter_context(open(dest, "wb"))
        head = VPI_MAGIC + struct.pack("<Q", len(head_bytes)) + head_bytes + hashlib.sha256(head_bytes).digest()
        fh.write(head)
        pos = len(head)
        for entry, data in stored:
            fh.write(b"\0" * (entry["offset"] - pos))
            fh.write(data)
            pos = entry["offset"] + len(data)
        fh.write(b"\0" * (_align(pos) - pos))


def write_streamed(dest: str | Path, meta: dict[str, Any], ids: pa.Array,
                   write_index: Callable[[Callable[[bytes], int]], None], compress: bool = True,
                   extra: dict[str, bytes] | None = None, index_align: int = _ALIGN) -> None:
    """Write a container whose index section is streamed into the file by ``write_index(sink)``
    (``sink(chunk)`` writes and hashes each chunk), never held in memory as a whole: for large flat
    indexes, whose float codes would not compress anyway. ``dest`` must be a regular file: the
    header, reserved up front at its largest possible size (padded with spaces, which JSON
    ignores), is written last. The index section comes after the others and is stored raw, from an
    offset that is a multiple of ``index_align`` (4096 for SPANN's posting lists, read by blocks).
    """
    import zstandard

    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=False, write_content_size=True)
    stored: list[tuple[dict, Any]] = []
    for name, raw in [("ids", memoryview(_ids_to_bytes(ids)))] + [(f"extra:{k}", memoryview(v)) for k, v in sorted((extra or {}).items())]:
        packed = compress and _worth_compressing(raw, compressor)
        data: Any = compressor.compress(raw) if packed else raw
        stored.append(({"name": name, "raw_length": len(raw), "length": len(data), "compression": "zstd" if packed else "none",
                        "sha256": hashlib.sha256(data).hexdigest()}, data))
    big = 10**18
    index_entry: dict[str, Any] = {"name": "index", "raw_length": big, "length": big, "compression": "none",
                                   "sha256": "0" * 64, "offset": big}
    header = {"format_version": FORMAT_VERSION, "meta": meta, "sections": [e for e, _ in stored] + [index_entry]}
    for entry, _ in stored:
        entry["offset"] = big
    bound = len(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    pos = _align(16 + bound + 32)
    for entry, data in stored:
        entry["offset"] = pos
        pos = _align(pos + len(data))
    pos = (pos + index_align - 1) // index_align * index_align
    index_entry["offset"] = pos
    from vecpipe.formats.targets import WriteBehind

    digest = _HashAside()
    written = [0]
    with open(dest, "wb") as fh:
        behind = WriteBehind(dest)  # the disk starts on the bytes while the rest is written
        for entry, data in stored:
            fh.seek(entry["offset"])
            fh.write(data)
        fh.seek(pos)

        def sink(chunk: bytes) -> int:
            fh.write(chunk)
            digest.update(chunk)
            written[0] += len(chunk)
            behind.wrote(len(chunk))
            return len(chunk)

        try:
            write_index(sink)
        finally:
            behind.close()
            digest.close()
        end = pos + written[0]
        fh.write(b"\0" * (_align(end) - end))
        index_entry.update(raw_length=written[0], length=written[0], sha256=digest.hexdigest())
        head_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        head_bytes += b" " * (bound - len(head_bytes))
        fh.seek(0)
        fh.write(VPI_MAGIC + struct.pack("<Q", len(head_bytes)) + head_bytes + hashlib.sha256(head_bytes).digest())


class _HashAside:
    """sha256 of the chunks given, computed on another thread while the caller writes them
    (hashlib and file writes release the GIL on large buffers): a large index is hashed and
    written in about the time of the slower of the two instead of their sum. Chunks must not change
    after they are given (faiss's writer hands over bytes; a Flat index, views of its rows)."""

    def __init__(self) -> None:
        import queue
        import threading

        self._hash = hashlib.sha256()
        self._queue: Any = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="vecpipe-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: Any) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def read_header(path: str | Path, name: str | None = None) -> dict[str, Any]:
    name = name or str(path)
    with open(path, "rb") as fh:
        return _parse_header(fh.read(16), fh, name)


def content_digest(path: str | Path) -> str | None:
    """A digest of a whole container read from its header alone: the header's own sha256, which
    covers every section's sha256, length and offset. ``None`` when the file is not a sound
    container (a bad or truncated header, a section past the end): hash its bytes instead.

    Sections are checked against their sha256 whenever they are read, so an index whose bytes were
    damaged after it was written still fails loudly when it is used.
    """
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(16)
            if len(prefix) < 16 or not prefix.startswith(VPI_MAGIC):
                return None
            (hlen,) = struct.unpack_from("<Q", prefix, 8)
            if hlen > 1 << 30:
                return None
            head = fh.read(hlen)
            digest = fh.read(32)
            size = os.fstat(fh.fileno()).st_size
        if len(digest) != 32 or hashlib.sha256(head).digest() != digest:
            return None
        sections = json.loads(head).get("sections") or []
        if any(int(e["offset"]) + int(e["length"]) > size for e in sections):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return digest.hex()


def _parse_header(prefix: bytes, fh: BinaryIO, name: str) -> dict[str, Any]:
    if len(prefix) < 16 or not prefix.startswith(VPI_MAGIC):
        raise InputError(f"{name}: not a vecpipe index (.vpi); build one with vecpipe build-index")
    (hlen,) = struct.unpack_from("<Q", prefix, 8)
    if hlen > 1 << 30:
        raise InputError(f"{name}: corrupt .vpi header (length {hlen}); rebuild the index")
    head = fh.read(hlen)
    digest = fh.read(32)
    if len(head) != hlen or len(digest) != 32:
        raise InputError(f"{name}: truncated .vpi file (header cut short); rebuild or recopy the index")
    if hashlib.sha256(head).digest() != digest:
        raise InputError(f"{name}: corrupt .vpi header (checksum mismatch); rebuild or recopy the index")
    try:
        header = json.loads(head)
    except ValueError:
        raise InputError(f"{name}: corrupt .vpi header (not JSON); rebuild the index") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{name}: .vpi format version {header.get('format_version')} is not supported by this vecpipe")
    return header


def read(path: str | Path, verify: bool = True, name: str | None = None, lazy: tuple[str, ...] = ()) -> Container:
    """Read and verify a container; a truncated or corrupt file raises :class:`InputError`.

    ``name`` is how messages name the file (the user's path when ``path`` is a spooled copy).
    Sections named in ``lazy`` are checked for size only, neither hashed nor mapped (an empty
    payload): their reader reads them itself, by parts (SPANN's posting lists, with their crc32s).
    """
    import zstandard

    name = name or str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: no such index file; build it with vecpipe build-index")
    with open(p, "rb") as fh:
        header = _parse_header(fh.read(16), fh, name)
        size = p.stat().st_size
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    if mm is None:
        raise InputError(f"{name}: empty file")
    payloads: dict[str, Any] = {}
    for entry in header["sections"]:
        end = entry["offset"] + entry["length"]
        if end > size:
            raise InputError(f"{name}: truncated .vpi file (section {entry['name']} needs {end} bytes, file has {size}); rebuild or recopy the index")
        if entry["name"] in lazy:
            payloads[entry["name"]] = np.empty(0, np.uint8)
            continue
        view = memoryview(mm)[entry["offset"]:end]
        if verify and hashlib.sha256(view).hexdigest() != entry["sha256"]:
            raise InputError(f"{name}: corrupt .vpi file (checksum mismatch in section {entry['name']}); rebuild or recopy the index")
        if entry["compression"] == "zstd":
            try:
                data = zstandard.ZstdDecompressor().decompress(view, max_output_size=entry["raw_length"])
            except zstandard.ZstdError as exc:
                raise InputError(f"{name}: corrupt .vpi section {entry['name']} ({exc})") from None
            payloads[entry["name"]] = np.frombuffer(data, dtype=np.uint8)
        else:
            payloads[entry["name"]] = np.frombuffer(view, dtype=np.uint8)
    try:
        ids = _ids_from_bytes(payloads["ids"])
    except (ValueError, KeyError, struct.error):
        raise InputError(f"{name}: corrupt ids section; rebuild the index") from None
    extra = {k.split(":", 1)[1]: bytes(v) for k, v in payloads.items() if k.startswith("extra:")}
    return Container(meta=header["meta"], ids=ids, index_bytes=payloads["index"], extra=extra, mapping=mm,
                     sections=header["sections"])

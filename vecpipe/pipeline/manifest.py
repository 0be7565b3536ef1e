"""Manifests and up-to-date checks shared by every stage.

A stage run is described by a *manifest*: the stage's name, the content fingerprints of its inputs,
the parameters that shape its output and the vecpipe version. The manifest is recorded with the
output: in the ``vecpipe`` metadata of Arrow/Parquet tables and ``.vpi`` headers, or in a hidden
sidecar ``.NAME.vecpipe.json`` beside a text output (TREC runs, metric files), together with the
sha256 of the output's bytes (computed while writing). A rerun whose manifest equals the recorded
one, on an output whose bytes are the recorded ones, is skipped; ``--force`` rebuilds. An input
that is not a regular file (stdin, a FIFO) cannot be fingerprinted, so such a run always runs and
records no manifest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from vecpipe import __version__
from vecpipe.formats import metadata, sniff
from vecpipe.formats.targets import atomic_open

MANIFEST_KEY = "manifest"
_CHUNK = 1 << 20


sha256_file = sniff.sha256_file  # one implementation, in the formats layer (describe and datasets use it)


def cache_dir() -> Path:
    """vecpipe's user cache: ``$VECPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vecpipe``, else ``~/.cache/vecpipe``."""
    explicit = os.environ.get("VECPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vecpipe"


class StatCache:
    """sha256 of files keyed by what ``stat`` says (device, inode, size, mtime, ctime), as git's index
    does: a file whose stat is unchanged is not read again. An entry is kept only when the file's
    last change (mtime or ctime) was at least :attr:`RACY_S` seconds old when it was hashed (a file
    written in the same clock tick as the hash could change again without its stat moving: the
    "racily clean" case of git)."""

    RACY_S = 2.0
    MAX_ENTRIES = 20_000

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "fingerprints.json"
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False

    @staticmethod
    def _key(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}"

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text())
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def sha256(self, path: Path) -> str:
        before = os.stat(path)
        entry = self._load().get(self._key(before))
        if entry and entry.get("stat") == self._stamp(before):
            return str(entry["sha256"])
        hashed_at = time.time_ns()
        digest = sha256_file(path)
        after = os.stat(path)
        changed_at = max(before.st_mtime_ns, before.st_ctime_ns)  # ctime: what utime cannot set back
        if self._stamp(after) == self._stamp(before) and hashed_at - changed_at >= self.RACY_S * 1e9:
            self._load()[self._key(before)] = {"stat": self._stamp(before), "sha256": digest, "used": int(time.time())}
            self._dirty = True
        return digest

    def save(self) -> None:
        """Write the cache back (atomically; a failure only costs rehashing later)."""
        if not self._dirty or self._entries is None:
            return
        entries = self._entries
        if len(entries) > self.MAX_ENTRIES:
            keep = sorted(entries, key=lambda k: entries[k].get("used", 0))[-self.MAX_ENTRIES:]
            entries = {k: entries[k] for k in keep}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(self.path, "w") as fh:
                json.dump(entries, fh)
        except OSError:
            pass
        self._dirty = False


def fingerprint(path: str | Path | None, cache: StatCache | None = None) -> dict[str, Any] | None:
    """Content fingerprint of a file input (sha256 and size); ``None`` for stdin or a stream."""
    if path is None or str(path) == "-":
        return None
    p = Path(path)
    if p.is_dir():
        from vecpipe.formats import dataset

        return dataset.fingerprint(p) if dataset.is_dataset_dir(p) else None
    if not p.is_file():
        return None
    from vecpipe.formats import vpi

    container = vpi.content_digest(p)  # an index: its header's digest covers its sections' (no pass over the bytes)
    if container is not None:
        return {"vpi_sha256": container, "size": p.stat().st_size}
    digest = cache.sha256(p) if cache is not None else sha256_file(p)
    return {"sha256": digest, "size": p.stat().st_size}


def build_manifest(stage: str, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a stage run, or ``None`` when an input is a stream (never up to date)."""
    prints: dict[str, Any] = {}
    cache = StatCache() if os.environ.get("VECPIPE_NO_STAT_CACHE", "") in ("", "0") else None
    try:
        for name, path in inputs.items():
            if path is None:
                continue
            fp = fingerprint(path, cache)
            if fp is None:
                return None
            prints[name] = fp
            companion = _companion_ids(path)
            if companion is not None:  # the ids of a .npy / .npz input live beside it
                prints[f"{name}.ids"] = fingerprint(companion, cache)
    finally:
        if cache is not None:
            cache.save()
    clean = {k: v for k, v in params.items() if v is not None}
    return json.loads(json.dumps({"stage": stage, "inputs": prints, "params": clean, "vecpipe_version": __version__},
                                 sort_keys=True, default=str))


def _companion_ids(path: str | Path) -> Path | None:
    from vecpipe.formats.vectors import companion_ids

    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    compression = sniff.compression_of(head)
    if compression is not None or sniff.sniff_bytes(head) in sniff.NUMPY_FORMATS:
        companion = companion_ids(path)
        if companion.is_file():
            return companion
    return None


def sidecar(out: str | Path) -> Path:
    p = Path(out)
    return p.parent / f".{p.name}.vecpipe.json"


def recorded_manifest(out: str | Path) -> dict[str, Any] | None:
    """The manifest recorded with an existing output, or ``None``."""
    p = Path(out)
    if not p.is_file():
        return None
    try:
        with open(p, "rb") as fh:
            fmt = sniff.sniff_bytes(fh.read(8))
        if fmt == sniff.VPI:
            from vecpipe.formats import vpi

            return vpi.read_header(p)["meta"].get(MANIFEST_KEY)
        if fmt == sniff.PARQUET:
            import pyarrow.parquet as pq

            return metadata.read(pq.read_schema(p)).get(MANIFEST_KEY)
        if fmt == sniff.ARROW_FILE:
            import pyarrow.ipc as ipc

            with ipc.open_file(p) as reader:
                return metadata.read(reader.schema).get(MANIFEST_KEY)
        side = sidecar(p)
        if side.is_file():
            recorded = json.loads(side.read_text())
            if recorded.get("output_size") == p.stat().st_size and recorded.get("output_sha256") == sha256_file(p):
                return recorded.get(MANIFEST_KEY)
    except Exception:  # noqa: BLE001 - an unreadable output is simply not up to date
        return None
    return None


def is_up_to_date(out: str | Path | None, manifest: dict[str, Any] | None, force: bool = False) -> bool:
    if force or manifest is None or out is None or str(out) == "-":
        return False
    return recorded_manifest(out) == manifest


def refresh_mtime(out: str | Path, inputs: dict[str, Any]) -> bool:
    """Give an up-to-date output an mtime no older than its inputs' (so ``make`` settles after a
    ``touch``); returns whether it changed anything."""
    try:
        mtime = os.stat(out).st_mtime_ns
        newest = max((os.stat(p).st_mtime_ns for p in inputs.values() if p is not None and Path(p).is_file()), default=0)
        if newest > mtime:
            now = max(time.time_ns(), newest)
            os.utime(out, ns=(now, now))
            return True
    except OSError:
        pass
    return False


def record_sidecar(out: str | Path, manifest: dict[str, Any] | None, digest: str) -> None:
    """Record the manifest of a text output and the sha256 of its bytes (written after the output)."""
    if manifest is None:
        return
    side = sidecar(out)
    with atomic_open(side, "w") as fh:
        json.dump({MANIFEST_KEY: manifest, "output_size": Path(out).stat().st_size, "output_sha256": digest}, fh,
                  sort_keys=True)


def remove_sidecar(out: str | Path) -> None:
    sidecar(out).unlink(missing_ok=True)

"""Many files as one input: expanded input lists, and a vectors table that is a directory of parts.

Input lists. Every stage that takes several text or table inputs expands each argument once, here
(:func:`expand_inputs`): a file stays itself; a directory gives its regular files in name order
(hidden files and a dataset's manifest left out; a BEIR dataset directory is refused with the file
to give, as a single input is); a glob (``*``, ``?``, ``[``) gives its matches in
name order; a pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``) is listed
through :mod:`pyarrow.fs` the same way. The order of the expanded list is the order of the output.

A *dataset directory* is one vectors table stored as Parquet part files plus one vecpipe manifest
(:data:`MANIFEST`, written last and atomically by ``embed --engine ray``)::

    OUT_DIR/_vecpipe.json          {"format": "vecpipe-dataset", "meta": {...}, "parts": [{"name", "rows", "sha256"}, ...]}
    OUT_DIR/part-00000-00000.parquet   input 0, block 0 (rows in input order)
    OUT_DIR/part-00000-00001.parquet   input 0, block 1 ...

Its rows are the parts' rows in the order the manifest lists them. Every reader of a table takes such
a directory where it takes a file (:class:`DatasetInput`, returned by :class:`sniff.Input` for a
directory that holds parts): streaming readers read part after part; readers that need one file
(random access) get the parts spooled into one temporary Parquet file. A directory of Parquet parts
some other tool wrote (no manifest) is read the same way, parts in name order. Refused: a listed part
that is missing or changed, a Parquet file the manifest does not list, a part whose vecpipe metadata
names another model than the others.
"""

from __future__ import annotations

import glob as globmod
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff

MANIFEST = "_vecpipe.json"
FORMAT = "vecpipe-dataset"
PART_SUFFIX = ".parquet"
_GLOB_CHARS = "*?["


def part_name(input_index: int, block: int) -> str:
    return f"part-{input_index:05d}-{block:05d}{PART_SUFFIX}"


def is_uri(spec: str) -> bool:
    return "://" in spec


# ------------------------------------------------------------------------------- input lists


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def expand_inputs(specs: list[str] | tuple[str, ...]) -> list[str]:
    """Each argument expanded (file, directory, glob or URI) in order; refuses what matches nothing."""
    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        if spec == "-":
            out.append(spec)
        elif is_uri(spec):
            out.extend(_expand_uri(spec))
        elif Path(spec).is_dir():
            if is_dataset_dir(Path(spec)):
                out.append(spec)  # one table
                continue
            if sniff.is_beir_directory(Path(spec)):  # corpus and queries are not one input: name the file to give
                raise InputError(sniff.directory_hint(Path(spec), spec))
            files = sorted(str(Path(spec) / e.name) for e in os.scandir(spec) if _visible(e.name) and e.is_file())
            if not files:
                raise InputError(f"{spec}: the directory holds no input files")
            out.extend(files)
        elif any(c in spec for c in _GLOB_CHARS) and not Path(spec).exists():
            files = sorted(p for p in globmod.glob(spec) if Path(p).is_file())
            if not files:
                raise InputError(f"{spec}: no file matches this pattern")
            out.extend(files)
        else:
            out.append(spec)
    seen: set[str] = set()
    for path in out:
        if path in seen and path != "-":
            raise InputError(f"{path}: given twice among the inputs; give each file once")
        seen.add(path)
    if out.count("-") > 1 or ("-" in out and len(out) > 1):
        raise InputError("-: standard input can be the only input; give files instead")
    return out


def _expand_uri(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{uri}: not found")
        if info.type == pafs.FileType.File:
            return [uri]
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{uri}: cannot list ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         "is the filesystem installed and reachable?") from None
    scheme = uri.split("://", 1)[0]
    files = sorted(e.path for e in entries if e.type == pafs.FileType.File and _visible(e.base_name))
    if not files:
        raise InputError(f"{uri}: the directory holds no input files")
    return [f"{scheme}://{p}" if not p.startswith(f"{scheme}://") else p for p in files]


def fetch_local(uri: str, dest_dir: str) -> str:
    """A local copy of a URI input (a plain path is returned as it is)."""
    if not is_uri(uri):
        return uri
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    local = os.path.join(dest_dir, hashlib.sha256(uri.encode()).hexdigest()[:16] + "-" + os.path.basename(path))
    with fs.open_input_stream(path) as src, open(local, "wb") as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
    return local


# ------------------------------------------------------------------------------- dataset dirs


def is_dataset_dir(path: Path) -> bool:
    """A directory with a vecpipe dataset manifest, or whose visible files are all Parquet parts."""
    if not path.is_dir():
        return False
    if (path / MANIFEST).is_file():
        return True
    try:
        names = [e.name for e in os.scandir(path) if _visible(e.name) and e.is_file()]
    except OSError:
        return False
    return bool(names) and all(n.endswith(PART_SUFFIX) for n in names)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The dataset manifest of a directory (``None`` when it has none)."""
    file = path / MANIFEST
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: unreadable dataset manifest ({exc}); rerun the command that wrote {path}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("parts"), list):
        raise InputError(f"{file}: not a vecpipe dataset manifest; rerun the command that wrote {path}")
    return doc


def manifest_bytes(meta: dict[str, Any], parts: list[dict[str, Any]]) -> bytes:
    doc = {"format": FORMAT, "meta": meta, "parts": parts, "rows": sum(int(p["rows"]) for p in parts)}
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()



def fingerprint(path: Path) -> dict[str, Any]:
    """A dataset directory's content fingerprint: its manifest's digest (the manifest lists each
    part's sha256), or for a directory without one the digest of its parts' names and digests."""
    doc = read_manifest(path)
    if doc is not None:
        data = (path / MANIFEST).read_bytes()
        return {"dataset_sha256": hashlib.sha256(data).hexdigest(), "rows": doc.get("rows")}
    h = hashlib.sha256()
    for name in _part_files(path):
        h.update(f"{name}\0{sniff.sha256_file(path / name)}\n".encode())
    return {"dataset_sha256": h.hexdigest()}


def _part_files(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if _visible(e.name) and e.is_file() and e.name.endswith(PART_SUFFIX))


def _model_problem(meta: dict[str, Any], ref: dict[str, Any], part: str, ref_name: str) -> str | None:
    problem = metadata.model_mismatch(meta, ref, part, ref_name)
    if problem is None and meta.get("dim") is not None and ref.get("dim") is not None and meta["dim"] != ref["dim"]:
        problem = f"{part} has dimension {meta['dim']}, {ref_name} {ref['dim']}"
    return problem


def dataset_parts(path: Path, name: str) -> tuple[list[Path], dict[str, Any] | None]:
    """(part files in row order, the manifest's table metadata or None), checked."""
    doc = read_manifest(path)
    present = _part_files(path)
    if doc is None:
        if not present:
            raise InputError(f"{name}: the directory holds no Parquet parts")
        parts = [path / p for p in present]
        first = metadata.read(_schema(parts[0], name))
        for part in parts[1:]:
            problem = _model_problem(metadata.read(_schema(part, name)), first, f"{name}/{part.name}", f"{name}/{parts[0].name}")
            if problem:
                raise InputError(f"{name}: {problem}; a dataset holds the vectors of one model: remove the other part")
        return parts, None
    listed = [str(p.get("name")) for p in doc["parts"]]
    extra = sorted(set(present) - set(listed))
    if extra:
        raise InputError(f"{name}/{extra[0]}: not a part of this dataset (its manifest lists {len(listed)} parts); "
                         "remove it, or rerun the command that wrote the directory")
    meta: dict[str, Any] = doc["meta"] if isinstance(doc.get("meta"), dict) else {}
    parts = []
    for entry in doc["parts"]:
        part = path / str(entry.get("name"))
        if not part.is_file():
            raise InputError(f"{name}/{part.name}: a part of this dataset is missing; rerun the command that wrote it")
        if part.stat().st_size != entry.get("size", part.stat().st_size):
            raise InputError(f"{name}/{part.name}: this part changed since the dataset was written; rerun the command that wrote it")
        problem = _model_problem(metadata.read(_schema(part, name)), meta, f"{name}/{part.name}", f"the manifest of {name}")
        if problem:
            raise InputError(f"{name}: {problem}; a dataset holds the vectors of one model: remove the part or rerun embed")
        parts.append(part)
    if not parts:
        raise InputError(f"{name}: the dataset lists no parts")
    return parts, meta


def _schema(part: Path, name: str) -> pa.Schema:
    from vecpipe.formats.records import CORRUPT, corrupt_error

    try:
        return pq.read_schema(part)
    except CORRUPT as exc:
        raise corrupt_error(f"{name}/{part.name}", "parquet", exc) from None


class DatasetInput(sniff.Input):
    """A dataset directory opened as one input (see the module docstring): what ``sniff.Input(path)``
    returns for such a directory. Its format is Parquet: streaming readers take :meth:`batches`;
    the rest read the parts spooled into one Parquet file."""

    def __init__(self, path: str | Path):  # sniff.Input's own __init__ opens a file: not called
        name = sniff.display_name(path)
        path = Path(path)
        self.name = name
        self.path = path
        self.compression: str | None = None
        self.regular = True
        self.format = "parquet"
        self.parts, self.meta = dataset_parts(path, name)
        self._spooled: Path | None = None
        self._opened: list[Any] = []
        first = _schema(self.parts[0], name)
        self.schema = metadata.attach(first, self.meta) if self.meta is not None else first

    def batches(self, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        from vecpipe.formats.records import CORRUPT, corrupt_error

        for part in self.parts:
            try:
                pf = pq.ParquetFile(part, page_checksum_verification=True)
                if pf.schema_arrow.names != self.schema.names:
                    raise InputError(f"{self.name}/{part.name}: has columns {pf.schema_arrow.names}, the dataset {self.schema.names}")
                yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)
            except CORRUPT as exc:
                raise corrupt_error(f"{self.name}/{part.name}", "parquet", exc) from None

    def local_path(self) -> Path:
        if self._spooled is None:
            fd, tmp = tempfile.mkstemp(prefix="vecpipe-dataset-", suffix=PART_SUFFIX)
            os.close(fd)
            self._spooled = Path(tmp)
            with pq.ParquetWriter(tmp, self.schema) as writer:
                for batch in self.batches():
                    writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=self.schema))
        return self._spooled

    def arrow_source(self) -> Any:
        mapped = pa.memory_map(str(self.local_path()))
        self._opened.append(mapped)
        return mapped

    def seekable(self) -> BinaryIO:
        fh = open(self.local_path(), "rb")
        self._opened.append(fh)
        return fh

    @property  # a file opened when a reader asks for it
    def stream(self) -> BinaryIO:  # type: ignore[override]
        return self.seekable()

    def close(self) -> None:
        for fh in self._opened:
            fh.close()
        self._opened = []
        if self._spooled is not None:
            self._spooled.unlink(missing_ok=True)
            self._spooled = None



def write_part(path: Path, table: pa.Table) -> dict[str, Any]:
    """Write one part atomically (a temporary file renamed into place); its manifest entry."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "rows": table.num_rows, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

"""Text records (``id``, ``text``) from BEIR/generic JSONL, TSV, Parquet and Arrow, streamed in batches.

BEIR corpora join title and text with a space, as BEIR and MTEB do. Records are read lazily: only the
ids seen so far are kept (to refuse duplicates), never the texts of the whole input.

TSV records are ``id<TAB>text``, split on the first tab (the text may hold tabs). A qrels file, a TREC
run or a metrics file given instead is recognised by its first lines (:func:`sniff.text_kind`) and
refused by name; so are vectors (Arrow/Parquet with an embedding column, .npy, .npz) and indexes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn, sniff

RECORD_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])

ID_FIELDS = ("_id", "id", "docid", "doc_id", "qid", "query_id", "pid")
TEXT_FIELDS = ("text", "contents", "content", "passage", "query", "body")
TITLE_FIELDS = ("title",)
_TSV_HEADER_IDS = {f.lower() for f in ID_FIELDS} | {"query-id", "corpus-id"}
#: What a text records input may be, for refusals of other inputs.
RECORDS = "text records (JSONL with _id/text, TSV id<TAB>text, Parquet)"


@dataclass(frozen=True)
class Fields:
    """Which fields hold the id, text and title; ``None`` means: find them among the usual names."""

    id: str | None = None
    text: str | None = None
    title: str | None = None


def join_title(title: object, text: str) -> str:
    if isinstance(title, str) and title:
        return f"{title} {text}".strip()
    return text


class _Dedup:
    def __init__(self, name: str):
        self.name = name
        self.seen: set[str] = set()

    def problem(self, rid: str) -> str | None:
        if rid in self.seen:
            return f"duplicate id {rid!r}; ids must be unique, remove or rename the repeated record"
        self.seen.add(rid)
        return None


class _Bad(Exception):
    """A bad record: raised as InputError, or skipped and reported with ``skip_bad``."""


def _report(skip_bad: SkipFn | None, where: str, reason: str) -> None:
    if skip_bad is None:
        raise InputError(f"{where}: {reason}")
    skip_bad(where, reason)


def _unencodable(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{exc.object[exc.start:exc.end]!a} at character {exc.start} cannot be encoded as UTF-8 (an unpaired surrogate?)"
    return None


SkipFn = Callable[[str, str], None]


def read_records(path: str | Path | sniff.Input, fields: Fields = Fields(), batch_size: int = 1024,
                 opened: tuple | None = None, skip_bad: SkipFn | None = None) -> Iterator[pa.RecordBatch]:
    """Yield record batches (``id``, ``text``) in input order; refuse malformed, empty or duplicate input.

    ``opened`` is the (schema, batches) of an Arrow input whose schema the caller already read.
    ``skip_bad(where, reason)``: called for each bad record, which is then skipped instead of
    raising (malformed JSON, missing or mistyped fields, unencodable text, duplicate ids).
    """
    inp = path if isinstance(path, sniff.Input) else sniff.Input(path)
    try:
        if inp.format == sniff.JSONL:
            batches = _read_jsonl(inp, fields, batch_size, skip_bad)
        elif inp.format in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            batches = _read_arrow(inp, fields, batch_size, opened, skip_bad)
        elif inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index, expected text records (JSONL, TSV, Parquet or Arrow)")
        elif inp.format in sniff.NUMPY_FORMATS:
            raise InputError(f"{inp.name}: is a NumPy .{inp.format} file (vectors), not {RECORDS}; "
                             "vectors go to build-index, search, quantize or binarize")
        elif inp.format == sniff.ZIP:
            raise InputError(f"{inp.name}: is a zip archive; unzip it and give the file inside")
        else:
            batches = _read_tsv(inp, batch_size, skip_bad)
        total = 0
        for batch in batches:
            total += batch.num_rows
            yield batch
        if total == 0:
            raise InputError(f"{inp.name}: no records found; the input is empty")
    finally:
        inp.close()


def _lines(inp: sniff.Input, skip_bad: SkipFn | None = None) -> Iterator[tuple[int, str]]:
    """Decoded lines with 1-based numbers; invalid UTF-8 is refused (or skipped) with its line number."""
    for lineno, raw in enumerate(inp.stream, 1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _report(skip_bad, f"{inp.name}:{lineno}", f"not valid UTF-8 ({exc.reason} at byte {exc.start}); convert the file to UTF-8")
            continue
        yield lineno, line


def _pick(record: dict, wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in record else None
    for name in candidates:
        if name in record:
            return name
    return None


def _batch(ids: list[str], texts: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), pa.array(texts, pa.string())], schema=RECORD_SCHEMA)


def _jsonl_record(line: str, fields: Fields) -> tuple[str, str]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Bad(f"malformed JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise _Bad(f"unreadable JSON ({str(exc).splitlines()[0][:200]}); fix or remove the line") from None
    if not isinstance(rec, dict):
        raise _Bad(f"expected a JSON object per line, got {type(rec).__name__}")
    id_key = _pick(rec, fields.id, ID_FIELDS)
    if id_key is None:
        hint = f"--id-field {fields.id}" if fields.id else "--id-field NAME"
        raise _Bad(f"no id field ({fields.id or ' / '.join(ID_FIELDS[:3])}); name it with {hint}")
    text_key = _pick(rec, fields.text, TEXT_FIELDS)
    if text_key is None or rec[text_key] is None:
        raise _Bad(f"no text field ({fields.text or 'text'}); name it with --text-field NAME")
    rid, text = rec[id_key], rec[text_key]
    if isinstance(rid, (int, float)) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid:
        raise _Bad(f"id field {id_key!r} must be a non-empty string or number")
    if not isinstance(text, str):
        raise _Bad(f"text field {text_key!r} must be a string, got {type(text).__name__}")
    title_key = _pick(rec, fields.title, TITLE_FIELDS)
    if title_key is not None:
        text = join_title(rec[title_key], text)
    problem = _unencodable(rid) or _unencodable(text)
    if problem:
        raise _Bad(f"record {rid!r}: {problem}; fix the text or rerun with --skip-bad")
    return rid, text


def _batched(pairs: Iterator[tuple[str, str]], batch_size: int) -> Iterator[pa.RecordBatch]:
    ids: list[str] = []
    texts: list[str] = []
    for rid, text in pairs:
        ids.append(rid)
        texts.append(text)
        if len(ids) >= batch_size:
            yield _batch(ids, texts)
            ids, texts = [], []
    if ids:
        yield _batch(ids, texts)


def _read_jsonl(inp: sniff.Input, fields: Fields, batch_size: int, skip_bad: SkipFn | None = None) -> Iterator[pa.RecordBatch]:
    return _batched(_jsonl_pairs(inp, fields, skip_bad), batch_size)


def _jsonl_pairs(inp: sniff.Input, fields: Fields, skip_bad: SkipFn | None) -> Iterator[tuple[str, str]]:
    dedup = _Dedup(inp.name)
    for lineno, line in _lines(inp, skip_bad):
        if not line.strip():
            continue
        try:
            rid, text = _jsonl_record(line, fields)
            dup = dedup.problem(rid)
            if dup:
                raise _Bad(dup)
        except _Bad as bad:
            _report(skip_bad, f"{inp.name}:{lineno}", str(bad))
            continue
        yield rid, text


def _read_tsv(inp: sniff.Input, batch_size: int, skip_bad: SkipFn | None = None) -> Iterator[pa.RecordBatch]:
    return _batched(_tsv_pairs(inp, skip_bad), batch_size)


def _looked_at(lines: Iterator[tuple[int, str]], name: str) -> Iterator[tuple[int, str]]:
    """The lines, after refusing a qrels file, run or metrics file by its first non-empty lines."""
    head: list[tuple[int, str]] = []
    seen = 0
    for item in lines:
        head.append(item)
        seen += bool(item[1].strip())
        if seen >= sniff.SAMPLE_LINES:
            break
    kind = sniff.text_kind([line.rstrip("\r\n") for _, line in head])
    if kind is not None:
        raise sniff.misplaced(name, kind, RECORDS)
    yield from head
    yield from lines


def _qrels_like(line: str) -> bool:
    """A line of BEIR qrels without a header (``qid<TAB>docid<TAB>rel``), for the hint on a repeated id."""
    parts = line.split("\t")
    return len(parts) == 3 and parts[2].strip().lstrip("+-").isdigit()


def _tsv_pairs(inp: sniff.Input, skip_bad: SkipFn | None) -> Iterator[tuple[str, str]]:
    dedup = _Dedup(inp.name)
    for lineno, line in _looked_at(_lines(inp, skip_bad), inp.name):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        rid, sep, text = line.partition("\t")
        if lineno == 1 and sep and rid.strip().lower() in _TSV_HEADER_IDS:
            continue  # a header line
        rid = rid.strip()
        problem: str | None
        if not sep:
            problem = "expected 'id<TAB>text' (TSV) or a JSON object; no tab found on this line"
        elif not rid:
            problem = "empty id before the tab"
        else:
            problem = dedup.problem(rid)
            if problem and _qrels_like(line):
                problem += " (a qid<TAB>docid<TAB>relevance line: if this is a qrels file, give it to vecpipe eval --qrels)"
        if problem:
            _report(skip_bad, f"{inp.name}:{lineno}", problem)
            continue
        yield rid, text


def _find_column(names: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in names else None
    for name in candidates:
        if name in names:
            return name
    return None


# What a corrupt Arrow/Parquet file makes pyarrow raise: reported as InputError, never a traceback.
CORRUPT = (pa.ArrowException, OSError, ValueError, UnicodeError, IndexError, KeyError, MemoryError, OverflowError, EOFError)


def corrupt_error(name: str, fmt: str, exc: BaseException, where: str = "") -> InputError:
    return InputError(f"{name}: unreadable {fmt} data{where} ({_first_line(exc)}); the file may be truncated or corrupt")


def guarded_batches(batches: Iterable[pa.RecordBatch], name: str, fmt: str) -> Iterator[pa.RecordBatch]:
    rows = 0
    try:
        for batch in batches:
            batch.schema.names  # noqa: B018 - decodes field names (invalid UTF-8 raises here)
            if fmt != sniff.PARQUET:
                batch.validate(full=True)  # IPC buffers are taken as they are: check their sizes
            rows += batch.num_rows
            yield batch
    except CORRUPT as exc:
        raise corrupt_error(name, fmt, exc, f" after row {rows}") from None


def open_arrow_batches(inp: sniff.Input, batch_size: int = 65536, columns: list[str] | None = None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """(schema, batch iterator) of an Arrow stream, Arrow file or Parquet input.

    The schema is decoded up front and the batches are read lazily; anything pyarrow raises on a
    corrupt or truncated file becomes a one-line :class:`InputError`. A NumPy ``.npy``/``.npz`` input
    is read as a vectors table (``id``, ``embedding``; see :mod:`vecpipe.formats.vectors`).
    """
    if inp.format in sniff.NUMPY_FORMATS:
        from vecpipe.formats.vectors import numpy_table

        return numpy_table(inp, batch_size)
    from vecpipe.formats.dataset import DatasetInput

    if isinstance(inp, DatasetInput):  # a directory of Parquet parts: read part after part
        return inp.schema, inp.batches(batch_size, columns)
    try:
        if inp.format == sniff.PARQUET:
            import pyarrow.parquet as pq  # a text input never loads it

            pf = pq.ParquetFile(inp.arrow_source(), page_checksum_verification=True)
            schema = pf.schema_arrow
            # one thread: on few cores, decoding two columns in parallel costs more than it saves
            batches = pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)
        elif inp.format == sniff.ARROW_FILE:
            reader = ipc.open_file(inp.arrow_source())
            schema = reader.schema
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            reader = ipc.open_stream(inp.stream)
            schema = reader.schema
            batches = iter(reader)
        schema.names  # noqa: B018 - decode names and metadata now, not halfway through
        _ = schema.metadata
        for f in schema:
            str(f.type)
    except CORRUPT as exc:
        raise corrupt_error(inp.name, inp.format, exc) from None
    return schema, guarded_batches(batches, inp.name, inp.format)


def count_rows(inp: sniff.Input) -> int | None:
    """Cheap row count of a regular file input for progress totals (lines of text, Parquet metadata)."""
    if not inp.regular or inp.path is None or not inp.path.is_file():  # a FIFO spooled for reading is "regular" too
        return None
    try:
        if inp.format == sniff.PARQUET:
            import pyarrow.parquet as pq  # a text input never loads it

            return int(pq.ParquetFile(inp.path).metadata.num_rows)
        if inp.format == sniff.ARROW_FILE:
            with pa.memory_map(str(inp.path)) as source:
                reader = ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        if inp.format in (sniff.JSONL, sniff.TEXT):
            with open(inp.path, "rb") as fh:
                n, last = 0, b"\n"
                while chunk := fh.read(1 << 22):
                    n += chunk.count(b"\n")
                    last = chunk[-1:]
            return n + (last != b"\n")
    except (OSError, ValueError, pa.ArrowException):
        return None
    return None


def read_table(inp: sniff.Input, what: str) -> pa.Table:
    """A whole Arrow file/stream, Parquet or JSON-lines input as one table (runs, qrels).

    ``what`` names the expected content in the error for inputs of another kind.
    """
    try:
        if inp.format == sniff.PARQUET:
            import pyarrow.parquet as pq  # a text input never loads it

            return pq.read_table(inp.arrow_source(), page_checksum_verification=True)
        if inp.format == sniff.ARROW_FILE:
            return ipc.open_file(inp.arrow_source()).read_all()
        if inp.format == sniff.ARROW_STREAM:
            return ipc.open_stream(inp.stream).read_all()
        if inp.format == sniff.JSONL:
            import pyarrow.json as pj

            return pj.read_json(pa.BufferReader(inp.stream.read()))
    except CORRUPT as exc:
        raise corrupt_error(inp.name, inp.format, exc) from None
    raise InputError(f"{inp.name}: a {inp.format} file is not {what}")


def string_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """An id column as plain strings (dictionary-encoded and numeric ids are converted)."""
    if pa.types.is_dictionary(col.type):
        col = arrowfn.cast(col, col.type.value_type)
    return arrowfn.cast(col, pa.string())


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _read_arrow(inp: sniff.Input, fields: Fields, batch_size: int, opened: tuple | None = None,
                skip_bad: SkipFn | None = None) -> Iterator[pa.RecordBatch]:
    schema, batches = opened or open_arrow_batches(inp, batch_size)
    names = schema.names
    id_col = _find_column(names, fields.id, ID_FIELDS)
    text_col = _find_column(names, fields.text, TEXT_FIELDS)
    title_col = _find_column(names, fields.title, TITLE_FIELDS)
    if id_col is None:
        raise InputError(f"{inp.name}: no id column among {names}; name it with --id-field NAME")
    if text_col is None:
        if "embedding" in names or "embeddings" in names:
            raise InputError(f"{inp.name}: holds vectors, not texts; give a text records file")
        raise InputError(f"{inp.name}: no text column among {names}; name it with --text-field NAME")
    dedup = _Dedup(inp.name)
    row = 0
    try:
        for batch in batches:
            id_values = batch.column(names.index(id_col)).cast(pa.string()).to_pylist()
            text_values = batch.column(names.index(text_col)).to_pylist()
            title_values = batch.column(names.index(title_col)).to_pylist() if title_col else None
            ids, texts = [], []
            for j, (rid, text) in enumerate(zip(id_values, text_values)):
                problem: str | None
                if rid is None or rid == "":
                    problem = "empty id"
                elif not isinstance(text, str):
                    problem = f"text is {'missing' if text is None else type(text).__name__}, expected a string"
                else:
                    problem = dedup.problem(rid)
                if problem:
                    _report(skip_bad, f"{inp.name}: row {row + j + 1}", problem)
                    continue
                ids.append(rid)
                texts.append(join_title(title_values[j], text) if title_values else text)
            row += batch.num_rows
            if ids:
                yield _batch(ids, texts)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{inp.name}: unreadable {inp.format} data after row {row} ({_first_line(exc)}); the file may be truncated") from None

"""Runs: ranked lists of documents per query (``qid``, ``docid``, ``rank``, ``score``).

Read from Arrow stream / Arrow file / Parquet / JSON lines (columns ``qid``, ``docid``, ``score``;
``rank`` optional) or TREC text (``qid Q0 docid rank score tag``); written as Arrow, Parquet or TREC
text, to a file (atomically) or stdout, in batches as they are produced (:class:`RunWriter`).

Ordering (:func:`sort_run`): queries keep the order in which they first appear, then score
descending, ties broken by docid ascending (byte order), and ``rank`` is recomputed from 1.
Evaluation does not use the ``rank`` column: like trec_eval it re-sorts by score (see
:mod:`vecpipe.evaluate`).
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import arrowfn as pc
from vecpipe.formats import metadata as _meta
from vecpipe.formats import sniff
from vecpipe.formats.records import read_table, string_column
from vecpipe.formats.tables import Sink, TableSink

RUN_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("docid", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)

ARROW = "arrow"
PARQUET = "parquet"
TREC = "trec"
MSMARCO = "msmarco"
RUN_FORMATS = (ARROW, PARQUET, TREC, MSMARCO)
DEFAULT_TAG = "vecpipe"

# Column names accepted for each run field, in order of preference.
_ALIASES = {
    "qid": ("qid", "query_id", "query-id", "queryid"),
    "docid": ("docid", "doc_id", "corpus-id", "corpus_id", "did"),
    "score": ("score", "sim", "similarity"),
    "rank": ("rank",),
}


# ----------------------------------------------------------------------------------------- reading


def read_run(path: str | Path) -> pa.Table:
    """Read a run from a path or ``-`` (stdin) into a table of :data:`RUN_SCHEMA`.

    Arrow/Parquet/JSONL inputs need ``qid``, ``docid`` and ``score`` columns; without a ``rank``
    column the run is ordered with :func:`sort_run` and ranked. TREC text keeps its own order and
    ranks. Scores are stored as float32.
    """
    with sniff.Input(path) as inp:
        fmt = inp.format
        if fmt == sniff.TEXT:
            data = inp.stream.read()
            _refuse_other_text(data, inp.name, "run", "a run (TREC text, MS MARCO TSV, Arrow or Parquet)")
            return _read_trec(data, inp.name)
        table = read_table(inp, "a run (Arrow, Parquet or TREC text)")
        return conform_run(table, inp.name)


def _refuse_other_text(data: bytes, name: str, wanted: str, expected: str) -> None:
    """A qrels or metrics file given as a run (or the reverse) is named as what it is."""
    lines = data[: 1 << 16].decode("utf-8", "replace").splitlines()
    kind = sniff.text_kind(lines)
    if kind is not None and kind.name != wanted:
        raise sniff.misplaced(name, kind, expected)


def _find_column(table: pa.Table, field: str) -> str | None:
    names = set(table.column_names)
    for alias in _ALIASES[field]:
        if alias in names:
            return alias
    return None


def run_columns(table: pa.Table, name: str = "run") -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
    """The ``qid`` and ``docid`` (string) and ``score`` (float32, or float64 kept) columns, validated."""
    cols = {}
    for field in ("qid", "docid", "score"):
        col = _find_column(table, field)
        if col is None:
            have = ", ".join(table.column_names) or "none"
            raise InputError(
                f"{name}: missing column '{field}' (have: {have}); a run needs columns qid, docid, score"
            )
        cols[field] = table.column(col)
    try:
        qid = string_column(cols["qid"])
        docid = string_column(cols["docid"])
        score = cols["score"]
        if not (pa.types.is_float32(score.type) or pa.types.is_float64(score.type)):
            score = pc.cast(score, pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: run columns have unusable types ({exc}); qid/docid must be strings, score a number") from None
    for field, col in (("qid", qid), ("docid", docid), ("score", score)):
        if col.null_count:
            raise InputError(f"{name}: column '{field}' has {col.null_count} empty (null) values; fill or drop those rows")
    return qid, docid, score


def conform_run(table: pa.Table, name: str = "run") -> pa.Table:
    """Rename/cast a table's run columns to :data:`RUN_SCHEMA` (ranking it if it has no rank)."""
    qid, docid, score = run_columns(table, name)
    rank_col = _find_column(table, "rank")
    if rank_col is None:
        out = pa.table({"qid": qid, "docid": docid, "score": pc.cast(score, pa.float32())})
        return sort_run(out)
    try:
        rank = pc.cast(table.column(rank_col), pa.int32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: column 'rank' is not an integer ({exc})") from None
    if rank.null_count:
        raise InputError(f"{name}: column 'rank' has {rank.null_count} empty (null) values; fill them or drop the column")
    return pa.Table.from_arrays([qid, docid, rank, pc.cast(score, pa.float32())], schema=_schema_with(table.schema))


def _schema_with(source: pa.Schema | None) -> pa.Schema:
    meta = _meta.read(source) if source is not None else {}
    return _meta.attach(RUN_SCHEMA, meta) if meta else RUN_SCHEMA


def _read_trec(data: bytes, name: str) -> pa.Table:
    """Parse TREC run text (or an MS MARCO run, ``qid<TAB>docid<TAB>rank``); fast path through
    Arrow's CSV reader, exact line errors otherwise."""
    if not data.strip():
        raise InputError(f"{name}: input is empty; give a run with at least one line 'qid Q0 docid rank score tag'")
    first = next((ln for ln in data.splitlines() if ln.strip()), b"")
    fields = first.split(b"\t")
    if len(fields) == 3 and fields[2].strip().isdigit():
        return _read_msmarco(data, name)
    table = _read_trec_fast(data)
    if table is None:
        table = _read_trec_slow(data, name)
    return pa.Table.from_arrays(
        [table.column("qid"), table.column("docid"), table.column("rank"), table.column("score")],
        schema=RUN_SCHEMA,
    )


def _read_msmarco(data: bytes, name: str) -> pa.Table:
    """An MS MARCO run (``qid<TAB>docid<TAB>rank``): scores are the negated ranks, so that ordering
    by score is ordering by rank."""
    qids: list[str] = []
    docids: list[str] = []
    ranks: list[int] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line: int | str = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}: line {line}: not UTF-8 text; give an MS MARCO run 'qid<TAB>docid<TAB>rank'") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise InputError(f"{name}: line {lineno}: expected 3 tab-separated fields 'qid<TAB>docid<TAB>rank' "
                             f"(an MS MARCO run, like line 1), found {len(parts)}")
        try:
            rank = int(parts[2].strip())
        except ValueError:
            raise InputError(f"{name}: line {lineno}: rank {parts[2]!r} is not an integer") from None
        if not 1 <= rank < 2**31:
            raise InputError(f"{name}: line {lineno}: rank {rank} is out of range (ranks start at 1)")
        qids.append(parts[0].strip())
        docids.append(parts[1].strip())
        ranks.append(rank)
    rank_arr = np.asarray(ranks, dtype=np.int32)
    return pa.Table.from_arrays([pa.array(qids, pa.string()), pa.array(docids, pa.string()), pa.array(rank_arr),
                                 pa.array(-rank_arr.astype(np.float32))], schema=RUN_SCHEMA)


def _read_trec_fast(data: bytes) -> pa.Table | None:
    import pyarrow.csv as pcsv

    # only files with exactly one separator between fields; anything else takes the exact path
    sep = b"\t" if b"\t" in data and b" " not in data else b" "
    other = b" " if sep == b"\t" else b"\t"
    if (other in data or sep + sep in data or b"\r" in data or data.startswith(sep) or b"\n\n" in data
            or b"\n" + sep in data or sep + b"\n" in data):
        return None
    try:
        t = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(column_names=["qid", "q0", "docid", "rank", "score", "tag"], use_threads=True),
            parse_options=pcsv.ParseOptions(delimiter=sep.decode(), quote_char=False, escape_char=False, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={"qid": pa.string(), "q0": pa.string(), "docid": pa.string(), "rank": pa.int64(),
                              "score": pa.float64(), "tag": pa.string()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if any(t.column(c).null_count for c in t.column_names):
        return None
    rank = t.column("rank")
    if t.num_rows and (pc.min(rank).as_py() < -(2**31) or pc.max(rank).as_py() >= 2**31):
        return None
    return pa.table(
        {
            "qid": t.column("qid"),
            "docid": t.column("docid"),
            "rank": pc.cast(rank, pa.int32()),
            "score": pc.cast(t.column("score"), pa.float32()),
        }
    )


def _read_trec_slow(data: bytes, name: str) -> pa.Table:
    qids: list[str] = []
    docids: list[str] = []
    ranks: list[int] = []
    scores: list[float] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line: int | str = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}: line {line}: not UTF-8 text; give a TREC run 'qid Q0 docid rank score tag' or an Arrow/Parquet run") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputError(
                f"{name}: line {lineno}: expected 6 fields 'qid Q0 docid rank score tag', found {len(parts)}; fix or remove the line"
            )
        try:
            rank = int(parts[3])
        except ValueError:
            raise InputError(f"{name}: line {lineno}: rank {parts[3]!r} is not an integer; expected 'qid Q0 docid rank score tag'") from None
        try:
            score = float(parts[4])
        except ValueError:
            raise InputError(f"{name}: line {lineno}: score {parts[4]!r} is not a number; expected 'qid Q0 docid rank score tag'") from None
        if not -(2**31) <= rank < 2**31:
            raise InputError(f"{name}: line {lineno}: rank {rank} is out of range")
        qids.append(parts[0])
        docids.append(parts[2])
        ranks.append(rank)
        scores.append(score)
    if not qids:
        raise InputError(f"{name}: input is empty; give a run with at least one line 'qid Q0 docid rank score tag'")
    return pa.table(
        {
            "qid": pa.array(qids, pa.string()),
            "docid": pa.array(docids, pa.string()),
            "rank": pa.array(ranks, pa.int32()),
            "score": pa.array(np.asarray(scores, dtype=np.float32)),
        }
    )


def refuse_duplicate_pairs(table: pa.Table, name: str) -> None:
    """A one-line error when a (qid, docid) is listed more than once: scores would count it twice."""
    dup = first_duplicate_pair(table)
    if dup is not None:
        raise InputError(f"{name}: query {dup[0]!r} lists document {dup[1]!r} more than once; keep one row per (query, document)")


def first_duplicate_pair(table: pa.Table) -> tuple[str, str] | None:
    """The first (qid, docid) listed more than once in a run, or ``None``."""
    if table.num_rows < 2:
        return None
    qid, docid = string_column(table.column("qid")), string_column(table.column("docid"))
    row = pc.first_repeated(qid, docid)
    if row is None:
        return None
    return str(qid[row].as_py()), str(docid[row].as_py())


# ----------------------------------------------------------------------------------------- ordering


def sort_run(table: pa.Table) -> pa.Table:
    """Order a run: queries in order of first appearance, score descending, docid ascending; rank 1..n.

    The result has :data:`RUN_SCHEMA` (a missing ``rank`` column is added).
    """
    qid = string_column(table.column("qid"))
    docid = string_column(table.column("docid"))
    score = pc.cast(table.column("score"), pa.float32())
    n = table.num_rows
    if n == 0:
        return pa.Table.from_arrays([qid, docid, pa.array([], pa.int32()), score], schema=_schema_with(table.schema))
    qcodes = pc.dictionary_encode(qid.combine_chunks()).indices  # codes in first-appearance order
    keyed = pa.table({"_q": qcodes, "score": score, "docid": docid})
    order = pc.sort_indices(
        keyed, sort_keys=[("_q", "ascending"), ("score", "descending"), ("docid", "ascending")]
    )
    q_sorted = np.asarray(pc.take(qcodes, order))
    rank = _ranks_from_sorted_groups(q_sorted)
    return pa.Table.from_arrays(
        [pc.take(qid, order), pc.take(docid, order), pa.array(rank), pc.take(score, order)],
        schema=_schema_with(table.schema),
    )


def _ranks_from_sorted_groups(codes: np.ndarray) -> np.ndarray:
    """1-based position of each row within its run of equal, adjacent codes."""
    n = len(codes)
    idx = np.arange(n, dtype=np.int64)
    starts = np.empty(n, dtype=bool)
    if n:
        starts[0] = True
        np.not_equal(codes[1:], codes[:-1], out=starts[1:])
    start_pos = np.maximum.accumulate(np.where(starts, idx, 0))
    return (idx - start_pos + 1).astype(np.int32)


# ----------------------------------------------------------------------------------------- writing


def run_format_for(out: str | Path | None, fmt: str | None = None) -> str:
    """The run output format: ``fmt``, else by extension (``.trec``/``.run``/``.txt`` TREC), else Arrow."""
    from vecpipe.formats import registry

    return registry.output_format(registry.RUN, out, fmt).name


def _conform_batch(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    if _find_column(table, "rank") is None:
        table = sort_run(table)
    else:
        table = conform_run(table)
    return table


def check_tag(tag: str) -> str:
    if not tag or any(c.isspace() for c in tag):
        raise UsageError(f"run tag {tag!r} must be non-empty and contain no whitespace")
    return tag


class RunSink(Sink):
    """Write a run in batches as they are produced: Arrow, Parquet or TREC text, to a destination
    path (see :mod:`vecpipe.formats.targets`) or stdout (``dest=None``).

    Batches are written in the order given; each must carry qid, docid, score (and rank; a batch
    without rank is ordered with :func:`sort_run`, so give all rows of a query in one batch). For
    TREC text, :attr:`digest` is the sha256 of the bytes written.
    """

    def __init__(self, dest: Path | None, fmt: str = ARROW, tag: str = DEFAULT_TAG, metadata: dict | None = None):
        import hashlib

        self.format = fmt
        self.rows = 0
        self.tag = check_tag(tag)
        self._hash = hashlib.sha256()
        self._sink: TableSink | None = None
        self._fh: Any = None
        self._own = False
        if self.format in TEXT_FORMATS:
            self._lines = TEXT_FORMATS[self.format]
            if dest is None:
                self._fh = sys.stdout.buffer
            else:
                self._fh = open(dest, "wb")
                self._own = True
        else:
            schema = _meta.attach(RUN_SCHEMA, metadata) if metadata else RUN_SCHEMA
            self._sink = TableSink(dest, schema, self.format)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = _conform_batch(batch)
        if table.num_rows == 0:
            return
        if self._sink is not None:
            self._sink.write(table)
        else:
            data = self._lines(table, self.tag)
            self._hash.update(data)
            self._fh.write(data)
            if not self._own:
                self._fh.flush()
        self.rows += table.num_rows

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
        elif self._own:
            self._fh.close()
        else:
            self._fh.flush()

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.abort()
        elif self._own:
            with contextlib.suppress(OSError):
                self._fh.close()


# Whitespace that TREC readers split on (Python's str.split and trec_eval alike), as an RE2 class.
_WHITESPACE = r"[\s\x0b\x1c-\x1f\x85\p{Z}]"


def check_trec_ids(table: pa.Table) -> None:
    """Refuse ids that TREC text cannot hold (empty, or containing whitespace)."""
    for field in ("qid", "docid"):
        col = string_column(table.column(field))
        bad = pc.or_(pc.match_substring_regex(col, _WHITESPACE), pc.equal(pc.binary_length(col), 0))
        if pc.any(bad).as_py():
            value = pc.filter(col, bad)[0].as_py()
            raise InputError(f"{field} {value!r} is empty or contains whitespace, which TREC text cannot hold; "
                             "write Arrow or Parquet (e.g. -o run.parquet), which carry any id")


def trec_lines(table: pa.Table, tag: str = DEFAULT_TAG) -> bytes:
    """TREC text ``qid Q0 docid rank score tag\\n`` for each row (scores in shortest round-trip form)."""
    if table.num_rows == 0:
        return b""
    check_trec_ids(table)
    return _joined_bytes(pc.binary_join_element_wise(
        string_column(table.column("qid")),
        pa.scalar("Q0"),
        string_column(table.column("docid")),
        pc.cast(table.column("rank"), pa.string()),
        pc.cast(pc.cast(table.column("score"), pa.float32()), pa.string()),
        pa.scalar(tag + "\n"),
        " ",
    ))


def msmarco_lines(table: pa.Table, tag: str = DEFAULT_TAG) -> bytes:
    """MS MARCO run text ``qid<TAB>docid<TAB>rank\\n`` for each row (ids may hold spaces, not tabs or
    line breaks; the tag is not part of the format)."""
    if table.num_rows == 0:
        return b""
    for field in ("qid", "docid"):
        col = string_column(table.column(field))
        bad = pc.or_(pc.match_substring_regex(col, r"[\t\n\r]"), pc.equal(pc.binary_length(col), 0))
        if pc.any(bad).as_py():
            value = pc.filter(col, bad)[0].as_py()
            raise InputError(f"{field} {value!r} is empty or holds a tab or a line break, which an MS MARCO run "
                             "cannot hold; write Arrow or Parquet (e.g. -o run.parquet), which carry any id")
    return _joined_bytes(pc.binary_join_element_wise(
        string_column(table.column("qid")), string_column(table.column("docid")),
        pc.binary_join_element_wise(pc.cast(table.column("rank"), pa.string()), pa.scalar("\n"), ""), "\t"))


TEXT_FORMATS = {TREC: trec_lines, MSMARCO: msmarco_lines}


def _joined_bytes(joined: pa.ChunkedArray) -> bytes:
    parts = []
    for chunk in joined.chunks:
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = chunk.buffers()[2]
        parts.append(memoryview(data)[int(offsets[0]) : int(offsets[-1])].tobytes())
    return b"".join(parts)


class RunWriter(Sink):
    """Write a run to ``out`` (a path written atomically, a device, or stdout for ``None``/``-``).

    >>> with RunWriter("run.trec", tag="bm25") as w:   # doctest: +SKIP
    ...     w.write(batch)

    The file appears under its final name only when the writer closes without error. ``fmt`` is
    ``arrow``, ``parquet`` or ``trec``; by default chosen by the extension (Arrow on stdout).
    """

    def __init__(self, out: str | Path | None, fmt: str | None = None, tag: str = DEFAULT_TAG, metadata: dict | None = None):
        from vecpipe.formats.tables import refuse_terminal
        from vecpipe.formats.targets import resolve_target

        self.format = run_format_for(out, fmt)
        check_tag(tag)
        target = resolve_target(out)
        if target.kind == "stdout":
            refuse_terminal(self.format not in TEXT_FORMATS)
        self._stack = contextlib.ExitStack()
        dest = self._stack.enter_context(target.writing())
        try:
            self._sink = RunSink(dest, self.format, tag=tag, metadata=metadata)
        except BaseException:
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)
            raise

    @property
    def rows(self) -> int:
        return self._sink.rows

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        self._sink.write(batch)

    def close(self) -> None:
        self._sink.close()
        self._stack.close()

    def abort(self) -> None:
        self._sink.abort()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_run(
    table_or_batches: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch | pa.Table],
    out: str | Path | None,
    fmt: str | None = None,
    tag: str = DEFAULT_TAG,
    metadata: dict | None = None,
) -> int:
    """Write a run (a table, a batch or an iterable of them) to ``out`` (``None``/``-``: stdout).

    ``fmt`` is ``arrow``, ``parquet`` or ``trec``; by default chosen by the extension (Arrow on
    stdout). Files are written atomically. Returns the number of rows written.
    """
    if isinstance(table_or_batches, (pa.Table, pa.RecordBatch)):
        items: Iterable = [table_or_batches]
    else:
        items = table_or_batches
    with RunWriter(out, fmt, tag=tag, metadata=metadata) as w:
        for item in items:
            w.write(item)
    return w.rows

"""Relevance judgements (qrels): ``qid: string``, ``docid: string``, ``rel: int32``.

Read from BEIR TSV (``query-id corpus-id score``, usually with a header line), TREC qrels
(``qid 0 docid rel``), or Parquet / Arrow / JSON lines with columns ``qid``|``query-id``|``query_id``,
``docid``|``corpus-id``|``doc_id`` and ``rel``|``relevance``|``score``. The format is sniffed from
the content, never the extension.

Text qrels give what trec_eval reads wherever trec_eval reads the line, and a one-line
:class:`~vecpipe.errors.InputError` (naming the file and line) where the input is ambiguous:

- Lines end at ``\\n`` only. A line holding a tab is split on tabs, each field stripped of spaces:
  3 fields are BEIR (qid, docid, rel), 4 are TREC (qid, iteration, docid, rel), so a BEIR docid may
  hold spaces (``q1<TAB>doc 7<TAB>1``). Other lines are split on ASCII whitespace, as trec_eval does.
  Every line must have as many fields as the first; a query id holding a space is refused (it means
  mixed separators). A first line of 3 fields naming columns (``query-id corpus-id score``) is a
  header and skipped.
- Relevance is an optionally signed run of ASCII digits (``1``, ``-1``, ``+2``, ``007``), or such a
  run followed by a point and zeros (``1.0``, ``2.``); both read as trec_eval's ``atol`` reads them.
  Everything else is refused, though ``atol`` would read something: ``1_0`` (atol: 1, Python: 10),
  ``1.5``, ``1e3`` (atol: 1), ``abc`` (atol: 0), non-ASCII digits; and values outside int32.

Table qrels: a float relevance column must hold finite integral values, a string one the spellings
above; the first offending row is named. A (qid, docid) pair judged twice is refused, as trec_eval
refuses it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn as pc
from vecpipe.formats import sniff
from vecpipe.formats.records import read_table, string_column

QRELS_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("docid", pa.string(), nullable=False),
        pa.field("rel", pa.int32(), nullable=False),
    ]
)

_ALIASES = {
    "qid": ("qid", "query-id", "query_id", "queryid", "query"),
    "docid": ("docid", "corpus-id", "doc_id", "corpus_id", "doc", "did"),
    "rel": ("rel", "relevance", "score", "label", "judgment"),
}
_HEADER_WORDS = {a for names in _ALIASES.values() for a in names} | {
    "judgement", "grade", "docno", "iter", "iteration", "corpus", "q0"}

_REL_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")  # ASCII digits only: [0-9] is a literal range
_ASCII_SPACE = " \t\n\v\f\r"  # C's isspace in the "C" locale: what trec_eval splits on
_SPLIT_RE = re.compile(r"[ \t\n\v\f\r]+")
_INT32 = (-(2**31), 2**31 - 1)


def read_qrels(path: str | Path) -> pa.Table:
    """Read qrels from a path or ``-`` into a table of :data:`QRELS_SCHEMA` (file order kept).

    A (qid, docid) pair judged twice is refused, as trec_eval refuses it.
    """
    with sniff.Input(path) as inp:
        if inp.format == sniff.TEXT:
            data = inp.stream.read()
            kind = sniff.text_kind(data[: 1 << 16].decode("utf-8", "replace").splitlines())
            if kind is not None and kind.name != "qrels":
                raise sniff.misplaced(inp.name, kind, "qrels (BEIR TSV, TREC qrels or Parquet)")
            table = _read_text(data, inp.name)
        else:
            table = conform_qrels(read_table(inp, "qrels (BEIR TSV, TREC qrels or Parquet)"), inp.name)
    if table.num_rows == 0:
        raise InputError(f"{sniff.display_name(path)}: qrels have no judgements; give a file with at least one 'qid docid rel' row")
    _check_duplicates(table, sniff.display_name(path))
    return table


def parse_rel(text: str) -> int:
    """A relevance string as trec_eval's ``atol`` reads it, for the spellings where that is
    unambiguous (``1``, ``-1``, ``+2``, ``1.0``, ``2.``); ``ValueError`` for everything else."""
    if not _REL_RE.fullmatch(text):
        raise ValueError(text)
    return int(text.partition(".")[0])


def conform_qrels(table: pa.Table, name: str = "qrels") -> pa.Table:
    """Rename/cast a table's qrels columns to :data:`QRELS_SCHEMA`."""
    cols = {}
    names = set(table.column_names)
    for field, aliases in _ALIASES.items():
        found = next((a for a in aliases if a in names), None)
        if found is None:
            have = ", ".join(table.column_names) or "none"
            raise InputError(
                f"{name}: qrels miss a '{field}' column (accepted names: {', '.join(aliases[:3])}; have: {have})"
            )
        cols[field] = table.column(found)
    for field, col in cols.items():
        if col.null_count:
            raise InputError(f"{name}: qrels column '{field}' has {col.null_count} empty (null) values; fill or drop those rows")
    try:
        qid = string_column(cols["qid"])
        docid = string_column(cols["docid"])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: qrels columns have unusable types ({exc}); qid/docid strings, rel an integer") from None
    rel = _rel_column(cols["rel"], qid, docid, name)
    return pa.Table.from_arrays([qid, docid, rel], schema=QRELS_SCHEMA)


def _rel_column(col: pa.ChunkedArray, qid: pa.ChunkedArray, docid: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """The relevance column as int32, refusing values trec_eval would not read as the same integer."""

    def refuse(bad: np.ndarray, why: str) -> InputError:
        row = int(np.flatnonzero(bad)[0])
        return InputError(
            f"{name}: row {row + 1} (query {qid[row].as_py()!r}, document {docid[row].as_py()!r}): "
            f"relevance {_show(col[row].as_py())} {why}; relevance must be an integer"
        )

    typ = col.type
    if pa.types.is_dictionary(typ):
        col = pc.cast(col, typ.value_type)
        typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        values = col.to_pylist()
        ok = np.fromiter((_REL_RE.fullmatch(v) is not None for v in values), dtype=bool, count=len(values))
        if not ok.all():
            raise refuse(~ok, "is not an integer spelling trec_eval reads unambiguously")
        ints = [parse_rel(v) for v in values]
        big = np.fromiter((not _INT32[0] <= v <= _INT32[1] for v in ints), dtype=bool, count=len(ints))
        if big.any():
            raise refuse(big, "is out of range")
        return pa.chunked_array([pa.array(ints, pa.int32())])
    if pa.types.is_floating(typ):
        vals = np.asarray(col.to_numpy(), dtype=np.float64)
        finite = np.isfinite(vals)
        if not finite.all():
            raise refuse(~finite, "is not a finite number")
        if np.any(vals != np.round(vals)):
            raise refuse(vals != np.round(vals), "is not an integer")
        big = (vals < _INT32[0]) | (vals > _INT32[1])
        if big.any():
            raise refuse(big, "is out of range")
        return pc.cast(col, pa.int32(), safe=False)
    if pa.types.is_integer(typ):
        if len(col) and typ.bit_width >= 32:
            lo, hi = pc.min_max(col).values()
            if lo.as_py() < _INT32[0] or hi.as_py() > _INT32[1]:
                vals = np.asarray(col.to_numpy())
                raise refuse((vals < _INT32[0]) | (vals > _INT32[1]), "is out of range")
        return pc.cast(col, pa.int32())
    try:
        return pc.cast(col, pa.int32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: qrels column 'rel' has an unusable type ({typ}: {exc}); give integers") from None


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _fields(line: str) -> list[str]:
    """A line's fields: split on tabs (fields stripped) when it holds one, else on ASCII whitespace."""
    if "\t" in line:
        return [f.strip(_ASCII_SPACE) for f in line.split("\t")]
    return _SPLIT_RE.split(line)


def _is_header(parts: list[str]) -> bool:
    if len(parts) != 3 or _REL_RE.fullmatch(parts[2]):
        return False
    return any(p.lower() in _HEADER_WORDS for p in parts)


def _read_text(data: bytes, name: str) -> pa.Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}: line {bad_line}: not UTF-8 text; give BEIR TSV, TREC qrels or Parquet") from None
    qids: list[str] = []
    docids: list[str] = []
    rels: list[int] = []
    nfields = 0  # 3: BEIR (qid docid rel), 4: TREC (qid iter docid rel)
    first = True
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(_ASCII_SPACE)
        if not line:
            continue
        parts = _fields(line)
        if first:
            first = False
            if _is_header(parts):  # BEIR header such as 'query-id corpus-id score'
                nfields = 3
                continue
            if len(parts) not in (3, 4):
                raise InputError(
                    f"{name}: line {lineno}: expected TREC qrels 'qid 0 docid rel' (4 fields) or BEIR TSV "
                    f"'query-id corpus-id score' (3 fields), found {len(parts)} fields"
                )
            nfields = len(parts)
        if len(parts) != nfields:
            layout = "'qid docid rel' (BEIR TSV)" if nfields == 3 else "'qid 0 docid rel' (TREC qrels)"
            raise InputError(
                f"{name}: line {lineno}: expected {nfields} fields {layout} like the lines before, found {len(parts)}; fix or remove the line"
            )
        qid, docid, rel_text = parts[0], parts[1] if nfields == 3 else parts[2], parts[-1]
        if not qid or not docid:
            raise InputError(f"{name}: line {lineno}: empty {'query' if not qid else 'document'} id; fix or remove the line")
        if any(c in _ASCII_SPACE for c in qid):
            raise InputError(
                f"{name}: line {lineno}: query id {qid!r} holds a space (tabs and spaces both separate fields "
                "here); separate the fields with tabs only or with spaces only"
            )
        try:
            rel = parse_rel(rel_text)
        except ValueError:
            raise InputError(
                f"{name}: line {lineno}: relevance {rel_text!r} is not an integer (write digits with an optional sign); fix the line"
            ) from None
        if not _INT32[0] <= rel <= _INT32[1]:
            raise InputError(f"{name}: line {lineno}: relevance {rel} is out of range")
        qids.append(qid)
        docids.append(docid)
        rels.append(rel)
    if not qids:
        raise InputError(f"{name}: qrels have no judgements; give a file with at least one 'qid docid rel' line")
    return pa.table(
        {"qid": pa.array(qids, pa.string()), "docid": pa.array(docids, pa.string()), "rel": pa.array(rels, pa.int32())},
        schema=QRELS_SCHEMA,
    )


def _check_duplicates(table: pa.Table, name: str) -> None:
    qid, docid = table.column("qid"), table.column("docid")
    row = pc.first_repeated(qid, docid)
    if row is None:
        return
    q, d = qid[row].as_py(), docid[row].as_py()
    times = int(pc.sum(pc.and_(pc.equal(qid, q), pc.equal(docid, d))).as_py())
    raise InputError(
        f"{name}: query {q!r} judges document {d!r} {times} times; "
        "keep one judgement per (query, document) pair, as trec_eval requires"
    )

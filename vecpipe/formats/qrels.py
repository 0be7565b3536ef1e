"""Relevance judgements (qrels): ``qid: string``, ``docid: string``, ``rel: int32``.

Read from BEIR TSV (``query-id corpus-id score`` with a header line), TREC qrels
(``qid 0 docid rel``, whitespace separated), or Parquet / Arrow / JSON lines with columns
``qid``|``query-id``|``query_id``, ``docid``|``corpus-id``|``doc_id`` and
``rel``|``relevance``|``score``. The format is sniffed from the content, never the extension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
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


def read_qrels(path: str | Path) -> pa.Table:
    """Read qrels from a path or ``-`` into a table of :data:`QRELS_SCHEMA` (file order kept).

    A (qid, docid) pair judged twice is refused, as trec_eval refuses it.
    """
    with sniff.Input(path) as inp:
        if inp.format == sniff.TEXT:
            table = _read_text(inp.stream.read(), inp.name)
        else:
            table = conform_qrels(read_table(inp, "qrels (BEIR TSV, TREC qrels or Parquet)"), inp.name)
    if table.num_rows == 0:
        raise InputError(f"{sniff.display_name(path)}: qrels have no judgements; give a file with at least one 'qid docid rel' row")
    _check_duplicates(table, sniff.display_name(path))
    return table


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
    try:
        qid = string_column(cols["qid"])
        docid = string_column(cols["docid"])
        rel_col = cols["rel"]
        if pa.types.is_floating(rel_col.type):
            vals = rel_col.to_numpy(zero_copy_only=False)
            if np.any(np.isfinite(vals) & (vals != np.round(vals))):
                raise InputError(f"{name}: column 'rel' holds non-integer relevance values; relevance must be integers")
        rel = rel_col.cast(pa.int32(), safe=False) if pa.types.is_floating(rel_col.type) else rel_col.cast(pa.int32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: qrels columns have unusable types ({exc}); qid/docid strings, rel an integer") from None
    for field, col in (("qid", qid), ("docid", docid), ("rel", rel)):
        if col.null_count:
            raise InputError(f"{name}: qrels column '{field}' has {col.null_count} empty (null) values; fill or drop those rows")
    return pa.Table.from_arrays([qid, docid, rel], schema=QRELS_SCHEMA)


def _parse_rel(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # raises ValueError for non-numbers
        if not value.is_integer():
            raise ValueError(text) from None
        return int(value)


def _read_text(data: bytes, name: str) -> pa.Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name}: line {line}: not UTF-8 text; give BEIR TSV, TREC qrels or Parquet") from None
    qids: list[str] = []
    docids: list[str] = []
    rels: list[int] = []
    nfields = 0  # 3: BEIR (qid docid rel), 4: TREC (qid iter docid rel)
    first = True
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if first:
            first = False
            if len(parts) == 3 and not _is_int(parts[2]):
                # BEIR header such as 'query-id corpus-id score'
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
        rel_text = parts[-1]
        try:
            rel = _parse_rel(rel_text)
        except ValueError:
            raise InputError(f"{name}: line {lineno}: relevance {rel_text!r} is not an integer; fix the line") from None
        if not -(2**31) <= rel < 2**31:
            raise InputError(f"{name}: line {lineno}: relevance {rel} is out of range")
        qids.append(parts[0])
        docids.append(parts[1] if nfields == 3 else parts[2])
        rels.append(rel)
    if not qids:
        raise InputError(f"{name}: qrels have no judgements; give a file with at least one 'qid docid rel' line")
    return pa.table(
        {"qid": pa.array(qids, pa.string()), "docid": pa.array(docids, pa.string()), "rel": pa.array(rels, pa.int32())},
        schema=QRELS_SCHEMA,
    )


def _is_int(text: str) -> bool:
    try:
        _parse_rel(text)
        return True
    except ValueError:
        return False


def _check_duplicates(table: pa.Table, name: str) -> None:
    import pyarrow.compute as pc

    counts = table.group_by(["qid", "docid"]).aggregate([([], "count_all")])
    if counts.num_rows == table.num_rows:
        return
    dup = counts.filter(pc.greater(counts.column("count_all"), 1)).slice(0, 1).to_pylist()[0]
    raise InputError(
        f"{name}: query {dup['qid']!r} judges document {dup['docid']!r} {dup['count_all']} times; "
        "keep one judgement per (query, document) pair, as trec_eval requires"
    )

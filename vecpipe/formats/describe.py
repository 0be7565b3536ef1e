"""What ``vecpipe inspect`` reports about any artifact: format, kind, schema, rows, metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff, vpi
from vecpipe.formats.records import _first_line


def _schema_fields(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _kind_of(schema: pa.Schema, meta: dict[str, Any]) -> str:
    if meta.get("kind"):
        return str(meta["kind"])
    names = set(schema.names)
    if names & {"embedding", "embeddings"}:
        return "vectors"
    if {"qid", "docid", "score"} <= names:
        return "run"
    if names & {"text", "contents"}:
        return "records"
    return "table"


def describe(path: str | Path) -> dict[str, Any]:
    inp = sniff.Input(path)
    info: dict[str, Any] = {"path": inp.name, "format": inp.format}
    if inp.compression:
        info["compression"] = inp.compression
    if inp.path is not None and inp.regular:
        info["bytes"] = inp.path.stat().st_size
    try:
        if inp.format == sniff.VPI:
            local = inp.local_path()
            header = vpi.read_header(local, name=inp.name)
            vpi.read(local, name=inp.name)  # verifies sizes and checksums
            meta = header["meta"]
            info.update(kind="index", rows=meta.get("count"), sections=[
                {k: s[k] for k in ("name", "length", "raw_length", "compression")} for s in header["sections"]
            ], vecpipe=meta)
        elif inp.format == sniff.PARQUET:
            pf = pq.ParquetFile(inp.seekable(), page_checksum_verification=True)
            schema = pf.schema_arrow
            meta = metadata.read(schema)
            info.update(kind=_kind_of(schema, meta), rows=pf.metadata.num_rows, schema=_schema_fields(schema), vecpipe=meta)
        elif inp.format in (sniff.ARROW_FILE, sniff.ARROW_STREAM):
            if inp.format == sniff.ARROW_FILE:
                reader = ipc.open_file(inp.seekable())
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            else:
                reader = ipc.open_stream(inp.stream)
                rows = sum(b.num_rows for b in reader)
            schema = reader.schema
            meta = metadata.read(schema)
            info.update(kind=_kind_of(schema, meta), rows=rows, schema=_schema_fields(schema), vecpipe=meta)
        else:
            info.update(_describe_text(inp))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{inp.name}: unreadable {inp.format} data ({_first_line(exc)}); the file may be truncated or corrupt") from None
    finally:
        inp.close()
    return info


def _describe_text(inp: sniff.Input) -> dict[str, Any]:
    rows = 0
    first = None
    for raw in inp.stream:
        if not raw.strip():
            continue
        rows += 1
        if first is None:
            first = raw.decode("utf-8", "replace").rstrip("\r\n")
    kind = "text"
    if inp.format == sniff.JSONL:
        kind = "records"
        try:
            keys = sorted(json.loads(first or "{}"))
        except ValueError:
            keys = []
        return {"kind": kind, "rows": rows, "fields": keys}
    parts = (first or "").split()
    if first and first.lower().startswith(("query-id", "query_id", "qid\t")):
        kind, rows = "qrels", rows - 1
    elif len(parts) == 6 and parts[1] == "Q0":
        kind = "run"
    elif len(parts) == 4 and parts[1] == "0":
        kind = "qrels"
    elif "\t" in (first or ""):
        kind = "records"
    return {"kind": kind, "rows": rows}


def render_text(info: dict[str, Any]) -> str:
    lines = [f"{k}: {info[k]}" for k in ("path", "format", "compression", "kind", "rows", "bytes") if k in info]
    if info.get("schema"):
        lines.append("schema:")
        lines += [f"  {f['name']}: {f['type']}" for f in info["schema"]]
    if info.get("fields"):
        lines.append(f"fields: {', '.join(info['fields'])}")
    if info.get("sections"):
        lines.append("sections:")
        lines += [f"  {s['name']}: {s['length']} bytes stored, {s['raw_length']} raw, {s['compression']}" for s in info["sections"]]
    if info.get("vecpipe"):
        shown = json.dumps(_abbreviate(info["vecpipe"]), indent=2, sort_keys=True)
        lines.append("vecpipe: " + shown.replace("\n", "\n  "))
    return "\n".join(lines)


def _abbreviate(value: Any, limit: int = 96) -> Any:
    """Long strings (base64 codebooks) and long lists shortened for the terminal; --format json keeps all."""
    if isinstance(value, dict):
        return {k: _abbreviate(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        items = [_abbreviate(v, limit) for v in value[:8]]
        return items + [f"... {len(value) - 8} more"] if len(value) > 8 else items
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value)} characters)"
    return value

"""What ``vecpipe inspect`` reports about any artifact: format, kind, schema, rows, metadata, and what
the kind is about.

Kinds and what they add (``--format json`` keeps everything; :func:`render_text` shows a few lines):

- ``vectors``: ``vectors`` (dim, dtype, model, metric, normalised, compression);
- ``index`` (.vpi): ``index`` (spec, metric, count, dim, model) and its sections;
- ``run`` (TREC text, Arrow, Parquet): ``run`` (queries, depth min/median/max, TREC tags);
- ``qrels`` (BEIR TSV, TREC qrels, Arrow/Parquet with qid/docid/rel): ``qrels`` (queries, judgements,
  documents, count per relevance level);
- ``metrics`` (``vecpipe eval`` TSV or JSON): ``metrics`` (measures and values; queries for per-query
  files);
- ``records``: ``fields`` (JSONL);
- NumPy ``.npy``/``.npz``: ``array`` (shape, dtype, the .npz arrays, where the ids come from);
- a directory (a BEIR dataset, say): ``files`` (name, kind, bytes).

A text output's manifest is read from its sidecar ``.NAME.vecpipe.json`` (``manifest``, and
``manifest_current``: whether the sidecar's digest is the file's).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from vecpipe.errors import InputError
from vecpipe.formats import metadata, sniff, vpi
from vecpipe.formats.records import _first_line

_QID = ("qid", "query_id", "query-id", "queryid")
_DOCID = ("docid", "doc_id", "corpus-id", "corpus_id", "did")
_REL = ("rel", "relevance", "label", "judgment", "judgement", "grade")
_MAX_TAGS = 20
_SHOWN_FILES = 10
_SHOWN_MEASURES = 8
_WHOLE_JSON_LIMIT = 256 << 20  # bytes of a multi-line JSON document read whole (a metrics file)


def _schema_fields(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def _first(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _kind_of(schema: pa.Schema, meta: dict[str, Any]) -> str:
    if meta.get("kind"):
        return str(meta["kind"])
    names = schema.names
    if set(names) & {"embedding", "embeddings"}:
        return "vectors"
    if _first(names, _QID) and _first(names, _DOCID):
        if _first(names, _REL):
            return "qrels"
        if "rank" in names:
            return "run"
        if "score" in names:
            score = schema.field("score").type
            return "qrels" if pa.types.is_integer(score) else "run"
    if set(names) & {"text", "contents"}:
        return "records"
    return "table"


def describe(path: str | Path) -> dict[str, Any]:
    from vecpipe.formats.dataset import DatasetInput, is_dataset_dir

    if str(path) != "-" and Path(path).is_dir() and not is_dataset_dir(Path(path)):
        return _describe_directory(Path(path), sniff.display_name(path))
    inp = sniff.Input(path)
    info: dict[str, Any] = {"path": inp.name, "format": inp.format}
    if isinstance(inp, DatasetInput):  # a directory of Parquet parts: one table
        info["format"] = "parquet dataset"
        info["parts"] = len(inp.parts)
    if inp.compression:
        info["compression"] = inp.compression
    if inp.path is not None and inp.regular:
        info["bytes"] = sum(p.stat().st_size for p in inp.parts) if isinstance(inp, DatasetInput) else inp.path.stat().st_size
    try:
        if inp.format == sniff.VPI:
            local = inp.local_path()
            header = vpi.read_header(local, name=inp.name)
            vpi.read(local, name=inp.name)  # verifies sizes and checksums
            meta = header["meta"]
            info.update(kind="index", rows=meta.get("count"), index=_index_summary(meta), sections=[
                {k: s[k] for k in ("name", "length", "raw_length", "compression")} for s in header["sections"]
            ], vecpipe=meta)
        elif inp.format in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            info.update(_describe_arrow(inp))
        elif inp.format in sniff.NUMPY_FORMATS:
            info.update(_describe_numpy(inp))
        elif inp.format == sniff.ZIP:
            info.update(_describe_zip(inp))
        elif inp.format == sniff.JSONL:
            info.update(_describe_jsonl(inp))
        else:
            info.update(_describe_text(inp))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{inp.name}: unreadable {inp.format} data ({_first_line(exc)}); the file may be truncated or corrupt") from None
    finally:
        inp.close()
    if inp.path is not None:
        info.update(_sidecar(inp.path))
    return info


# ------------------------------------------------------------------------------------- summaries


def _model_name(meta: dict[str, Any]) -> str | None:
    model = meta.get("model")
    return model.get("name") if isinstance(model, dict) else model


def _index_summary(meta: dict[str, Any]) -> dict[str, Any]:
    if meta.get("index_kind") == "bm25":
        return {"spec": "BM25", "count": meta.get("count"), "bm25": meta.get("bm25")}
    return {"spec": meta.get("spec"), "metric": meta.get("metric"), "count": meta.get("count"), "dim": meta.get("dim"),
            "model": _model_name(meta)}


def _vectors_summary(schema: pa.Schema, meta: dict[str, Any]) -> dict[str, Any]:
    col = next((c for c in ("embedding", "embeddings", "vector", "emb") if c in schema.names), None)
    typ = schema.field(col).type if col else None
    value_type = getattr(typ, "value_type", None)
    width = getattr(typ, "list_size", None)
    comp = meta.get("compression")
    return {"dim": meta.get("dim") or width, "dtype": meta.get("dtype") or (str(value_type) if value_type else None),
            "model": _model_name(meta), "metric": meta.get("metric"), "normalized": meta.get("normalized"),
            "compression": comp.get("method") if isinstance(comp, dict) else comp}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _depth(counts: np.ndarray) -> dict[str, Any]:
    if len(counts) == 0:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(counts.min()), "median": _number(float(np.median(counts))), "max": int(counts.max())}


def _run_summary(qid: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    counts = np.asarray(pc.value_counts(qid).field("counts")) if len(qid) else np.zeros(0, np.int64)
    return {"queries": len(counts), "depth": _depth(counts)}


def _qrels_summary(qid: Any, docid: Any, rel: Any) -> dict[str, Any]:
    levels = pc.value_counts(rel) if len(rel) else None
    by_level = {}
    if levels is not None:
        pairs = sorted(zip(levels.field("values").to_pylist(), levels.field("counts").to_pylist()),
                       key=lambda p: (p[0] is None, p[0]))
        by_level = {str(level): int(n) for level, n in pairs}
    return {"queries": int(pc.count_distinct(qid).as_py()) if len(qid) else 0, "judgements": len(qid),
            "documents": int(pc.count_distinct(docid).as_py()) if len(docid) else 0, "levels": by_level}


# ------------------------------------------------------------------------------------ Arrow/Parquet


def _describe_arrow(inp: sniff.Input) -> dict[str, Any]:
    table = None
    if inp.format == sniff.PARQUET:
        pf = pq.ParquetFile(inp.arrow_source(), page_checksum_verification=True)
        schema, rows = pf.schema_arrow, pf.metadata.num_rows
        meta, kind = metadata.read(schema), _kind_of(schema, metadata.read(schema))
        cols = _columns_for(kind, schema.names)
        if cols:
            table = pf.read(columns=cols)
    elif inp.format == sniff.ARROW_FILE:
        reader = ipc.open_file(inp.arrow_source())
        schema = reader.schema
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        meta, kind = metadata.read(schema), _kind_of(schema, metadata.read(schema))
        cols = _columns_for(kind, schema.names)
        if cols:
            table = reader.read_all().select(cols)
    else:
        stream = ipc.open_stream(inp.stream)
        schema = stream.schema
        meta, kind = metadata.read(schema), _kind_of(schema, metadata.read(schema))
        cols = _columns_for(kind, schema.names)
        rows, parts = 0, []
        for batch in stream:  # read once: counted, and the summary's columns kept
            rows += batch.num_rows
            if cols:
                parts.append(batch.select(cols))
        if cols:
            table = pa.Table.from_batches(parts, schema=pa.schema([schema.field(c) for c in cols]))
    info: dict[str, Any] = {"kind": kind, "rows": rows, "schema": _schema_fields(schema), "vecpipe": meta}
    if kind == "vectors":
        info["vectors"] = _vectors_summary(schema, meta)
    if table is not None and kind == "run":
        info["run"] = _run_summary(table.column(0))
    elif table is not None:
        info["qrels"] = _qrels_summary(table.column(0), table.column(1), table.column(2))
    return info


def _columns_for(kind: str, names: list[str]) -> list[str]:
    """The columns a run or qrels summary reads (qid; and docid, rel for qrels)."""
    qid, docid = _first(names, _QID), _first(names, _DOCID)
    if kind == "run" and qid:
        return [qid]
    if kind == "qrels" and qid and docid:
        rel = _first(names, _REL) or ("score" if "score" in names else None)
        if rel:
            return [qid, docid, rel]
    return []


# ------------------------------------------------------------------------------------------ NumPy


def _describe_numpy(inp: sniff.Input) -> dict[str, Any]:
    from vecpipe.formats.vectors import open_numpy

    nv = open_numpy(inp)
    info: dict[str, Any] = {"kind": "vectors" if nv.problem is None else "array", "array": nv.info()}
    if nv.shape:
        info["rows"] = nv.shape[0]
    if nv.problem is None:
        info["vectors"] = {"dim": nv.shape[1], "dtype": nv.value_dtype, "model": None, "metric": None,
                           "normalized": None, "compression": None}
    return info


def _describe_zip(inp: sniff.Input) -> dict[str, Any]:
    import zipfile

    try:
        with zipfile.ZipFile(inp.seekable()) as zf:
            members = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"{inp.name}: damaged zip archive ({_first_line(exc)})") from None
    return {"kind": "archive", "rows": len(members), "members": members}


# ------------------------------------------------------------------------------------------- text


def _lines(inp: sniff.Input) -> Iterator[str]:
    for raw in inp.stream:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.strip():
            yield line


def _describe_jsonl(inp: sniff.Input) -> dict[str, Any]:
    first = inp.stream.readline()
    try:
        record = json.loads(first.decode("utf-8", "replace").lstrip("\ufeff"))
    except ValueError:
        record = None
    if record is None:  # a multi-line JSON document: a metrics file written by vecpipe eval --format json?
        rest = inp.stream.read(_WHOLE_JSON_LIMIT)
        try:
            doc = json.loads((first + rest).decode("utf-8", "replace").lstrip("\ufeff"))
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("measures"), dict):
            return {"kind": "metrics", "rows": len(doc["measures"]), "metrics": _metrics_json(doc)}
        return {"kind": "json" if doc is not None else "text", "rows": 1 if doc is not None else 0}
    rows = 1 + sum(1 for _ in _lines(inp))
    if rows == 1 and isinstance(record, dict) and isinstance(record.get("measures"), dict):
        return {"kind": "metrics", "rows": len(record["measures"]), "metrics": _metrics_json(record)}
    keys = sorted(record) if isinstance(record, dict) else []
    return {"kind": "records", "rows": rows, "fields": keys}


def _metrics_json(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"measures": doc["measures"], "per_query": "per_query" in doc}
    for key in ("queries", "missing_queries", "run_queries"):
        if key in doc:
            out[key] = doc[key]
    return out


def _describe_text(inp: sniff.Input) -> dict[str, Any]:
    lines = _lines(inp)
    head = []
    for line in lines:
        head.append(line)
        if len(head) >= sniff.SAMPLE_LINES:
            break
    kind = sniff.text_kind(head)

    def every() -> Iterator[str]:
        yield from head
        yield from lines

    if kind is None:
        rows = sum(1 for _ in every())
        return {"kind": "records" if head and "\t" in head[0] else "text", "rows": rows}
    if kind.name == "run":
        return _text_run(every())
    if kind.name == "qrels":
        return _text_qrels(every(), kind)
    return _text_metrics(every())


def _text_run(lines: Iterator[str]) -> dict[str, Any]:
    per_query: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    rows = bad = 0
    first_bad = None
    for lineno, line in enumerate(lines, 1):
        rows += 1
        parts = line.split()
        if len(parts) != 6:
            bad += 1
            first_bad = first_bad or lineno
            continue
        per_query[parts[0]] += 1
        tags[parts[5]] += 1
    run: dict[str, Any] = {"queries": len(per_query), "depth": _depth(np.fromiter(per_query.values(), np.int64, len(per_query))),
                           "tags": sorted(tags)[:_MAX_TAGS]}
    if bad:
        run["bad_lines"] = {"count": bad, "first": first_bad}
    return {"kind": "run", "rows": rows, "layout": "trec", "run": run}


def _text_qrels(lines: Iterator[str], kind: sniff.TextKind) -> dict[str, Any]:
    qids: list[str] = []
    docids: list[str] = []
    rels: list[int | None] = []
    header = kind.layout == "beir"
    for line in lines:
        if header:
            header = False
            continue
        parts = sniff.line_fields(line)
        if len(parts) not in (3, 4):
            rels.append(None)
            qids.append(parts[0])
            docids.append("")
            continue
        qids.append(parts[0])
        docids.append(parts[1] if len(parts) == 3 else parts[2])
        try:
            value = float(parts[-1])
            rels.append(int(value) if value.is_integer() else None)
        except ValueError:
            rels.append(None)
    summary = _qrels_summary(pa.array(qids, pa.string()), pa.array(docids, pa.string()), pa.array(rels, pa.int64()))
    return {"kind": "qrels", "rows": len(qids), "layout": kind.layout, "qrels": summary}


def _text_metrics(lines: Iterator[str]) -> dict[str, Any]:
    header = [f.lower() for f in sniff.line_fields(next(lines))]
    per_query = header[0] == "qid"
    measures: dict[str, Any] = {}
    sums: dict[str, list[float]] = {}
    queries: set[str] = set()
    rows = 0
    for line in lines:
        parts = sniff.line_fields(line)
        rows += 1
        if per_query and len(parts) == 3:
            qid, name, value = parts
            if qid == "all":
                measures[name] = _value(value)
            else:
                queries.add(qid)
                v = _value(value)
                if isinstance(v, (int, float)):
                    sums.setdefault(name, []).append(float(v))
        elif not per_query and len(parts) == 2:
            measures[parts[0]] = _value(parts[1])
    if per_query and not measures:
        measures = {name: float(np.mean(vals)) for name, vals in sums.items()}
    out: dict[str, Any] = {"measures": measures, "per_query": per_query}
    if per_query:
        out["queries"] = len(queries)
    return {"kind": "metrics", "rows": rows, "metrics": out}


def _value(text: str) -> Any:
    """A measure's value as written: an integer for the count measures (``NumRet 1000``), else a float."""
    try:
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        return text


# ----------------------------------------------------------------------------- sidecars, folders


def _sidecar(path: Path) -> dict[str, Any]:
    """The manifest recorded in the sidecar ``.NAME.vecpipe.json`` of a text output, if any."""
    side = path.parent / f".{path.name}.vecpipe.json"
    try:
        if not side.is_file() or not path.is_file():
            return {}
        recorded = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict) or "manifest" not in recorded:
        return {}
    current = recorded.get("output_size") == path.stat().st_size and recorded.get("output_sha256") == sniff.sha256_file(path)
    return {"manifest": recorded["manifest"], "manifest_current": current, "sidecar": str(side)}



def _describe_directory(path: Path, name: str) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    places = [""] + (["qrels"] if (path / "qrels").is_dir() else [])
    for sub in places:
        folder = path / sub if sub else path
        for child, kind in sniff.directory_files(folder):
            p = folder / child
            files.append({"name": os.path.join(sub, child) if sub else child, "kind": kind, "bytes": p.stat().st_size})
    beir = sniff.is_beir_directory(path)
    info: dict[str, Any] = {"path": name, "format": "directory", "kind": "beir" if beir else "directory",
                            "rows": len(files), "files": files}
    if beir:
        use = {}
        for f in files:
            if f["name"].startswith("corpus."):
                use[f["name"]] = "vecpipe embed (documents)"
            elif f["name"].startswith("queries."):
                use[f["name"]] = "vecpipe embed or search (queries)"
            elif f["name"].startswith("qrels/"):
                use[f["name"]] = "vecpipe eval --qrels"
        info["use"] = use
    return info


# ------------------------------------------------------------------------------------ text view


def _summary_lines(info: dict[str, Any]) -> list[str]:
    lines = []
    if "vectors" in info:
        v = info["vectors"]
        parts = [f"dim {v.get('dim')}", str(v.get("dtype"))]
        if v.get("compression") and v["compression"] not in ("float32", "fp16"):
            parts.append(str(v["compression"]))
        parts.append(f"model {v['model']}" if v.get("model") else "no model recorded")
        if v.get("metric"):
            parts.append(f"metric {v['metric']}")
        lines.append("vectors: " + ", ".join(parts))
    if "index" in info:
        i = info["index"]
        if i.get("bm25"):
            p = i["bm25"]
            lines.append(f"index: BM25 ({p.get('method')}, k1 {p.get('k1')}, b {p.get('b')}, stemmer {p.get('stemmer')}, stopwords "
                         f"{p.get('stopwords')}) over {i.get('count')} documents, {p.get('vocabulary')} terms")
        else:
            lines.append(f"index: {i.get('spec')}, metric {i.get('metric')}, {i.get('count')} vectors of dim {i.get('dim')}"
                         + (f", model {i['model']}" if i.get("model") else ""))
    if "run" in info:
        r = info["run"]
        d = r["depth"]
        line = f"run: {r['queries']} queries, depth {d['min']}/{d['median']}/{d['max']} (min/median/max)"
        if r.get("tags"):
            line += f", tag{'s' if len(r['tags']) > 1 else ''} {', '.join(r['tags'][:5])}"
        if r.get("bad_lines"):
            line += f"; {r['bad_lines']['count']} lines without 6 fields (first: line {r['bad_lines']['first']})"
        lines.append(line)
    if "qrels" in info:
        q = info["qrels"]
        levels = ", ".join(f"{k}: {v}" for k, v in list(q["levels"].items())[:8])
        lines.append(f"qrels: {q['queries']} queries, {q['judgements']} judgements of {q['documents']} documents; "
                     f"levels {levels}")
    if "metrics" in info:
        m = info["metrics"]
        shown = ", ".join(f"{k} {v}" for k, v in list(m["measures"].items())[:_SHOWN_MEASURES])
        more = len(m["measures"]) - _SHOWN_MEASURES
        lines.append(f"metrics: {shown}" + (f", ... {more} more" if more > 0 else ""))
        if m.get("queries") is not None:
            lines.append(f"queries: {m['queries']}")
    if "array" in info:
        a = info["array"]
        if a.get("arrays"):
            lines.append("arrays: " + ", ".join(f"{x['name']} {tuple(x['shape'])} {x['dtype']}" for x in a["arrays"][:8]))
        if a.get("shape"):
            lines.append(f"array: shape {tuple(a['shape'])}, {a['dtype']}" + (", Fortran order" if a.get("fortran_order") else "")
                         + (f", read as {a['read_as']}" if a.get("read_as") and a["read_as"] != a["dtype"] else "")
                         + (f", from {a['embeddings']!r}" if a.get("embeddings") else ""))
        if a.get("ids"):
            lines.append(f"ids: {a['ids']}")
        if a.get("problem"):
            lines.append(f"not vectors: {a['problem']}")
    if "files" in info:
        lines.append("files:")
        for f in info["files"][:_SHOWN_FILES]:
            use = (info.get("use") or {}).get(f["name"])
            lines.append(f"  {f['name']} ({f['kind']}, {f['bytes']} bytes)" + (f": {use}" if use else ""))
        if len(info["files"]) > _SHOWN_FILES:
            lines.append(f"  ... {len(info['files']) - _SHOWN_FILES} more")
    if "members" in info:
        lines.append("members: " + ", ".join(info["members"][:8]) + (" ..." if len(info["members"]) > 8 else ""))
    manifest = info.get("manifest") or (info.get("vecpipe") or {}).get("manifest")
    if isinstance(manifest, dict):
        params = ", ".join(f"{k}={v}" for k, v in sorted((manifest.get("params") or {}).items()))
        line = f"manifest: {manifest.get('stage')}" + (f" ({params})" if params else "")
        line = line if len(line) <= 160 else line[:157] + "..."
        lines.append(line + ("" if info.get("manifest_current", True) else " [stale: the file changed since]"))
    return lines


def render_text(info: dict[str, Any]) -> str:
    lines = [f"{k}: {info[k]}" for k in ("path", "format", "compression", "kind", "rows", "bytes") if k in info]
    lines += _summary_lines(info)
    if info.get("schema"):
        lines.append("schema:")
        lines += [f"  {f['name']}: {f['type']}" for f in info["schema"]]
    if info.get("fields"):
        lines.append(f"fields: {', '.join(info['fields'])}")
    if info.get("sections"):
        lines.append("sections:")
        lines += [f"  {s['name']}: {s['length']} bytes stored, {s['raw_length']} raw, {s['compression']}" for s in info["sections"]]
    shown_meta = {k: v for k, v in (info.get("vecpipe") or {}).items() if k != "manifest"}  # one line above
    if shown_meta:
        shown = json.dumps(_abbreviate(shown_meta), indent=2, sort_keys=True)
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

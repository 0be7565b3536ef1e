"""Exact rescoring of candidates with full-precision vectors read by id, without loading the file.

:class:`DocVectors` gives random access to the rows of a vectors file: an Arrow IPC file is memory
mapped (only the pages of candidate rows are touched, and dropped again after each record batch);
a Parquet file is scanned by its id column first and only the row groups holding candidates are
read; an Arrow stream is read batch by batch. Memory stays bounded by the candidates, not the file.

:func:`score_pairs` scores (query, docid) pairs exactly (ip, cos or l2 as the artifacts record);
:func:`top_k` re-sorts by the exact scores (ties by docid) and keeps k per query; :func:`rerank`
is the rerank stage and :class:`Rescorer` the second stage of `search --rescore`.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn as pc
from vecpipe.formats import metadata, sniff
from vecpipe.formats.vectors import Vectors, batch_matrix, embedding_column, id_column
from vecpipe.metric import default_metric, l2_normalize

PAIR_CHUNK = 65536


class DocVectors:
    """Random access by id into a float vectors file (Arrow IPC file, Parquet or Arrow stream)."""

    def __init__(self, path: str | Path, name: str | None = None):
        if str(path) == "-":
            raise InputError("--vectors -: full-precision vectors are read by random access; give a file, not stdin")
        self.path = Path(path)
        self.name = name or str(path)
        with sniff.Input(path) as inp:
            inp.name = self.name
            self.format = inp.format
        if self.format in sniff.NUMPY_FORMATS:
            raise InputError(f"{self.name}: is a NumPy file; full-precision vectors are read by id from Arrow or Parquet: "
                             f"convert it once with vecpipe quantize {self.name} --to float32 -o vectors.parquet")
        if self.format not in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            raise InputError(f"{self.name}: not a vectors table (Arrow or Parquet); give the vectors written by vecpipe embed")
        self.schema = self._schema()
        self.meta = metadata.read(self.schema)
        if self.meta and self.meta.get("kind") not in (None, "vectors"):
            raise InputError(f"{self.name}: is a {self.meta.get('kind')} table, expected vectors")
        self.emb_col = embedding_column(self.schema, self.name)
        self.id_col = id_column(self.schema, self.name)
        comp = self.meta.get("compression")
        value_type = self.schema.field(self.emb_col).type
        value_type = getattr(value_type, "value_type", None)
        if (isinstance(comp, dict) and comp.get("method") not in ("float32", "fp16")) or (
                value_type is not None and not pa.types.is_floating(value_type)):
            raise InputError(f"{self.name}: holds compressed codes; rescoring needs the full-precision vectors from vecpipe embed")

    def _schema(self) -> pa.Schema:
        import pyarrow.ipc as ipc
        import pyarrow.parquet as pq

        try:
            if self.format == sniff.PARQUET:
                return pq.read_schema(self.path)
            if self.format == sniff.ARROW_FILE:
                with pa.memory_map(str(self.path)) as src:
                    return ipc.open_file(src).schema
            with open(self.path, "rb") as fh:
                return ipc.open_stream(fh).schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name}: unreadable vectors file ({str(exc).splitlines()[0]}); is it complete?") from None

    @property
    def dim(self) -> int | None:
        d = self.meta.get("dim")
        return int(d) if d else None

    def fetch(self, wanted: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions in ``wanted``, float32 rows) for the ids of ``wanted`` found in the file."""
        if len(wanted) == 0:
            return
        try:
            if self.format == sniff.ARROW_FILE:
                yield from self._fetch_ipc_file(wanted)
            elif self.format == sniff.PARQUET:
                yield from self._fetch_parquet(wanted)
            else:
                yield from self._fetch_stream(wanted)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name}: unreadable vectors data ({str(exc).splitlines()[0]}); the file may be truncated") from None

    def _take(self, ids: pa.Array, emb: pa.Array, wanted: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
        if pa.types.is_dictionary(ids.type):
            ids = pc.cast(ids, ids.type.value_type)
        pos = pc.index_in(pc.cast(ids, pa.string()), value_set=wanted)
        rows = np.flatnonzero(np.asarray(pos.is_valid()))
        if len(rows) == 0:
            return None
        sel = pc.take(emb, pa.array(rows))
        mat = batch_matrix(sel, self.name, None, pc.cast(pc.take(ids, pa.array(rows)), pa.string()), column=self.emb_col)
        return np.asarray(pc.take(pos, pa.array(rows))).astype(np.int64), np.ascontiguousarray(mat, dtype=np.float32)

    def _fetch_ipc_file(self, wanted: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import pyarrow.ipc as ipc

        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        reader = ipc.open_file(pa.py_buffer(mm))
        names = reader.schema.names
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            got = self._take(batch.column(names.index(self.id_col)), batch.column(names.index(self.emb_col)), wanted)
            del batch
            if hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_DONTNEED)  # drop the mapped pages from our resident set
            if got is not None:
                yield got

    def _fetch_parquet(self, wanted: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path, page_checksum_verification=True)
        for rg in range(pf.num_row_groups):
            ids = pf.read_row_group(rg, columns=[self.id_col]).column(0).combine_chunks()
            if pa.types.is_dictionary(ids.type):
                ids = pc.cast(ids, ids.type.value_type)
            if not pc.any(pc.is_in(pc.cast(ids, pa.string()), value_set=wanted)).as_py():
                continue
            for batch in pf.iter_batches(batch_size=65536, row_groups=[rg], columns=[self.id_col, self.emb_col]):
                got = self._take(batch.column(0), batch.column(1), wanted)
                if got is not None:
                    yield got

    def _fetch_stream(self, wanted: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import pyarrow.ipc as ipc

        with open(self.path, "rb") as fh:
            reader = ipc.open_stream(fh)
            names = reader.schema.names
            for batch in reader:
                got = self._take(batch.column(names.index(self.id_col)), batch.column(names.index(self.emb_col)), wanted)
                if got is not None:
                    yield got


def array_module(device: str) -> Any:
    """CuPy for ``cuda`` (or ``auto`` where it finds a GPU), else None (NumPy on the CPU)."""
    if device == "cpu":
        return None
    from vecpipe.index import gpu

    if device == "cuda":
        return gpu.require_cupy()
    return gpu.cupy_or_reason()[0]


def score_pairs(docs: DocVectors, queries: np.ndarray, pair_q: np.ndarray, pair_doc: pa.Array, metric: str,
                xp: Any = None) -> np.ndarray:
    """Exact scores (higher is better) of (query row, docid) pairs; NaN where the docid is missing.
    With ``xp`` (CuPy), each chunk of fetched vectors is scored on the GPU."""
    if isinstance(pair_doc, pa.ChunkedArray):
        pair_doc = pair_doc.combine_chunks()
    pair_doc = pc.cast(pair_doc, pa.string())
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if metric == "cos":
        q = l2_normalize(q)
    unique = pc.unique(pair_doc)
    u_of_pair = np.asarray(pc.index_in(pair_doc, value_set=unique)).astype(np.int64)
    order = np.argsort(u_of_pair, kind="stable")  # pairs grouped by document
    starts = np.searchsorted(u_of_pair[order], np.arange(len(unique) + 1))
    scores = np.full(len(pair_doc), np.nan, dtype=np.float32)
    fetched = np.zeros(len(unique), dtype=bool)
    for u_idx, rows in docs.fetch(unique):
        if rows.shape[1] != q.shape[1]:
            raise InputError(f"{docs.name}: vectors have dimension {rows.shape[1]} but the queries have {q.shape[1]}; "
                             "use the query and document vectors of one model")
        if fetched[u_idx].any() or len(np.unique(u_idx)) != len(u_idx):
            again = u_idx[fetched[u_idx]] if fetched[u_idx].any() else np.sort(u_idx)[np.flatnonzero(np.diff(np.sort(u_idx)) == 0)]
            raise InputError(f"{docs.name}: id {unique[int(again[0])].as_py()!r} occurs more than once; ids must be unique")
        fetched[u_idx] = True
        if metric == "cos":
            rows = l2_normalize(rows)
        # pairs whose document is in this chunk, and the chunk row of each
        counts = starts[u_idx + 1] - starts[u_idx]
        total = int(counts.sum())
        first = np.repeat(starts[u_idx] - (np.cumsum(counts) - counts), counts)
        sel = order[first + np.arange(total)]
        row_of = np.repeat(np.arange(len(u_idx)), counts)
        if xp is not None:
            from vecpipe.index.gpu import pair_scores

            scores[sel] = pair_scores(xp, q, rows, pair_q[sel], row_of, metric)
            continue
        for s in range(0, len(sel), PAIR_CHUNK):
            ps, rs = sel[s : s + PAIR_CHUNK], row_of[s : s + PAIR_CHUNK]
            qv, dv = q[pair_q[ps]], rows[rs]
            if metric == "l2":
                diff = qv - dv
                scores[ps] = -np.einsum("ij,ij->i", diff, diff)
            else:
                scores[ps] = np.einsum("ij,ij->i", qv, dv)
    return scores


def top_k(qids: pa.Array, docids: pa.Array, scores: np.ndarray, k: int) -> pa.Table:
    """A run table: per query (in first-appearance order) score descending, docid ascending, k kept."""
    from vecpipe.formats.runs import sort_run

    table = sort_run(pa.table({"qid": qids, "docid": docids, "score": pa.array(scores, pa.float32())}))
    return pc.filter(table, pc.less_equal(table.column("rank"), k))


def rescore_metric(docs: DocVectors, metric: str | None = None) -> str:
    return metric or default_metric(docs.meta)


class Rescorer:
    """Second stage of search: exact scores for the candidates of each query batch, k kept."""

    def __init__(self, path: str | Path, multiplier: int = 4, metric: str | None = None, name: str | None = None,
                 device: str = "cpu"):
        self.docs = DocVectors(path, name)
        self.multiplier = multiplier
        self.metric = rescore_metric(self.docs, metric)
        self.xp = array_module(device)

    def rescore(self, qids: pa.Array, queries: np.ndarray, labels: np.ndarray, ids: pa.Array, k: int) -> pa.RecordBatch:
        if queries.dtype.kind != "f":
            raise InputError("--rescore needs float query vectors (or query texts), not query codes")
        valid = labels >= 0
        pair_q = np.repeat(np.arange(len(qids)), valid.sum(axis=1))
        pair_doc = pc.take(ids, pa.array(labels[valid].astype(np.int64)))
        scores = score_pairs(self.docs, queries, pair_q, pair_doc, self.metric, self.xp)
        missing = int(np.isnan(scores).sum())
        if missing:
            raise InputError(f"{self.docs.name}: {missing} candidate ids from the index are not in this file; "
                             "give the full-precision vectors the index was built from")
        table = top_k(pc.take(qids, pa.array(pair_q)), pair_doc, scores, k)
        return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)


def rerank(table: pa.Table, docs: DocVectors, qv: Vectors, k: int, allow_missing: bool = False,
           metric: str | None = None, on_note: Any = None, allow_mismatch: bool = False,
           device: str = "cpu") -> tuple[pa.Table, dict[str, Any]]:
    """Rescore a run exactly with full-precision vectors; returns (run table, run metadata)."""
    if k < 1:
        raise InputError("-k must be at least 1")
    if qv.matrix.dtype.kind != "f" or (isinstance(qv.meta.get("compression"), dict)
                                       and qv.meta["compression"].get("method") not in ("float32", "fp16")):
        raise InputError(f"{qv.name}: holds query codes; rerank with the float query vectors from vecpipe embed")
    metadata.check_same_model(qv.meta, docs.meta, qv.name, docs.name, "use query and document vectors of one model",
                              allow_mismatch)
    if docs.dim and docs.dim != qv.matrix.shape[1]:
        raise InputError(f"{qv.name}: queries have dimension {qv.matrix.shape[1]} but {docs.name} holds {docs.dim}; "
                         "use query and document vectors of one model")
    qid_col = table.column("qid").combine_chunks()
    doc_col = table.column("docid").combine_chunks()
    q_row = pc.index_in(qid_col, value_set=qv.ids)
    missing_q = q_row.null_count
    if missing_q and not allow_missing:
        nq = len(pc.unique(pc.filter(qid_col, pc.is_null(q_row))))
        raise InputError(f"{qv.name}: {nq} queries of the run ({missing_q} rows) have no vector; "
                         "give the query vectors the run was made from, or --allow-missing to drop them")
    metric = rescore_metric(docs, metric)
    keep_q = np.asarray(q_row.is_valid())
    pair_q = np.asarray(pc.fill_null(q_row, 0)).astype(np.int64)
    scores = score_pairs(docs, qv.matrix, pair_q, doc_col, metric, array_module(device))
    scores[~keep_q] = np.nan
    missing_d = np.isnan(scores) & keep_q
    if missing_d.any() and not allow_missing:
        nd = len(pc.unique(pc.filter(doc_col, pa.array(missing_d))))
        raise InputError(f"{docs.name}: {nd} docids of the run ({int(missing_d.sum())} rows) are not in this file; "
                         "give the vectors the run was searched on, or --allow-missing to keep the rest")
    keep = ~np.isnan(scores)
    if on_note and not keep.all():
        on_note(f"dropped {int((~keep).sum())} run rows without vectors")
    mask = pa.array(keep)
    out = top_k(pc.filter(qid_col, mask), pc.filter(doc_col, mask), scores[keep], k)
    meta = metadata.new("run", k=k, rerank={"metric": metric, "vectors": docs.meta.get("dim") and {"dim": docs.dim},
                                            "model": (docs.meta.get("model") or {}).get("name")})
    return out, meta


# ------------------------------------------------------------------ a rescore source an index records


def source_location(vectors: str | Path, index: str | Path | None) -> str:
    """Where an index finds the float vectors it rescores from: relative to the index's directory
    (the two can move together), or absolute when the index is not a file (stdout)."""
    import os

    where = Path(vectors).resolve()
    if index is None or str(index) == "-":
        return str(where)
    return os.path.relpath(where, Path(index).resolve().parent)


def source_record(location: str, fingerprint: dict[str, Any], multiplier: int, metric: str) -> dict[str, Any]:
    """The ``rescore`` entry of an index's metadata: the vectors' location and content fingerprint
    (sha256 and size, as the manifest takes them), the multiplier and the metric to rescore with."""
    return {"vectors": location, "sha256": str(fingerprint["sha256"]), "size": int(fingerprint["size"]),
            "multiplier": int(multiplier), "metric": metric}


def source_path(record: dict[str, Any], index: str | Path) -> Path:
    """The path of the vectors an index's ``rescore`` entry names (relative to the index's directory)."""
    import os

    where = Path(str(record.get("vectors") or ""))
    return where if where.is_absolute() else Path(os.path.normpath(Path(index).resolve().parent / where))

"""The rerank stage: rescore a run exactly with full-precision vectors read by id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import registry
from vecpipe.formats.runs import DEFAULT_TAG, check_tag, read_run, refuse_duplicate_pairs
from vecpipe.formats.vectors import read_vectors
from vecpipe.index.rescore import DocVectors, rerank
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec

DEFAULT_DEPTH = 100


@dataclass
class Rerank(Stage):
    """Rescore each query's candidates exactly (ip, cos or l2 as the vectors record), re-sort and keep k."""

    name = "rerank"
    output_kind = registry.RUN
    devices = ("auto", "cpu", "cuda")

    run_input: str = inp("-")
    vectors: str | None = inp(None)
    queries: str | None = inp(None)
    output: str | None = opt(None)
    k: int = rec(100)
    metric: str | None = rec(None)
    allow_missing: bool = rec(False)
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)
    allow_mismatch: bool = rec(False, omit_default=True)
    cross_encoder: str | None = rec(None, omit_default=True)
    corpus: str | None = inp(None)
    depth: int = rec(DEFAULT_DEPTH, omit_default=True)
    batch_size: int | None = opt(None)
    threads: int | None = opt(None)
    chamfer: str | None = inp(None)

    def inputs(self) -> dict[str, str | None]:
        roles = super().inputs()
        return {"run" if role == "run_input" else role: path for role, path in roles.items()}

    def recorded(self, name: str, value: Any) -> Any:
        if name == "cross_encoder" and value is not None:
            from vecpipe.encode.model import sha256_file

            model = Path(value) / "model.onnx"
            return {"name": Path(value).name, "sha256": sha256_file(model) if model.is_file() else None}
        return super().recorded(name, value)

    def check(self) -> None:
        check_tag(self.tag)
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if self.chamfer is not None:
            given = [flag for flag, on in (("--vectors", self.vectors is not None), ("--metric", self.metric is not None),
                                           ("--cross-encoder", self.cross_encoder is not None), ("--corpus", self.corpus is not None),
                                           ("--depth", self.depth != DEFAULT_DEPTH), ("--batch-size", self.batch_size is not None))
                     if on]
            if given:
                raise UsageError(f"{', '.join(given)}: does not apply with --chamfer (it scores token vectors exactly)")
            if self.queries is None:
                raise UsageError("rerank --chamfer DOC_MULTIVECTORS needs --queries QUERY_MULTIVECTORS")
            if str(self.chamfer) == "-" and str(self.queries) == "-":
                raise UsageError("--chamfer and --queries cannot both be stdin ('-')")
            if str(self.run_input) == "-" and "-" in (str(self.chamfer), str(self.queries)):
                raise UsageError("the run is read from stdin: give --chamfer and --queries as files")
            return
        if self.cross_encoder is not None:
            given = [flag for flag, on in (("--vectors", self.vectors is not None), ("--metric", self.metric is not None),
                                           ("--allow-mismatch", self.allow_mismatch)) if on]
            if given:
                raise UsageError(f"{', '.join(given)}: does not apply with --cross-encoder (it reads query and document texts)")
            if self.queries is None or self.corpus is None:
                raise UsageError("rerank --cross-encoder needs --queries QUERY_TEXTS and --corpus CORPUS")
            if self.depth < 1:
                raise UsageError("--depth must be at least 1")
            if self.batch_size is not None and self.batch_size < 1:
                raise UsageError("--batch-size must be at least 1")
            return
        if self.corpus is not None or self.depth != DEFAULT_DEPTH or self.batch_size is not None:
            raise UsageError("--corpus, --depth and --batch-size apply with --cross-encoder only")
        if self.metric is not None and self.metric not in ("ip", "l2", "cos"):
            raise UsageError(f"--metric {self.metric}: rerank scores float vectors; use ip, l2 or cos")
        if self.vectors is None or self.queries is None:
            raise UsageError("rerank needs --vectors DOC_VECTORS and --queries QUERY_VECTORS")
        if str(self.vectors) == "-":
            raise InputError("--vectors -: full-precision vectors are read by random access; give a file, not stdin")

    def run(self, ctx: Context) -> int:
        if self.chamfer is not None:
            return self.run_chamfer(ctx)
        if self.cross_encoder is not None:
            return self.run_cross(ctx)
        path, name = ctx.local_path("vectors")
        docs = DocVectors(path, name)
        queries = read_vectors(ctx.input("queries"))
        table = read_run(self.run_input)
        refuse_duplicate_pairs(table, "<stdin>" if self.run_input == "-" else self.run_input)
        out, meta = rerank(table, docs, queries, self.k, allow_missing=self.allow_missing, metric=self.metric,
                           on_note=ctx.note, allow_mismatch=self.allow_mismatch, device=ctx.device)
        with ctx.run_writer(meta, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)

    def run_chamfer(self, ctx: Context) -> int:
        """Rescore every candidate by exact Chamfer similarity of query and document token vectors."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from vecpipe.formats import metadata, sniff
        from vecpipe.formats.multivectors import iter_multivectors, read_multivectors
        from vecpipe.index.chamfer import chamfer_scores, missing_pairs
        from vecpipe.index.rescore import top_k

        table = read_run(self.run_input)
        refuse_duplicate_pairs(table, "<stdin>" if self.run_input == "-" else self.run_input)
        qids = table.column("qid").combine_chunks().cast(pa.string())
        docids = table.column("docid").combine_chunks().cast(pa.string())
        q_ids, q_flat, q_off, q_meta = read_multivectors(ctx.input("queries"))
        docs_in = ctx.input("chamfer")
        doc_name = docs_in.name
        doc_path = docs_in.local_path()  # a regular file as it is; a stream spooled once (read once per chunk of queries)
        metas: list[dict[str, Any]] = []

        def open_docs() -> Any:
            for batch in iter_multivectors(sniff.Input(doc_path), batch_size=1024):
                if not metas:
                    metas.append(batch[3])
                    metadata.check_same_model(q_meta, batch[3], str(self.queries), doc_name,
                                              "embed queries and documents with one model", self.allow_mismatch)
                    qdim, ddim = q_flat.shape[1] if q_flat.size else None, batch[1].shape[1] if batch[1].size else None
                    if qdim and ddim and qdim != ddim:
                        raise InputError(f"{self.queries}: token vectors of dimension {qdim} but {doc_name} holds {ddim}")
                yield batch

        progress = ctx.progress
        progress.start("rerank", total=len(qids), unit="pairs")
        scores, found = chamfer_scores(qids, docids, (q_ids, q_flat, q_off), open_docs, on_progress=progress.advance)
        if not found.all():
            lost_q, lost_d = missing_pairs(qids, docids, found)
            what = ", ".join(part for part in (f"{lost_q} queries" if lost_q else "", f"{lost_d} documents" if lost_d else "") if part)
            if not self.allow_missing:
                raise InputError(f"the run has {what} without token vectors in {self.queries} or {doc_name}; give the token "
                                 "vectors the run was made from, or --allow-missing to drop those rows")
            ctx.note(f"dropped {int((~found).sum())} run rows: {what} without token vectors")
        mask = pa.array(found)
        out = top_k(pc.filter(qids, mask), pc.filter(docids, mask), scores[found], self.k)
        model = (metas[0].get("model") if metas else None) or q_meta.get("model")
        meta = metadata.new("run", k=self.k, rerank={"chamfer": True, "model": model})
        with ctx.run_writer(meta, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)

    def run_cross(self, ctx: Context) -> int:
        """Rescore each query's top ``depth`` candidates with a cross-encoder over the texts."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from vecpipe.encode.cross import CrossEncoder
        from vecpipe.formats import metadata
        from vecpipe.formats.records import read_records
        from vecpipe.index.rescore import top_k

        assert self.cross_encoder is not None
        model = CrossEncoder(self.cross_encoder, batch_size=self.batch_size, device=ctx.device, threads=self.threads)
        table = read_run(self.run_input)
        refuse_duplicate_pairs(table, "<stdin>" if self.run_input == "-" else self.run_input)
        table = table.filter(pc.less_equal(table.column("rank"), self.depth))
        qids = table.column("qid").combine_chunks().cast(pa.string())
        docids = table.column("docid").combine_chunks().cast(pa.string())
        want_q, want_d = set(pc.unique(qids).to_pylist()), set(pc.unique(docids).to_pylist())
        queries = _texts(read_records(ctx.input("queries"), batch_size=4096), want_q)
        docs = _texts(read_records(ctx.input("corpus"), batch_size=4096), want_d)  # only the candidates' texts are kept
        q_list, d_list = qids.to_pylist(), docids.to_pylist()
        keep = np.array([q in queries and d in docs for q, d in zip(q_list, d_list)], dtype=bool)
        if not keep.all():
            lost_q = len({q for q in q_list if q not in queries})
            lost_d = len({d for d in d_list if d not in docs})
            what = ", ".join(part for part in (f"{lost_q} queries without text in {self.queries}" if lost_q else "",
                                               f"{lost_d} documents without text in {self.corpus}" if lost_d else "") if part)
            if not self.allow_missing:
                raise InputError(f"the run has {what}; give the texts the run was made from, or --allow-missing to drop them")
            ctx.note(f"dropped {int((~keep).sum())} run rows: {what}")
        pairs = [(queries[q], docs[d]) for q, d, ok in zip(q_list, d_list, keep) if ok]
        progress = ctx.progress
        progress.start("rerank", total=len(pairs), unit="pairs")
        scores = model.score(pairs, on_progress=progress.advance)
        mask = pa.array(keep)
        out = top_k(pc.filter(qids, mask), pc.filter(docids, mask), scores, self.k)
        meta = metadata.new("run", k=self.k, rerank={"cross_encoder": model.info, "depth": self.depth})
        with ctx.run_writer(meta, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)


def _texts(batches: Any, wanted: set[str]) -> dict[str, str]:
    """id -> text of the records whose id is wanted, read in one pass (the rest is never kept)."""
    out: dict[str, str] = {}
    for batch in batches:
        for i, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            if i in wanted:
                out[i] = text
    return out

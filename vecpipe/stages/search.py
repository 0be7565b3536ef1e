"""The search stage: queries (vectors, or texts embedded with the index's model) in, a run out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, registry, sniff
from vecpipe.formats.records import Fields, count_rows, open_arrow_batches, read_records
from vecpipe.formats.runs import DEFAULT_TAG, check_tag
from vecpipe.formats.vectors import has_vectors, vectors_from_arrow
from vecpipe.index.search import LoadedIndex, load_index, search_run
from vecpipe.pipeline.progress import Progress
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec
from vecpipe.stages.embed import embed_records, model_ref

DEFAULT_MULTIPLIER = 4


@dataclass
class Search(Stage):
    """Search a .vpi index and write a run (qid, docid, rank, score)."""

    name = "search"
    output_kind = registry.RUN
    devices = ("auto", "cpu", "cuda")
    engines = ("local", "ray")

    queries: str = inp("-")
    index: str = inp(None)
    rescore: str | None = inp(None)
    output: str | None = opt(None)
    k: int = rec(100)
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)
    nprobe: int | None = rec(None)
    ef_search: int | None = rec(None)
    max_dist_ratio: float | None = rec(None, omit_default=True)
    rescore_multiplier: int | None = rec(None)
    model: str | None = rec(None)
    prefix: str = rec("")
    fields: Fields = rec(Fields())
    allow_mismatch: bool = rec(False, omit_default=True)
    hubness: str | None = rec(None, omit_default=True)
    bank: str | None = inp(None)
    hubness_beta: float | None = rec(None, omit_default=True)
    prf: int | None = rec(None, omit_default=True)
    prf_alpha: float | None = rec(None, omit_default=True)
    prf_beta: float | None = rec(None, omit_default=True)
    min_prob: float | None = rec(None, omit_default=True)
    calibration: str | None = inp(None)
    batch_size: int = opt(1024)
    threads: int | None = opt(None)

    def check(self) -> None:
        check_tag(self.tag)
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.max_dist_ratio is not None and not (self.max_dist_ratio == 0 or 1 <= self.max_dist_ratio <= 100):
            raise UsageError(f"--max-dist-ratio {self.max_dist_ratio}: a ratio from 1 to 100 (or 0 for no limit)")
        if self.rescore_multiplier is not None and self.rescore_multiplier < 1:
            raise UsageError("--rescore-multiplier must be at least 1")
        self.check_literature()

    def check_literature(self) -> None:
        """--hubness, --prf and --min-prob: usage checks before any work."""
        import math

        from vecpipe.index.hubness import METHODS

        if self.hubness is None and (self.bank is not None or self.hubness_beta is not None):
            raise UsageError("--bank and --beta apply with --hubness qbnorm|dbnorm only")
        if self.hubness is not None:
            if self.hubness not in METHODS:
                raise UsageError(f"--hubness {self.hubness}: choose one of {', '.join(METHODS)}")
            if self.bank is None:
                raise UsageError("--hubness needs --bank BANK_QUERY_VECTORS (training queries' vectors, not the test queries)")
            if self.bank == "-" and self.queries == "-":
                raise UsageError("the queries and the --bank cannot both come from stdin ('-')")
            if self.hubness_beta is not None and not (0 < self.hubness_beta <= 1000 and math.isfinite(self.hubness_beta)):
                raise UsageError(f"--beta {self.hubness_beta}: the inverse temperature must be above 0 and at most 1000")
            if self.rescore_multiplier is not None:
                raise UsageError("--rescore-multiplier does not apply with --hubness (the hubness search is exact; "
                                 "--rescore only gives the document vectors)")
        if self.prf is None and (self.prf_alpha is not None or self.prf_beta is not None):
            raise UsageError("--prf-alpha and --prf-beta apply with --prf K only")
        if self.prf is not None:
            if self.prf < 1:
                raise UsageError("--prf must be at least 1")
            if self.prf > self.k:
                raise UsageError(f"--prf {self.prf} is larger than -k {self.k}: feedback reads the top K of the k results")
            for flag, value in (("--prf-alpha", self.prf_alpha), ("--prf-beta", self.prf_beta)):
                if value is not None and not (0 <= value <= 1e6 and math.isfinite(value)):
                    raise UsageError(f"{flag} {value}: a weight from 0 to 1e6")
            if self.alpha_beta == (0.0, 0.0):
                raise UsageError("--prf-alpha and --prf-beta cannot both be 0")
        if self.min_prob is not None and not (0.0 <= self.min_prob <= 1.0):
            raise UsageError(f"--min-prob {self.min_prob}: a probability, from 0 to 1")
        if (self.min_prob is None) != (self.calibration is None):
            raise UsageError("--min-prob P and --calibration CALIB.json go together")
        if self.calibration == "-" and "-" in (self.queries, self.bank):
            raise UsageError("only one input can come from stdin ('-')")

    @property
    def alpha_beta(self) -> tuple[float, float]:
        from vecpipe.index.feedback import DEFAULT_ALPHA, DEFAULT_BETA

        return (DEFAULT_ALPHA if self.prf_alpha is None else self.prf_alpha,
                DEFAULT_BETA if self.prf_beta is None else self.prf_beta)

    @property
    def beta(self) -> float:
        from vecpipe.index.hubness import DEFAULT_BETA

        return DEFAULT_BETA if self.hubness_beta is None else self.hubness_beta

    @property
    def multiplier(self) -> int:
        return self.rescore_multiplier or DEFAULT_MULTIPLIER

    def recorded(self, name: str, value: Any) -> Any:
        if name == "rescore_multiplier":  # without --rescore: over the rescoring an index records
            return self.multiplier if self.rescore else value
        if name == "model":
            return model_ref(value) if value is not None else None
        if name == "hubness_beta":
            return self.beta if self.hubness else None
        if name in ("prf_alpha", "prf_beta"):
            return self.alpha_beta[name == "prf_beta"] if self.prf else None
        return super().recorded(name, value)

    def run(self, ctx: Context) -> int:

        index_path, index_name = ctx.local_path("index")
        loaded = load_index(index_path, threads=self.threads, name=index_name)
        for option, param, value in (("--nprobe", "nprobe", self.nprobe), ("--ef-search", "efSearch", self.ef_search),
                                     ("--max-dist-ratio", "max_dist_ratio", self.max_dist_ratio)):
            if value is not None and not loaded.applies(param):
                raise UsageError(f"{option} does not apply to {index_name} ({loaded.meta.get('spec')}); "
                                 "--nprobe applies to IVF and SPANN indexes, --ef-search to HNSW indexes, --max-dist-ratio to SPANN")
        if self.max_dist_ratio is not None:
            loaded.set_params(nprobe=self.nprobe, max_dist_ratio=self.max_dist_ratio)
        else:
            loaded.set_params(nprobe=self.nprobe, ef_search=self.ef_search)
        loaded.use_device(ctx.device, ctx.note)
        text_index = getattr(loaded, "text_queries", False)
        if text_index:
            given = [flag for flag, on in (("--rescore", self.rescore is not None), ("--model", self.model is not None),
                                           ("--prefix", self.prefix != ""), ("--allow-mismatch", self.allow_mismatch),
                                           ("--hubness", self.hubness is not None), ("--prf", self.prf is not None)) if on]
            if given:
                raise UsageError(f"{', '.join(given)}: does not apply to {index_name}, a BM25 index searched with query texts")
        rescorer = self.rescorer(ctx, loaded, index_path, index_name)
        if rescorer is None and self.rescore_multiplier is not None:
            raise UsageError(f"--rescore-multiplier applies with --rescore, or to an index that records its rescoring; "
                             f"{index_name} records none")
        hubness, feedback, after, extra = self.literature(ctx, loaded, index_path, index_name, rescorer)
        source = ctx.input("queries")
        progress = ctx.progress
        progress.start("search", total=count_rows(source), unit="queries")
        queries = self.query_vectors(source, ctx, loaded, progress)
        if ctx.engine.name == "ray":
            batches = self.on_cluster(ctx, index_path, index_name, queries)
        else:
            batches = search_run(loaded, queries, self.k, self.batch_size,
                                 rescorer=None if hubness else rescorer, hubness=hubness, feedback=feedback, after=after)
        run_meta = metadata.new("run", k=self.k, index={key: loaded.meta.get(key) for key in ("spec", "metric", "count", "dim")},
                                model=(loaded.meta.get("model") or {}).get("name"),
                                rescore={"multiplier": rescorer.multiplier, "metric": rescorer.metric}
                                if rescorer and not hubness else None, **extra)
        with ctx.run_writer(run_meta, self.tag) as writer:
            for batch in batches:
                writer.write(batch)
            empty = int(getattr(loaded, "empty_queries", 0))
            if empty:
                ctx.note(f"{empty} queries had no indexed term: they have no results")
            return int(writer.rows)

    def rescorer(self, ctx: Context, loaded: LoadedIndex, index_path: Any, index_name: str) -> Any:
        """The second stage: --rescore VECTORS, else the float vectors the index records (``build-index
        --spec auto`` chose a kind that rescores from disk), checked to be the ones it was built from."""
        from vecpipe.index.rescore import Rescorer, source_path

        recorded = loaded.meta.get("rescore") if isinstance(loaded.meta.get("rescore"), dict) else None
        if self.rescore is not None:
            path, name = ctx.local_path("rescore")
            multiplier = self.rescore_multiplier or (recorded or {}).get("multiplier") or DEFAULT_MULTIPLIER
            rescorer = Rescorer(path, multiplier=int(multiplier), metric=(recorded or {}).get("metric"), name=name,
                                device=ctx.device)
            metadata.check_same_model(rescorer.docs.meta, loaded.meta, name, index_name,
                                      "give the full-precision vectors the index was built from", self.allow_mismatch)
            return rescorer
        if recorded is None or getattr(loaded, "text_queries", False):
            return None
        where = source_path(recorded, index_path)
        hint = "give --rescore VECTORS (the float vectors it was built from), or rebuild the index"
        if not where.is_file():
            raise InputError(f"{index_name}: rescores its candidates with {where}, which is gone; {hint}")
        from vecpipe.pipeline.manifest import StatCache

        cache = StatCache()
        try:
            same = where.stat().st_size == recorded.get("size") and cache.sha256(where) == recorded.get("sha256")
        finally:
            cache.save()
        if not same:
            raise InputError(f"{index_name}: rescores its candidates with {where}, which has changed since the index was built "
                             f"(its sha256 differs); {hint}")
        if ctx.engine.name != "local":
            raise UsageError(f"{index_name} rescores from {where}: not available with --engine {ctx.engine.name}; search on the "
                             "local engine")
        multiplier = int(self.rescore_multiplier or recorded.get("multiplier") or DEFAULT_MULTIPLIER)
        ctx.note(f"rescoring k x {multiplier} candidates with {where}, as {index_name} records (--rescore overrides)")
        return Rescorer(where, multiplier=multiplier, metric=recorded.get("metric"), name=str(where), device=ctx.device)

    def on_cluster(self, ctx: Context, index_path: Any, index_name: str,
                   queries: Iterator[tuple[pa.Array, np.ndarray]]) -> Iterator[pa.RecordBatch]:
        """--engine ray: query batches split across a pool of actors, each holding the index (its
        bytes shipped once through Ray's object store); the run batches come back in query order,
        the same as the local search."""
        from pathlib import Path

        from vecpipe.index.search import rebatch

        given = [flag for flag, on in (("--rescore", self.rescore is not None), ("--hubness", self.hubness is not None),
                                       ("--prf", self.prf is not None), ("--min-prob", self.min_prob is not None)) if on]
        if given:
            raise UsageError(f"{', '.join(given)}: not available with --engine ray; search on the local engine")
        k, batch_size, threads, name = self.k, self.batch_size, getattr(ctx.engine, "threads", None) or 1, index_name
        nprobe, ef_search = self.nprobe, self.ef_search

        def make_worker(blob: bytes) -> Any:
            import os
            import tempfile

            from vecpipe.index.search import load_index, search_run

            fd, path = tempfile.mkstemp(prefix="vecpipe-index-", suffix=".vpi")
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            try:
                index = load_index(path, threads=threads, name=name)
                index.set_params(nprobe=nprobe, ef_search=ef_search)
            finally:
                os.unlink(path)  # a mapped index keeps its pages; the name is not needed

            def one(item: tuple[pa.Array, np.ndarray]) -> pa.RecordBatch:
                return pa.Table.from_batches(list(search_run(index, iter([item]), k, batch_size))).combine_chunks().to_batches()[0]

            return one

        for _, batch in ctx.engine.map_items(make_worker, rebatch(queries, batch_size), shared=Path(index_path).read_bytes()):  # type: ignore[attr-defined]
            yield batch

    def literature(self, ctx: Context, loaded: LoadedIndex, index_path: Any, index_name: str,
                   rescorer: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
        """(hubness search, feedback, cut, run metadata) for --hubness, --prf and --min-prob."""
        hubness: Any = None
        feedback: Any = None
        after: Any = None
        extra: dict[str, Any] = {}
        source = None
        if self.min_prob is not None:
            import pyarrow as pa

            from vecpipe.evaluate.calibration import check_run_fits, cut
            from vecpipe.stages.calibrate import read_calibration

            assert self.calibration is not None
            calib = read_calibration(self.calibration, ctx)
            meta = {"model": (loaded.meta.get("model") or {}).get("name"), "index": {"metric": loaded.metric}, "k": self.k,
                    "hubness": {"method": self.hubness} if self.hubness else None}
            check_run_fits(calib, meta, self.k, "this search", self.calibration)
            threshold = float(self.min_prob)

            def cutter(batch: pa.RecordBatch) -> Any:
                return cut(pa.Table.from_batches([batch]), calib, threshold, False, "search")

            after = cutter
            extra["cut"] = {"threshold": threshold, "scores": "raw", "depth": calib.depth}
        if self.hubness or self.prf:
            from vecpipe.index.feedback import DocSource

            source = DocSource(loaded, rescorer.docs if rescorer else None, "--hubness" if self.hubness else "--prf")
        if self.hubness:
            from vecpipe.index.hubness import HubnessSearch
            from vecpipe.stages.hubness import load_or_build

            if loaded.metric not in ("ip", "cos"):
                raise InputError(f"--hubness: {index_name} ranks by {loaded.metric}; QB-Norm and DBNorm apply to inner-product "
                                 "and cosine indexes")
            bank_path, bank_name = ctx.local_path("bank")
            assert source is not None
            logz = load_or_build(index_path, index_name, bank_path, bank_name, loaded, source.all, self.hubness, self.beta,
                                 self.rescore, self.allow_mismatch, ctx.note)
            hubness = HubnessSearch(source.all(), logz, self.hubness, self.beta, loaded.metric)
            extra["hubness"] = {"method": self.hubness, "beta": self.beta}
        if self.prf:
            from vecpipe.index.feedback import Feedback

            assert source is not None
            alpha, beta = self.alpha_beta
            feedback = Feedback(source, self.prf, alpha, beta, loaded.metric)
            extra["prf"] = {"k": self.prf, "alpha": alpha, "beta": beta}
        return hubness, feedback, after, extra

    def query_vectors(self, source: sniff.Input, ctx: Context, index: LoadedIndex,
                      progress: Progress) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """(qids, matrix) batches from a vectors input, or from text records embedded with the index's model."""
        if source.format == sniff.VPI:
            raise InputError(f"{source.name}: is a .vpi index; give query vectors or query texts")
        opened = None
        if source.format in sniff.ARROW_FORMATS:
            opened = open_arrow_batches(source, 4096)
            if has_vectors(opened[0]) and getattr(index, "text_queries", False):
                raise InputError(f"{source.name}: holds query vectors, but {index.name} is a BM25 index: give it query texts "
                                 "(JSONL, TSV, Parquet or Arrow records)")
            if has_vectors(opened[0]):
                text_only = [name for name, given in (("--model", self.model is not None), ("--prefix", self.prefix != ""),
                                                      ("--id-field/--text-field/--title-field", self.fields != Fields()))
                             if given]
                if text_only:
                    raise UsageError(f"{', '.join(text_only)}: applies to query texts only, and {source.name} holds query vectors")
                yield from self._vector_queries(source.name, opened, index, progress)
                return
        if getattr(index, "text_queries", False):
            for batch in read_records(source, self.fields, 1024, opened):
                progress.advance(batch.num_rows)
                yield batch.column(0), np.asarray(batch.column(1).to_pylist(), dtype=object)
            return
        encoder = self.encoder(ctx, index)
        index.check_queries(encoder.dim, {"model": encoder.info}, source.name, self.allow_mismatch)
        yield from embed_records(encoder, read_records(source, self.fields, 1024, opened), progress)

    def _vector_queries(self, name: str, opened: tuple, index: LoadedIndex, progress: Progress) -> Iterator[tuple[pa.Array, np.ndarray]]:
        checked = False
        for ids, mat, meta in vectors_from_arrow(name, *opened):
            if not checked:
                index.check_queries(mat.shape[1], meta, name, self.allow_mismatch)
                checked = True
            if mat.dtype.kind != "f" or isinstance(meta.get("compression"), dict):
                from vecpipe.index.compressed import encode_queries

                mat = encode_queries(mat, index.meta, meta, name, self.allow_mismatch)
            progress.advance(len(ids))
            yield ids, mat

    def encoder(self, ctx: Context, index: LoadedIndex) -> Any:
        """The encoder of the model the index records (or ``--model``), refused when they differ."""
        from vecpipe.encode import load_encoder

        model_meta = index.meta.get("model") or {}
        recorded = model_meta.get("precision")  # queries in the documents' form where one was recorded
        precision = "int8" if recorded == "int8" else "fp32" if recorded is None and model_meta.get("sha256") else None
        encoder = load_encoder(model=self.model, pooling=model_meta.get("pooling"), max_length=model_meta.get("max_length"),
                               prefix=self.prefix, threads=self.threads, device=ctx.device, precision=precision)
        want = model_meta.get("sha256")
        if want and encoder.info.get("sha256") != want and not self.allow_mismatch:
            raise InputError(
                f"{index.name}: built with model {model_meta.get('name')!r}, which is not "
                f"{encoder.info.get('name')!r}; give that model with --model DIR, or query vectors"
            )
        return encoder

"""The search stage: queries (vectors, or texts embedded with the index's model) in, a run out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, registry, sniff
from vecpipe.formats.records import Fields, open_arrow_batches, read_records
from vecpipe.formats.runs import DEFAULT_TAG, check_tag
from vecpipe.formats.vectors import has_vectors, vectors_from_arrow
from vecpipe.index.search import LoadedIndex, load_index, search_run
from vecpipe.pipeline.progress import Progress
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec
from vecpipe.stages.embed import count_rows, embed_records, model_ref

DEFAULT_MULTIPLIER = 4


@dataclass
class Search(Stage):
    """Search a .vpi index and write a run (qid, docid, rank, score)."""

    name = "search"
    output_kind = registry.RUN
    devices = ("auto", "cpu", "cuda")

    queries: str = inp("-")
    index: str = inp(None)
    rescore: str | None = inp(None)
    output: str | None = opt(None)
    k: int = rec(100)
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)
    nprobe: int | None = rec(None)
    ef_search: int | None = rec(None)
    rescore_multiplier: int | None = rec(None)
    model: str | None = rec(None)
    prefix: str = rec("")
    fields: Fields = rec(Fields())
    allow_mismatch: bool = rec(False, omit_default=True)
    batch_size: int = opt(1024)
    threads: int | None = opt(None)

    def check(self) -> None:
        check_tag(self.tag)
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.rescore_multiplier is not None and self.rescore is None:
            raise UsageError("--rescore-multiplier applies with --rescore only")
        if self.rescore_multiplier is not None and self.rescore_multiplier < 1:
            raise UsageError("--rescore-multiplier must be at least 1")

    @property
    def multiplier(self) -> int:
        return self.rescore_multiplier or DEFAULT_MULTIPLIER

    def recorded(self, name: str, value: Any) -> Any:
        if name == "rescore_multiplier":
            return self.multiplier if self.rescore else None
        if name == "model":
            return model_ref(value) if value is not None else None
        return super().recorded(name, value)

    def run(self, ctx: Context) -> int:
        from vecpipe.index.rescore import Rescorer

        index_path, index_name = ctx.local_path("index")
        loaded = load_index(index_path, threads=self.threads, name=index_name)
        for option, param, value in (("--nprobe", "nprobe", self.nprobe), ("--ef-search", "efSearch", self.ef_search)):
            if value is not None and not loaded.applies(param):
                raise UsageError(f"{option} does not apply to {index_name} ({loaded.meta.get('spec')}); "
                                 "nprobe applies to IVF indexes, --ef-search to HNSW indexes")
        loaded.set_params(nprobe=self.nprobe, ef_search=self.ef_search)
        loaded.use_device(ctx.device, ctx.note)
        text_index = getattr(loaded, "text_queries", False)
        if text_index:
            given = [flag for flag, on in (("--rescore", self.rescore is not None), ("--model", self.model is not None),
                                           ("--prefix", self.prefix != ""), ("--allow-mismatch", self.allow_mismatch)) if on]
            if given:
                raise UsageError(f"{', '.join(given)}: does not apply to {index_name}, a BM25 index searched with query texts")
        rescorer = None
        if self.rescore is not None:
            path, name = ctx.local_path("rescore")
            rescorer = Rescorer(path, multiplier=self.multiplier, name=name, device=ctx.device)
            metadata.check_same_model(rescorer.docs.meta, loaded.meta, name, index_name,
                                      "give the full-precision vectors the index was built from", self.allow_mismatch)
        source = ctx.input("queries")
        progress = ctx.progress
        progress.start("search", total=count_rows(source), unit="queries")
        batches = search_run(loaded, self.query_vectors(source, ctx, loaded, progress), self.k, self.batch_size,
                             rescorer=rescorer)
        run_meta = metadata.new("run", k=self.k, index={key: loaded.meta.get(key) for key in ("spec", "metric", "count", "dim")},
                                model=(loaded.meta.get("model") or {}).get("name"),
                                rescore={"multiplier": rescorer.multiplier, "metric": rescorer.metric} if rescorer else None)
        with ctx.run_writer(run_meta, self.tag) as writer:
            for batch in batches:
                writer.write(batch)
            empty = int(getattr(loaded, "empty_queries", 0))
            if empty:
                ctx.note(f"{empty} queries had no indexed term: they have no results")
            return int(writer.rows)

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
        encoder = load_encoder(model=self.model, pooling=model_meta.get("pooling"), max_length=model_meta.get("max_length"),
                               prefix=self.prefix, threads=self.threads, device=ctx.device)
        want = model_meta.get("sha256")
        if want and encoder.info.get("sha256") != want and not self.allow_mismatch:
            raise InputError(
                f"{index.name}: built with model {model_meta.get('name')!r}, which is not "
                f"{encoder.info.get('name')!r}; give that model with --model DIR, or query vectors"
            )
        return encoder

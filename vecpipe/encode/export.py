"""Models by name: sentence-transformers models exported to ONNX into the user's model cache.

    from vecpipe.encode.export import export_model, list_models
    m = export_model("BAAI/bge-small-en-v1.5")   # a hub id (needs the hub) or a local directory
    load_encoder(m.name)                         # resolve_model finds it by name from now on
    for m in list_models(): print(m.name, m.dim, m.pooling, m.max_length, m.normalize, m.sha256)

:func:`export_model` loads a sentence-transformers model with sentence-transformers itself, exports
its transformer with ``torch.onnx.export`` and writes a model directory vecpipe reads:
``model.onnx``, ``tokenizer.json`` and the sentence-transformers configuration vecpipe takes pooling,
maximum length and normalisation from (``1_Pooling/config.json``, ``sentence_bert_config.json``,
``config.json``, ``modules.json``), plus ``vecpipe_model.json`` (what was exported, from what, with
what, and how well it was checked). The directory is built beside its final place and renamed into
it, under a lock: a failed or interrupted export leaves nothing behind, and a reader never sees half
a model. Before the rename the new directory is loaded with vecpipe's own encoder and compared with
``SentenceTransformer.encode`` on a few texts (one longer than the maximum length, to check
truncation); an export that does not reproduce the model is refused.

The common shape (Transformer, Pooling mean/cls/max, optionally Normalize) is exported as the
transformer alone (output ``last_hidden_state``): vecpipe pools, so ``--pooling`` and
``--max-length`` work as for any model. Other shapes (Dense layers after pooling, pooling modes
vecpipe does not have) are exported with their pooling and dense layers inside the graph (output
``sentence_embedding``, ``[batch, dim]``), which vecpipe uses as it is.

The heavy packages (torch, transformers, sentence-transformers, onnxscript: the ``[export]`` extra)
are imported by :func:`export_model` only; without them it raises :class:`ExtraMissing`, one line
naming the extra. :func:`list_models` needs none of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vecpipe import __version__
from vecpipe.encode.model import (
    EXPORT_EXTRA_INSTALL,
    MAX_LENGTH_CAP,
    POOLINGS,
    display_path,
    is_model_name,
    models_dir,
    read_max_length,
    read_max_positions,
    read_normalize,
    read_pooling,
    sha256_file,
)
from vecpipe.errors import InputError, ModelError, UsageError

MANIFEST = "vecpipe_model.json"
#: Cosine below which an export is refused: it does not reproduce the sentence-transformers model.
MIN_COSINE = 0.999
#: Texts the export is checked on (plus one longer than the maximum length, made to measure).
CHECK_TEXTS = (
    "",
    "a",
    "Hello, world!",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "UPPER and lower CASE, digits 0123456789 and punctuation: (a) [b] {c} <d> ... ?!",
    "Ünïcödé: café, naïve, Straße, 東京, Москва, emoji \U0001f600.",
    "Retrieval with dense embeddings maps queries and documents into one vector space, where "
    "nearness stands for relevance; an index then finds the nearest documents quickly.",
)
#: Texts the graph is traced with: a batch of unequal lengths (neither dimension 0 or 1).
_TRACE_TEXTS = ("vecpipe exports this model", "to ONNX with torch.onnx.export, then checks it", "ok")
#: Modules that may sit between the transformer and the end when pooling goes into the graph.
_IN_GRAPH = frozenset({"Pooling", "Dense", "Dropout", "LayerNorm", "Normalize"})
#: Above this many bytes of weights, model.onnx keeps them in model.onnx.data (protobuf's 2 GB limit).
_EXTERNAL_DATA_BYTES = 1_800_000_000
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_TMP_MARK = ".vecpipe-tmp-"

Note = Callable[[str], None]


class ExtraMissing(ModelError):
    """The optional ``[export]`` extra (torch, sentence-transformers, onnxscript) is not installed."""


@dataclass
class ExportedModel:
    """A model in the cache, as ``vecpipe model list`` shows it."""

    name: str
    path: str
    dim: int | None
    pooling: str | None  # mean, cls, max; "in-graph" when the graph pools (output [batch, dim])
    max_length: int | None
    normalize: bool | None
    sha256: str | None
    source: str | None = None
    #: Lowest cosine between vecpipe and sentence-transformers over the check texts (export only).
    min_cosine: float | None = None
    #: True when ``export_model`` found the model already exported and did nothing.
    up_to_date: bool = False
    #: Why some fields are unknown (a hand-made or damaged directory), else None.
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- listing


def _model_dirs(root: Path) -> Iterator[tuple[str, Path]]:
    """(name, directory) of every model in the cache: ``NAME/`` or ``ORG/NAME/`` holding model.onnx."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if (entry / "model.onnx").is_file():
            yield entry.name, entry
            continue
        try:
            inner = sorted(entry.iterdir())
        except OSError:
            continue
        for sub in inner:
            if not sub.name.startswith(".") and sub.is_dir() and (sub / "model.onnx").is_file():
                yield f"{entry.name}/{sub.name}", sub


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _config_dim(directory: Path) -> int | None:
    for rel, keys in (("1_Pooling/config.json", ("word_embedding_dimension", "embedding_dimension")),
                      ("config.json", ("hidden_size", "d_model", "dim"))):
        try:
            cfg = json.loads((directory / rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in keys:
            if isinstance(cfg, dict) and isinstance(cfg.get(key), int):
                return int(cfg[key])
    return None


def describe(name: str, directory: Path) -> ExportedModel:
    """What a cached model directory says about itself: its manifest when it has one (and the
    manifest matches model.onnx's size), else its configuration files and model.onnx's sha256."""
    onnx_path = directory / "model.onnx"
    manifest = _read_manifest(directory)
    try:
        size = onnx_path.stat().st_size
    except OSError:
        size = None
    if manifest and manifest.get("name") == name and manifest.get("onnx_bytes") == size:
        return ExportedModel(
            name=name, path=str(directory), dim=manifest.get("dim"), pooling=manifest.get("pooling"),
            max_length=manifest.get("max_length"), normalize=manifest.get("normalize"),
            sha256=manifest.get("sha256"), source=manifest.get("source"),
            min_cosine=(manifest.get("check") or {}).get("min_cosine"),
        )
    info = ExportedModel(name=name, path=str(directory), dim=_config_dim(directory), pooling=None,
                         max_length=None, normalize=None, sha256=None)
    problems = []
    try:
        info.pooling = read_pooling(directory)
        info.max_length = read_max_length(directory, read_max_positions(directory))
        info.normalize = read_normalize(directory)
    except ModelError as exc:
        problems.append(str(exc))
    try:
        info.sha256 = sha256_file(onnx_path)
    except OSError as exc:
        problems.append(f"{onnx_path}: cannot read ({exc.strerror or exc})")
    if not (directory / "tokenizer.json").is_file():
        problems.append(f"{directory}: no tokenizer.json")
    info.problem = "; ".join(problems) or None
    return info


def list_models(root: Path | None = None) -> list[ExportedModel]:
    """Every model in the cache (``models_dir()``), sorted by name."""
    root = models_dir() if root is None else root
    return [describe(name, directory) for name, directory in _model_dirs(root)]


# ------------------------------------------------------------------------------------- export


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def require_extra() -> None:
    """Import the ``[export]`` extra's packages, or raise :class:`ExtraMissing` (one line)."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx.export's exporter)
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        missing = exc.name or _first_line(exc)
        raise ExtraMissing(
            f"vecpipe model export needs the optional [export] extra ({missing} is not installed); "
            f"install it with: {EXPORT_EXTRA_INSTALL}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a broken install: torch's native libraries, version clashes
        raise ExtraMissing(
            f"vecpipe model export: the [export] extra does not import ({type(exc).__name__}: "
            f"{_first_line(exc)}); reinstall it with: {EXPORT_EXTRA_INSTALL}"
        ) from None


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Keep the exporters' prints off stdout (stdout carries data only) and their warnings, log lines
    and progress bars off stderr, unless ``verbose`` (then everything goes to stderr)."""
    import logging
    import warnings

    sink = sys.stderr if verbose or sys.stderr is None else io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "transformers", "sentence_transformers",
                                              "onnxscript", "huggingface_hub")]
    levels = [lg.level for lg in loggers]
    env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                                          "TQDM_DISABLE")}
    hf_logging = sys.modules.get("transformers.utils.logging")  # imported by then, or not needed
    bars = hf_logging.is_progress_bar_enabled() if hf_logging is not None else None
    if not verbose:
        os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        if hf_logging is not None:
            hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            if not verbose:
                warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if hf_logging is not None and bars:
            hf_logging.enable_progress_bar()
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pooling_modes(module: Any) -> tuple[str, ...]:
    """A Pooling module's modes, in either form (``pooling_mode`` since 6, flags before)."""
    mode = getattr(module, "pooling_mode", None)
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, (tuple, list)):
        return tuple(str(m) for m in mode)
    flags = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
             ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
             ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))
    return tuple(m for attr, m in flags if getattr(module, attr, False))


@dataclass
class _Plan:
    """How a sentence-transformers model maps onto a vecpipe model directory."""

    transformer: Any  # the sentence-transformers Transformer module
    in_graph: list[Any]  # modules run inside the graph after the transformer ([] : vecpipe pools)
    pooling: str  # mean, cls, max, or "in-graph"
    pooling_flag: str | None  # the mode written to 1_Pooling/config.json (None: none written)
    normalize: bool
    module_types: list[str]


def _plan(st: Any, source: str) -> _Plan:
    modules = list(st._modules.values())
    kinds = [type(m).__name__ for m in modules]
    types = [f"{type(m).__module__}.{type(m).__name__}" for m in modules]
    if not modules or kinds[0] != "Transformer":
        raise ModelError(
            f"{source}: starts with a {kinds[0] if kinds else 'missing'} module; vecpipe model export "
            "handles sentence-transformers models that start with a Transformer module"
        )
    rest = modules[1:]
    normalize = bool(rest) and kinds[-1] == "Normalize"
    body = rest[:-1] if normalize else rest
    body_kinds = [type(m).__name__ for m in body]
    if body_kinds.count("Pooling") != 1:
        raise ModelError(f"{source}: modules {', '.join(kinds)}: expected one Pooling module after the Transformer")
    pool = body[body_kinds.index("Pooling")]
    modes = _pooling_modes(pool)
    flag = modes[0] if len(modes) == 1 and modes[0] in POOLINGS else None
    if body_kinds == ["Pooling"] and flag is not None and getattr(pool, "include_prompt", True):
        return _Plan(modules[0], [], flag, flag, normalize, types)
    unsupported = [k for k in body_kinds if k not in _IN_GRAPH]
    if unsupported:
        raise ModelError(
            f"{source}: module {unsupported[0]} cannot be exported (vecpipe model export handles "
            "Transformer, Pooling, Dense, LayerNorm, Dropout and Normalize)"
        )
    return _Plan(modules[0], list(body), "in-graph", flag, normalize, types)


def _lowercases(tok: Any) -> bool:
    norm = tok.normalizer
    return norm is not None and norm.normalize_str("AbC") == norm.normalize_str("abc")


def _tokenizer_json(transformer: Any, source: str) -> Any:
    """The fast tokenizer as vecpipe will load it: no fixed padding or truncation (vecpipe pads per
    batch and truncates at its max length), lowercasing made explicit when the module asks for it."""
    from tokenizers import Tokenizer, normalizers

    backend = getattr(getattr(transformer, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        raise ModelError(f"{source}: its tokenizer has no fast form (tokenizer.json), which vecpipe needs")
    tok = Tokenizer.from_str(backend.to_str())
    tok.no_padding()
    tok.no_truncation()
    if getattr(transformer, "do_lower_case", False) and not _lowercases(tok):
        parts = [normalizers.Lowercase()] + ([tok.normalizer] if tok.normalizer is not None else [])
        tok.normalizer = normalizers.Sequence(parts)
    return tok


def _graph_module(hf: Any, in_graph: list[Any]) -> Any:
    import torch

    class Graph(torch.nn.Module):
        """input ids, mask (and token types) to token embeddings, or through pooling to sentence embeddings."""

        def __init__(self) -> None:
            super().__init__()
            self.hf = hf
            self.rest = torch.nn.ModuleList(in_graph)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            out = self.hf(input_ids=input_ids, **kwargs, return_dict=True)
            tokens = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            if not len(self.rest):
                return tokens
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_embeddings": tokens}
            for module in self.rest:
                features = module(features)
            return features["sentence_embedding"]

    return Graph().eval()


def _export_onnx(graph: Any, feed: dict[str, Any], names: list[str], output: str, path: Path,
                 external: bool) -> str:
    """Write ``path`` with torch.onnx.export (the torch.export-based exporter; the TorchScript one when
    that fails); returns which one."""
    import torch

    dyn = torch.export.Dim.DYNAMIC
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                graph, (), kwargs=feed, dynamo=True, input_names=names, output_names=[output],
                dynamic_shapes={n: {0: dyn, 1: dyn} for n in names}, external_data=external,
            )
        program.save(str(path), external_data=external)
        return "torch.onnx.export (dynamo)"
    except Exception as exc:  # noqa: BLE001 - some architectures do not go through torch.export: try the old exporter
        first = exc
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch", 1: "sequence"} if output == "last_hidden_state" else {0: "batch"}
    try:
        with torch.no_grad():
            torch.onnx.export(graph, tuple(feed[n] for n in names), str(path), dynamo=False,
                              input_names=names, output_names=[output], dynamic_axes=axes, opset_version=17)
        return "torch.onnx.export (TorchScript)"
    except Exception:  # noqa: BLE001 - a library boundary: any failure becomes one line
        raise ModelError(f"torch.onnx.export failed: {_first_line(first)}") from None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _check(directory: Path, st: Any, normalize: bool, texts: list[str]) -> float:
    """Lowest cosine between vecpipe's encoder on ``directory`` and ``st.encode`` over ``texts``."""
    import numpy as np

    from vecpipe.encode import load_encoder

    encoder = load_encoder(str(directory), normalize=normalize, device="cpu", threads=min(4, os.cpu_count() or 1))
    try:
        ours = np.concatenate(list(encoder.encode_batches([texts])))
    finally:
        encoder.close()
    ref = np.asarray(st.encode(texts, prompt="", convert_to_numpy=True, batch_size=len(texts),
                               show_progress_bar=False), dtype=np.float64)
    ours = ours.astype(np.float64)
    if ours.shape != ref.shape:
        raise ModelError(f"{directory}: exported model gives vectors of shape {ours.shape}, "
                         f"sentence-transformers {ref.shape}")
    num = (ours * ref).sum(axis=1)
    den = np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1)
    cos = np.where(den > 0, num / np.maximum(den, 1e-300), np.where(np.abs(ours - ref).max(axis=1) < 1e-6, 1.0, 0.0))
    return float(cos.min())


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"vecpipe": __version__}
    for dist in ("torch", "transformers", "sentence-transformers", "onnxscript", "onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _build(tmp: Path, source: str, name: str, local: bool, note: Note, verbose: bool) -> dict[str, Any]:
    """Export ``source`` into the empty directory ``tmp``; returns the manifest written there."""
    import inspect

    import torch
    from sentence_transformers import SentenceTransformer

    note(f"loading {source} with sentence-transformers")
    with _quiet(verbose):
        try:
            st = SentenceTransformer(str(Path(source).expanduser()) if local else source, device="cpu")
        except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
            where = "" if local else " (a Hugging Face hub id: this needs the hub, or a local copy of the model)"
            raise ModelError(f"{source}: cannot load it as a sentence-transformers model{where}: "
                             f"{_first_line(exc)}") from None
    st = st.float().eval()
    plan = _plan(st, source)
    transformer = plan.transformer
    hf = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    hf_tok = getattr(transformer, "tokenizer", None)
    if hf is None or hf_tok is None:
        raise ModelError(f"{source}: its Transformer module has no model or tokenizer to export")
    tok = _tokenizer_json(transformer, source)
    params = inspect.signature(hf.forward).parameters
    wanted = list(getattr(hf_tok, "model_input_names", None) or ["input_ids", "attention_mask"])
    names = [n for n in _INPUTS if n in wanted and n in params]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ModelError(f"{source}: the model takes {wanted}; vecpipe needs input_ids and attention_mask")

    config = hf.config
    max_pos = getattr(config, "max_position_embeddings", None)
    positions = min(max_pos, MAX_LENGTH_CAP) if isinstance(max_pos, int) and max_pos > 0 else MAX_LENGTH_CAP
    st_max = st.max_seq_length if isinstance(st.max_seq_length, int) and st.max_seq_length > 0 else None
    max_length = min(st_max or positions, positions)
    if st_max and st_max > max_length:
        note(f"warning: {name}: sentence-transformers truncates at {st_max} tokens, vecpipe at {max_length} "
             "(its limit); texts longer than that embed differently")
    st.max_seq_length = max_length  # the check compares like with like

    output = "sentence_embedding" if plan.in_graph else "last_hidden_state"
    feed = dict(hf_tok(list(_TRACE_TEXTS), padding=True, truncation=True, max_length=max_length,
                       return_tensors="pt"))
    feed = {n: feed[n] for n in names if n in feed}
    names = list(feed)
    n_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())
    external = n_bytes > _EXTERNAL_DATA_BYTES
    note(f"exporting {name} to ONNX with torch {torch.__version__}"
         f" ({'transformer and pooling' if plan.in_graph else 'transformer'}, {n_bytes / 1e6:.0f} MB of weights)")
    graph = _graph_module(hf, plan.in_graph)
    with _quiet(verbose):
        method = _export_onnx(graph, feed, names, output, tmp / "model.onnx", external)

    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "config.json").write_text(config.to_json_string(), encoding="utf-8")
    _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    with torch.no_grad():
        dim = int(graph(**feed).shape[-1])
    if plan.pooling_flag is not None:
        _write_json(tmp / "1_Pooling" / "config.json", {
            "word_embedding_dimension": int(getattr(config, "hidden_size", 0) or dim),
            "pooling_mode_cls_token": plan.pooling_flag == "cls",
            "pooling_mode_mean_tokens": plan.pooling_flag == "mean",
            "pooling_mode_max_tokens": plan.pooling_flag == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
        })
    _write_json(tmp / "modules.json", [
        {"idx": i, "name": str(i), "path": "" if i == 0 else f"{i}_{t.rsplit('.', 1)[-1]}", "type": t}
        for i, t in enumerate(plan.module_types)
    ])
    prompts = {str(k): str(v) for k, v in (getattr(st, "prompts", None) or {}).items() if v}
    _write_json(tmp / "config_sentence_transformers.json", {
        "prompts": prompts,
        "default_prompt_name": getattr(st, "default_prompt_name", None),
        "similarity_fn_name": str(getattr(st, "similarity_fn_name", None) or "cosine"),
    })

    note(f"checking {name}: vecpipe against sentence-transformers on {len(CHECK_TEXTS) + 1} texts")
    long_text = " ".join(["retrieval"] * (max_length + 16))  # over the max length: checks truncation
    with _quiet(verbose):
        min_cos = _check(tmp, st, plan.normalize, [*CHECK_TEXTS, long_text])
    if not min_cos >= MIN_COSINE:
        raise ModelError(f"{source}: the ONNX export does not reproduce the model (cosine {min_cos:.6f} "
                         f"< {MIN_COSINE} against sentence-transformers); nothing was written")
    onnx_path = tmp / "model.onnx"
    manifest = {
        "name": name,
        "source": str(Path(source).expanduser().resolve()) if local else source,
        "dim": dim,
        "pooling": plan.pooling,
        "max_length": max_length,
        "normalize": plan.normalize,
        "sha256": sha256_file(onnx_path),
        "onnx_bytes": onnx_path.stat().st_size,
        "inputs": names,
        "output": output,
        "modules": plan.module_types,
        "st_max_seq_length": st_max,
        "prompts": prompts,
        "default_prompt_name": getattr(st, "default_prompt_name", None),
        "similarity_fn_name": str(getattr(st, "similarity_fn_name", None) or "cosine"),
        "exporter": method,
        "versions": _versions(),
        "check": {"texts": len(CHECK_TEXTS) + 1, "min_cosine": round(min_cos, 8)},
    }
    _write_json(tmp / MANIFEST, manifest)
    if prompts:
        shown = ", ".join(f"{k}: {v!r}" for k, v in prompts.items())
        note(f"warning: {name} has prompts ({shown}); give them with vecpipe embed --prefix")
    return manifest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(target: Path) -> None:
    """Remove half-built directories beside ``target`` left by exports that are no longer running."""
    prefix = f".{target.name}{_TMP_MARK}"
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(prefix):
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if not (pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid()):
                shutil.rmtree(entry, ignore_errors=True)


def _install(tmp: Path, target: Path) -> None:
    """Put the finished ``tmp`` at ``target`` by renames: a reader sees the old model or the new one."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if target.exists():
        old = target.parent / f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}-old"
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def export_model(
    source: str | os.PathLike[str],
    name: str | None = None,
    force: bool = False,
    note: Note | None = None,
    verbose: bool = False,
) -> ExportedModel:
    """Export the sentence-transformers model ``source`` (a local directory, or a Hugging Face hub id,
    which needs the hub) to ``models_dir() / name``; ``name`` defaults to the hub id or the directory's
    name. An existing export is kept (``up_to_date``) unless ``force``. ``note`` receives progress
    lines; ``verbose`` lets the exporters' own output through to stderr.

    Raises :class:`ExtraMissing` without the ``[export]`` extra, :class:`UsageError` for a bad name,
    :class:`ModelError`/:class:`InputError` when the model cannot be loaded, exported or checked.
    """
    note = note or (lambda message: None)
    source = os.fspath(source)
    src = Path(source).expanduser()
    local = src.exists()
    if local and not src.is_dir():
        raise InputError(f"{source}: not a directory; give a sentence-transformers model directory or a hub id")
    if not local and not is_model_name(source):
        raise InputError(f"{source}: no such directory, and not a Hugging Face hub id (ORG/NAME)")
    if name is None:
        name = src.resolve().name if local else source
        if not is_model_name(name):
            raise UsageError(f"{source}: {name!r} cannot name a model; give a name with --name")
    elif not is_model_name(name):
        raise UsageError(f"--name {name}: a model name is NAME or ORG/NAME (letters, digits, '.', '_', '-'; "
                         "each part starting with a letter or digit)")
    root = models_dir()
    target = root / name
    if (target / "model.onnx").is_file() and not force:
        return _up_to_date(name, target)
    require_extra()

    from vecpipe.formats.targets import exclusive_lock

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{display_path(target.parent)}: cannot create the model cache ({exc.strerror or exc})") from None
    lock = target.parent / f".{target.name}.vecpipe-lock"
    with exclusive_lock(lock, lambda: note(f"waiting for another vecpipe exporting {name}")):
        if (target / "model.onnx").is_file() and not force:  # another export finished meanwhile
            return _up_to_date(name, target)
        _clean_stale(target)
        tmp = target.parent / f".{target.name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            manifest = _build(tmp, source, name, local, note, verbose)
            _install(tmp, target)
        except OSError as exc:
            where = exc.filename if isinstance(exc.filename, str) else display_path(target)
            raise InputError(f"{where}: cannot write the model ({exc.strerror or _first_line(exc)})") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result = describe(name, target)
    result.min_cosine = manifest["check"]["min_cosine"]
    return result


def _up_to_date(name: str, target: Path) -> ExportedModel:
    result = describe(name, target)
    result.up_to_date = True
    return result

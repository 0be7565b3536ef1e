"""Models by name without the [export] extra: the model cache, name resolution, the error messages,
``vecpipe model list`` on a hand-made cache, and ``vecpipe model export`` without the extra.

The tests that export real sentence-transformers models are in ``test_export_st.py`` (they need
``pip install 'vecpipe[export]'`` and skip without it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from tinymodel import make_tiny_model

from vecpipe.encode import load_encoder, resolve_model
from vecpipe.encode import model as model_mod
from vecpipe.errors import ModelError

HINT = "pip install 'vecpipe[export]' && "


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache ($XDG_CACHE_HOME) for this test; returns its models directory."""
    monkeypatch.delenv("VECPIPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "vecpipe" / "models"


def _hint() -> str:
    """The install step the unknown-name error names: only when the extra is not installed."""
    import importlib.util

    return "" if importlib.util.find_spec("sentence_transformers") else HINT


def _st_files(d: Path, pooling: str, max_seq_length: int, normalize: bool) -> Path:
    """Sentence-transformers configuration beside a tiny ONNX model, as ``vecpipe model export`` writes it."""
    make_tiny_model(d, pooling=pooling, max_seq_length=max_seq_length)
    modules = ["Transformer", "Pooling"] + (["Normalize"] if normalize else [])
    (d / "modules.json").write_text(json.dumps([
        {"idx": i, "name": str(i), "path": "" if i == 0 else f"{i}_{m}", "type": f"sentence_transformers.models.{m}"}
        for i, m in enumerate(modules)]))
    return d


def test_models_dir_follows_xdg_and_vecpipe_cache_dir(cache: Path, tmp_path: Path, monkeypatch) -> None:
    assert model_mod.models_dir() == cache
    monkeypatch.setenv("VECPIPE_CACHE_DIR", str(tmp_path / "explicit"))
    assert model_mod.models_dir() == tmp_path / "explicit" / "models"
    monkeypatch.delenv("VECPIPE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_mod.models_dir() == Path.home() / ".cache" / "vecpipe" / "models"


@pytest.mark.parametrize("name, ok", [
    ("BAAI/bge-small-en-v1.5", True), ("all-MiniLM-L6-v2", True), ("e5_small.v2", True),
    ("../etc", False), ("a/../b", False), ("/abs/path", False), ("./rel", False), ("a/b/c", False),
    (".hidden", False), ("a/.b", False), ("", False), ("a b", False), ("org/", False), ("x" * 97, False),
])
def test_model_names(name: str, ok: bool) -> None:
    assert model_mod.is_model_name(name) is ok


def test_cached_name_resolves(cache: Path) -> None:
    _st_files(cache / "BAAI" / "bge-tiny", "cls", 100, normalize=False)
    spec = resolve_model("BAAI/bge-tiny")
    assert spec.name == "BAAI/bge-tiny"  # recorded in artifacts under the name the user gave
    assert spec.onnx_path == cache / "BAAI" / "bge-tiny" / "model.onnx"
    assert (spec.pooling, spec.max_length, spec.normalize) == ("cls", 100, False)
    enc = load_encoder("BAAI/bge-tiny", threads=1)
    assert enc.encode(["hello"]).shape == (1, 32)


def test_existing_path_wins_over_cached_name(cache: Path, tmp_path: Path, monkeypatch) -> None:
    _st_files(cache / "tiny", "mean", 128, normalize=True)
    make_tiny_model(tmp_path / "cwd" / "tiny", seed=7)
    monkeypatch.chdir(tmp_path / "cwd")
    here = resolve_model("tiny")
    assert here.onnx_path.resolve() == (tmp_path / "cwd" / "tiny" / "model.onnx").resolve()
    monkeypatch.chdir(tmp_path)
    cached = resolve_model("tiny")
    assert cached.onnx_path == cache / "tiny" / "model.onnx" and cached.sha256 != here.sha256


def test_unknown_name_says_how_to_export_it(cache: Path) -> None:
    with pytest.raises(ModelError) as err:
        resolve_model("BAAI/bge-small-en-v1.5")
    assert str(err.value) == (
        f"--model BAAI/bge-small-en-v1.5: no such model directory and no exported model of that name in "
        f"{cache}; export it with: {_hint()}vecpipe model export BAAI/bge-small-en-v1.5")


def test_unknown_name_message_abbreviates_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VECPIPE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match=r"no exported model of that name in ~/\.cache/vecpipe/models; export it"):
        resolve_model("BAAI/bge-small-en-v1.5")


def test_unknown_name_on_the_command_line(cli, cache: Path, tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text('{"_id": "1", "text": "hello"}\n')
    res = cli("embed", tmp_path / "c.jsonl", "--model", "BAAI/bge-small-en-v1.5", "-o", tmp_path / "o.parquet")
    assert res.exit_code == 1
    assert res.stderr == (
        f"vecpipe: error: --model BAAI/bge-small-en-v1.5: no such model directory and no exported model of "
        f"that name in {cache}; export it with: {_hint()}vecpipe model export BAAI/bge-small-en-v1.5\n")
    assert not (tmp_path / "o.parquet").exists()


def test_paths_keep_their_own_errors(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory does not exist"):
        resolve_model(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="model directory does not exist"):
        resolve_model("./nowhere")
    st_dir = tmp_path / "st-model"  # a sentence-transformers directory, not exported yet
    st_dir.mkdir()
    (st_dir / "modules.json").write_text("[]")
    with pytest.raises(ModelError, match=r"has no model\.onnx \(a sentence-transformers model\? export it"):
        resolve_model(str(st_dir))


def test_read_pooling_both_forms(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "m", pooling="mean")
    for text, want in [('{"embedding_dimension": 32, "pooling_mode": "cls"}', "cls"),
                       ('{"pooling_mode": ["max"]}', "max"), ('{"pooling_mode_cls_token": true}', "cls")]:
        (d / "1_Pooling" / "config.json").write_text(text)
        assert model_mod.read_pooling(d) == want
    for text in ('{"pooling_mode": "lasttoken"}', '{"pooling_mode": ["mean", "max"]}'):
        (d / "1_Pooling" / "config.json").write_text(text)
        with pytest.raises(ModelError, match="not supported"):
            model_mod.read_pooling(d)


def test_read_normalize(tmp_path: Path) -> None:
    assert model_mod.read_normalize(tmp_path) is None
    assert model_mod.read_normalize(_st_files(tmp_path / "n", "mean", 64, normalize=True)) is True
    assert model_mod.read_normalize(_st_files(tmp_path / "p", "mean", 64, normalize=False)) is False
    (tmp_path / "modules.json").write_text("{")
    with pytest.raises(ModelError, match=r"modules\.json"):
        model_mod.read_normalize(tmp_path)
    assert model_mod.read_normalize(model_mod.DATA_DIR) is True  # the default model ends in Normalize


def _hand_made_cache(cache: Path) -> dict[str, Path]:
    dirs = {
        "plain": _st_files(cache / "plain", "cls", 100, normalize=False),
        "org/nested": _st_files(cache / "org" / "nested", "mean", 128, normalize=True),
        "bare": make_tiny_model(cache / "bare"),  # no sentence-transformers files: defaults
    }
    broken = make_tiny_model(cache / "broken", pooling="mean")
    (broken / "tokenizer.json").unlink()
    dirs["broken"] = broken
    (cache / ".plain.vecpipe-tmp-123-abcd").mkdir()  # an export in progress: not listed
    (cache / ".plain.vecpipe-tmp-123-abcd" / "model.onnx").write_bytes(b"")
    (cache / "empty-org").mkdir()  # nothing in it
    return dirs


def test_model_list(cli, cache: Path) -> None:
    dirs = _hand_made_cache(cache)
    res = cli("model", "list")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["name", "dim", "pooling", "max_length", "normalize", "sha256"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert sorted(rows) == ["bare", "broken", "org/nested", "plain"]
    sha = {n: model_mod.sha256_file(d / "model.onnx") for n, d in dirs.items()}
    assert rows["plain"] == ["plain", "32", "cls", "100", "no", sha["plain"]]
    assert rows["org/nested"] == ["org/nested", "32", "mean", "128", "yes", sha["org/nested"]]
    assert rows["bare"] == ["bare", "32", "mean", "512", "?", sha["bare"]]
    assert "warning: broken:" in res.stderr and "no tokenizer.json" in res.stderr
    assert cli("model", "ls").stdout == res.stdout
    tsv = cli("model", "list", "--format", "tsv").stdout.splitlines()
    assert tsv[1].split("\t") == ["bare", "32", "mean", "512", "?", sha["bare"]]
    data = json.loads(cli("model", "list", "--format", "json").stdout)
    plain = next(m for m in data if m["name"] == "plain")
    assert (plain["dim"], plain["pooling"], plain["max_length"], plain["normalize"], plain["sha256"]) == (
        32, "cls", 100, False, sha["plain"])
    assert plain["path"] == str(dirs["plain"])


def test_model_list_prefers_the_export_manifest(cli, cache: Path) -> None:
    d = _st_files(cache / "exported", "mean", 64, normalize=True)
    size = (d / "model.onnx").stat().st_size
    manifest = {"name": "exported", "dim": 32, "pooling": "mean", "max_length": 64, "normalize": True,
                "sha256": "f" * 64, "onnx_bytes": size, "check": {"min_cosine": 0.9999999}}
    (d / "vecpipe_model.json").write_text(json.dumps(manifest))
    res = cli("model", "list", "--format", "tsv")
    assert res.stdout.splitlines()[1].split("\t") == ["exported", "32", "mean", "64", "yes", "f" * 64]
    (d / "vecpipe_model.json").write_text(json.dumps({**manifest, "onnx_bytes": size + 1}))  # stale: rehash
    res = cli("model", "list", "--format", "tsv")
    assert res.stdout.splitlines()[1].split("\t")[-1] == model_mod.sha256_file(d / "model.onnx")


def test_model_list_empty(cli, cache: Path) -> None:
    res = cli("model", "list")
    assert res.exit_code == 0 and res.stdout == ""
    assert "no exported models in" in res.stderr
    assert json.loads(cli("model", "list", "--format", "json").stdout) == []


def _run(code: str, env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("VECPIPE_DEBUG", "VECPIPE_CACHE_DIR")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_export_without_the_extra_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "st-model"
    src.mkdir()
    code = ("import sys; sys.modules['sentence_transformers'] = None\n"
            "from vecpipe.cli import main\n"
            f"main(['model', 'export', {str(src)!r}])\n")
    res = _run(code, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path)
    assert res.returncode == 1, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("vecpipe: error: vecpipe model export needs the optional [export] extra (")
    assert lines[0].endswith("install it with: pip install 'vecpipe[export]'")
    assert not (tmp_path / "xdg" / "vecpipe" / "models" / "st-model").exists()


def test_export_bad_sources_and_names(cli, cache: Path, tmp_path: Path) -> None:
    res = cli("model", "export", tmp_path / "no" / "such" / "dir")
    assert res.exit_code == 1 and "no such directory, and not a Hugging Face hub id" in res.stderr
    (tmp_path / "file.txt").write_text("x")
    res = cli("model", "export", tmp_path / "file.txt")
    assert res.exit_code == 1 and "not a directory" in res.stderr
    (tmp_path / "m").mkdir()
    res = cli("model", "export", tmp_path / "m", "--name", "../escape")
    assert res.exit_code == 2 and "--name ../escape: a model name is NAME or ORG/NAME" in res.stderr
    assert not cache.exists()


def test_export_keeps_an_existing_model_without_the_extra(cli, cache: Path, tmp_path: Path) -> None:
    _st_files(cache / "done", "mean", 64, normalize=True)
    (tmp_path / "done").mkdir()
    res = cli("model", "export", tmp_path / "done")  # default name: the directory's name
    assert res.exit_code == 0 and "up to date: done" in res.stderr


def test_model_help_lists_its_commands(cli) -> None:
    res = cli("model", "--help")
    assert res.exit_code == 0 and "export" in res.stdout and "list" in res.stdout
    for sub in ("export", "list"):
        assert cli("model", sub, "--help").exit_code == 0


def test_library_stays_light() -> None:
    code = ("import sys; import vecpipe.encode.export, vecpipe.encode.model; "
            "heavy = {'typer', 'rich', 'torch', 'transformers', 'sentence_transformers', 'onnxscript'}; "
            "assert not heavy & set(sys.modules), heavy & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_normalize_flag_matches_what_load_encoder_would_need(cache: Path) -> None:
    """The spec says what the model says; load_encoder(normalize=spec.normalize) then follows it."""
    _st_files(cache / "raw", "mean", 64, normalize=False)
    spec = resolve_model("raw")
    raw = load_encoder("raw", normalize=bool(spec.normalize), threads=1).encode(["some text here"])
    assert not np.isclose(np.linalg.norm(raw), 1.0)

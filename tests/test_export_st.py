"""``vecpipe model export`` on real sentence-transformers models (tiny, random weights, built here):
``vecpipe embed --model NAME`` after the export gives sentence-transformers' own vectors.

Needs the [export] extra (PyTorch, sentence-transformers, onnxscript):

    pip install torch   # the CPU build is enough; install it first
    pip install -e '.[export,test]' && python -m pytest tests/test_export*.py

Without it every test here skips, naming the extra; ``test_export.py`` covers the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from tinymodel import DEFAULT_TOKENIZER

pytest.importorskip(
    "sentence_transformers",
    reason="needs the [export] extra: pip install torch (CPU build) && pip install -e '.[export,test]'",
)
pytest.importorskip("onnxscript", reason="needs the [export] extra (onnxscript): pip install -e '.[export,test]'")

MAX_SEQ_LENGTH = 48
#: Cosine every row must reach against sentence-transformers' own encode.
COSINE = 0.9999


def _texts() -> list[str]:
    """Four dozen texts from empty to far over the max length (truncation), with case, digits and
    punctuation, fixed by a seed."""
    rng = np.random.default_rng(0)
    words = ["the", "retrieval", "of", "Dense", "vectors", "maps", "queries", "AND", "documents", "into", "one", "space",
             "where", "nearness", "means", "relevance;", "an", "index", "(HNSW,", "IVF)", "finds", "10", "nearest",
             "neighbours", "in", "2.5", "ms,", "café", "naïve"]
    lengths = [0, 1, 2, 3, 5, 8, 13, 21, 34, 40, 45, 46, 47, 60, 80, 120, 200] + list(rng.integers(1, 90, 31))
    return [" ".join(rng.choice(words, size=int(n))) for n in lengths]


TEXTS = _texts()


def _modules():
    try:
        from sentence_transformers.sentence_transformer import modules  # 6 and later
    except ImportError:
        from sentence_transformers import models as modules
    return modules


def make_st_model(directory: Path, pooling: str = "mean", normalize: bool = True, dense: int | None = None,
                  seed: int = 0) -> Path:
    """A tiny BERT sentence-transformers model saved with ``model.save``: hidden 32, 2 layers, 2 heads,
    the default model's vocabulary, random weights; Pooling(``pooling``), optionally Dense(32 -> ``dense``)
    and Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = json.loads(DEFAULT_TOKENIZER.read_text(encoding="utf-8"))["model"]["vocab"]
    torch.manual_seed(seed)
    hf_dir = directory.with_name(directory.name + "-hf")
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(hf_dir)
    BertTokenizerFast(tokenizer_file=str(DEFAULT_TOKENIZER), model_max_length=512).save_pretrained(hf_dir)
    m = _modules()
    transformer = m.Transformer(str(hf_dir), max_seq_length=MAX_SEQ_LENGTH)
    parts = [transformer, m.Pooling(32, pooling_mode=pooling)]
    if dense:
        parts.append(m.Dense(in_features=32, out_features=dense, activation_function=torch.nn.Tanh()))
    if normalize:
        parts.append(m.Normalize())
    model = SentenceTransformer(modules=parts, device="cpu")
    model.save(str(directory))
    return directory


def st_encode(directory: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return np.asarray(SentenceTransformer(str(directory), device="cpu").encode(texts, batch_size=16))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VECPIPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "vecpipe" / "models"


@pytest.fixture(scope="module")
def st_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("st-models")
    return {
        "mean": make_st_model(root / "tiny-mean", "mean", normalize=True),
        "cls": make_st_model(root / "tiny-cls", "cls", normalize=False, seed=1),
        "dense": make_st_model(root / "tiny-dense", "weightedmean", normalize=True, dense=16, seed=2),
    }


def _corpus(path: Path) -> Path:
    path.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def _embed(cli, tmp_path: Path, model: str, *extra: str) -> tuple[np.ndarray, dict]:
    import pyarrow.parquet as pq

    out = tmp_path / f"{model.replace('/', '_')}.parquet"
    res = cli("embed", _corpus(tmp_path / "corpus.jsonl"), "--model", model, "-o", out, *extra)
    assert res.exit_code == 0, res.stderr
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(len(TEXTS))]
    meta = json.loads(table.schema.metadata[b"vecpipe"])
    return np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(len(TEXTS), -1), meta


def _report(name: str, cos: np.ndarray) -> None:
    print(f"\n{name}: {len(cos)} texts, min cosine {cos.min():.10f} (1 - min = {1 - cos.min():.2e}), "
          f"mean {cos.mean():.10f}")


def test_mean_normalize_model_by_name(cli, cache: Path, st_models, tmp_path: Path) -> None:
    res = cli("model", "export", st_models["mean"], "--name", "tiny/mean")
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""  # stdout carries data only: the exporters' prints are kept off it
    assert "wrote tiny/mean:" in res.stderr
    d = cache / "tiny" / "mean"
    assert sorted(p.name for p in d.iterdir()) == [
        "1_Pooling", "config.json", "config_sentence_transformers.json", "model.onnx", "modules.json",
        "sentence_bert_config.json", "tokenizer.json", "vecpipe_model.json"]
    assert json.loads((d / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True
    assert json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"] == MAX_SEQ_LENGTH
    manifest = json.loads((d / "vecpipe_model.json").read_text())
    assert manifest["check"]["min_cosine"] >= COSINE and manifest["output"] == "last_hidden_state"
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no temporary directory or lock left

    ours, meta = _embed(cli, tmp_path, "tiny/mean")
    ref = st_encode(st_models["mean"], TEXTS)
    cos = cosines(ours, ref)
    _report("mean+Normalize", cos)
    assert cos.min() >= COSINE
    np.testing.assert_allclose(ours, ref, atol=1e-4)  # normalised on both sides: the same vectors
    model = meta["model"]
    assert (model["name"], model["pooling"], model["max_length"], model["normalize"]) == (
        "tiny/mean", "mean", MAX_SEQ_LENGTH, True)
    assert model["sha256"] == manifest["sha256"]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(st_models["mean"]))
    assert max(len(tok(t, verbose=False)["input_ids"]) for t in TEXTS) > MAX_SEQ_LENGTH  # truncation was exercised

    listed = cli("model", "list", "--format", "tsv").stdout.splitlines()
    assert listed[1].split("\t") == ["tiny/mean", "32", "mean", str(MAX_SEQ_LENGTH), "yes", manifest["sha256"]]


def test_cls_model_without_normalize(cli, cache: Path, st_models, tmp_path: Path) -> None:
    res = cli("model", "export", st_models["cls"])  # default name: the directory's name
    assert res.exit_code == 0, res.stderr
    from vecpipe.encode import load_encoder, resolve_model

    spec = resolve_model("tiny-cls")
    assert (spec.name, spec.pooling, spec.normalize) == ("tiny-cls", "cls", False)
    ref = st_encode(st_models["cls"], TEXTS)
    assert not np.allclose(np.linalg.norm(ref, axis=1), 1.0)  # the model does not normalise

    ours, meta = _embed(cli, tmp_path, "tiny-cls")  # embed L2-normalises: the direction is the model's
    cos = cosines(ours, ref)
    _report("cls, no Normalize", cos)
    assert cos.min() >= COSINE and meta["model"]["pooling"] == "cls"

    raw = load_encoder("tiny-cls", normalize=bool(spec.normalize), threads=1, precision="fp32").encode(TEXTS)
    np.testing.assert_allclose(raw, ref, rtol=1e-4, atol=1e-4)  # following the model: its raw vectors


def test_pooling_and_dense_inside_the_graph(cli, cache: Path, st_models, tmp_path: Path) -> None:
    """Pooling vecpipe lacks (weightedmean) and a Dense layer go into the graph: [batch, dim] out."""
    res = cli("model", "export", st_models["dense"], "--name", "tiny-dense")
    assert res.exit_code == 0, res.stderr
    d = cache / "tiny-dense"
    manifest = json.loads((d / "vecpipe_model.json").read_text())
    assert (manifest["output"], manifest["pooling"], manifest["dim"]) == ("sentence_embedding", "in-graph", 16)
    assert not (d / "1_Pooling").exists()
    ours, _meta = _embed(cli, tmp_path, "tiny-dense")
    cos = cosines(ours, st_encode(st_models["dense"], TEXTS))
    _report("weightedmean+Dense+Normalize (in graph)", cos)
    assert ours.shape == (len(TEXTS), 16) and cos.min() >= COSINE


def test_up_to_date_force_and_atomic_replace(cli, cache: Path, st_models) -> None:
    assert cli("model", "export", st_models["mean"], "--name", "again").exit_code == 0
    onnx = cache / "again" / "model.onnx"
    before = onnx.stat().st_ino
    res = cli("model", "export", st_models["mean"], "--name", "again")
    assert res.exit_code == 0 and "up to date: again" in res.stderr and onnx.stat().st_ino == before
    res = cli("model", "export", st_models["mean"], "--name", "again", "--force")
    assert res.exit_code == 0 and "wrote again" in res.stderr
    assert onnx.stat().st_ino != before  # a new directory renamed into place
    assert sorted(p.name for p in cache.iterdir()) == ["again"]


def test_torchscript_exporter_when_torch_export_fails(cache: Path, st_models, monkeypatch) -> None:
    """Architectures torch.export cannot trace fall back to the TorchScript exporter, checked the same way."""
    import torch

    from vecpipe.encode.export import export_model

    real = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("simulated torch.export failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    result = export_model(st_models["mean"], name="legacy")
    manifest = json.loads((cache / "legacy" / "vecpipe_model.json").read_text())
    assert manifest["exporter"] == "torch.onnx.export (TorchScript)"
    assert result.min_cosine >= COSINE and (result.pooling, result.normalize) == ("mean", True)


def test_failed_export_leaves_nothing(cli, cache: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "no.such.Module"}]')
    res = cli("model", "export", bad)
    lines = res.stderr.splitlines()
    assert res.exit_code == 1 and all(ln.startswith("vecpipe: ") for ln in lines)  # notes, then one error line
    assert lines[-1].startswith(f"vecpipe: error: {bad}: cannot load it as a sentence-transformers model: ")
    assert not cache.exists() or list(cache.iterdir()) == []  # no temporary directory or lock left


def test_hub_id_without_the_hub_is_one_line(tmp_path: Path) -> None:
    """The hub path exists; here (no network) it fails in one line that says what was needed."""
    env = {k: v for k, v in os.environ.items() if k not in ("VECPIPE_DEBUG", "VECPIPE_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    res = subprocess.run([sys.executable, "-m", "vecpipe", "model", "export", "BAAI/bge-small-en-v1.5"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("vecpipe: error: BAAI/bge-small-en-v1.5: cannot load it as a sentence-transformers "
                                "model (a Hugging Face hub id: this needs the hub"), res.stderr
    assert not (tmp_path / "xdg" / "vecpipe" / "models" / "BAAI" / "bge-small-en-v1.5").exists()


def test_missing_extra_simulated_here_too(tmp_path: Path) -> None:
    """With the extra installed, a failing import of it still gives one line, not a traceback."""
    code = ("import sys; sys.modules['sentence_transformers'] = None\n"
            "from vecpipe.cli import main\n"
            f"main(['model', 'export', {str(tmp_path)!r}, '--name', 'x'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("VECPIPE_DEBUG", "VECPIPE_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        "vecpipe: error: vecpipe model export needs the optional [export] extra (sentence_transformers is not "
        "installed); install it with: pip install 'vecpipe[export]'")


def test_vectors_table_is_ordinary(cli, cache: Path, st_models, tmp_path: Path) -> None:
    """An exported model's vectors index and search like any other (the self-match is rank 1)."""
    assert cli("model", "export", st_models["mean"], "--name", "idx").exit_code == 0
    _embed(cli, tmp_path, "idx")
    vpi = tmp_path / "docs.vpi"
    assert cli("build-index", tmp_path / "idx.parquet", "--spec", "Flat", "-o", vpi).exit_code == 0
    res = cli("search", tmp_path / "idx.parquet", "--index", vpi, "-k", "1", "--format", "trec")
    assert res.exit_code == 0, res.stderr
    hits = [ln.split() for ln in res.stdout.splitlines()]
    same = sum(h[0] == h[2] for h in hits)
    assert same >= len(TEXTS) - 3  # duplicates among the short texts may tie

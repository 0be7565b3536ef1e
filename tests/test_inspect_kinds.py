"""vecpipe inspect knows every artifact (issue 17, item 9): metrics, runs (TREC text with their sidecar
manifest, Arrow, Parquet), qrels (BEIR TSV, TREC, Parquet), vectors, indexes, NumPy arrays, dataset
directories; from files, stdin and FIFOs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, write_vectors

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", OMP_NUM_THREADS="1")
    env.pop("VECPIPE_DEBUG", None)
    return env


def _info(cli, path) -> dict:
    res = cli("inspect", path, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _text(cli, path) -> str:
    res = cli("inspect", path)
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.stdout.splitlines()) < 200
    return res.stdout


@pytest.fixture
def searched(cli, tmp_path, docs_queries):
    """An index over the 500 docs, a TREC run of the 20 queries (k=3, tag mytag) and qrels (one relevant doc each)."""
    docs, queries, _, _, picks = docs_queries
    assert cli("build-index", docs, "--spec", "Flat", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    res = cli("search", queries, "--index", tmp_path / "i.vpi", "-k", 3, "--tag", "mytag", "-o", tmp_path / "r.trec", "-q")
    assert res.exit_code == 0, res.output
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{p}\t{1 + i % 2}\nq{i}\td{(p + 1) % 500}\t0\nq{i}\td{(p + 250) % 500}\t1\n" for i, p in enumerate(picks))
    (tmp_path / "qrels.tsv").write_text(qrels)
    return tmp_path


def test_inspect_metrics(cli, searched):
    t = searched
    res = cli("eval", t / "r.trec", "--qrels", t / "qrels.tsv", "-m", "nDCG@10", "-m", "R@100", "-o", t / "m.tsv", "-q")
    assert res.exit_code == 0, res.output
    want = dict(line.split("\t") for line in (t / "m.tsv").read_text().splitlines()[1:])
    info = _info(cli, t / "m.tsv")
    assert info["kind"] == "metrics" and info["rows"] == 2
    assert info["metrics"]["measures"] == {k: float(v) for k, v in want.items()} and not info["metrics"]["per_query"]
    assert info["manifest"]["stage"] == "eval" and info["manifest_current"] is True
    text = _text(cli, t / "m.tsv")
    assert "kind: metrics" in text and f"metrics: nDCG@10 {float(want['nDCG@10'])}" in text and "manifest: eval" in text
    assert "kind: records" not in text

    res = cli("eval", t / "r.trec", "--qrels", t / "qrels.tsv", "-m", "nDCG@10", "--per-query", "-o", t / "mq.tsv", "-q")
    assert res.exit_code == 0, res.output
    info = _info(cli, t / "mq.tsv")
    assert info["kind"] == "metrics" and info["metrics"]["per_query"] and info["metrics"]["queries"] == 20
    assert set(info["metrics"]["measures"]) == {"nDCG@10"}
    assert "queries: 20" in _text(cli, t / "mq.tsv")

    res = cli("eval", t / "r.trec", "--qrels", t / "qrels.tsv", "-m", "nDCG@10", "--format", "json", "-o", t / "m.json", "-q")
    assert res.exit_code == 0, res.output
    info = _info(cli, t / "m.json")
    assert info["kind"] == "metrics" and info["metrics"]["queries"] == 20
    assert info["metrics"]["measures"] == json.loads((t / "m.json").read_text())["measures"]


def test_inspect_trec_run_with_its_sidecar_manifest(cli, searched):
    t = searched
    info = _info(cli, t / "r.trec")
    assert info["kind"] == "run" and info["rows"] == 60
    assert info["run"] == {"queries": 20, "depth": {"min": 3, "median": 3, "max": 3}, "tags": ["mytag"]}
    assert info["manifest"]["stage"] == "search" and info["manifest"]["params"]["k"] == 3
    assert info["manifest_current"] is True and info["sidecar"].endswith(".r.trec.vecpipe.json")
    text = _text(cli, t / "r.trec")
    assert "run: 20 queries, depth 3/3/3 (min/median/max), tag mytag" in text and "manifest: search (" in text
    with open(t / "r.trec", "a") as fh:  # an edited run: its sidecar no longer describes it
        fh.write("q99 Q0 d1 1 0.5 other\n")
    info = _info(cli, t / "r.trec")
    assert info["manifest_current"] is False and info["run"]["tags"] == ["mytag", "other"]
    assert info["run"]["queries"] == 21 and info["run"]["depth"]["min"] == 1
    assert "stale" in _text(cli, t / "r.trec")


def test_inspect_arrow_and_parquet_runs(cli, tmp_path, searched, docs_queries):
    t = searched
    _, queries, *_ = docs_queries
    for name in ("r.parquet", "r.arrow"):
        res = cli("search", queries, "--index", t / "i.vpi", "-k", 4, "-o", t / name, "-q")
        assert res.exit_code == 0, res.output
        info = _info(cli, t / name)
        assert info["kind"] == "run" and info["rows"] == 80
        assert info["run"] == {"queries": 20, "depth": {"min": 4, "median": 4, "max": 4}}
        assert "run: 20 queries, depth 4/4/4" in _text(cli, t / name)
    # an Arrow stream from stdin
    with open(t / "r.arrow", "rb") as fh:
        res = subprocess.run(VECPIPE + ["inspect", "-", "--format", "json"], stdin=fh, capture_output=True, env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["path"] == "<stdin>" and info["run"]["queries"] == 20 and info["rows"] == 80


def test_inspect_qrels(cli, tmp_path):
    beir = tmp_path / "q.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td1\t2\nq3\td3\t1\n")
    trec = tmp_path / "q.trec"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 2\nq3 0 d3 1\n")
    table = pa.table({"qid": ["q1", "q1", "q2", "q3"], "docid": ["d1", "d2", "d1", "d3"], "rel": pa.array([1, 0, 2, 1], pa.int32())})
    pq.write_table(table, tmp_path / "q.parquet")
    want = {"queries": 3, "judgements": 4, "documents": 3, "levels": {"0": 1, "1": 2, "2": 1}}
    for name, layout in (("q.tsv", "beir"), ("q.trec", "trec"), ("q.parquet", None)):
        info = _info(cli, tmp_path / name)
        assert info["kind"] == "qrels" and info["rows"] == 4 and info["qrels"] == want, name
        assert info.get("layout") == layout
        assert "qrels: 3 queries, 4 judgements of 3 documents; levels 0: 1, 1: 2, 2: 1" in _text(cli, tmp_path / name)


def test_inspect_vectors_index_and_numpy(cli, tmp_path, docs_queries):
    docs, _, matrix, *_ = docs_queries
    v = write_vectors(tmp_path / "m.parquet", matrix, meta={"model": {"name": "tiny-model", "sha256": "a" * 64}})
    info = _info(cli, v)
    assert info["vectors"]["dim"] == 32 and info["vectors"]["dtype"] == "float32" and info["vectors"]["model"] == "tiny-model"
    assert "vectors: dim 32, float32, model tiny-model, metric cos" in _text(cli, v)
    assert cli("build-index", docs, "--spec", "HNSW16", "--metric", "l2", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    info = _info(cli, tmp_path / "i.vpi")
    assert info["index"]["spec"] == "HNSW16" and info["index"]["metric"] == "l2" and info["index"]["count"] == 500
    assert "index: HNSW16, metric l2, 500 vectors of dim 32" in _text(cli, tmp_path / "i.vpi")

    np.save(tmp_path / "x.npy", matrix.astype(np.float64))
    info = _info(cli, tmp_path / "x.npy")
    assert info["format"] == "npy" and info["kind"] == "vectors" and info["rows"] == 500
    assert info["array"]["shape"] == [500, 32] and info["array"]["dtype"] == "float64" and info["array"]["read_as"] == "float32"
    assert info["array"]["ids"] == "row numbers" and info["vectors"]["model"] is None
    assert "array: shape (500, 32), float64, read as float32" in _text(cli, tmp_path / "x.npy")
    np.savez(tmp_path / "x.npz", embeddings=matrix.astype(np.float16), ids=np.array([f"d{i}" for i in range(500)]))
    info = _info(cli, tmp_path / "x.npz")
    assert info["format"] == "npz" and info["array"]["embeddings"] == "embeddings" and info["array"]["dtype"] == "float16"
    assert {a["name"]: a["shape"] for a in info["array"]["arrays"]} == {"embeddings": [500, 32], "ids": [500]}
    assert info["array"]["ids"] == "array 'ids'"
    np.save(tmp_path / "bad.npy", np.zeros(3, np.int64))
    info = _info(cli, tmp_path / "bad.npy")
    assert info["kind"] == "array" and "1-D" in info["array"]["problem"]


def test_inspect_beir_directory(cli, tmp_path):
    d = tmp_path / "scifact"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text('{"_id": "d1", "title": "t", "text": "a"}\n')
    (d / "queries.jsonl").write_text('{"_id": "q1", "text": "b"}\n')
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    info = _info(cli, d)
    assert info["kind"] == "beir" and info["format"] == "directory"
    assert [(f["name"], f["kind"]) for f in info["files"]] == [("corpus.jsonl", "jsonl"), ("queries.jsonl", "jsonl"),
                                                                 ("qrels/test.tsv", "qrels")]
    text = _text(cli, d)
    assert "kind: beir" in text and "qrels/test.tsv (qrels" in text and "vecpipe eval --qrels" in text


def test_inspect_from_a_fifo_and_stdin_equals_the_file(cli, searched):
    t = searched
    for name in ("i.vpi", "r.trec"):
        ref = _info(cli, t / name)
        fifo = t / f"{name}.fifo"
        os.mkfifo(fifo)
        data = (t / name).read_bytes()
        feeder = threading.Thread(target=fifo.write_bytes, args=(data,))
        feeder.start()
        try:
            res = subprocess.run(VECPIPE + ["inspect", str(fifo), "--format", "json"], capture_output=True, env=_env(), timeout=120)
        finally:
            feeder.join(timeout=60)
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        for key in ("format", "kind", "rows", "index", "run", "vecpipe"):
            assert got.get(key) == ref.get(key), (name, key)
        with open(t / name, "rb") as fh:
            res = subprocess.run(VECPIPE + ["inspect", "-", "--format", "json"], stdin=fh, capture_output=True, env=_env(), timeout=120)
        got = json.loads(res.stdout)
        assert all(got.get(key) == ref.get(key) for key in ("format", "kind", "rows", "index", "run")), name

"""rerank: exact rescoring of a run with full-precision vectors read by id."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import clustered, write_vectors

MODEL = {"name": "fake-model", "sha256": "ab" * 32}


def _run(stdout: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(stdout)).read_all()


def _write_run(path, qids, docids, scores):
    from vecpipe.formats.runs import write_run

    write_run(pa.table({"qid": qids, "docid": docids, "score": pa.array(scores, pa.float32())}), path)
    return path


@pytest.fixture
def setup(tmp_path):
    docs = clustered(800, 24, seed=11)
    rng = np.random.default_rng(12)
    q = clustered(10, 24, seed=13)
    d_path = write_vectors(tmp_path / "docs.arrow", docs, meta={"model": MODEL})
    q_path = write_vectors(tmp_path / "q.arrow", q, prefix="q", meta={"model": MODEL})
    # a candidate run with random scores: 40 random candidates per query
    qids, dids = [], []
    cands = {}
    for i in range(10):
        c = rng.choice(800, 40, replace=False)
        cands[i] = c
        qids += [f"q{i}"] * 40
        dids += [f"d{j}" for j in c]
    run = _write_run(tmp_path / "cand.arrow", qids, dids, rng.random(400))
    return d_path, q_path, run, docs, q, cands


def _expected(docs, q, cands, k, metric="cos"):
    out = {}
    for i, c in cands.items():
        if metric == "l2":
            s = -((docs[c] - q[i]) ** 2).sum(axis=1)
        else:
            s = docs[c] @ q[i]
        order = sorted(range(len(c)), key=lambda j: (-s[j], f"d{c[j]}"))[:k]
        out[f"q{i}"] = ([f"d{c[j]}" for j in order], s[order])
    return out


@pytest.mark.parametrize("doc_format", ["arrow", "parquet", "stream"])
def test_rerank_matches_exact_scores(cli, tmp_path, setup, doc_format):
    d_path, q_path, run, docs, q, cands = setup
    if doc_format == "parquet":
        table = ipc.open_file(d_path).read_all()
        d_path = tmp_path / "docs.parquet"
        pq.write_table(table, d_path, row_group_size=100)  # several row groups
    elif doc_format == "stream":
        table = ipc.open_file(d_path).read_all()
        d_path = tmp_path / "docs.arrows"
        with ipc.new_stream(d_path, table.schema) as w:
            for b in table.to_batches(max_chunksize=128):
                w.write_batch(b)
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 10)
    assert res.exit_code == 0, res.output
    out = _run(res.stdout_bytes)
    assert out.num_rows == 100
    exp = _expected(docs, q, cands, 10)
    for i in range(10):
        rows = out.filter(pa.compute.equal(out.column("qid"), f"q{i}"))
        assert rows.column("docid").to_pylist() == exp[f"q{i}"][0]
        assert rows.column("rank").to_pylist() == list(range(1, 11))
        assert np.allclose(rows.column("score").to_numpy(), exp[f"q{i}"][1], atol=1e-6)


def test_rerank_from_stdin_trec_to_file(cli, tmp_path, setup):
    d_path, q_path, run, docs, q, cands = setup
    from vecpipe.formats.runs import read_run, trec_lines

    text = trec_lines(read_run(run))
    out = tmp_path / "rr.trec"
    res = cli("rerank", "-", "--vectors", d_path, "--queries", q_path, "-k", 5, "-o", out, "--tag", "exact", input=text)
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 50 and lines[0].split()[5] == "exact"
    exp = _expected(docs, q, cands, 5)
    assert [ln.split()[2] for ln in lines[:5]] == exp["q0"][0]
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 5, "-o", tmp_path / "rr.parquet")
    assert res.exit_code == 0 and pq.read_table(tmp_path / "rr.parquet").num_rows == 50


def test_rerank_metrics_and_ties_by_docid(cli, tmp_path):
    docs = np.array([[1, 0], [1, 0], [0, 1], [2, 0]], dtype=np.float32)
    d_path = write_vectors(tmp_path / "d.arrow", docs, ids=["b", "a", "c", "d"], meta={"metric": "ip", "normalized": False})
    q_path = write_vectors(tmp_path / "q.arrow", np.array([[1, 0]], dtype=np.float32), prefix="q", meta={"metric": "ip"})
    run = _write_run(tmp_path / "r.arrow", ["q0"] * 4, ["c", "b", "a", "d"], [4, 3, 2, 1])
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 3)
    out = _run(res.stdout_bytes)
    assert out.column("docid").to_pylist() == ["d", "a", "b"]  # ip: 2, then the tie 1/1 by docid
    assert out.column("score").to_pylist() == [2.0, 1.0, 1.0]
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 4, "--metric", "cos")
    out = _run(res.stdout_bytes)
    assert out.column("docid").to_pylist() == ["a", "b", "d", "c"]
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 4, "--metric", "l2")
    out = _run(res.stdout_bytes)
    assert out.column("docid").to_pylist() == ["a", "b", "d", "c"]
    assert out.column("score").to_pylist() == [0.0, 0.0, -1.0, -2.0]


def test_missing_docids_are_counted_and_allow_missing_keeps_the_rest(cli, tmp_path, setup):
    d_path, q_path, _, _docs, _q, _cands = setup
    run = _write_run(tmp_path / "r.arrow", ["q0"] * 4, ["d1", "nope1", "d2", "nope2"], [1, 2, 3, 4])
    out = tmp_path / "out.arrow"
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 10, "-o", out)
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "2 docids" in lines[0] and "--allow-missing" in lines[0]
    assert not out.exists()
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 10, "-o", out, "--allow-missing")
    assert res.exit_code == 0, res.output
    assert sorted(ipc.open_file(out).read_all().column("docid").to_pylist()) == ["d1", "d2"]
    run = _write_run(tmp_path / "r2.arrow", ["q0", "qX"], ["d1", "d2"], [1, 2])
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "-k", 10, "-o", out)
    assert res.exit_code == 1 and "1 queries" in res.stderr


def test_bad_inputs(cli, tmp_path, setup):
    d_path, q_path, run, _docs, q, _ = setup
    other = write_vectors(tmp_path / "o.arrow", q, prefix="q", meta={"model": {"name": "other", "sha256": "cd" * 32}})
    res = cli("rerank", run, "--vectors", d_path, "--queries", other, "-k", 10, "-o", tmp_path / "x.arrow")
    assert res.exit_code == 1 and "other" in res.stderr
    small = write_vectors(tmp_path / "s.arrow", clustered(10, 8), prefix="q", meta={"model": MODEL})
    res = cli("rerank", run, "--vectors", d_path, "--queries", small, "-k", 10, "-o", tmp_path / "x.arrow")
    assert res.exit_code == 1 and "dimension" in res.stderr
    assert cli("quantize", d_path, "--to", "int8", "-o", tmp_path / "i.arrow").exit_code == 0
    res = cli("rerank", run, "--vectors", tmp_path / "i.arrow", "--queries", q_path, "-k", 10, "-o", tmp_path / "x.arrow")
    assert res.exit_code == 1 and "full-precision" in res.stderr
    res = cli("rerank", run, "--vectors", "-", "--queries", q_path, "-k", 10, "-o", tmp_path / "x.arrow")
    assert res.exit_code == 1 and "random access" in res.stderr
    res = cli("rerank", run, "--vectors", d_path, "--queries", q_path, "--metric", "hamming", "-o", tmp_path / "x.arrow")
    assert res.exit_code == 2
    assert not (tmp_path / "x.arrow").exists()


def test_doc_vectors_fetch_reads_only_candidate_row_groups(tmp_path, setup, monkeypatch):
    from vecpipe.index.rescore import DocVectors

    d_path, *_ = setup
    table = ipc.open_file(d_path).read_all()
    path = tmp_path / "docs.parquet"
    pq.write_table(table, path, row_group_size=100)
    read_groups = []
    orig = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        read_groups.extend(kwargs.get("row_groups") or [])
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    got = list(DocVectors(path).fetch(pa.array(["d5", "d750", "d751"])))
    assert read_groups == [0, 7]
    pos = np.concatenate([g[0] for g in got])
    rows = np.concatenate([g[1] for g in got])
    docs = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(800, 24)
    assert np.allclose(rows[np.argsort(pos)], docs[[5, 750, 751]])

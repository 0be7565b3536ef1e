"""build-index, search and inspect over synthetic vectors; the .vpi container's integrity checks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from conftest import clustered, write_vectors

from vecpipe.errors import InputError
from vecpipe.formats import vpi


def _run_from_stdout(stdout: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(stdout)).read_all()


@pytest.mark.parametrize("spec", ["Flat", "HNSW32", "IVF16,Flat", "SQ8", "PQ8x4", "OPQ4,IVF8,PQ4x4"])
def test_build_and_search_finds_the_source_docs(cli, tmp_path, docs_queries, spec):
    docs, queries, _, _, picks = docs_queries
    index = tmp_path / "docs.vpi"
    res = cli("build-index", docs, "--spec", spec, "-o", index)
    assert res.exit_code == 0, res.output
    nprobe = ["--nprobe", 16] if "IVF" in spec else []  # refused where it does not apply (issue 16)
    res = cli("search", queries, "--index", index, "-k", 10, *nprobe)
    assert res.exit_code == 0, res.output
    if not nprobe:
        refused = cli("search", queries, "--index", index, "-k", 10, "--nprobe", 16)
        assert refused.exit_code == 2 and "--nprobe does not apply" in refused.stderr
    run = _run_from_stdout(res.stdout_bytes)
    assert run.schema.names == ["qid", "docid", "rank", "score"]
    assert run.schema.field("rank").type == pa.int32()
    rows = list(zip(*(run.column(c).to_pylist() for c in ("qid", "docid", "rank"))))
    top1 = {q: d for q, d, r in rows if r == 1}
    top10 = {(q, d) for q, d, _ in rows}
    if spec in ("Flat", "HNSW32"):
        assert all(top1[f"q{i}"] == f"d{p}" for i, p in enumerate(picks))
    else:  # compressed codes: the source doc is still in the top 10
        assert sum((f"q{i}", f"d{p}") in top10 for i, p in enumerate(picks)) >= 15
    ranks = run.column("rank").to_pylist()
    assert ranks[:10] == list(range(1, 11))


def test_search_matches_numpy_exact_scores_and_breaks_ties_by_docid(cli, tmp_path):
    base = clustered(50, 8, seed=3)
    docs = np.concatenate([base, base[:10]])  # ten exact duplicates: tied scores
    ids = [f"d{i:03d}" for i in range(50)] + [f"a{i:03d}" for i in range(10)]
    d = write_vectors(tmp_path / "d.parquet", docs, ids=ids)
    q = write_vectors(tmp_path / "q.parquet", base[:3], prefix="q")
    cli("build-index", d, "-o", tmp_path / "x.vpi")
    res = cli("search", q, "--index", tmp_path / "x.vpi", "-k", 5, "--format", "trec", "-o", tmp_path / "run.trec")
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "run.trec").read_text().splitlines()
    first = [ln.split() for ln in lines if ln.startswith("q0 ")]
    assert first[0][2] == "a000" and first[1][2] == "d000"  # tie: docid order
    assert first[0][5] == "vecpipe"
    expected = np.sort(docs @ base[0])[::-1][:5]
    assert np.allclose([float(x[4]) for x in first], expected, atol=1e-5)


def test_metric_l2_scores_are_negated_distances(cli, tmp_path, docs_queries):
    docs, queries, dm, qm, _ = docs_queries
    cli("build-index", docs, "--metric", "l2", "-o", tmp_path / "l2.vpi")
    res = cli("search", queries, "--index", tmp_path / "l2.vpi", "-k", 3)
    run = _run_from_stdout(res.stdout_bytes)
    best = run.column("score").to_pylist()[0]
    assert best == pytest.approx(-np.min(((dm - qm[0]) ** 2).sum(1)), abs=1e-4)


def test_output_formats_parquet_arrow_and_trec(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    cli("build-index", docs, "-o", tmp_path / "i.vpi")
    for name in ("run.parquet", "run.arrow", "run.trec"):
        res = cli("search", queries, "--index", tmp_path / "i.vpi", "-k", 4, "-o", tmp_path / name)
        assert res.exit_code == 0, res.output
    from vecpipe.formats.runs import read_run

    tables = [read_run(tmp_path / n) for n in ("run.parquet", "run.arrow", "run.trec")]
    assert all(t.num_rows == 80 for t in tables)
    assert tables[0].column("docid").to_pylist() == tables[2].column("docid").to_pylist()
    meta = json.loads(pq.read_schema(tmp_path / "run.parquet").metadata[b"vecpipe"])
    assert meta["kind"] == "run" and meta["k"] == 4


def test_build_is_deterministic(cli, tmp_path, docs_queries):
    docs, *_ = docs_queries
    for spec in ("HNSW32", "IVF16,PQ8x4"):
        cli("build-index", docs, "--spec", spec, "-o", tmp_path / "a.vpi")
        cli("build-index", docs, "--spec", spec, "-o", tmp_path / "b.vpi")
        assert (tmp_path / "a.vpi").read_bytes() == (tmp_path / "b.vpi").read_bytes()


def test_uncompressed_container_round_trip(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    cli("build-index", docs, "--no-compress", "-o", tmp_path / "raw.vpi")
    cli("build-index", docs, "-o", tmp_path / "z.vpi")
    assert (tmp_path / "raw.vpi").stat().st_size > (tmp_path / "z.vpi").stat().st_size
    a = cli("search", queries, "--index", tmp_path / "raw.vpi", "-k", 3).stdout_bytes
    b = cli("search", queries, "--index", tmp_path / "z.vpi", "-k", 3).stdout_bytes
    assert _run_from_stdout(a).equals(_run_from_stdout(b))


def test_recorded_search_params_and_overrides(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    cli("build-index", docs, "--spec", "IVF16,Flat", "--nprobe", 2, "-o", tmp_path / "ivf.vpi")
    header = vpi.read_header(tmp_path / "ivf.vpi")
    assert header["meta"]["search_params"] == {"nprobe": 2}
    cli("build-index", docs, "--spec", "HNSW16", "--ef-search", 40, "-o", tmp_path / "h.vpi")
    assert vpi.read_header(tmp_path / "h.vpi")["meta"]["search_params"] == {"efSearch": 40}
    res = cli("search", queries, "--index", tmp_path / "ivf.vpi", "-k", 3, "--nprobe", 16, "--threads", 1)
    assert res.exit_code == 0


def test_truncated_and_corrupt_index_are_refused(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    good = tmp_path / "g.vpi"
    cli("build-index", docs, "-o", good)
    data = good.read_bytes()
    (tmp_path / "t.vpi").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF
    (tmp_path / "c.vpi").write_bytes(bytes(flipped))
    (tmp_path / "h.vpi").write_bytes(data[:20])
    for name, msg in (("t.vpi", "truncated"), ("c.vpi", "checksum mismatch"), ("h.vpi", "truncated")):
        res = cli("search", queries, "--index", tmp_path / name, "-k", 3)
        assert res.exit_code == 1, res.output
        assert msg in res.stderr and res.stderr.count("\n") == 1
    res = cli("search", queries, "--index", docs, "-k", 3)
    assert res.exit_code == 1 and "not a vecpipe index" in res.stderr


def test_dimension_mismatch_is_one_line_error(cli, tmp_path, docs_queries):
    docs, *_ = docs_queries
    cli("build-index", docs, "-o", tmp_path / "i.vpi")
    q = write_vectors(tmp_path / "q16.parquet", clustered(3, 16), prefix="q")
    res = cli("search", q, "--index", tmp_path / "i.vpi", "-k", 3, "-o", tmp_path / "run.parquet")
    assert res.exit_code == 1
    assert "dimension 16" in res.stderr and "32-dimensional" in res.stderr
    assert not (tmp_path / "run.parquet").exists()
    assert not list(tmp_path.glob(".run.parquet*"))


def test_model_mismatch_is_refused(cli, tmp_path):
    m = clustered(30, 8)
    d = write_vectors(tmp_path / "d.parquet", m, meta={"model": {"name": "a", "sha256": "1" * 64}})
    q = write_vectors(tmp_path / "q.parquet", m[:2], prefix="q", meta={"model": {"name": "b", "sha256": "2" * 64}})
    cli("build-index", d, "-o", tmp_path / "i.vpi")
    res = cli("search", q, "--index", tmp_path / "i.vpi", "-k", 3)
    assert res.exit_code == 1 and "embedded with b" in res.stderr


def test_bad_spec_is_usage_error_and_writes_nothing(cli, tmp_path, docs_queries):
    docs, *_ = docs_queries
    res = cli("build-index", docs, "--spec", "NoSuchIndex", "-o", tmp_path / "x.vpi")
    assert res.exit_code == 2 and "--spec 'NoSuchIndex'" in res.stderr
    res = cli("build-index", docs, "--spec", "IVF4096,Flat", "-o", tmp_path / "x.vpi")
    assert res.exit_code == 2 and "needs at least 4,096 training vectors" in res.stderr  # checked before work (issue 16)
    assert not any(tmp_path.glob("*x.vpi*"))


def test_text_input_to_build_index_is_refused(cli, tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"_id": "a", "text": "x"}\n')
    res = cli("build-index", p, "-o", tmp_path / "x.vpi")
    assert res.exit_code == 1 and "run vecpipe embed" in res.stderr


def test_fixed_size_list_restored_from_parquet_and_embeddings_column(tmp_path, cli):
    m = clustered(10, 4)
    t = pa.table({"id": [str(i) for i in range(10)], "embeddings": [list(map(float, r)) for r in m]})
    pq.write_table(t, tmp_path / "autofaiss.parquet")
    from vecpipe.formats.vectors import read_vectors

    v = read_vectors(tmp_path / "autofaiss.parquet")
    assert v.matrix.shape == (10, 4)
    res = cli("build-index", tmp_path / "autofaiss.parquet", "-o", tmp_path / "a.vpi")
    assert res.exit_code == 0, res.output
    ragged = pa.table({"id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(InputError, match="different lengths"):
        read_vectors(tmp_path / "ragged.parquet")


def test_inspect_every_artifact(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    cli("build-index", docs, "--spec", "HNSW16", "-o", tmp_path / "i.vpi")
    res = cli("inspect", tmp_path / "i.vpi", "--format", "json")
    info = json.loads(res.stdout)
    assert info["kind"] == "index" and info["rows"] == 500 and info["vecpipe"]["spec"] == "HNSW16"
    res = cli("inspect", docs)
    assert "kind: vectors" in res.stdout and "rows: 500" in res.stdout and "fixed_size_list" in res.stdout
    cli("search", queries, "--index", tmp_path / "i.vpi", "-k", 2, "-o", tmp_path / "r.trec")
    assert "kind: run" in cli("inspect", tmp_path / "r.trec").stdout
    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n')
    info = json.loads(cli("inspect", tmp_path / "c.jsonl", "--format", "json").stdout)
    assert info["kind"] == "records" and info["rows"] == 2
    res = cli("inspect", tmp_path / "nope")
    assert res.exit_code == 1 and "no such file" in res.stderr


def test_inspect_shortens_codebooks_on_the_terminal_but_not_in_json(cli, tmp_path, docs_queries):
    docs, *_ = docs_queries
    res = cli("quantize", docs, "--to", "pq", "--m", 4, "--nbits", 4, "-o", tmp_path / "pq.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    text = cli("inspect", tmp_path / "pq.parquet").stdout
    assert "characters)" in text and max(len(line) for line in text.splitlines()) < 200
    full = json.loads(cli("inspect", tmp_path / "pq.parquet", "--format", "json").stdout)
    assert "characters)" not in json.dumps(full)


def test_training_sample_options_and_search_options(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    a, b, c = (tmp_path / n for n in ("a.vpi", "b.vpi", "c.vpi"))
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        res = cli("build-index", docs, "--spec", "IVF8,PQ4x4", "--train-size", 300, "--seed", seed, "-o", path, "-q")
        assert res.exit_code == 0, res.stderr
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    meta = vpi.read_header(a)["meta"]
    assert meta["train_size"] == 300 and meta["seed"] == 1
    base = cli("search", queries, "--index", a, "-k", 5, "--format", "trec", "--tag", "myrun", "-q").stdout
    assert all(line.endswith(" myrun") for line in base.splitlines())
    batched = cli("search", queries, "--index", a, "-k", 5, "--format", "trec", "--tag", "myrun", "--batch-size", 3, "-q").stdout
    assert batched == base
    assert cli("search", queries, "--index", a, "-k", 5, "--tag", "two words", "-q").exit_code == 2
    cli("build-index", docs, "--spec", "HNSW8", "-o", tmp_path / "h.vpi", "-q")
    narrow = cli("search", queries, "--index", tmp_path / "h.vpi", "-k", 5, "--ef-search", 5, "--format", "trec", "-q")
    assert narrow.exit_code == 0 and len(narrow.stdout.splitlines()) == 100


def test_flat_build_keeps_the_rows_and_serialises_as_faiss_does(tmp_path, monkeypatch):
    """A Flat build keeps its rows as they were read (views where the input allows) and writes
    faiss's own bytes: equal to faiss's serialisation of an IndexFlat given the same rows, for both
    metrics and several dimensions, and the same when faiss's layout were not the expected one (the
    rows are then handed to faiss)."""
    import faiss

    from vecpipe.index import faiss_util
    from vecpipe.index.build import build_flat

    rng = np.random.default_rng(3)
    for d, metric in ((8, "ip"), (13, "l2"), (384, "ip")):
        mats = [rng.standard_normal((n, d)).astype(np.float32) for n in (5, 7, 4)]
        batches = [(pa.array([f"d{i}_{j}" for j in range(len(m))]), m, {"metric": metric}) for i, m in enumerate(mats)]
        built = build_flat(iter(batches), "v", metric)
        assert built.flat and built.index.ntotal == 16 and built.meta["count"] == 16
        assert built.index.parts[0] is mats[0]  # the rows as given: no copy
        real = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
        real.add(np.concatenate(mats))
        expected = bytes(faiss.serialize_index(real))
        assert _written(built) == expected
        assert bytes(built.blob) == expected  # the stdout path: faiss's bytes too
        monkeypatch.setitem(faiss_util._FLAT_LAYOUTS, (d, metric), None)  # as if faiss laid it out otherwise
        assert _written(built) == expected
        monkeypatch.delitem(faiss_util._FLAT_LAYOUTS, (d, metric))


def _written(built) -> bytes:
    chunks: list[bytes] = []

    def sink(chunk) -> int:
        chunks.append(bytes(chunk))
        return len(chunk)

    built.write_to(sink)
    return b"".join(chunks)

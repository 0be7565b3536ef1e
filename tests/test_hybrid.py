"""BM25 indexes (build-index --spec BM25, search with text queries) and run fusion (vecpipe fuse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_vectors

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

CORPUS = [
    ("d1", "Vitamin D deficiency is linked to bone fractures in elderly patients."),
    ("d2", "Bone density improves with calcium and vitamin supplements."),
    ("d3", "Neural networks learn representations of text for retrieval."),
    ("d4", "Dense retrieval with embeddings outperforms sparse retrieval on some benchmarks."),
    ("d5", "Sparse lexical retrieval such as BM25 remains a strong baseline."),
    ("d6", "The patients received calcium, not vitamin D."),
    ("d7", "a an the of"),  # stopwords only: indexed as an empty document
]
QUERIES = [("q1", "vitamin D and bones"), ("q2", "sparse retrieval baseline"), ("q3", "embeddings for text retrieval"),
           ("q4", "zebra")]


def _jsonl(path: Path, rows, key="_id") -> Path:
    path.write_text("".join(json.dumps({key: i, "text": t}) + "\n" for i, t in rows))
    return path


@pytest.fixture
def texts(tmp_path):
    return _jsonl(tmp_path / "corpus.jsonl", CORPUS), _jsonl(tmp_path / "queries.jsonl", QUERIES)


def _run(path: Path) -> pa.Table:
    from vecpipe.formats.runs import read_run

    return read_run(str(path))


def test_bm25_scores_equal_bm25s_query_by_query(cli, texts, tmp_path):
    corpus, queries = texts
    res = cli("build-index", corpus, "--spec", "BM25", "-o", tmp_path / "docs.bm25.vpi")
    assert res.exit_code == 0, res.stderr
    res = cli("search", queries, "--index", tmp_path / "docs.bm25.vpi", "-k", 5, "-o", tmp_path / "run.parquet")
    assert res.exit_code == 0, res.stderr
    run = _run(tmp_path / "run.parquet")
    # bm25s used as its README shows, on the same settings
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize([t for _, t in CORPUS], stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    for qid, text in QUERIES:
        mine = run.filter(pa.compute.equal(run.column("qid"), qid))
        tokens = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        known = [t for t in tokens.vocab if t in retriever.vocab_dict and t != ""]
        if not known:
            assert mine.num_rows == 0  # no indexed term: nothing to rank
            continue
        docs, scores = retriever.retrieve(tokens, k=5, show_progress=False)
        np.testing.assert_allclose(mine.column("score").to_numpy(), scores[0], rtol=1e-6)
        got = dict(zip(mine.column("docid").to_pylist(), mine.column("score").to_pylist()))
        for d, s in zip(docs[0], scores[0]):
            assert np.isclose(got.get(CORPUS[d][0], np.nan), s) or list(scores[0]).count(s) > 1
    assert "zebra" not in json.dumps(run.schema.metadata[b"vecpipe"].decode())
    assert "1 queries had no indexed term" in res.stderr or "no indexed term" in res.stderr


def test_bm25_options_metadata_inspect_and_reruns(cli, texts, tmp_path):
    corpus, queries = texts
    out = tmp_path / "x.vpi"
    for method in ("lucene", "robertson", "atire", "bm25l", "bm25+"):
        res = cli("build-index", corpus, "--spec", "BM25", "--bm25-method", method, "--k1", "0.9", "--b", "0.4",
                  "--stemmer", "none", "--stopwords", "none", "-o", out, "-q")
        assert res.exit_code == 0, res.stderr
        res = cli("inspect", out, "--format", "json")
        meta = json.loads(res.stdout)
        text = json.dumps(meta)
        assert '"bm25"' in text and method in text and '"k1": 0.9' in text and '"stemmer": "none"' in text
        res = cli("search", queries, "--index", out, "-k", 3, "--format", "trec", "-q")
        assert res.exit_code == 0 and res.stdout.count("\n") >= 3, res.stderr
    first = out.read_bytes()
    res = cli("build-index", corpus, "--spec", "BM25", "--bm25-method", "bm25+", "--k1", "0.9", "--b", "0.4",
              "--stemmer", "none", "--stopwords", "none", "-o", out)
    assert res.exit_code == 0 and "up to date" in res.stderr
    res = cli("build-index", corpus, "--spec", "BM25", "--bm25-method", "bm25+", "--k1", "0.9", "--b", "0.4",
              "--stemmer", "none", "--stopwords", "none", "-o", out, "--force", "-q")
    assert res.exit_code == 0 and out.read_bytes() == first  # deterministic


def test_bm25_bad_input_is_one_line(cli, texts, tmp_path):
    corpus, _queries = texts
    cli("build-index", corpus, "--spec", "BM25", "-o", tmp_path / "d.vpi", "-q")
    vecs = write_vectors(tmp_path / "q.parquet", np.eye(4, dtype=np.float32), prefix="q")
    res = cli("search", vecs, "--index", tmp_path / "d.vpi", "-o", tmp_path / "r.parquet")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "query texts" in res.stderr
    assert not (tmp_path / "r.parquet").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    res = cli("build-index", empty, "--spec", "BM25", "-o", tmp_path / "e.vpi")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and not (tmp_path / "e.vpi").exists()
    stop = _jsonl(tmp_path / "stop.jsonl", [("a", "the of and"), ("b", "a I")])
    res = cli("build-index", stop, "--spec", "BM25", "-o", tmp_path / "s.vpi")
    assert res.exit_code == 1 and "no indexable token" in res.stderr and not (tmp_path / "s.vpi").exists()
    for opts in (["--k1", "-1"], ["--b", "2"], ["--bm25-method", "tfidf"], ["--stemmer", "klingon"], ["--stopwords", "elvish"]):
        res = cli("build-index", corpus, "--spec", "BM25", *opts, "-o", tmp_path / "o.vpi")
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, opts
    res = cli("build-index", corpus, "--k1", "1.0", "-o", tmp_path / "o.vpi")
    assert res.exit_code == 2 and "BM25" in res.stderr  # BM25 options with a faiss spec


def _write_run(path: Path, rows) -> Path:
    from vecpipe.formats.runs import sort_run

    table = pa.table({"qid": [r[0] for r in rows], "docid": [r[1] for r in rows], "score": pa.array([r[2] for r in rows], pa.float32())})
    pq.write_table(sort_run(table), path)
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = _write_run(tmp_path / "a.parquet", [("q1", "x", 3.0), ("q1", "y", 2.0), ("q1", "z", 1.0), ("q2", "x", 5.0)])
    b = _write_run(tmp_path / "b.parquet", [("q1", "y", 0.9), ("q1", "w", 0.8), ("q1", "x", 0.1), ("q3", "v", 0.5)])
    return a, b


def _scores(table: pa.Table) -> dict[tuple[str, str], float]:
    return {(q, d): s for q, d, s in zip(table.column("qid").to_pylist(), table.column("docid").to_pylist(),
                                         table.column("score").to_pylist())}


def test_fuse_methods_by_hand(cli, two_runs, tmp_path):
    a, b = two_runs
    expect = {
        "rrf": {("q1", "x"): 1 / 61 + 1 / 63, ("q1", "y"): 1 / 62 + 1 / 61, ("q1", "z"): 1 / 63, ("q1", "w"): 1 / 62,
                ("q2", "x"): 1 / 61, ("q3", "v"): 1 / 61},
        "minmax": {("q1", "x"): 1 + 0, ("q1", "y"): 0.5 + 1, ("q1", "z"): 0, ("q1", "w"): 0.875, ("q2", "x"): 1, ("q3", "v"): 1},
        "combsum": {("q1", "x"): 3.1, ("q1", "y"): 2.9, ("q1", "z"): 1.0, ("q1", "w"): 0.8, ("q2", "x"): 5.0, ("q3", "v"): 0.5},
        "combmnz": {("q1", "x"): 6.2, ("q1", "y"): 5.8, ("q1", "z"): 1.0, ("q1", "w"): 0.8, ("q2", "x"): 5.0, ("q3", "v"): 0.5},
    }
    for method, want in expect.items():
        res = cli("fuse", a, b, "--method", method, "-o", tmp_path / f"{method}.parquet", "-q")
        assert res.exit_code == 0, res.stderr
        got = _scores(_run(tmp_path / f"{method}.parquet"))
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5), (method, key)
    # zscore: a run that lacks a document gives its lowest z-score
    res = cli("fuse", a, b, "--method", "zscore", "-o", tmp_path / "z.parquet", "-q")
    got = _scores(_run(tmp_path / "z.parquet"))
    za = {"x": 1.2247449, "y": 0.0, "z": -1.2247449}
    sb = np.array([0.9, 0.8, 0.1])
    zb = dict(zip("ywx", (sb - sb.mean()) / sb.std()))
    assert got[("q1", "z")] == pytest.approx(za["z"] + min(zb.values()), rel=1e-5)
    assert got[("q1", "w")] == pytest.approx(min(za.values()) + zb["w"], rel=1e-5)
    assert got[("q1", "x")] == pytest.approx(za["x"] + zb["x"], rel=1e-5)
    # queries in first-appearance order, ranks 1..n, ties by docid
    run = _run(tmp_path / "rrf.parquet")
    assert run.column("qid").to_pylist() == ["q1"] * 4 + ["q2", "q3"]
    assert run.column("docid").to_pylist()[:4] == ["y", "x", "w", "z"]


def test_fuse_weights_k_formats_stdin_and_reruns(cli, two_runs, tmp_path):
    a, b = two_runs
    res = cli("fuse", a, b, "--method", "combsum", "--weights", "1,10", "-k", 1, "--format", "trec", "-q")
    assert res.exit_code == 0, res.stderr
    lines = [ln.split() for ln in res.stdout.splitlines()]
    assert [(ln[0], ln[2]) for ln in lines] == [("q1", "y"), ("q2", "x"), ("q3", "v")]
    trec = tmp_path / "b.trec"
    cli("fuse", b, a, "-o", trec, "-q")  # a TREC text run as an input, through stdin
    res = cli("fuse", a, "-", "-o", tmp_path / "s.parquet", "-q", input=trec.read_bytes())
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "f.parquet"
    assert cli("fuse", a, b, "-o", out, "-q").exit_code == 0
    meta = json.loads(pq.read_schema(out).metadata[b"vecpipe"])
    assert meta["fusion"] == {"method": "rrf", "runs": 2, "weights": None, "rrf_k": 60.0} and meta["manifest"]["inputs"]
    res = cli("fuse", a, b, "-o", out)
    assert res.exit_code == 0 and "up to date" in res.stderr


def test_fuse_bad_input_is_one_line(cli, two_runs, tmp_path):
    a, b = two_runs
    other = _write_run(tmp_path / "o.parquet", [("q9", "x", 1.0)])
    dup = tmp_path / "dup.trec"  # a document listed twice would count twice in the fused score
    dup.write_text("q1 Q0 x 1 2.0 t\nq1 Q0 x 2 1.0 t\n")
    for args, status, words in (
        ([a, other], 1, "no query in common"),
        ([a, b, "--weights", "1,2,3"], 1, "one weight per run"),
        ([a, b, "--weights", "1,x"], 2, "--weights"),
        ([a], 2, "two runs"),
        ([a, b, "--method", "borda"], 2, "--method"),
        ([a, b, "--method", "zscore", "--rrf-k", "10"], 2, "--rrf-k"),
        ([a, tmp_path / "missing.parquet"], 1, "missing.parquet"),
        ([a, dup], 1, "more than once"),
    ):
        res = cli("fuse", *args, "-o", tmp_path / "out.parquet")
        assert res.exit_code == status and res.stderr.count("\n") == 1 and words in res.stderr, (args, res.stderr)
        assert not (tmp_path / "out.parquet").exists()


def test_search_on_the_fused_runs_of_bm25_and_dense(cli, texts, tmp_path, tiny_model_dir):
    corpus, queries = texts
    cli("build-index", corpus, "--spec", "BM25", "-o", tmp_path / "s.vpi", "-q")
    cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "d.parquet", "-q")
    cli("build-index", tmp_path / "d.parquet", "-o", tmp_path / "d.vpi", "-q")
    assert cli("search", queries, "--index", tmp_path / "s.vpi", "-o", tmp_path / "s.run.parquet", "-q").exit_code == 0
    res = cli("search", queries, "--index", tmp_path / "d.vpi", "--model", tiny_model_dir, "-o", tmp_path / "d.run.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    res = cli("fuse", tmp_path / "s.run.parquet", tmp_path / "d.run.parquet", "--method", "zscore", "-k", 3, "--format", "trec", "-q")
    assert res.exit_code == 0, res.stderr
    assert {ln.split()[0] for ln in res.stdout.splitlines()} == {"q1", "q2", "q3", "q4"}


# -- cross-encoder rerank ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory):
    from tinymodel import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("ce") / "tiny-ce", logits=1, seed=3)


def _bm25_run(cli, texts, tmp_path) -> Path:
    corpus, queries = texts
    cli("build-index", corpus, "--spec", "BM25", "--stopwords", "none", "-o", tmp_path / "d.vpi", "-q")
    run = tmp_path / "bm25.parquet"
    assert cli("search", queries, "--index", tmp_path / "d.vpi", "-k", 5, "-o", run, "-q").exit_code == 0
    return run


def _logit(model_dir: Path, query: str, doc: str) -> float:
    from tokenizers import Tokenizer

    from vecpipe.encode.runtime import onnxruntime

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    enc = tok.encode(query, doc)
    sess = onnxruntime().InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = np.array([enc.ids], np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.array([enc.type_ids], np.int64)}
    return float(sess.run(None, feed)[0].reshape(-1)[0])


def test_cross_encoder_rerank_scores_pairs_and_keeps_depth(cli, texts, tmp_path, cross_dir):
    corpus, queries = texts
    run = _bm25_run(cli, texts, tmp_path)
    out = tmp_path / "ce.parquet"
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", corpus, "--depth", 3, "-k", 2,
              "--batch-size", 2, "-o", out)
    assert res.exit_code == 0, res.stderr
    got = _run(out)
    before = _run(run)
    texts_of = dict(CORPUS) | dict(QUERIES)
    for qid in set(got.column("qid").to_pylist()):
        mine = got.filter(pa.compute.equal(got.column("qid"), qid))
        top3 = before.filter(pa.compute.and_(pa.compute.equal(before.column("qid"), qid), pa.compute.less_equal(before.column("rank"), 3)))
        want = sorted((-_logit(cross_dir, texts_of[qid], texts_of[d]), d) for d in top3.column("docid").to_pylist())[:2]
        assert mine.column("docid").to_pylist() == [d for _, d in want]
        np.testing.assert_allclose(mine.column("score").to_numpy(), [-s for s, _ in want], rtol=1e-4, atol=1e-5)
        assert mine.column("rank").to_pylist() == list(range(1, mine.num_rows + 1))
    meta = json.loads(pq.read_schema(out).metadata[b"vecpipe"])
    assert meta["rerank"]["depth"] == 3 and meta["rerank"]["cross_encoder"]["name"] == "tiny-ce"
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", corpus, "--depth", 3, "-k", 2,
              "--batch-size", 2, "-o", out)
    assert res.exit_code == 0 and "up to date" in res.stderr
    # batching does not change the scores
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", corpus, "--depth", 3, "-k", 2,
              "--batch-size", 1, "-o", tmp_path / "ce1.parquet", "-q")
    np.testing.assert_allclose(_run(tmp_path / "ce1.parquet").column("score").to_numpy(), got.column("score").to_numpy(), atol=1e-5)


def test_cross_encoder_missing_texts_and_bad_models(cli, texts, tmp_path, cross_dir):
    from tinymodel import make_tiny_model

    corpus, queries = texts
    run = _bm25_run(cli, texts, tmp_path)
    short = _jsonl(tmp_path / "short.jsonl", CORPUS[:2])
    out = tmp_path / "o.parquet"
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", short, "-o", out)
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "without text" in res.stderr and not out.exists()
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", short, "--allow-missing", "-o", out)
    assert res.exit_code == 0 and "dropped" in res.stderr
    assert set(_run(out).column("docid").to_pylist()) <= {"d1", "d2"}
    empty_dir = tmp_path / "nomodel"
    empty_dir.mkdir()
    two = make_tiny_model(tmp_path / "two-logits", logits=2)
    emb = make_tiny_model(tmp_path / "embedder")
    for model, words in ((empty_dir, "no model.onnx"), (two, "one logit per pair"), (emb, "one logit per pair"),
                         (tmp_path / "absent", "no such")):
        res = cli("rerank", run, "--cross-encoder", model, "--queries", queries, "--corpus", corpus, "-o", tmp_path / "x.parquet")
        assert res.exit_code == 1 and res.stderr.count("\n") == 1 and words in res.stderr, (model, res.stderr)
        assert not (tmp_path / "x.parquet").exists()
    for extra, status in ((["--vectors", corpus], 2), (["--metric", "ip"], 2), (["--depth", "0"], 2)):
        res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "--corpus", corpus, *extra, "-o", tmp_path / "x.parquet")
        assert res.exit_code == status and res.stderr.count("\n") == 1, extra
    res = cli("rerank", run, "--cross-encoder", cross_dir, "--queries", queries, "-o", tmp_path / "x.parquet")
    assert res.exit_code == 2 and "--corpus" in res.stderr
    res = cli("rerank", run, "--vectors", corpus, "--queries", queries, "--depth", 5, "-o", tmp_path / "x.parquet")
    assert res.exit_code == 2 and "--cross-encoder only" in res.stderr

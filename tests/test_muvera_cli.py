"""embed --multi-vector, vecpipe fde and rerank --chamfer through the CLI (issue 13), with bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecpipe.formats import metadata
from vecpipe.formats.multivectors import multivectors_batch, multivectors_schema, read_multivectors

DOCS = [("a", "The cat sat on the mat."), ("b", "Stock markets fell sharply today."), ("c", "A kitten is resting on a rug."),
        ("d", "Interest rates rise as inflation grows.")]
QUERIES = [("q1", "cat on a mat"), ("q2", "markets and rates")]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in rows))
    return path


def _write_mv(path, ids, sets, meta=None, dim=None):
    dim = dim or next(s.shape[1] for s in sets if len(s))
    meta = meta if meta is not None else metadata.new("multivectors", dim=dim, multi_vector=True,
                                                       model={"name": "synthetic", "sha256": "0" * 64})
    schema = multivectors_schema(dim, meta)
    pq.write_table(pa.Table.from_batches([multivectors_batch(ids, sets, schema)]), path)
    return path


@pytest.fixture
def tokens(cli, tmp_path, tiny_model_dir):
    """Token vectors of the documents and queries (tiny model), written once per test."""
    d, q = tmp_path / "d.mv.parquet", tmp_path / "q.mv.parquet"
    for src, dst in ((_jsonl(tmp_path / "docs.jsonl", DOCS), d), (_jsonl(tmp_path / "q.jsonl", QUERIES), q)):
        res = cli("embed", src, "--model", tiny_model_dir, "--multi-vector", "-o", dst, "-q")
        assert res.exit_code == 0, res.stderr
    return d, q


def test_multi_vector_embedding_is_the_masked_normalised_last_hidden_state(cli, tmp_path, tiny_model_dir, tokens):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    d, _ = tokens
    ids, flat, offsets, meta = read_multivectors(d)
    assert ids == ["a", "b", "c", "d"] and meta["kind"] == "multivectors" and meta["multi_vector"] is True
    assert meta["model"]["tokens"] == "drop" and meta["dim"] == 32
    # the same table with plain nested lists (as other tools write it) reads the same
    plain = pa.table({"id": ids, "embedding": pa.array([flat[offsets[i]:offsets[i + 1]].tolist() for i in range(4)],
                                                       pa.list_(pa.list_(pa.float32())))})
    pq.write_table(plain, tmp_path / "plain.parquet")
    pids, pflat, poff, _ = read_multivectors(tmp_path / "plain.parquet")
    assert pids == ids and np.array_equal(poff, offsets) and np.array_equal(pflat, flat)
    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tok.no_padding()
    sess = ort.InferenceSession(str(tiny_model_dir / "model.onnx"))
    for i, (_, text) in enumerate(DOCS):
        enc = tok.encode(text)
        feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.ones((1, len(enc.ids)), np.int64),
                "token_type_ids": np.zeros((1, len(enc.ids)), np.int64)}
        hidden = sess.run(None, feed)[0][0]
        keep = hidden[np.array(enc.special_tokens_mask) == 0]
        want = keep / np.linalg.norm(keep, axis=1, keepdims=True)
        np.testing.assert_allclose(flat[offsets[i]:offsets[i + 1]], want, atol=2e-5)
    res = cli("embed", tmp_path / "docs.jsonl", "--model", tiny_model_dir, "--multi-vector", "--special-tokens", "keep",
              "-o", tmp_path / "keep.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    _, kflat, koff, kmeta = read_multivectors(tmp_path / "keep.parquet")
    assert kmeta["model"]["tokens"] == "keep" and np.all(np.diff(koff) == np.diff(offsets) + 2)  # [CLS] and [SEP]
    np.testing.assert_allclose(kflat[koff[0] + 1:koff[1] - 1], flat[offsets[0]:offsets[1]], atol=2e-5)


def test_embed_multi_vector_option_errors(cli, tmp_path, tiny_model_dir):
    src = _jsonl(tmp_path / "docs.jsonl", DOCS)
    for args in (["--special-tokens", "keep"], ["--multi-vector", "--pooling", "cls"], ["--multi-vector", "--special-tokens", "all"],
                 ["--multi-vector", "--shard", "0/2"], ["--multi-vector", "--precision", "int8"]):
        res = cli("embed", src, "--model", tiny_model_dir, *args, "-o", tmp_path / "x.parquet")
        assert res.exit_code == 2, (args, res.stderr)
    assert not (tmp_path / "x.parquet").exists()


def test_fde_search_and_chamfer_rerank_end_to_end(cli, tmp_path, tokens):
    d, q = tokens
    dfde, qfde = tmp_path / "d.fde.parquet", tmp_path / "q.fde.parquet"
    assert cli("fde", d, "--role", "doc", "--reps", "6", "--ksim", "2", "--dproj", "8", "--seed", "3", "-o", dfde, "-q").exit_code == 0
    assert cli("fde", q, "--role", "query", "--like", dfde, "-o", qfde, "-q").exit_code == 0
    meta = metadata.read(pq.read_schema(qfde))
    assert meta["kind"] == "vectors" and meta["dim"] == 6 * 4 * 8 and meta["metric"] == "ip"
    assert meta["model"]["fde"] == {"dim": 32, "reps": 6, "ksim": 2, "dproj": 8, "final_dim": None, "seed": 3, "version": 1,
                                    "role": "query"}
    # the encodings are the library's, bit for bit
    from vecpipe.compress.fde import FdeEncoder, FdeParams

    _, qflat, qoff, _ = read_multivectors(q)
    want = FdeEncoder(FdeParams(dim=32, reps=6, ksim=2, dproj=8, seed=3), "query").encode(qflat, qoff)
    got = pq.read_table(qfde).column("embedding").combine_chunks().flatten().to_numpy().reshape(2, -1)
    np.testing.assert_array_equal(got, want)
    assert cli("build-index", dfde, "--spec", "Flat", "-o", tmp_path / "d.vpi", "-q").exit_code == 0
    res = cli("search", qfde, "--index", tmp_path / "d.vpi", "-k", "4", "-o", tmp_path / "run.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    res = cli("rerank", tmp_path / "run.parquet", "--chamfer", d, "--queries", q, "-k", "3", "-o", tmp_path / "rr.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    run = pq.read_table(tmp_path / "rr.parquet")
    assert run.num_rows == 6
    _, dflat, doff, _ = read_multivectors(d)
    dids = ["a", "b", "c", "d"]
    for qi, qid in enumerate(["q1", "q2"]):
        exact = [float((qflat[qoff[qi]:qoff[qi + 1]] @ dflat[doff[j]:doff[j + 1]].T).max(axis=1).sum()) for j in range(4)]
        order = sorted(range(4), key=lambda j: (-exact[j], dids[j]))[:3]
        rows = [r for r in run.to_pylist() if r["qid"] == qid]
        assert [r["docid"] for r in rows] == [dids[j] for j in order]
        np.testing.assert_allclose([r["score"] for r in rows], [exact[j] for j in order], rtol=1e-5)
    # every compression works on the encodings
    for args in (["quantize", dfde, "--to", "pq", "--m", "8", "--nbits", "2"], ["binarize", dfde, "--bits", "1"]):
        out = tmp_path / f"{args[0]}.parquet"
        assert cli(*args, "-o", out, "-q").exit_code == 0
        assert cli("build-index", out, "--spec", "Flat", "-o", tmp_path / f"{args[0]}.vpi", "-q").exit_code == 0
        res = cli("search", qfde, "--index", tmp_path / f"{args[0]}.vpi", "-k", "2", "--format", "trec")
        assert res.exit_code == 0 and len(res.stdout.splitlines()) == 4, res.stderr


def test_search_refuses_query_encodings_of_other_parameters(cli, tmp_path, tokens):
    d, q = tokens
    dfde = tmp_path / "d.fde.parquet"
    assert cli("fde", d, "--role", "doc", "--reps", "2", "--ksim", "2", "--dproj", "4", "-o", dfde, "-q").exit_code == 0
    assert cli("build-index", dfde, "--spec", "Flat", "-o", tmp_path / "d.vpi", "-q").exit_code == 0
    other = tmp_path / "q.seed1.parquet"
    assert cli("fde", q, "--role", "query", "--reps", "2", "--ksim", "2", "--dproj", "4", "--seed", "1", "-o", other, "-q").exit_code == 0
    res = cli("search", other, "--index", tmp_path / "d.vpi", "-k", "2", "-o", tmp_path / "run.parquet")
    assert res.exit_code == 1 and "seed 1 vs 0" in res.stderr and "--like" in res.stderr
    assert not (tmp_path / "run.parquet").exists()
    # document encodings used as queries
    res = cli("search", dfde, "--index", tmp_path / "d.vpi", "-k", "2", "-o", tmp_path / "run.parquet")
    assert res.exit_code == 1 and "doc encodings searched" in res.stderr and not (tmp_path / "run.parquet").exists()
    # plain single vectors against an index of encodings: refused too (same dimension on purpose)
    plain = tmp_path / "plain.parquet"
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    schema = vectors_schema(32, "float32", metadata.new("vectors", dim=32, dtype="float32", metric="ip",
                                                        model=metadata.read(pq.read_schema(d))["model"]))
    pq.write_table(pa.Table.from_batches([vectors_batch(["q1"], np.ones((1, 32), np.float32), schema)]), plain)
    assert cli("fde", d, "--role", "doc", "--reps", "1", "--ksim", "0", "--dproj", "32", "-o", tmp_path / "d32.parquet", "-q").exit_code == 0
    assert cli("build-index", tmp_path / "d32.parquet", "--spec", "Flat", "-o", tmp_path / "d32.vpi", "-q").exit_code == 0
    res = cli("search", plain, "--index", tmp_path / "d32.vpi", "-k", "1")
    assert res.exit_code == 1 and "plain vectors" in res.stderr
    # --like something that is not an encoding
    res = cli("fde", q, "--role", "query", "--like", plain, "-o", tmp_path / "x.parquet")
    assert res.exit_code == 1 and "no fixed-dimensional encodings" in res.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_fde_refuses_bad_input_in_one_line(cli, tmp_path):
    rng = np.random.default_rng(0)
    sets = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 2, 4)]
    good = _write_mv(tmp_path / "good.parquet", ["x", "y", "z"], sets)
    bad_sets = [s.copy() for s in sets]
    bad_sets[1][1, 3] = np.nan
    cases = {
        "nan": (_write_mv(tmp_path / "nan.parquet", ["x", "y", "z"], bad_sets), [], 1, "'y'"),
        "dup": (_write_mv(tmp_path / "dup.parquet", ["x", "y", "x"], sets), [], 1, "'x'"),
        "dproj": (good, ["--dproj", "9"], 1, "dimension 8"),
        "ksim": (good, ["--ksim", "13"], 2, "ksim"),
        "final": (good, ["--reps", "1", "--ksim", "1", "--dproj", "4", "--final-dim", "9"], 2, "final-dim"),
        "like+reps": (good, ["--like", good, "--reps", "3"], 2, "--like"),
    }
    plain = tmp_path / "plain.parquet"
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    schema = vectors_schema(8, "float32", metadata.new("vectors", dim=8, dtype="float32"))
    pq.write_table(pa.Table.from_batches([vectors_batch(["x"], np.ones((1, 8), np.float32), schema)]), plain)
    cases["plain"] = (plain, [], 1, "--multi-vector")
    (tmp_path / "text.jsonl").write_text('{"_id": "a", "text": "hello"}\n')
    cases["text"] = (tmp_path / "text.jsonl", [], 1, "embed --multi-vector")
    for name, (src, extra, code, mention) in cases.items():
        out = tmp_path / f"out-{name}.parquet"
        res = cli("fde", src, "--role", "doc", *extra, "-o", out)
        assert res.exit_code == code, (name, res.stderr)
        assert mention in res.stderr and len(res.stderr.strip().splitlines()) == 1, (name, res.stderr)
        assert not out.exists(), name
    res = cli("fde", good, "-o", tmp_path / "x.parquet")
    assert res.exit_code == 2 and "--role" in res.stderr


def test_empty_sets_and_chamfer_rerank_errors(cli, tmp_path):
    rng = np.random.default_rng(1)
    docs = _write_mv(tmp_path / "d.parquet", ["x", "y", "z"], [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 0, 2)])
    queries = _write_mv(tmp_path / "q.parquet", ["q1"], [rng.standard_normal((2, 8)).astype(np.float32)])
    assert cli("fde", docs, "--role", "doc", "--reps", "2", "--ksim", "1", "--dproj", "4", "-o", tmp_path / "f.parquet", "-q").exit_code == 0
    enc = pq.read_table(tmp_path / "f.parquet").column("embedding").combine_chunks().flatten().to_numpy().reshape(3, -1)
    assert not enc[1].any() and enc[0].any()  # a document without vectors encodes as zeros
    run = tmp_path / "run.tsv"
    run.write_text("q1 Q0 x 1 1.0 t\nq1 Q0 y 2 0.5 t\nq1 Q0 w 3 0.2 t\n")
    res = cli("rerank", run, "--chamfer", docs, "--queries", queries, "-o", tmp_path / "rr.parquet")
    assert res.exit_code == 1 and "1 documents" in res.stderr and "--allow-missing" in res.stderr
    assert not (tmp_path / "rr.parquet").exists()
    res = cli("rerank", run, "--chamfer", docs, "--queries", queries, "--allow-missing", "-o", tmp_path / "rr.parquet", "-q")
    assert res.exit_code == 0, res.stderr
    assert pq.read_table(tmp_path / "rr.parquet").column("docid").to_pylist() == ["x", "y"]  # y: no vectors, score 0
    other = _write_mv(tmp_path / "q16.parquet", ["q1"], [rng.standard_normal((2, 16)).astype(np.float32)])
    res = cli("rerank", run, "--chamfer", docs, "--queries", other, "--allow-missing", "-o", tmp_path / "x.parquet")
    assert res.exit_code == 1 and "dimension 16" in res.stderr
    res = cli("rerank", run, "--chamfer", docs, "--queries", queries, "--vectors", docs)
    assert res.exit_code == 2 and "--vectors" in res.stderr
    res = cli("rerank", run, "--chamfer", docs)
    assert res.exit_code == 2 and "--queries" in res.stderr

"""quantize, binarize, build-index/search over compressed codes, search --rescore; their errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from conftest import clustered, write_vectors

from vecpipe.compress import codecs
from vecpipe.formats.vectors import read_vectors

MODEL = {"name": "fake-model", "sha256": "ab" * 32}
OTHER_MODEL = {"name": "other-model", "sha256": "cd" * 32}


def _run(stdout: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(stdout)).read_all()


def _topk(run: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for q, d in zip(run.column("qid").to_pylist(), run.column("docid").to_pylist()):
        out.setdefault(q, []).append(d)
    return out


def _overlap(a: dict, b: dict) -> float:
    return float(np.mean([len(set(a[q]) & set(b[q])) / len(b[q]) for q in b]))


@pytest.fixture
def corpus(tmp_path):
    docs = clustered(1200, 64, seed=5)
    rng = np.random.default_rng(6)
    q = docs[rng.choice(1200, 30, replace=False)] + 0.05 * rng.standard_normal((30, 64)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    d_path = write_vectors(tmp_path / "docs.arrow", docs, meta={"model": MODEL})
    q_path = write_vectors(tmp_path / "queries.arrow", q, prefix="q", meta={"model": MODEL})
    return d_path, q_path, docs, q


def _exact(cli, tmp_path, docs, queries, k=10):
    idx = tmp_path / "flat.vpi"
    assert cli("build-index", docs, "-o", idx, "-q").exit_code == 0
    res = cli("search", queries, "-i", idx, "-k", k, "-q")
    assert res.exit_code == 0, res.output
    return _topk(_run(res.stdout_bytes))


@pytest.mark.parametrize("to,dtype,width,min_overlap", [
    ("int8", pa.int8(), 64, 0.9), ("uint8", pa.uint8(), 64, 0.9), ("fp16", pa.float16(), 64, 0.99),
    ("pq", pa.uint8(), 16, 0.5),
])
def test_quantize_build_search(cli, tmp_path, corpus, to, dtype, width, min_overlap):
    docs, queries, matrix, _ = corpus
    out = tmp_path / f"docs.{to}.parquet"
    args = ["quantize", docs, "--to", to, "-o", out]
    if to == "pq":
        args += ["--m", 16, "--nbits", 8, "--train-size", 1000, "--seed", 3]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    v = read_vectors(out)
    assert v.matrix.shape == (1200, width)
    assert pa.from_numpy_dtype(v.matrix.dtype) == dtype
    comp = v.meta["compression"]
    assert comp["method"] == to and comp["dim"] == 64 and comp["source_dim"] == 64
    assert v.meta["model"] == MODEL and v.meta["dim"] == 64
    rec = codecs.decode(v.matrix, comp, 64)
    err = np.abs(rec - matrix).max()
    assert err < {"int8": 0.01, "uint8": 0.01, "fp16": 1e-3, "pq": 0.5}[to]
    idx = tmp_path / f"{to}.vpi"
    res = cli("build-index", out, "-o", idx)
    assert res.exit_code == 0, res.output
    from vecpipe.index import load_index

    loaded = load_index(idx)
    # the index holds exactly the stored codes: its reconstruction is the codec's decode
    assert np.allclose(loaded.index.reconstruct_n(0, 50), rec[:50], atol=1e-6)
    res = cli("search", queries, "-i", idx, "-k", 10, "-q")
    assert res.exit_code == 0, res.output
    assert _overlap(_topk(_run(res.stdout_bytes)), _exact(cli, tmp_path, docs, queries)) >= min_overlap


def test_int8_codes_are_faiss_sq8_codes_minus_128(tmp_path, corpus):
    import faiss

    from vecpipe.api import quantize

    docs, _, matrix, _ = corpus
    quantize(docs, tmp_path / "u.arrow", to="uint8")
    quantize(docs, tmp_path / "i.arrow", to="int8")
    u, i = read_vectors(tmp_path / "u.arrow").matrix, read_vectors(tmp_path / "i.arrow").matrix
    sq = faiss.IndexScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit)
    sq.train(matrix)
    assert np.array_equal(sq.sa_encode(matrix), u)
    assert np.array_equal(i.astype(np.int16) + 128, u.astype(np.int16))


def test_quantize_is_deterministic_and_pq_codebooks_travel(tmp_path, corpus):
    from vecpipe.api import quantize

    docs, _, matrix, _ = corpus
    for name in ("a", "b"):
        quantize(docs, tmp_path / f"{name}.parquet", to="pq", m=8, train_size=500, seed=1)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    v = read_vectors(tmp_path / "a.parquet")
    assert v.meta["compression"]["train_size"] == 500 and v.meta["compression"]["seed"] == 1
    pq = codecs.pq_object(v.meta["compression"], 64)
    assert np.array_equal(pq.compute_codes(matrix), v.matrix)


def test_like_applies_the_corpus_calibration_to_a_single_query(cli, tmp_path, corpus):
    docs, _, _matrix, q = corpus
    assert cli("quantize", docs, "--to", "int8", "-o", tmp_path / "d.arrow").exit_code == 0
    one = write_vectors(tmp_path / "one.arrow", q[:1], prefix="q", meta={"model": MODEL})
    res = cli("quantize", one, "--like", tmp_path / "d.arrow", "-o", tmp_path / "q.arrow")
    assert res.exit_code == 0, res.output
    qv, dv = read_vectors(tmp_path / "q.arrow"), read_vectors(tmp_path / "d.arrow")
    assert qv.meta["compression"] == dv.meta["compression"]
    assert np.array_equal(qv.matrix[0], codecs.encode(q[:1], dv.meta["compression"], 64)[0])
    assert len(np.unique(qv.matrix[0])) > 10  # not degenerate (its own range would give 0 and 255 only)
    # query codes are accepted by search (decoded with the calibration they carry)
    assert cli("build-index", tmp_path / "d.arrow", "-o", tmp_path / "d.vpi", "-q").exit_code == 0
    res = cli("search", tmp_path / "q.arrow", "-i", tmp_path / "d.vpi", "-k", 5, "-q")
    assert res.exit_code == 0, res.output
    res2 = cli("search", one, "-i", tmp_path / "d.vpi", "-k", 5, "-q")
    assert _topk(_run(res.stdout_bytes))["q0"][0] == _topk(_run(res2.stdout_bytes))["q0"][0]
    # --like a .vpi index works too
    res = cli("quantize", one, "--like", tmp_path / "d.vpi", "-o", tmp_path / "q2.arrow")
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_vectors(tmp_path / "q2.arrow").matrix, qv.matrix)


def test_matryoshka_truncation(cli, tmp_path, corpus):
    docs, queries, matrix, q = corpus
    res = cli("quantize", docs, "--dim", 32, "-o", tmp_path / "t.arrow")
    assert res.exit_code == 0, res.output
    v = read_vectors(tmp_path / "t.arrow")
    assert v.matrix.shape == (1200, 32) and v.matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(v.matrix, axis=1), 1, atol=1e-5)
    expect = matrix[:, :32] / np.linalg.norm(matrix[:, :32], axis=1, keepdims=True)
    assert np.allclose(v.matrix, expect, atol=1e-6)
    res = cli("quantize", docs, "--dim", 32, "--to", "int8", "-o", tmp_path / "t8.arrow")
    assert res.exit_code == 0, res.output
    assert read_vectors(tmp_path / "t8.arrow").meta["compression"]["source_dim"] == 64
    for art in ("t.arrow", "t8.arrow"):
        assert cli("build-index", tmp_path / art, "-o", tmp_path / "t.vpi", "-q").exit_code == 0
        # full-dimension float queries are truncated and renormalised as the index records
        res = cli("search", queries, "-i", tmp_path / "t.vpi", "-k", 5, "-q")
        assert res.exit_code == 0, res.output
        run = _run(res.stdout_bytes)
        qt = q[:, :32] / np.linalg.norm(q[:, :32], axis=1, keepdims=True)
        best = np.argmax(qt @ expect.T, axis=1)
        top1 = [d for d, r in zip(run.column("docid").to_pylist(), run.column("rank").to_pylist()) if r == 1]
        assert np.mean([t == f"d{b}" for t, b in zip(top1, best)]) >= 0.9


def test_binarize_one_bit_layout_and_center(cli, tmp_path):
    x = np.array([[0.5, -0.1, 0.2, -0.3, 0.0, 0.1, -0.2, 0.9, 0.4, -0.4]], dtype=np.float32)
    path = write_vectors(tmp_path / "x.arrow", x, meta={"metric": "ip", "normalized": False})
    res = cli("binarize", path, "--bits", 1, "-o", tmp_path / "b.arrow")
    assert res.exit_code == 0, res.output
    v = read_vectors(tmp_path / "b.arrow")
    assert v.matrix.dtype == np.uint8 and v.matrix.shape == (1, 2)
    # big-endian within a byte: dimension 0 is the most significant bit; 0.0 is not above 0
    assert v.matrix[0].tolist() == [0b10100101, 0b10000000]
    comp = v.meta["compression"]
    assert comp["method"] == "binary" and comp["bits"] == 1 and comp["threshold"] == "zero" and comp["bit_order"] == "big"
    docs = clustered(200, 16, seed=2) + 0.3
    path = write_vectors(tmp_path / "d.arrow", docs.astype(np.float32), meta={"metric": "ip", "normalized": False})
    assert cli("binarize", path, "--bits", 1, "--center", "-o", tmp_path / "c.arrow").exit_code == 0
    v = read_vectors(tmp_path / "c.arrow")
    mean = docs.astype(np.float32).mean(axis=0)
    assert np.allclose(v.meta["compression"]["mean"], mean, atol=1e-6)
    assert np.array_equal(v.matrix, np.packbits(docs > mean, axis=1))


@pytest.mark.parametrize("spec", ["BFlat", "Flat", "BHNSW32", "BIVF8"])
def test_binary_indexes_search_by_hamming(cli, tmp_path, corpus, spec):
    docs, queries, matrix, q = corpus
    assert cli("binarize", docs, "--bits", 1, "-o", tmp_path / "b.arrow").exit_code == 0
    nprobe = ["--nprobe", 8] if "IVF" in spec else []  # refused where it does not apply (issue 16)
    res = cli("build-index", tmp_path / "b.arrow", "--spec", spec, "-o", tmp_path / "b.vpi", *nprobe)
    assert res.exit_code == 0, res.output
    from vecpipe.formats import vpi

    meta = vpi.read_header(tmp_path / "b.vpi")["meta"]
    assert meta["metric"] == "hamming" and meta["binary"] and meta["dim"] == 64
    res = cli("search", queries, "-i", tmp_path / "b.vpi", "-k", 10, "-q")
    assert res.exit_code == 0, res.output
    run = _run(res.stdout_bytes)
    qb, db = np.packbits(q > 0, axis=1), np.packbits(matrix > 0, axis=1)
    ham = np.unpackbits(qb[:, None, :] ^ db[None, :, :], axis=2).sum(axis=2).astype(np.int64)
    scores = run.column("score").to_numpy()
    if spec in ("BFlat", "Flat"):
        # scores are negated Hamming distances, best first, ties by docid
        exp = -np.sort(ham, axis=1)[:, :10]
        assert np.array_equal(scores.reshape(30, 10), exp)
        assert set(np.unique(scores)) <= set(-np.arange(65.0))
        # queries binarized with binarize --like give the same run as float queries
        assert cli("binarize", queries, "--like", tmp_path / "b.arrow", "-o", tmp_path / "qb.arrow").exit_code == 0
        res2 = cli("search", tmp_path / "qb.arrow", "-i", tmp_path / "b.vpi", "-k", 10, "-q")
        assert res2.exit_code == 0, res2.output
        assert _run(res2.stdout_bytes).equals(run)
    assert _overlap(_topk(run), _exact(cli, tmp_path, docs, queries)) >= 0.3


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_residual_binarization_scores_float_queries_against_the_reconstruction(cli, tmp_path, corpus, bits):
    docs, queries, matrix, q = corpus
    res = cli("binarize", docs, "--bits", bits, "-o", tmp_path / "r.parquet")
    assert res.exit_code == 0, res.output
    v = read_vectors(tmp_path / "r.parquet")
    assert v.matrix.shape == (1200, 64 * bits // 8)
    comp = v.meta["compression"]
    assert comp["method"] == "residual" and len(comp["alpha"]) == bits
    # the recurrence as the issue states it
    mu = matrix.mean(axis=0)
    r = matrix - mu
    planes, recon = [], np.broadcast_to(mu, matrix.shape).copy()
    for t in range(bits):
        alpha = np.abs(r).mean(axis=0)
        b = np.where(r >= 0, 1.0, -1.0).astype(np.float32)
        assert np.allclose(comp["alpha"][t], alpha, atol=1e-5)
        r = r - alpha * b
        recon += alpha * b
        planes.append(b > 0)
    # deep planes code residuals near 0, where float rounding may flip a rare sign
    flips = np.unpackbits(v.matrix ^ np.packbits(np.concatenate(planes, axis=1), axis=1)).mean()
    assert flips == 0 if bits <= 4 else flips < 1e-3
    dec = codecs.decode(v.matrix, comp, 64)
    if bits <= 4:
        assert np.allclose(dec, recon, atol=1e-5)
        assert np.allclose(matrix - dec, r, atol=1e-5)  # what remains is the last residual
    assert cli("build-index", tmp_path / "r.parquet", "-o", tmp_path / "r.vpi", "-q").exit_code == 0
    res = cli("search", queries, "-i", tmp_path / "r.vpi", "-k", 10, "-q")
    assert res.exit_code == 0, res.output
    run = _run(res.stdout_bytes)
    exp = np.sort(q @ dec.T, axis=1)[:, ::-1][:, :10]
    assert np.allclose(run.column("score").to_numpy().reshape(30, 10), exp, atol=1e-4)
    assert _overlap(_topk(run), _exact(cli, tmp_path, docs, queries)) >= (0.4 if bits < 4 else 0.6)


def test_pipes_quantize_from_stdin_to_stdout_and_build_from_stdin(cli, tmp_path, corpus):
    docs, queries, _, _ = corpus
    res = cli("quantize", "-", "--to", "uint8", input=docs.read_bytes())
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes.startswith(b"\xff\xff\xff\xff")
    res2 = cli("build-index", "-", "-o", tmp_path / "p.vpi", "-q", input=res.stdout_bytes)
    assert res2.exit_code == 0, res2.output
    res3 = cli("binarize", "-", "--bits", 2, input=docs.read_bytes())
    assert res3.exit_code == 0
    assert cli("build-index", "-", "-o", tmp_path / "r.vpi", "-q", input=res3.stdout_bytes).exit_code == 0
    res4 = cli("search", "-", "-i", tmp_path / "r.vpi", "-k", 3, "--format", "trec", "-o", tmp_path / "r.trec", input=queries.read_bytes())
    assert res4.exit_code == 0, res4.output
    assert len((tmp_path / "r.trec").read_text().splitlines()) == 90


def test_search_rescore_returns_exact_scores(cli, tmp_path, corpus):
    docs, queries, matrix, q = corpus
    assert cli("binarize", docs, "--bits", 1, "-o", tmp_path / "b.arrow").exit_code == 0
    assert cli("build-index", tmp_path / "b.arrow", "-o", tmp_path / "b.vpi", "-q").exit_code == 0
    exact = _exact(cli, tmp_path, docs, queries, k=5)
    plain = _topk(_run(cli("search", queries, "-i", tmp_path / "b.vpi", "-k", 5, "-q").stdout_bytes))
    res = cli("search", queries, "-i", tmp_path / "b.vpi", "-k", 5, "--rescore", docs, "--rescore-multiplier", 20, "-q")
    assert res.exit_code == 0, res.output
    run = _run(res.stdout_bytes)
    assert run.num_rows == 150 and run.column("rank").to_pylist()[:5] == [1, 2, 3, 4, 5]
    got = _topk(run)
    assert _overlap(got, exact) >= 0.95 and _overlap(got, exact) >= _overlap(plain, exact)
    # scores are the exact float inner products
    idx = {f"d{i}": i for i in range(1200)}
    for qi in (0, 7):
        rows = [(d, s) for qq, d, s in zip(*(run.column(c).to_pylist() for c in ("qid", "docid", "score"))) if qq == f"q{qi}"]
        for d, s in rows:
            assert abs(s - float(q[qi] @ matrix[idx[d]])) < 1e-5
    from vecpipe.formats import metadata

    assert metadata.read(run.schema)["rescore"] == {"multiplier": 20, "metric": "cos"}


# ------------------------------------------------------------------------------------------ errors


def _one_line_error(res, code=1):
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vecpipe: error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("bits", [0, 9, -1])
def test_bits_outside_range(cli, tmp_path, corpus, bits):
    docs = corpus[0]
    msg = _one_line_error(cli("binarize", docs, "--bits", bits, "-o", tmp_path / "x.arrow"), code=2)  # usage (issue 7)
    assert "--bits" in msg
    assert not (tmp_path / "x.arrow").exists()


def test_pq_m_must_divide_dim(cli, tmp_path, corpus):
    msg = _one_line_error(cli("quantize", corpus[0], "--to", "pq", "--m", 7, "-o", tmp_path / "x.arrow"), code=2)
    assert "--m 7" in msg and "64" in msg
    assert not (tmp_path / "x.arrow").exists()


def test_like_of_another_kind(cli, tmp_path, corpus):
    docs = corpus[0]
    assert cli("binarize", docs, "--bits", 1, "-o", tmp_path / "b.arrow").exit_code == 0
    assert cli("quantize", docs, "--to", "int8", "-o", tmp_path / "i.arrow").exit_code == 0
    msg = _one_line_error(cli("quantize", corpus[1], "--like", tmp_path / "b.arrow", "-o", tmp_path / "x.arrow"))
    assert "binary" in msg and "binarize --like" in msg
    _one_line_error(cli("binarize", corpus[1], "--like", tmp_path / "i.arrow", "-o", tmp_path / "x.arrow"))
    _one_line_error(cli("quantize", corpus[1], "--to", "uint8", "--like", tmp_path / "i.arrow", "-o", tmp_path / "x.arrow"), code=2)
    _one_line_error(cli("quantize", corpus[1], "--like", docs, "-o", tmp_path / "x.arrow"))  # uncompressed
    assert not (tmp_path / "x.arrow").exists()


def test_like_with_another_model_or_dimension(cli, tmp_path, corpus):
    docs, _, _, q = corpus
    assert cli("quantize", docs, "--to", "int8", "-o", tmp_path / "i.arrow").exit_code == 0
    other = write_vectors(tmp_path / "o.arrow", q, prefix="q", meta={"model": OTHER_MODEL})
    msg = _one_line_error(cli("quantize", other, "--like", tmp_path / "i.arrow", "-o", tmp_path / "x.arrow"))
    assert "other-model" in msg
    small = write_vectors(tmp_path / "s.arrow", clustered(5, 32, seed=1), prefix="q", meta={"model": MODEL})
    msg = _one_line_error(cli("quantize", small, "--like", tmp_path / "i.arrow", "-o", tmp_path / "x.arrow"))
    assert "32" in msg and "64" in msg
    _one_line_error(cli("quantize", docs, "--dim", 100, "-o", tmp_path / "x.arrow"), code=2)
    assert not (tmp_path / "x.arrow").exists()


def test_searching_a_compressed_index_with_another_model_or_dimension(cli, tmp_path, corpus):
    docs, _, _, q = corpus
    assert cli("quantize", docs, "--to", "int8", "-o", tmp_path / "i.arrow").exit_code == 0
    assert cli("build-index", tmp_path / "i.arrow", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    other = write_vectors(tmp_path / "o.arrow", q, prefix="q", meta={"model": OTHER_MODEL})
    _one_line_error(cli("search", other, "-i", tmp_path / "i.vpi", "-o", tmp_path / "run.arrow"))
    small = write_vectors(tmp_path / "s.arrow", clustered(5, 32, seed=1), prefix="q", meta={"model": MODEL})
    _one_line_error(cli("search", small, "-i", tmp_path / "i.vpi", "-o", tmp_path / "run.arrow"))
    assert not (tmp_path / "run.arrow").exists()


def test_compressing_codes_and_bad_specs_are_refused(cli, tmp_path, corpus):
    docs = corpus[0]
    assert cli("quantize", docs, "--to", "int8", "-o", tmp_path / "i.arrow").exit_code == 0
    _one_line_error(cli("quantize", tmp_path / "i.arrow", "--to", "pq", "-o", tmp_path / "x.arrow"))
    _one_line_error(cli("binarize", tmp_path / "i.arrow", "--bits", 1, "-o", tmp_path / "x.arrow"))
    _one_line_error(cli("build-index", tmp_path / "i.arrow", "--spec", "HNSW32", "-o", tmp_path / "x.vpi", "-q"), code=2)
    assert cli("binarize", docs, "--bits", 1, "-o", tmp_path / "b.arrow").exit_code == 0
    _one_line_error(cli("build-index", tmp_path / "b.arrow", "--metric", "ip", "-o", tmp_path / "x.vpi"), code=2)
    _one_line_error(cli("quantize", docs, "-o", tmp_path / "x.arrow"), code=2)
    assert not (tmp_path / "x.arrow").exists() and not (tmp_path / "x.vpi").exists()


def test_help_of_new_commands(cli):
    for cmd in ("quantize", "binarize", "rerank"):
        res = cli(cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.output


def test_binary_codes_are_padded_to_a_fast_width_without_changing_distances(cli, tmp_path):
    docs = clustered(300, 40, seed=8)  # 5 bytes of bits, stored as 8
    q = clustered(7, 40, seed=9)
    d_path = write_vectors(tmp_path / "d.arrow", docs)
    q_path = write_vectors(tmp_path / "q.arrow", q, prefix="q")
    assert cli("binarize", d_path, "--bits", 1, "-o", tmp_path / "b.arrow").exit_code == 0
    assert read_vectors(tmp_path / "b.arrow").matrix.shape == (300, 5)
    assert cli("build-index", tmp_path / "b.arrow", "-o", tmp_path / "b.vpi", "-q").exit_code == 0
    from vecpipe.index import load_index

    assert load_index(tmp_path / "b.vpi").index.code_size == 8
    res = cli("search", q_path, "-i", tmp_path / "b.vpi", "-k", 300, "-q")
    assert res.exit_code == 0, res.output
    run = _run(res.stdout_bytes)
    ham = np.unpackbits(np.packbits(q > 0, axis=1)[:, None] ^ np.packbits(docs > 0, axis=1)[None], axis=2).sum(axis=2)
    assert np.array_equal(run.column("score").to_numpy().reshape(7, 300), -np.sort(ham, axis=1).astype(np.float32))


def test_one_bit_binarize_to_a_file_streams_and_equals_the_whole_read(cli, tmp_path):
    """Sign bits to a file are coded part by part (Parquet read in 65,536-row batches): the same
    table as the whole-input path (stdout), and a bad row in a later part leaves nothing behind."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((70_000, 12)) * 3).astype(np.float32)  # cos metric, not unit length
    path = write_vectors(tmp_path / "x.parquet", x, meta={"metric": "cos", "normalized": False, "model": MODEL})
    res = cli("binarize", path, "--bits", 1, "-o", tmp_path / "b.arrow")
    assert res.exit_code == 0, res.output
    whole = cli("binarize", path, "--bits", 1)
    assert whole.exit_code == 0, whole.output
    streamed = ipc.open_file(str(tmp_path / "b.arrow")).read_all()
    from_stdout = _run(whole.stdout_bytes)
    assert streamed.equals(from_stdout)
    meta = json.loads(streamed.schema.metadata[b"vecpipe"])
    assert meta.pop("manifest")["stage"] == "binarize"  # a file output records its manifest; stdout has none
    assert meta == json.loads(from_stdout.schema.metadata[b"vecpipe"])
    assert np.array_equal(read_vectors(tmp_path / "b.arrow").matrix, np.packbits(x > 0, axis=1))

    bad = x.copy()
    bad[69_000, 3] = np.nan  # in the second part, after the first was coded
    bad_path = write_vectors(tmp_path / "bad.parquet", bad, meta={"metric": "cos", "normalized": False})
    before = (tmp_path / "b.arrow").read_bytes()
    res = cli("binarize", bad_path, "--bits", 1, "-o", tmp_path / "b.arrow")
    assert res.exit_code == 1 and "d69000" in res.stderr and "finite" in res.stderr, res.stderr
    assert (tmp_path / "b.arrow").read_bytes() == before
    ids = [f"d{i}" for i in range(70_000)]
    ids[68_000] = "d5"  # repeats an id of the first part
    dup_path = write_vectors(tmp_path / "dup.parquet", x, meta={"metric": "cos"}, ids=ids)
    res = cli("binarize", dup_path, "--bits", 1, "-o", tmp_path / "c.arrow")
    assert res.exit_code == 1 and "'d5'" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "c.arrow").exists() and list(tmp_path.glob("*c.arrow*")) == []

"""Search-time techniques from the literature (issue 12): hubness reduction (search --hubness),
calibrated relevance cutoffs (calibrate, cut, search --min-prob) and vector pseudo-relevance
feedback (search --prf)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import clustered, write_vectors

from vecpipe.index.hubness import HubnessSearch, direct_scores, hubness_stats, log_z


def _run(path) -> pa.Table:
    return pq.read_table(path)


def _meta(path) -> dict:
    return json.loads(pq.read_schema(path).metadata[b"vecpipe"])


def _one_line_error(res, code: int) -> str:
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.fixture
def corpus(tmp_path, cli):
    """200 clustered docs, a Flat index over them, 30 test queries and a bank of 60 other queries."""
    docs = clustered(200, 16, seed=3)
    rng = np.random.default_rng(4)
    near = docs[rng.choice(200, 90, replace=False)] + 0.3 * rng.standard_normal((90, 16)).astype(np.float32)
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    d = write_vectors(tmp_path / "docs.parquet", docs)
    write_vectors(tmp_path / "q.parquet", near[:30].astype(np.float32), prefix="q")
    write_vectors(tmp_path / "bank.parquet", near[30:].astype(np.float32), prefix="b")
    res = cli("build-index", d, "--spec", "Flat", "-o", tmp_path / "flat.vpi", "-q")
    assert res.exit_code == 0, res.stderr
    return tmp_path, docs, near[:30].astype(np.float32), near[30:].astype(np.float32)


# ------------------------------------------------------------------------------------------ hubness


def _naive_log_z(method, docs, bank, beta):
    out = []
    for i, d in enumerate(docs.astype(np.float64)):
        z = np.log(np.sum(np.exp(beta * bank.astype(np.float64) @ d)))
        if method == "dbnorm":
            others = np.delete(docs.astype(np.float64), i, axis=0)
            z += np.log(np.sum(np.exp(beta * others @ d)))
        out.append(z)
    return np.array(out)


@pytest.mark.parametrize("method", ["qbnorm", "dbnorm"])
def test_log_z_and_the_augmented_search_rank_as_the_formula(method):
    docs = clustered(150, 12, seed=5)
    rng = np.random.default_rng(6)
    bank = clustered(40, 12, seed=7)
    queries = docs[rng.choice(150, 25, replace=False)] + 0.2 * rng.standard_normal((25, 12)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    beta = 8.0
    kept = docs.copy(), bank.copy(), queries.copy()
    logz = log_z(method, docs, bank, beta)
    np.testing.assert_allclose(logz, _naive_log_z(method, docs, bank, beta), rtol=1e-10)
    direct = direct_scores(method, queries, docs, logz, beta)
    scores, labels = HubnessSearch(docs, logz, method, beta, "cos").search(queries, 20)
    for qi in range(len(queries)):
        want = np.sort(direct[qi])[::-1][:20]
        np.testing.assert_allclose(scores[qi], want, rtol=1e-5, atol=1e-4)  # same scores, in the same order
        np.testing.assert_allclose(direct[qi][labels[qi]], scores[qi], rtol=1e-5, atol=1e-4)  # of the same documents
    for before, after in zip(kept, (docs, bank, queries)):  # inputs never modified (the reference QB-Norm code does)
        assert np.array_equal(before, after)
    # The normalisation changes the ranking (else the test above could not tell anything apart).
    assert (labels[:, :10] != np.argsort(-(queries @ docs.T), axis=1)[:, :10]).any()


def test_hubness_stats_by_hand():
    labels = np.array([[0, 1], [0, 2], [0, 1], [0, -1]])
    stats = hubness_stats(labels, n_docs=5)
    counts = np.array([4, 2, 1, 0, 0], dtype=float)
    skew = ((counts - counts.mean()) ** 3).mean() / counts.std() ** 3
    assert stats["never_retrieved"] == pytest.approx(0.4)
    assert stats["skewness"] == pytest.approx(skew)
    assert stats["max_occurrence"] == 4


def test_search_hubness_writes_the_formula_and_keeps_log_z_beside_the_index(cli, corpus):
    tmp, docs, queries, bank = corpus
    out = tmp / "h.parquet"
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "5", "-o", out)
    assert res.exit_code == 0, res.stderr
    art = tmp / "flat.vpi.qbnorm.logz.parquet"
    assert art.exists() and "log Z(d) of 200 documents" in res.stderr
    logz = pq.read_table(art).column("logz").to_numpy()
    np.testing.assert_allclose(logz, _naive_log_z("qbnorm", docs, bank, 5.0), rtol=1e-6)
    run = _run(out)
    direct = direct_scores("qbnorm", queries, docs, logz, 5.0)
    first = run.filter(pa.compute.equal(run["qid"], "q0"))
    want = np.argsort(-direct[0], kind="stable")[:10]
    assert first["docid"].to_pylist() == [f"d{i}" for i in want]
    np.testing.assert_allclose(first["score"].to_numpy(), direct[0][want], rtol=1e-5, atol=1e-4)
    meta = _meta(out)
    assert meta["hubness"] == {"method": "qbnorm", "beta": 5.0}
    assert meta["manifest"]["params"]["hubness"] == "qbnorm" and "bank" in meta["manifest"]["inputs"]
    # A second search reuses the artifact (not rewritten); another beta rebuilds it.
    stamp = art.stat().st_mtime_ns
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "5", "-o", tmp / "h2.parquet")
    assert res.exit_code == 0 and "log Z" not in res.stderr and art.stat().st_mtime_ns == stamp
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "9", "-o", tmp / "h3.parquet")
    assert res.exit_code == 0 and "log Z(d) of 200" in res.stderr
    np.testing.assert_allclose(pq.read_table(art).column("logz").to_numpy(), _naive_log_z("qbnorm", docs, bank, 9.0), rtol=1e-6)
    # The run itself is up to date until its bank changes.
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "9", "-o", tmp / "h3.parquet")
    assert res.exit_code == 0 and "up to date" in res.stderr
    write_vectors(tmp / "bank.parquet", bank[:40], prefix="b")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "9", "-o", tmp / "h3.parquet")
    assert res.exit_code == 0 and "up to date" not in res.stderr and "log Z(d) of 200" in res.stderr
    np.testing.assert_allclose(pq.read_table(art).column("logz").to_numpy(), _naive_log_z("qbnorm", docs, bank[:40], 9.0), rtol=1e-6)
    # A damaged artifact is not trusted: rebuilt.
    art.write_bytes(b"PAR1 garbage")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "qbnorm",
              "--bank", tmp / "bank.parquet", "--beta", "9", "-o", tmp / "h4.parquet", "--force")
    assert res.exit_code == 0 and "log Z(d) of 200" in res.stderr
    assert _run(tmp / "h4.parquet").equals(_run(tmp / "h3.parquet"))


def test_search_dbnorm_from_rescore_vectors_equals_from_the_index(cli, corpus):
    tmp, _docs, _queries, _bank = corpus
    cli("build-index", tmp / "docs.parquet", "--spec", "SQ8", "-o", tmp / "sq.vpi", "-q")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "sq.vpi", "-k", "10", "--hubness", "dbnorm", "--bank", tmp / "bank.parquet")
    assert "does not keep its vectors exactly" in _one_line_error(res, 1)
    a, b = tmp / "a.parquet", tmp / "b.parquet"
    assert cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--hubness", "dbnorm",
               "--bank", tmp / "bank.parquet", "-o", a).exit_code == 0
    res = cli("search", tmp / "q.parquet", "--index", tmp / "sq.vpi", "-k", "10", "--hubness", "dbnorm",
              "--bank", tmp / "bank.parquet", "--rescore", tmp / "docs.parquet", "-o", b)
    assert res.exit_code == 0, res.stderr
    ra, rb = _run(a), _run(b)
    assert ra["docid"].to_pylist() == rb["docid"].to_pylist()
    np.testing.assert_allclose(ra["score"].to_numpy(), rb["score"].to_numpy(), rtol=1e-5, atol=1e-4)


def test_hubness_bad_input(cli, corpus, tmp_path):
    tmp, docs, queries, bank = corpus
    base = ["search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "5", "-o", tmp / "bad.parquet"]
    assert "--bank" in _one_line_error(cli(*base, "--hubness", "qbnorm"), 2)
    assert "--hubness" in _one_line_error(cli(*base, "--bank", tmp / "bank.parquet"), 2)
    _one_line_error(cli(*base, "--hubness", "qbnorm", "--bank", tmp / "bank.parquet", "--beta", "0"), 2)
    _one_line_error(cli(*base, "--hubness", "zscore", "--bank", tmp / "bank.parquet"), 2)
    write_vectors(tmp / "bank8.parquet", clustered(10, 8, seed=1), prefix="b")
    assert "dimension 8" in _one_line_error(cli(*base, "--hubness", "qbnorm", "--bank", tmp / "bank8.parquet"), 1)
    other = {"model": {"name": "other-model", "sha256": "f" * 64, "pooling": "mean", "normalize": True}}
    write_vectors(tmp / "docs_m.parquet", docs, meta=other)
    cli("build-index", tmp / "docs_m.parquet", "--spec", "Flat", "-o", tmp / "m.vpi", "-q")
    write_vectors(tmp / "bank_m.parquet", bank, prefix="b",
                  meta={"model": {"name": "third-model", "sha256": "e" * 64, "pooling": "mean", "normalize": True}})
    res = cli("search", tmp / "q.parquet", "--index", tmp / "m.vpi", "-k", "5", "--hubness", "qbnorm", "--bank", tmp / "bank_m.parquet",
              "--allow-mismatch", "-o", tmp / "ok.parquet")
    assert res.exit_code == 0, res.stderr  # --allow-mismatch lets it through, as everywhere
    write_vectors(tmp / "q_m.parquet", queries, prefix="q", meta=other)
    res = cli("search", tmp / "q_m.parquet", "--index", tmp / "m.vpi", "-k", "5", "--hubness", "qbnorm", "--bank", tmp / "bank_m.parquet",
              "-o", tmp / "bad.parquet")
    assert "third-model" in _one_line_error(res, 1)
    nan = bank.copy()
    nan[3, 2] = np.nan
    write_vectors(tmp / "bank_nan.parquet", nan, prefix="b")
    assert "b3" in _one_line_error(cli(*base, "--hubness", "qbnorm", "--bank", tmp / "bank_nan.parquet"), 1)
    cli("build-index", tmp / "docs.parquet", "--spec", "Flat", "--metric", "l2", "-o", tmp / "l2.vpi", "-q")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "l2.vpi", "-k", "5", "--hubness", "qbnorm", "--bank", tmp / "bank.parquet",
              "-o", tmp / "bad.parquet")
    assert "l2" in _one_line_error(res, 1)
    assert not (tmp / "bad.parquet").exists()


# ---------------------------------------------------------------------------------------------- PRF


def test_prf_is_rocchio_over_the_top_k(cli, corpus):
    tmp, docs, queries, _bank = corpus
    out = tmp / "p.parquet"
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--prf", "3", "--prf-alpha", "0.7",
              "--prf-beta", "0.4", "-o", out)
    assert res.exit_code == 0, res.stderr
    sims = queries @ docs.T
    first = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    q2 = 0.7 * queries + 0.4 * docs[first].mean(axis=1)
    q2 /= np.linalg.norm(q2, axis=1, keepdims=True)
    want = np.argsort(-(q2 @ docs.T), axis=1, kind="stable")[:, :10]
    run = _run(out)
    got = np.array([int(d[1:]) for d in run["docid"].to_pylist()]).reshape(30, 10)
    assert (got == want).mean() > 0.98  # float32 near-ties may swap
    assert _meta(out)["prf"] == {"k": 3, "alpha": 0.7, "beta": 0.4}
    # vectors read from --rescore give the same run
    cli("build-index", tmp / "docs.parquet", "--spec", "SQ8", "-o", tmp / "sq.vpi", "-q")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "--prf", "3", "--prf-alpha", "0.7",
              "--prf-beta", "0.4", "--rescore", tmp / "docs.parquet", "-o", tmp / "p2.parquet")
    assert res.exit_code == 0, res.stderr
    assert _run(tmp / "p2.parquet")["docid"].to_pylist() == run["docid"].to_pylist()
    plain = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "10", "-o", tmp / "plain.parquet")
    assert plain.exit_code == 0 and _run(tmp / "plain.parquet")["docid"].to_pylist() != run["docid"].to_pylist()  # feedback changed something


def test_prf_bad_input(cli, corpus):
    tmp, docs, _queries, _bank = corpus
    base = ["search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-o", tmp / "bad.parquet"]
    assert "larger than -k" in _one_line_error(cli(*base, "-k", "5", "--prf", "10"), 2)
    assert "--prf" in _one_line_error(cli(*base, "-k", "5", "--prf-beta", "0.3"), 2)
    _one_line_error(cli(*base, "-k", "5", "--prf", "2", "--prf-alpha", "0", "--prf-beta", "0"), 2)
    _one_line_error(cli(*base, "-k", "5", "--prf", "0"), 2)
    cli("build-index", tmp / "docs.parquet", "--spec", "SQ8", "-o", tmp / "sq.vpi", "-q")
    res = cli("search", tmp / "q.parquet", "--index", tmp / "sq.vpi", "-k", "5", "--prf", "2", "-o", tmp / "bad.parquet")
    assert "--rescore" in _one_line_error(res, 1)
    write_vectors(tmp / "some.parquet", docs[:50])  # lacks most documents
    res = cli("search", tmp / "q.parquet", "--index", tmp / "sq.vpi", "-k", "5", "--prf", "2", "--rescore", tmp / "some.parquet",
              "-o", tmp / "bad.parquet")
    assert "some.parquet" in _one_line_error(res, 1)
    assert not (tmp / "bad.parquet").exists()


# ------------------------------------------------------------------------------------ calibration


@pytest.fixture
def calibrated(cli, corpus):
    """A k=20 run of 90 queries, qrels that judge each query's nearest documents relevant with a
    probability falling with the score's distance from the top, and a calibration fitted on 60 of them."""
    tmp, _docs, queries, bank = corpus
    allq = np.vstack([queries, bank])
    write_vectors(tmp / "all.parquet", allq, prefix="q", ids=[f"q{i}" for i in range(90)])
    assert cli("search", tmp / "all.parquet", "--index", tmp / "flat.vpi", "-k", "20", "-o", tmp / "run.parquet").exit_code == 0
    run = _run(tmp / "run.parquet")
    rng = np.random.default_rng(9)
    lines = ["query-id\tcorpus-id\tscore"]
    for qid, docid, rank in zip(run["qid"].to_pylist(), run["docid"].to_pylist(), run["rank"].to_pylist()):
        if rng.random() < 0.8 / rank:
            lines.append(f"{qid}\t{docid}\t1")
    train = [line for line in lines[1:] if int(line.split("\t")[0][1:]) >= 30]
    (tmp / "train.tsv").write_text("\n".join([lines[0], *train]) + "\n")
    res = cli("calibrate", tmp / "run.parquet", "--qrels", tmp / "train.tsv", "-o", tmp / "calib.json")
    assert res.exit_code == 0, res.stderr
    return tmp, run


def test_calibrate_fits_and_cut_keeps_what_the_probabilities_say(cli, calibrated):
    from vecpipe.evaluate.calibration import Calibration, features, run_arrays

    tmp, run = calibrated
    calib = Calibration.from_json((tmp / "calib.json").read_text(), "calib.json")
    judged = {line.split("\t")[0] for line in (tmp / "train.tsv").read_text().splitlines()[1:]}
    assert calib.depth == 20 and calib.metric == "cos" and calib.train["queries"] == len(judged) > 50
    assert calib.train["ece"] < 0.05 and calib.coef[0] > 0  # a higher score, a likelier document
    res = cli("cut", tmp / "run.parquet", "--calibration", tmp / "calib.json", "--min-prob", "0.2", "-o", tmp / "cut.parquet")
    assert res.exit_code == 0, res.stderr
    arrays = run_arrays(run, "run")
    p = calib.probabilities(features(arrays, 20))
    kept = {(q, d) for q, d, keep in zip(arrays.qids, arrays.docids, p >= 0.2) if keep}
    cut = _run(tmp / "cut.parquet")
    assert 0 < cut.num_rows < run.num_rows
    assert set(zip(cut["qid"].to_pylist(), cut["docid"].to_pylist())) == kept
    for qid in set(cut["qid"].to_pylist()):
        part = cut.filter(pa.compute.equal(cut["qid"], qid))
        assert part["rank"].to_pylist() == list(range(1, part.num_rows + 1))
        assert np.all(np.diff(part["score"].to_numpy()) <= 0)  # raw scores kept, in order
    assert _meta(tmp / "cut.parquet")["cut"]["threshold"] == 0.2
    # --scores prob writes the probabilities; --target-recall 0.9 keeps at least 90% of the training positives
    res = cli("cut", tmp / "run.parquet", "--calibration", tmp / "calib.json", "--target-recall", "0.9", "--scores", "prob",
              "-o", tmp / "cutp.parquet")
    assert res.exit_code == 0, res.stderr
    cutp = _run(tmp / "cutp.parquet")
    assert cutp["score"].to_numpy().max() <= 1.0 and cutp["score"].to_numpy().min() >= calib.threshold_for_recall(0.9) - 1e-6
    train = [line.split("\t")[:2] for line in (tmp / "train.tsv").read_text().splitlines()[1:]]
    pairs = set(zip(cutp["qid"].to_pylist(), cutp["docid"].to_pylist()))
    assert sum((q, d) in pairs for q, d in train) >= 0.9 * len(train)
    # search --min-prob gives the same rows as search then cut
    res = cli("search", tmp / "all.parquet", "--index", tmp / "flat.vpi", "-k", "20", "--min-prob", "0.2",
              "--calibration", tmp / "calib.json", "-o", tmp / "sc.parquet")
    assert res.exit_code == 0, res.stderr
    assert _run(tmp / "sc.parquet").select(["qid", "docid", "rank"]).equals(cut.select(["qid", "docid", "rank"]))
    # reruns are up to date
    res = cli("calibrate", tmp / "run.parquet", "--qrels", tmp / "train.tsv", "-o", tmp / "calib.json")
    assert res.exit_code == 0 and "up to date" in res.stderr


def test_calibration_bad_input(cli, calibrated, tmp_path):
    tmp, run = calibrated
    base = ["cut", tmp / "run.parquet", "--calibration", tmp / "calib.json", "-o", tmp / "bad.parquet"]
    _one_line_error(cli(*base), 2)
    _one_line_error(cli(*base, "--min-prob", "0.2", "--target-recall", "0.9"), 2)
    _one_line_error(cli(*base, "--min-prob", "1.5"), 2)
    doc = json.loads((tmp / "calib.json").read_text())
    (tmp / "other.json").write_text(json.dumps({**doc, "model": "another-model"}))
    pq.write_table(run.replace_schema_metadata({b"vecpipe": json.dumps({"kind": "run", "model": "mine", "k": 20}).encode()}),
                   tmp / "mine.parquet")
    res = cli("cut", tmp / "mine.parquet", "--calibration", tmp / "other.json", "--min-prob", "0.2", "-o", tmp / "bad.parquet")
    assert "another-model" in _one_line_error(res, 1)
    (tmp / "junk.json").write_text("{not json")
    assert "calibration" in _one_line_error(cli("cut", tmp / "run.parquet", "--calibration", tmp / "junk.json", "--min-prob", "0.2",
                                                "-o", tmp / "bad.parquet"), 1)
    (tmp / "nan.json").write_text(json.dumps({**doc, "coef": [float("nan")] * 5}))
    assert "damaged" in _one_line_error(cli("cut", tmp / "run.parquet", "--calibration", tmp / "nan.json", "--min-prob", "0.2",
                                            "-o", tmp / "bad.parquet"), 1)
    # a run shallower than the calibration's depth
    cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "5", "-o", tmp / "k5.parquet", "-q")
    res = cli("cut", tmp / "k5.parquet", "--calibration", tmp / "calib.json", "--min-prob", "0.2", "-o", tmp / "bad.parquet")
    assert "-k 20" in _one_line_error(res, 1)
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "5", "--min-prob", "0.2", "--calibration",
              tmp / "calib.json", "-o", tmp / "bad.parquet")
    assert "-k 20" in _one_line_error(res, 1)
    _one_line_error(cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "--min-prob", "0.2", "-o", tmp / "bad.parquet"), 2)
    # hubness-normalised runs are not cut with a calibration of plain scores
    res = cli("search", tmp / "q.parquet", "--index", tmp / "flat.vpi", "-k", "20", "--hubness", "qbnorm", "--bank",
              tmp / "bank.parquet", "--min-prob", "0.2", "--calibration", tmp / "calib.json", "-o", tmp / "bad.parquet")
    assert "qbnorm" in _one_line_error(res, 1)
    # qrels that judge none of the run's queries; a run with a NaN score
    (tmp / "none.tsv").write_text("query-id\tcorpus-id\tscore\nzz\td1\t1\n")
    assert "none of its queries" in _one_line_error(cli("calibrate", tmp / "run.parquet", "--qrels", tmp / "none.tsv",
                                                        "-o", tmp / "c2.json"), 1)
    scores = run["score"].to_numpy().copy()
    scores[4] = np.nan
    pq.write_table(run.set_column(3, "score", pa.array(scores, pa.float32())), tmp / "nan.parquet")
    assert "finite" in _one_line_error(cli("calibrate", tmp / "nan.parquet", "--qrels", tmp / "train.tsv", "-o", tmp / "c2.json"), 1)
    assert not (tmp / "bad.parquet").exists() and not (tmp / "c2.json").exists()

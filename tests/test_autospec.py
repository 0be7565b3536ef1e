"""build-index --spec auto: OPQ, fine PQ and the kinds that rescore from the float vectors on disk
(issue 18, part 3); search rescoring by default from the source an index records."""

from __future__ import annotations

import shutil

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import clustered, write_vectors

from vecpipe.formats import vpi
from vecpipe.index import autospec
from vecpipe.pipeline.manifest import sha256_file


def _one_line_failure(res, code, text):
    assert res.exit_code == code, res.output
    last = res.stderr.strip().splitlines()
    assert len(last) == 1 and text in last[0], res.stderr


def _ranked(path):
    t = pq.read_table(path).sort_by([("qid", "ascending"), ("rank", "ascending")])
    return list(zip(t.column("qid").to_pylist(), t.column("docid").to_pylist()))


def test_candidates_add_opq_fine_pq_and_rescoring_kinds():
    assert autospec.pq_sizes(384) == [192, 128, 96, 48, 24]
    assert autospec.pq_sizes(32) == [16, 8, 4]
    cands = autospec.candidates(100_000, 384)
    by = {c.label: c for c in cands}
    nlist = autospec.nlist_for(100_000)
    plain, opq = by[f"IVF{nlist},PQ192"], by[f"OPQ192_384,IVF{nlist},PQ192"]
    assert opq.memory - plain.memory == 384 * 384 * 4  # the rotation counts
    assert by[f"IVF{nlist},PQ192 +rescore x10"].memory == plain.memory  # the float vectors stay on disk
    assert by["BFlat +rescore x4"].binary and by["BFlat +rescore x4"].memory == 100_000 * autospec.binary_width(384)
    assert {c.rescore for c in cands if c.rescore} == set(autospec.MULTIPLIERS)
    assert not any(c.rescore or c.binary for c in autospec.candidates(100_000, 384, rescore=False))
    l2 = {c.label: c for c in autospec.candidates(100_000, 384, metric="l2")}
    assert l2[plain.label].memory - plain.memory == nlist * 192 * 256 * 4  # faiss's precomputed tables under L2
    assert autospec._spec_for_sample(opq.spec, 3_000) == "OPQ192_384,IVF64,PQ192"
    assert autospec._spec_for_sample(f"BIVF{nlist}", 3_000) == "BIVF64"


def test_new_kinds_memory_estimates_follow_faiss_layouts():
    n, dim = 4_000, 32
    x = clustered(n, dim, seed=6)
    builder = autospec._Builder(x, "ip", np.random.default_rng(0))
    small = autospec.pq_sizes(dim)[-1]  # fine PQ trains slowly in faiss: the layouts are the same for every m
    for c in autospec.candidates(n, dim):
        if c.rescore == autospec.MULTIPLIERS[-1] or not (c.binary or c.spec.endswith(f",PQ{small}")):
            continue
        index = builder.build(c.spec, c.binary)
        actual = len((faiss.serialize_index_binary if c.binary else faiss.serialize_index)(index))
        assert 0.7 * actual <= c.memory <= 1.4 * actual, (c.label, c.memory, actual)


def test_rescore_exact_ranks_candidates_by_exact_score():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((50, 8)).astype(np.float32)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    found = np.array([[5, 7, 9, -1], [1, 2, 3, 4], [0, -1, -1, -1]])
    for metric in ("ip", "l2"):
        got = autospec.rescore_exact(found, q, base, metric, k=2)
        for i in range(3):
            cand = [f for f in found[i] if f >= 0]
            score = [(-(np.sum((base[f] - q[i]) ** 2)) if metric == "l2" else base[f] @ q[i]) for f in cand]
            want = [cand[j] for j in np.argsort(-np.array(score), kind="stable")][:2]
            assert got[i, : len(want)].tolist() == want and (got[i, len(want):] == -1).all()


def test_trial_stops_a_pq_family_at_the_first_size_meeting_the_target():
    x = clustered(2_000, 32, seed=2)
    cands = [c for c in autospec.candidates(2_000, 32) if "PQ" in c.spec and not c.spec.startswith("OPQ")]
    sizes = autospec.pq_sizes(32)
    assert [autospec._family(c)[1] for c in autospec._trial_order(cands)][::3] == sizes[::-1]
    autospec.trial(cands, x, None, "ip", 0.9, 0)
    smallest = [c for c in cands if c.spec.endswith(f",PQ{sizes[-1]}")]
    assert all(c.recall is not None for c in smallest) and max(c.recall for c in smallest) >= 0.9
    rest = [c for c in cands if c not in smallest]
    assert rest and all(c.recall is None and c.note == f"skipped: PQ{sizes[-1]} met the target in fewer bytes" for c in rest)


def test_spec_auto_rescores_from_disk_and_search_uses_it(cli, tmp_path):
    x = clustered(3_060, 64, seed=3)  # 60 rows kept out as queries (one seed: the same subspace)
    (tmp_path / "data").mkdir()
    (tmp_path / "idx").mkdir()
    docs = write_vectors(tmp_path / "data" / "x.parquet", x[:3_000])
    write_vectors(tmp_path / "q.parquet", x[3_000:], prefix="q")
    out = tmp_path / "idx" / "a.vpi"
    res = cli("build-index", docs, "--spec", "auto", "--max-memory", "100KB", "-o", out)  # only 1-bit codes fit
    assert res.exit_code == 0, res.output
    assert "rescores its k x" in res.stderr and "outside --max-memory" in res.stderr
    meta = vpi.read(out).meta
    record = meta["rescore"]
    assert record == {"vectors": "../data/x.parquet", "sha256": sha256_file(docs), "size": docs.stat().st_size,
                      "multiplier": meta["auto"]["rescore"], "metric": "cos"}
    assert meta["binary"] and meta["spec"].startswith("B") and meta["auto"]["recall"] >= 0.95
    assert meta["manifest"]["params"]["rescore_from"] == "../data/x.parquet"
    res = cli("search", tmp_path / "q.parquet", "--index", out, "-k", 10, "-o", tmp_path / "implicit.parquet")
    assert res.exit_code == 0 and "rescoring k x" in res.stderr, res.output
    res = cli("search", tmp_path / "q.parquet", "--index", out, "-k", 10, "--rescore", docs, "--rescore-multiplier",
              record["multiplier"], "-o", tmp_path / "explicit.parquet")
    assert res.exit_code == 0, res.output
    assert _ranked(tmp_path / "implicit.parquet") == _ranked(tmp_path / "explicit.parquet")
    # exact search agrees with the rescored results on most of the top 10
    flat = tmp_path / "flat.vpi"
    assert cli("build-index", docs, "-o", flat).exit_code == 0
    assert cli("search", tmp_path / "q.parquet", "--index", flat, "-k", 10, "-o", tmp_path / "exact.parquet").exit_code == 0
    assert len(set(_ranked(tmp_path / "implicit.parquet")) & set(_ranked(tmp_path / "exact.parquet"))) >= 0.9 * 600
    # the index and its vectors moved together still find each other (a relative location)
    shutil.copytree(tmp_path / "idx", tmp_path / "moved" / "idx")
    shutil.copytree(tmp_path / "data", tmp_path / "moved" / "data")
    res = cli("search", tmp_path / "q.parquet", "--index", tmp_path / "moved" / "idx" / "a.vpi", "-k", 10, "-o",
              tmp_path / "moved.parquet")
    assert res.exit_code == 0, res.output
    assert _ranked(tmp_path / "moved.parquet") == _ranked(tmp_path / "implicit.parquet")


def test_search_refuses_a_recorded_source_gone_or_changed(cli, tmp_path):
    x = clustered(3_000, 64, seed=3)
    docs = write_vectors(tmp_path / "x.parquet", x)
    write_vectors(tmp_path / "q.parquet", clustered(20, 64, seed=4), prefix="q")
    out = tmp_path / "a.vpi"
    assert cli("build-index", docs, "--spec", "auto", "--max-memory", "100KB", "-o", out).exit_code == 0
    keep = shutil.copy(docs, tmp_path / "keep.parquet")
    run = tmp_path / "run.parquet"
    write_vectors(docs, clustered(3_000, 64, seed=9))  # same name, other vectors
    _one_line_failure(cli("search", tmp_path / "q.parquet", "--index", out, "-o", run), 1, "has changed since the index was built")
    docs.unlink()
    _one_line_failure(cli("search", tmp_path / "q.parquet", "--index", out, "-o", run), 1, "which is gone")
    assert not run.exists()
    res = cli("search", tmp_path / "q.parquet", "--index", out, "--rescore", keep, "-o", run)  # --rescore overrides
    assert res.exit_code == 0 and run.exists(), res.output
    _one_line_failure(cli("search", tmp_path / "q.parquet", "--index", out, "--rescore-multiplier", 0, "-o", run), 2,
                      "--rescore-multiplier")


def test_spec_auto_from_a_stream_has_no_rescoring_kinds(cli, tmp_path):
    x = clustered(3_000, 64, seed=3)
    docs = write_vectors(tmp_path / "x.parquet", x)
    res = cli("build-index", "-", "--spec", "auto", "--max-memory", "100KB", "-o", tmp_path / "a.vpi", input=docs.read_bytes())
    # only the rescoring kinds fit 100KB: from a stream there are none, so nothing fits
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert "no index kind fits" in lines[-1] and "no kinds that rescore from disk (the input is not a regular file)" in lines[0]
    assert not (tmp_path / "a.vpi").exists()
    flat = tmp_path / "flat.vpi"
    assert cli("build-index", docs, "-o", flat).exit_code == 0
    write_vectors(tmp_path / "q.parquet", x[:5], prefix="q")
    _one_line_failure(cli("search", tmp_path / "q.parquet", "--index", flat, "--rescore-multiplier", 8, "-o", tmp_path / "r.parquet"),
                      2, "records none")


@pytest.mark.parametrize("metric", ["l2"])
def test_spec_auto_rescoring_keeps_the_metric(cli, tmp_path, metric):
    x = clustered(2_000, 32, seed=11) * 3
    docs = write_vectors(tmp_path / "x.parquet", x.astype(np.float32), meta={"metric": "l2", "normalized": False})
    out = tmp_path / "a.vpi"
    res = cli("build-index", docs, "--spec", "auto", "--max-memory", "40KB", "--metric", metric, "-o", out)
    assert res.exit_code == 0, res.output
    assert vpi.read(out).meta["rescore"]["metric"] == metric


def test_update_of_a_rescoring_index_rescores_from_the_new_input(cli, tmp_path):
    from vecpipe.index.rescore import source_record
    from vecpipe.pipeline.manifest import fingerprint

    x = clustered(2_100, 32, seed=12)
    old = write_vectors(tmp_path / "old.parquet", x[:2_000])
    new = write_vectors(tmp_path / "new.parquet", x[100:])
    assert cli("build-index", old, "--spec", "IVF16,PQ8", "-o", tmp_path / "plain.vpi").exit_code == 0
    built = vpi.read(tmp_path / "plain.vpi")  # as --spec auto records a rescoring choice
    meta = {**built.meta, "rescore": source_record("old.parquet", fingerprint(old), 10, "cos")}
    vpi.write(tmp_path / "a.vpi", meta, built.ids, built.index_bytes, extra=built.extra)
    res = cli("build-index", new, "--update", tmp_path / "a.vpi", "-o", tmp_path / "b.vpi")
    assert res.exit_code == 0, res.output
    assert vpi.read(tmp_path / "b.vpi").meta["rescore"] == source_record("new.parquet", fingerprint(new), 10, "cos")
    res = cli("build-index", "-", "--update", tmp_path / "a.vpi", "-o", tmp_path / "c.vpi", input=new.read_bytes())
    assert res.exit_code == 0 and "no longer records float vectors" in res.stderr, res.output
    assert "rescore" not in vpi.read(tmp_path / "c.vpi").meta


def test_update_of_an_auto_binary_index_from_float_vectors_says_to_rebuild():
    """An auto index of 1-bit codes it made from float vectors: --update with float vectors is a
    usage error that says what to do (it named a dimension mismatch before)."""
    from vecpipe.errors import UsageError
    from vecpipe.formats.vectors import Vectors
    from vecpipe.index.update import check_compatible

    vecs = Vectors(pa.array(["a", "b"]), np.zeros((2, 64), np.float32), {"dim": 64}, "new.parquet")
    old = {"binary": True, "dim": 64, "spec": "BFlat", "auto": {"chosen": "BFlat"}}
    with pytest.raises(UsageError, match="rebuild it with --spec auto"):
        check_compatible(old, vecs, "old.vpi", None, None)
    codes = Vectors(pa.array(["a", "b"]), np.zeros((2, 8), np.uint8),
                    {"dim": 64, "compression": {"method": "binary", "bits": 1}}, "new.parquet")
    check_compatible({**old, "auto": None, "vectors": {"method": "binary", "bits": 1}}, codes, "old.vpi", None, None)


def _recall_at_10(run_path, exact_path):
    got, want = {}, {}
    for qid, doc in _ranked(run_path):
        got.setdefault(qid, set()).add(doc)
    for qid, doc in _ranked(exact_path):
        want.setdefault(qid, set()).add(doc)
    return float(np.mean([len(got.get(q, set()) & docs) / len(docs) for q, docs in want.items()]))


@pytest.mark.parametrize("given_queries", [True, False])
def test_spec_auto_checks_the_choice_over_the_whole_corpus(cli, tmp_path, monkeypatch, given_queries):
    """A trial on a sample smaller than the corpus: the built index is measured over all rows, its
    setting raised where the sample's does not hold, and the recall recorded is the whole corpus's."""
    monkeypatch.setattr(autospec, "TRIAL_ROWS", 1_000)
    monkeypatch.setattr(autospec, "TRIAL_QUERIES", 200)
    x = clustered(20_200, 64, seed=11, clusters=200)
    docs = write_vectors(tmp_path / "x.parquet", x[:20_000])
    queries = write_vectors(tmp_path / "q.parquet", x[20_000:], prefix="q")
    out = tmp_path / "a.vpi"
    args = ["--queries", queries] if given_queries else []
    res = cli("build-index", docs, "--spec", "auto", "--max-memory", "250KB", "--target-recall", 0.9, *args, "-o", out)
    assert res.exit_code == 0, res.output
    meta = vpi.read(out).meta
    auto = meta["auto"]
    assert auto["measured_on"]["rows"] == 1_000 and auto["measured_on"]["full"] == {"rows": 20_000, "queries": 200}
    assert "trial_recall" in auto and "over all 20,000 rows" in res.stderr
    # (seeded: 1-bit codes rescored x4 meet 0.9 on the 1,000-row sample and not over the 20,000 rows)
    assert auto["recall"] >= 0.9 and "short of the target" not in res.stderr
    assert meta["spec"] == "BFlat" and auto["rescore"] == meta["rescore"]["multiplier"] == 10
    assert "rescore x10 (raised from the sample's rescore x4)" in res.stderr and auto["trial_recall"] < auto["recall"]
    if given_queries:  # the recorded recall is what search gives with these queries over the whole corpus
        flat = tmp_path / "flat.vpi"
        assert cli("build-index", docs, "-o", flat).exit_code == 0
        assert cli("search", queries, "--index", flat, "-k", 10, "-o", tmp_path / "exact.parquet").exit_code == 0
        res = cli("search", queries, "--index", out, "-k", 10, "-o", tmp_path / "auto.parquet")
        assert res.exit_code == 0, res.output
        assert abs(_recall_at_10(tmp_path / "auto.parquet", tmp_path / "exact.parquet") - auto["recall"]) <= 0.01


def test_full_check_raises_nprobe_and_rescoring_depth_until_the_target():
    x = clustered(6_000, 32, seed=12, clusters=100)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(32), 32, 64, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    from vecpipe.index.search import LoadedIndex

    loaded = LoadedIndex(index=index, ids=pa.array([f"d{i}" for i in range(len(x))]),
                         meta={"dim": 32, "metric": "ip", "spec": "IVF64,Flat", "search_params": {"nprobe": 1}}, name="t")
    chosen = {"label": "IVF64,Flat", "spec": "IVF64,Flat", "nprobe": 1, "ef_search": None, "rescore": None}
    got = autospec.check_full(loaded, x, None, "ip", chosen, 0.99)
    assert got["nprobe"] > 1 and got["recall"] >= 0.99 and index.nprobe == got["nprobe"]
    low = autospec.check_full(loaded, x, None, "ip", dict(chosen, nprobe=1), 0.0)  # met at once: kept
    assert low["nprobe"] == 1 and index.nprobe == 1


def test_full_check_says_when_the_whole_corpus_falls_short(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(autospec, "TRIAL_ROWS", 1_000)
    monkeypatch.setattr(autospec, "TRIAL_QUERIES", 200)
    docs = write_vectors(tmp_path / "x.parquet", clustered(20_000, 64, seed=11, clusters=200))
    out = tmp_path / "a.vpi"
    res = cli("build-index", docs, "--spec", "auto", "--max-memory", "250KB", "--target-recall", 1.0, "-o", out)
    assert res.exit_code == 0, res.output
    auto = vpi.read(out).meta["auto"]
    assert auto["recall"] < 1.0 and auto["rescore"] == max(autospec.FULL_MULTIPLIERS)
    assert "short of the target 1.0" in res.stderr and "over all 20,000 rows it reaches" in auto["why"]

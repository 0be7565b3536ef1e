"""Issue 14: the SPANN disk index (build-index --spec SPANN, search --nprobe/--max-dist-ratio), HNSW
insertion orders (--order) and inspect --diagnose (recall against exact search, LID)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import clustered, write_vectors

from vecpipe.errors import UsageError
from vecpipe.formats import vpi
from vecpipe.index import lid, spann


def _recall(cli, index, queries, docs, q, k=10, *extra):
    res = cli("search", queries, "--index", index, "-k", k, "--format", "parquet", "-o", index.with_suffix(".run.parquet"), *extra)
    assert res.exit_code == 0, res.output
    run = pq.read_table(index.with_suffix(".run.parquet")).to_pydict()
    exact = np.argsort(-(q @ docs.T), axis=1)[:, :k]
    got: dict[str, set] = {}
    for qid, docid in zip(run["qid"], run["docid"], strict=True):
        got.setdefault(qid, set()).add(int(docid[1:]))
    return np.mean([len(got.get(f"q{i}", set()) & set(exact[i].tolist())) / k for i in range(len(q))]), run


def test_spann_build_layout_and_search(cli, tmp_path, docs_queries):
    docs, queries, d, q, picks = docs_queries
    index = tmp_path / "s.vpi"
    res = cli("build-index", docs, "--spec", "SPANN,heads=0.1,codes=f32", "-o", index)
    assert res.exit_code == 0, res.output
    header = vpi.read_header(index)
    meta = header["meta"]
    assert meta["index_kind"] == "spann" and meta["spann"]["heads"] == 50 and meta["spann"]["codes"] == "f32"
    section = next(e for e in header["sections"] if e["name"] == "index")
    assert section["offset"] % 4096 == 0 and section["compression"] == "none"
    container = vpi.read(index, lazy=("index",))
    directory = np.frombuffer(container.extra["spann_dir"], "<u8").reshape(-1, 2)
    assert (directory[:, 0] % 4096 == 0).all()
    counts = (directory[:, 1] & 0xFFFFFFFF).astype(int)
    assert counts.sum() == meta["spann"]["postings"] >= 500  # every vector in a list (its closest head's)
    # every posting list holds row numbers then f32 vectors equal to the input rows
    raw = index.read_bytes()
    h = int(np.argmax(counts))
    start = section["offset"] + int(directory[h, 0])
    rows = np.frombuffer(raw, "<i4", counts[h], start)
    vecs = np.frombuffer(raw, "<f4", counts[h] * 32, start + 4 * counts[h]).reshape(-1, 32)
    np.testing.assert_array_equal(vecs, d[rows])
    # searched with every list, the results are exact; with the default nprobe, nearly so
    rec, run = _recall(cli, index, queries, d, q, 10, "--nprobe", 50)
    assert rec == 1.0
    first = {qid: docid for qid, docid, rank in zip(run["qid"], run["docid"], run["rank"], strict=True) if rank == 1}
    assert [first[f"q{i}"] for i in range(len(picks))] == [f"d{p}" for p in picks]
    scores = {(a, b): s for a, b, s in zip(run["qid"], run["docid"], run["score"], strict=True)}
    assert scores[("q0", f"d{picks[0]}")] == pytest.approx(float(q[0] @ d[picks[0]]), abs=1e-5)
    rec_default, _ = _recall(cli, index, queries, d, q)
    assert rec_default >= 0.9
    # inspect shows the kind and its parameters
    res = cli("inspect", index)
    assert res.exit_code == 0 and "SPANN,heads=0.1" in res.output and "spann_dir" in res.output


def test_spann_rerun_and_changed_parameters(cli, tmp_path, docs_queries):
    docs, *_ = docs_queries
    index = tmp_path / "s.vpi"
    assert cli("build-index", docs, "--spec", "SPANN,heads=0.05", "-o", index).exit_code == 0
    before = index.read_bytes()
    res = cli("build-index", docs, "--spec", "SPANN,heads=0.05", "-o", index)
    assert res.exit_code == 0 and "up to date" in res.output
    res = cli("build-index", docs, "--spec", "SPANN,heads=0.05,replicas=2", "-o", index)
    assert res.exit_code == 0 and "up to date" not in res.output
    assert vpi.read_header(index)["meta"]["spann"]["replicas"] == 2
    res = cli("build-index", docs, "--spec", "SPANN,heads=0.05,replicas=4,rng=0,eps=1", "-o", index)
    assert res.exit_code == 0
    assert vpi.read_header(index)["meta"]["spann"]["replication"] > 1.5  # without the RNG rule, replicas are kept
    assert cli("build-index", docs, "--spec", "SPANN,heads=0.05", "-o", index, "--force").exit_code == 0
    assert index.read_bytes() == before  # same input and parameters: same bytes


def test_spann_max_dist_ratio_reads_fewer_lists(tmp_path, docs_queries, cli):
    from vecpipe.index.search import load_index

    docs, _, _, q, _ = docs_queries
    index = tmp_path / "s.vpi"
    assert cli("build-index", docs, "--spec", "SPANN,heads=0.1", "-o", index).exit_code == 0
    loaded = load_index(index)
    loaded.set_params(nprobe=20, max_dist_ratio=0)
    _, all_labels = loaded.search(q, 5)
    wide = loaded.lists_read
    loaded.lists_read = loaded.bytes_read = 0
    loaded.set_params(nprobe=20, max_dist_ratio=1.05)
    _, labels = loaded.search(q, 5)
    assert loaded.lists_read < wide and loaded.bytes_read % 4096 == 0 and loaded.bytes_read > 0
    assert (labels[:, 0] == all_labels[:, 0]).mean() >= 0.9
    # a ratio of 1 keeps the nearest head's list (and ties) only
    loaded.lists_read = 0
    loaded.set_params(nprobe=20, max_dist_ratio=1.0)
    loaded.search(q, 5)
    assert loaded.lists_read <= len(q) + 2
    res = cli("search", docs_queries[1], "--index", index, "--max-dist-ratio", "1.5", "-k", 5, "--format", "trec")
    assert res.exit_code == 0, res.output
    # the head graph holds heads, not documents: feedback needs the document vectors
    exact = tmp_path / "f32.vpi"
    assert cli("build-index", docs, "--spec", "SPANN,head_codes=f32", "-o", exact).exit_code == 0
    res = cli("search", docs_queries[1], "--index", exact, "--prf", 3, "-k", 5, "--format", "trec")
    assert res.exit_code == 1 and "--rescore" in res.output
    res = cli("search", docs_queries[1], "--index", exact, "--prf", 3, "-k", 5, "--rescore", docs, "--format", "trec")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("codes", ["f16", "sq8"])
def test_spann_compressed_codes_keep_recall(cli, tmp_path, docs_queries, codes):
    docs, queries, d, q, _ = docs_queries
    index = tmp_path / f"{codes}.vpi"
    assert cli("build-index", docs, "--spec", f"SPANN,heads=0.1,codes={codes},nprobe=50", "-o", index).exit_code == 0
    rec, _ = _recall(cli, index, queries, d, q)
    assert rec >= 0.95
    size = vpi.read_header(index)["meta"]["spann"]["posting_bytes"]
    directory = np.frombuffer(vpi.read(index, lazy=("index",)).extra["spann_dir"], "<u8").reshape(-1, 2)
    counts = (directory[:, 1] & 0xFFFFFFFF).astype(int)
    per_row = 4 + 32 * {"f16": 2, "sq8": 1}[codes]  # a row number and the codes
    assert size == int(((counts * per_row + 4095) // 4096).sum()) * 4096


def test_spann_metric_l2_scores_are_negated_squared_distances(cli, tmp_path, docs_queries):
    docs, queries, d, q, picks = docs_queries
    index = tmp_path / "l2.vpi"
    assert cli("build-index", docs, "--spec", "SPANN,codes=f32,nprobe=50", "--metric", "l2", "-o", index).exit_code == 0
    _, run = _recall(cli, index, queries, d, q, 3)
    score = next(s for a, b, s in zip(run["qid"], run["docid"], run["score"], strict=True) if a == "q1" and b == f"d{picks[1]}")
    assert score == pytest.approx(-float(((q[1] - d[picks[1]]) ** 2).sum()), abs=1e-5)


def test_spann_spec_parsing():
    p = spann.parse_spec("SPANN")
    assert p == spann.DEFAULTS
    p = spann.parse_spec("spann, heads=0.2 ,replicas=4,codes=sq8,max-dist-ratio=2")
    assert (p["heads"], p["replicas"], p["codes"], p["max_dist_ratio"]) == (0.2, 4, "sq8", 2.0)
    for bad in ("SPANN,heads=0", "SPANN,replicas=1.5", "SPANN,replicas=2,replicas=3", "SPANN,x=1", "SPANN,heads",
                "SPANN,max_dist_ratio=0.9", "SPANN,eps=inf", "SPANN,head_codes=pq", "SPANN,rng=2"):
        with pytest.raises(UsageError):
            spann.parse_spec(bad)


def test_rng_rule_and_eps_choose_replicas():
    heads = np.array([[0.0, 0.0], [1.0, 0.0], [0.1, 0.05], [0.0, 1.05], [5.0, 5.0]], np.float32)
    x = np.array([[0.5, 0.5]], np.float32)
    dist = ((heads - x) ** 2).sum(1)
    order = np.argsort(dist)
    cand = order[None, :].astype(np.int64)
    out, out_d = spann.select_replicas(x, heads, dist[order][None, :], cand, replicas=8, eps=0.5)
    chosen = [int(h) for h in out[0] if h >= 0]
    # the nearest head (2); head 1 (1.0, 0): its distance to head 2 (0.9) is above its distance to x
    # (0.71): taken; head 0 is closer to head 2 (0.11) than to x: skipped (RNG); head 4 is too far (eps)
    assert chosen[0] == 2 and 0 not in chosen and 4 not in chosen and 1 in chosen
    assert np.all(np.diff(out_d[0][: len(chosen)]) >= 0)
    one, _ = spann.select_replicas(x, heads, dist[order][None, :], cand, replicas=1, eps=0.5)
    assert one.tolist() == [[2]]
    no_rng, _ = spann.select_replicas(x, heads, dist[order][None, :], cand, replicas=8, eps=0.5, rng=False)
    assert set(no_rng[0][no_rng[0] >= 0].tolist()) == {0, 1, 2, 3}  # all within (1+eps), head 4 still too far


def test_balanced_kmeans_evens_cluster_sizes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (900, 8)), rng.normal(5, 0.1, (100, 8))]).astype(np.float32)
    import faiss

    cent = spann.balanced_kmeans(x, 10, seed=0)
    sizes = np.bincount(faiss.knn(x, cent, 1)[1][:, 0], minlength=10)
    assert sizes.max() <= 250 and len(cent) == 10


def test_lid_estimates_the_dimension_of_a_subspace():
    rng = np.random.default_rng(0)
    for m in (2, 6):
        x = np.zeros((4000, 16), np.float32)
        x[:, :m] = rng.uniform(-1, 1, (4000, m))
        est = np.nanmedian(lid.lid(x))
        assert m * 0.7 < est < m * 1.4, (m, est)
    # exact MLE on a known row: r_i = (i/k)^(1/m) gives LID close to m
    r = (np.arange(1, 21) / 20.0) ** (1 / 4.0)
    assert lid.lid_from_distances(r[None, :])[0] == pytest.approx(4.0, rel=0.3)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 200).astype(float)
    b = a + rng.normal(0, 2, 200)
    assert lid.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-9)
    assert np.isnan(lid.spearman(np.ones(10), np.arange(10.0)))


def test_insertion_orders(cli, tmp_path, docs_queries):
    docs, queries, d, q, _ = docs_queries
    values = lid.lid(d)
    for order in ("random", "lid-desc", "lid-asc"):
        perm = lid.insertion_order(d, order, seed=0)
        assert sorted(perm.tolist()) == list(range(len(d)))
        if order == "lid-desc":
            assert np.all(np.diff(np.nan_to_num(values[perm], nan=-np.inf)) <= 1e-9)
    index = tmp_path / "h.vpi"
    res = cli("build-index", docs, "--spec", "HNSW16", "--order", "lid-desc", "-o", index)
    assert res.exit_code == 0, res.output
    meta = vpi.read_header(index)["meta"]
    assert meta["order"] == "lid-desc"
    rec, _ = _recall(cli, index, queries, d, q, 5)
    assert rec >= 0.95  # ids follow their rows through the permutation
    res = cli("build-index", docs, "--spec", "HNSW16", "--order", "lid-desc", "-o", index)
    assert "up to date" in res.output
    res = cli("build-index", docs, "--spec", "HNSW16", "--order", "lid-asc", "-o", index)
    assert res.exit_code == 0 and "up to date" not in res.output and vpi.read_header(index)["meta"]["order"] == "lid-asc"
    res = cli("build-index", docs, "--spec", "HNSW16", "-o", index)
    assert "up to date" not in res.output and "order" not in vpi.read_header(index)["meta"]


def test_inspect_diagnose(cli, tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    flat = tmp_path / "flat.vpi"
    assert cli("build-index", docs, "-o", flat).exit_code == 0
    res = cli("inspect", flat, "--diagnose", "--queries", queries, "--format", "json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["recall"] == 1.0 and info["recall_quantiles"]["p01"] == 1.0 and info["k"] == 10
    assert info["recall_lid_spearman"] is None  # recall is constant: no correlation to speak of
    assert info["lid"]["queries"]["median"] > 0 and len(info["worst"]) == 10
    # a graph searched with a tiny efSearch misses neighbours: recall below 1, worst queries first
    x = clustered(3000, 32, seed=4, rank=16, clusters=3)
    write_vectors(tmp_path / "hard.parquet", x)
    write_vectors(tmp_path / "hq.parquet", clustered(100, 32, seed=5, rank=16, clusters=3), prefix="q")
    hnsw = tmp_path / "h.vpi"
    assert cli("build-index", tmp_path / "hard.parquet", "--spec", "HNSW4", "--ef-search", "1", "-o", hnsw).exit_code == 0
    res = cli("inspect", hnsw, "--diagnose", "--queries", tmp_path / "hq.parquet", "-k", "10")
    assert res.exit_code == 0, res.output
    assert "recall@10 against exact search over 100 queries" in res.stdout and "worst queries" in res.stdout
    info = json.loads(cli("inspect", hnsw, "--diagnose", "--queries", tmp_path / "hq.parquet", "--format", "json").stdout)
    assert info["recall"] < 1.0 and info["worst"][0]["recall"] == min(w["recall"] for w in info["worst"])
    assert info["recall_lid_spearman"] is not None
    res = cli("inspect", flat, "--queries", queries)
    assert res.exit_code == 2 and "--diagnose" in res.output
    sp = tmp_path / "s.vpi"
    assert cli("build-index", docs, "--spec", "SPANN", "-o", sp).exit_code == 0
    res = cli("inspect", sp, "--diagnose", "--queries", queries)
    assert res.exit_code == 1 and "--diagnose" in res.output


@pytest.mark.parametrize("codes", ["sq8", "f16"])
def test_spann_compressed_codes_rescored_from_full_vectors(cli, tmp_path, docs_queries, codes):
    """Posting lists of codes, rescored from the full vectors (search --rescore): with every list
    read, the top k is exact search's, in its order, with its scores."""
    docs, queries, d, q, _ = docs_queries
    index = tmp_path / f"{codes}.vpi"
    assert cli("build-index", docs, "--spec", f"SPANN,heads=0.1,codes={codes},nprobe=50", "-o", index).exit_code == 0
    exact = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :10]
    runs = {}
    for name, extra in (("codes", ()), ("rescored", ("--rescore", docs, "--rescore-multiplier", 3))):
        out = tmp_path / f"{name}.parquet"
        res = cli("search", queries, "--index", index, "-k", 10, "--format", "parquet", "-o", out, *extra)
        assert res.exit_code == 0, res.output
        runs[name] = pq.read_table(out).to_pydict()
    run = runs["rescored"]
    for i in range(len(q)):
        got = [(b, s) for a, b, s in zip(run["qid"], run["docid"], run["score"], strict=True) if a == f"q{i}"]
        assert [b for b, _ in got] == [f"d{j}" for j in exact[i]]
        np.testing.assert_allclose([s for _, s in got], q[i] @ d[exact[i]].T, atol=1e-6)
    assert pq.read_metadata(tmp_path / "rescored.parquet").metadata  # the run records the rescoring
    # the codes' own scores are approximate (sq8 and f16 both round): rescoring replaced them
    coded = dict(zip(zip(runs["codes"]["qid"], runs["codes"]["docid"], strict=True), runs["codes"]["score"], strict=True))
    err = max(abs(coded[(f"q{i}", f"d{j}")] - float(q[i] @ d[j])) for i in range(len(q)) for j in exact[i] if (f"q{i}", f"d{j}") in coded)
    assert err > 1e-6
    # hostile: full vectors of another dimension, or lacking some of the index's ids
    other = write_vectors(tmp_path / "other.parquet", clustered(500, 16, seed=1))
    res = cli("search", queries, "--index", index, "-k", 10, "--rescore", other, "--format", "trec")
    assert res.exit_code == 1 and "dimension" in res.output
    part = write_vectors(tmp_path / "part.parquet", d[:100])
    res = cli("search", queries, "--index", index, "-k", 10, "--rescore", part, "--format", "trec")
    assert res.exit_code == 1 and "not in this file" in res.output


def test_spann_ties_ordered_by_docid(cli, tmp_path):
    """Equal scores are ordered by docid ascending (string order, not row order), as every index
    orders them, though SPANN ranks only the batch's docids."""
    rng = np.random.default_rng(0)
    d = rng.integers(-4, 5, (300, 32)).astype(np.float32) / 4  # dot products exact in float32
    for row in (30, 200):
        d[row] = d[7]
    docs = write_vectors(tmp_path / "d.parquet", d, meta={"metric": "ip", "normalized": False})
    queries = write_vectors(tmp_path / "q.parquet", d[[7]], prefix="q", meta={"metric": "ip", "normalized": False})
    index = tmp_path / "s.vpi"
    assert cli("build-index", docs, "--spec", "SPANN,heads=0.1,codes=f32,nprobe=30", "--metric", "ip", "-o", index).exit_code == 0
    res = cli("search", queries, "--index", index, "-k", 3, "--format", "trec")
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()]
    assert [r[2] for r in rows] == ["d200", "d30", "d7"] and len({r[4] for r in rows}) == 1

"""vecpipe compare: means per measure and paired tests against a baseline, checked against scipy and ranx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecpipe.evaluate import evaluate

scipy_stats = pytest.importorskip("scipy.stats")

N_Q, N_D = 60, 40


def _qrels(path: Path) -> Path:
    rng = np.random.default_rng(1)
    lines = ["query-id\tcorpus-id\tscore"]
    for q in range(N_Q):
        for d in rng.choice(N_D, 4, replace=False):
            lines.append(f"q{q}\td{d}\t{int(rng.integers(1, 3))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(path: Path, seed: int, skill: float) -> Path:
    """A run whose relevant documents get a head start of ``skill`` on average."""
    rng = np.random.default_rng(seed)
    rel = {}
    for line in (path.parent / "qrels.tsv").read_text().splitlines()[1:]:
        q, d, _ = line.split("\t")
        rel.setdefault(q, set()).add(d)
    rows = {"qid": [], "docid": [], "score": []}
    for q in range(N_Q):
        for d in range(N_D):
            bonus = skill if f"d{d}" in rel.get(f"q{q}", ()) else 0.0
            rows["qid"].append(f"q{q}")
            rows["docid"].append(f"d{d}")
            rows["score"].append(float(rng.normal() + bonus))
    pq.write_table(pa.table(rows), path)
    return path


@pytest.fixture
def runs(tmp_path):
    qrels = _qrels(tmp_path / "qrels.tsv")
    return qrels, [_run(tmp_path / f"r{i}.parquet", seed=i, skill=s) for i, s in enumerate((0.5, 0.9, 0.6))]


def _per_query(run: Path, qrels: Path, measure: str) -> np.ndarray:
    from vecpipe.formats.qrels import read_qrels
    from vecpipe.formats.runs import read_run

    return evaluate(read_run(str(run)), read_qrels(str(qrels)), [measure]).values[:, 0]


def _json(cli, *args) -> dict:
    res = cli("compare", *args, "--format", "json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_t_and_wilcoxon_equal_scipy(cli, runs):
    qrels, (a, b, c) = runs
    for test, ref in (("t", lambda x, y: scipy_stats.ttest_rel(x, y).pvalue), ("wilcoxon", lambda x, y: scipy_stats.wilcoxon(x, y).pvalue)):
        out = _json(cli, a, b, c, "--qrels", qrels, "-m", "nDCG@10", "-m", "AP", "--test", test, "--correction", "none")
        for measure in ("nDCG@10", "AP"):
            x = _per_query(a, qrels, measure)
            for run, entry in zip((b, c), out["runs"][1:]):
                y = _per_query(run, qrels, measure)
                assert entry["tests"][measure]["p"] == pytest.approx(ref(x, y), abs=1e-9), (test, measure)
                assert entry["tests"][measure]["mean_diff"] == pytest.approx(float((y - x).mean()), abs=1e-12)
                ci = scipy_stats.ttest_rel(y, x).confidence_interval()
                assert (entry["tests"][measure]["ci_low"], entry["tests"][measure]["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_randomization_within_001_of_ranx(cli, runs):
    ranx_fisher = pytest.importorskip("ranx.statistical_tests.fisher_randomization_test")
    qrels, (a, b, c) = runs
    out = _json(cli, a, b, c, "--qrels", qrels, "-m", "nDCG@10", "--test", "randomization", "--correction", "none", "--seed", "7")
    assert out["seed"] == 7 and out["permutations"] == 10_000
    # Both p-values are Monte Carlo estimates (and ranx's parallel sampler varies from call to call even
    # with its seed): at 10,000 sign flips each has a standard error of up to 0.005, so they are compared
    # at 100,000 (0.0016 each; 0.01 apart is over four standard errors of their difference).
    out = _json(cli, a, b, c, "--qrels", qrels, "-m", "nDCG@10", "--test", "randomization", "--correction", "none", "--seed", "7",
                "--permutations", "100000")
    x = _per_query(a, qrels, "nDCG@10")
    for run, entry in zip((b, c), out["runs"][1:]):
        y = _per_query(run, qrels, "nDCG@10")
        theirs, _ = ranx_fisher.fisher_randomization_test(x, y, n_permutations=100_000, max_p=0.05, random_seed=42)
        assert abs(entry["tests"]["nDCG@10"]["p"] - theirs) <= 0.01


def test_corrections_and_marks(cli, runs):
    qrels, (a, b, c) = runs
    raw = _json(cli, a, b, c, "--qrels", qrels, "-m", "AP", "--correction", "none")
    ps = [r["tests"]["AP"]["p"] for r in raw["runs"][1:]]
    bonf = _json(cli, a, b, c, "--qrels", qrels, "-m", "AP", "--correction", "bonferroni")
    assert [r["tests"]["AP"]["p_corrected"] for r in bonf["runs"][1:]] == pytest.approx([min(1, 2 * p) for p in ps])
    holm = _json(cli, a, b, c, "--qrels", qrels, "-m", "AP")
    lo, hi = sorted(ps)
    want = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), hi)}
    assert [r["tests"]["AP"]["p_corrected"] for r in holm["runs"][1:]] == pytest.approx([want[p] for p in ps])
    for entry in holm["runs"][1:]:
        t = entry["tests"]["AP"]
        assert t["significant"] == (t["p_corrected"] <= 0.05)
    assert holm["runs"][0]["tests"] is None and holm["baseline"] == "r0.parquet"


def test_every_format(cli, runs, tmp_path):
    qrels, (a, b, c) = runs
    common = [a, b, c, "--qrels", qrels, "-m", "nDCG@10", "-m", "R@10", "--name", "base", "--name", "strong", "--name", "mid"]
    table = cli("compare", *common, "--format", "table").stdout
    assert table.splitlines()[0].split() == ["run", "nDCG@10", "R@10"] and "strong" in table and "differs from the baseline base" in table
    tsv = cli("compare", *common, "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:4] == ["run", "measure", "value", "baseline"] and len(tsv) == 1 + 3 * 2
    md = cli("compare", *common, "--format", "markdown").stdout
    assert md.startswith("| run | nDCG@10 | R@10 |\n|---|---|---|") and "| strong |" in md
    tex = cli("compare", *common, "--format", "latex").stdout
    assert tex.startswith("\\begin{tabular}{lrr}") and "\\end{tabular}" in tex and "strong &" in tex
    for ext, head in ((".json", "{"), (".md", "| run"), (".tex", "\\begin"), (".tsv", "run\tmeasure")):
        out = tmp_path / f"cmp{ext}"
        assert cli("compare", *common, "-o", out, "-q").exit_code == 0
        assert out.read_text().startswith(head), ext
    res = cli("compare", *common, "-o", tmp_path / "cmp.parquet")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    res = cli("compare", *common, "-o", tmp_path / "cmp.json")
    assert res.exit_code == 0 and "up to date" in res.stderr


def test_baseline_stdin_and_missing_queries(cli, runs, tmp_path):
    qrels, (a, b, _c) = runs
    out = _json(cli, a, b, "--qrels", qrels, "-m", "AP", "--baseline", "2")
    assert out["baseline"] == "r1.parquet" and out["runs"][1]["tests"] is None and out["runs"][0]["tests"]["AP"]["mean_diff"] < 0
    res = cli("compare", a, "-", "--qrels", qrels, "-m", "AP", "--format", "json", input=b.read_bytes())
    assert res.exit_code == 0 and json.loads(res.stdout)["runs"][1]["name"] == "<stdin>"
    half = tmp_path / "half.parquet"
    t = pq.read_table(b)
    pq.write_table(t.filter(pa.compute.is_in(t.column("qid"), pa.array([f"q{i}" for i in range(30)]))), half)
    out = _json(cli, b, half, "--qrels", qrels, "-m", "AP")
    assert out["runs"][1]["measures"]["AP"] < out["runs"][0]["measures"]["AP"]  # the missing queries score 0


def test_bad_input_is_one_line(cli, runs, tmp_path):
    qrels, (a, b, _c) = runs
    for args, status in (([a], 2), ([a, b, "--baseline", "3"], 2), ([a, b, "--name", "x"], 2), ([a, b, "-m", "nDCG@x"], 2),
                         ([a, b, "--alpha", "2"], 2), ([a, tmp_path / "nope.parquet"], 1), ([a, b, "--test", "z"], 2)):
        res = cli("compare", *args, "--qrels", qrels, "-o", tmp_path / "c.json")
        assert res.exit_code == status and res.stderr.count("\n") == 1, (args, res.stderr)
        assert not (tmp_path / "c.json").exists()
    res = cli("compare", a, b, "-o", tmp_path / "c.json")
    assert res.exit_code == 2 and "--qrels" in res.stderr


def test_per_query_values(cli, runs):
    qrels, (a, b, _c) = runs
    out = _json(cli, a, b, "--qrels", qrels, "-m", "AP", "--per-query")
    x = _per_query(a, qrels, "AP")
    assert [v["AP"] for v in out["runs"][0]["per_query"].values()] == pytest.approx(x.tolist())
    assert len(out["runs"][1]["per_query"]) == N_Q
    tsv = cli("compare", a, b, "--qrels", qrels, "-m", "AP", "--per-query", "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:4] == ["run", "qid", "measure", "value"] and len(tsv) == 1 + 2 * (N_Q + 1)
    assert [r.split("\t")[1] for r in tsv if r.startswith("r0.parquet")][-1] == "all"
    res = cli("compare", a, b, "--qrels", qrels, "--per-query", "--format", "markdown")
    assert res.exit_code == 2 and "tsv or json" in res.stderr

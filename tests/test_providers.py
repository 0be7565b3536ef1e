"""Measures vecpipe does not compute itself come from ir_measures' providers, with ir_measures' own
numbers per query and aggregated, in eval and compare; a missing provider package is one line
naming the extra; names nobody computes are one line listing close names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_measures import as_dicts, synthetic

from vecpipe.errors import ExtraError, UsageError
from vecpipe.evaluate import evaluate, parse_measure, parse_measures

ir_measures = pytest.importorskip("ir_measures")

ROOT = Path(__file__).resolve().parents[1]

# name -> provider that computes it (ir_measures' default pipeline order: the first installed one that supports it)
PROVIDED = {
    "SetP": "pytrec_eval", "SetR": "pytrec_eval", "SetF": "pytrec_eval", "SetAP": "pytrec_eval",
    "SetRelP": "pytrec_eval", "set_F": "pytrec_eval", "NumQ": "pytrec_eval",
    "P(judged_only=True)@10": "pytrec_eval", "nDCG(gains={0:0,1:1,2:3,3:7})@10": "pytrec_eval",
    "RBP(rel=1)": "cwl_eval", "RBP(rel=2,p=0.5)": "cwl_eval", "SDCG(max_rel=3)@10": "cwl_eval",
    "INST(max_rel=3)": "cwl_eval", "NERR8(max_rel=3)@10": "cwl_eval", "BPM(max_rel=3)@10": "cwl_eval",
    "alpha_nDCG@10": "pyndeval", "nERR_IA@10": "pyndeval", "StRecall@10": "pyndeval", "P_IA@5": "pyndeval",
    "nDCG(dcg='exp-log2')@10": "gdeval",
    "Accuracy@5": "accuracy", "Compat(p=0.8)": "compat",
}
NEEDS = {"cwl_eval": "cwl", "pyndeval": "pyndeval"}  # provider -> the module its package installs


def _need(provider: str) -> None:
    if provider in NEEDS:
        pytest.importorskip(NEEDS[provider], reason=f"the {provider} provider's package (vecpipe[measures]) is not installed")
    if not ir_measures.providers.registry[provider].is_available():
        pytest.skip(f"ir_measures' {provider} provider is not available here")


def _qrels_only(run: pa.Table, qrels: pa.Table) -> pa.Table:
    return run.filter(pc.is_in(run["qid"], value_set=qrels["qid"].unique()))


def reference(run: pa.Table, qrels: pa.Table, name: str, provider: str) -> tuple[dict[str, float], float]:
    """ir_measures directly: per-query values and the aggregate, from the provider that computes it,
    and the same aggregate from the default pipeline asked for this one measure."""
    run_d, qrels_d = as_dicts(_qrels_only(run, qrels), qrels)
    [m] = [ir_measures.parse_measure(name)] if "_" not in name or "(" in name or "@" in name else ir_measures.parse_trec_measure(name)
    per_query = {x.query_id: x.value for x in getattr(ir_measures, provider).iter_calc([m], qrels_d, run_d)}
    agg = ir_measures.calc_aggregate([m], qrels_d, run_d)[m]
    assert getattr(ir_measures, provider).calc_aggregate([m], qrels_d, run_d)[m] == pytest.approx(agg, abs=1e-12)
    return per_query, agg


@pytest.mark.parametrize("name,provider", list(PROVIDED.items()))
def test_provider_measures_equal_ir_measures(name, provider):
    _need(provider)
    run, qrels = synthetic(5)
    m = parse_measure(name)
    assert (m.provider, m.native, m.spec) == (provider, False, None)
    res = evaluate(run, qrels, [name, "nDCG@10"])
    per_query, agg = reference(run, qrels, name, provider)
    assert res.aggregate[name] == pytest.approx(agg, abs=1e-12)
    assert set(per_query) <= set(res.qids)
    for qid in res.qids:  # queries a provider gives no value (Accuracy's unscored ones) show 0
        assert res.per_query[qid][name] == pytest.approx(per_query.get(qid, 0.0), abs=1e-12), qid
    assert len(res.qids) == len(qrels["qid"].unique()) and res.missing_queries > 0


def test_several_providers_at_once_equal_each_alone():
    for p in ("cwl_eval", "pyndeval"):
        _need(p)
    run, qrels = synthetic(9)
    names = ["SetP", "RBP(rel=1)", "alpha_nDCG@10", "nDCG@10", "Accuracy@5", "NumQ", "R@100"]
    res = evaluate(run, qrels, names)
    for name in names:
        alone = evaluate(run, qrels, [name])
        assert res.aggregate[name] == pytest.approx(alone.aggregate[name], abs=1e-12)
        assert (res.values[:, res.names.index(name)] == alone.values[:, 0]).all()
    assert res.aggregate["NumQ"] == len(qrels["qid"].unique()) - res.missing_queries  # a sum, as ir_measures sums it
    assert [m.total for m in res.measures] == [False, False, False, False, False, True, False]


def test_native_measures_stay_native_and_never_import_ir_measures():
    for name in ("nDCG@10", "Bpref", "infAP", "ERR@10", "Judged@10", "Success@1", "RR@10", "IPrec@0.5", "NumRel"):
        m = parse_measure(name)
        assert m.native and m.provider is None and m.spec is not None
    code = ("import sys; from vecpipe.evaluate import evaluate, parse_measures; "
            "parse_measures(['nDCG@10', 'Bpref', 'ERR@10', 'Judged@10', 'Success@1', 'ndcg_cut_10']); "
            "assert 'ir_measures' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("name,match", [
    ("SetPP", r"^unknown measure 'SetPP' \(did you mean SetP"),
    ("RBP@10", r"^measure 'RBP@10': no ir_measures provider computes it with these parameters; forms they compute: RBP\(rel=REQUIRED"),
    ("alpha_ndcg@10", r"did you mean alpha_nDCG@10\?"),
    ("SetP(cutoff=3)", r"unsupported params found"),
])
def test_no_provider_is_a_one_line_usage_error(name, match):
    with pytest.raises(UsageError, match=match) as exc:
        parse_measures([name])
    assert "\n" not in str(exc.value) and exc.value.exit_code == 2


@pytest.fixture
def pyndeval_missing(monkeypatch):
    """ir_measures' pyndeval provider as it is without the pyndeval package."""
    provider = ir_measures.providers.registry["pyndeval"]
    monkeypatch.setattr(provider, "_is_available", False)
    return provider


def test_missing_provider_package_names_the_extra(pyndeval_missing):
    with pytest.raises(ExtraError) as exc:
        parse_measure("alpha_nDCG@10")
    msg = str(exc.value)
    assert msg == ("measure 'alpha_nDCG@10' is computed by ir_measures' pyndeval provider, which needs the pyndeval "
                   "package: pip install 'vecpipe[measures]'")
    assert exc.value.exit_code == 1


def test_missing_provider_package_in_eval_and_compare(cli, tmp_path, pyndeval_missing):
    run, qrels = synthetic(5)
    pq.write_table(run, tmp_path / "run.parquet")
    pq.write_table(qrels, tmp_path / "qrels.parquet")
    out = tmp_path / "m.tsv"
    for args in (["eval", tmp_path / "run.parquet"], ["compare", tmp_path / "run.parquet", tmp_path / "run.parquet",
                                                       "--name", "a", "--name", "b"]):
        res = cli(*args, "--qrels", tmp_path / "qrels.parquet", "-m", "nDCG@10", "-m", "alpha_nDCG@10", "-o", out)
        assert res.exit_code == 1
        assert res.stderr == ("vecpipe: error: measure 'alpha_nDCG@10' is computed by ir_measures' pyndeval provider, "
                              "which needs the pyndeval package: pip install 'vecpipe[measures]'\n")
        assert not out.exists()


def test_provider_failure_is_one_line(monkeypatch):
    run, qrels = synthetic(5)
    provider = ir_measures.providers.registry["pytrec_eval"]

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(provider, "iter_calc", broken)
    from vecpipe.errors import VecpipeError

    with pytest.raises(VecpipeError, match=r"^ir_measures' pytrec_eval provider failed computing SetP \(RuntimeError: boom "
                                           r"second line\)") as exc:
        evaluate(run, qrels, ["SetP"])
    assert "\n" not in str(exc.value)


def _files(tmp_path: Path) -> tuple[Path, list[Path], list[pa.Table], pa.Table]:
    """Qrels and two runs over them (the synthetic run, and the same rows with their scores shuffled),
    each also as vecpipe reads it back (ranked: providers such as cwl_eval break ties by row order)."""
    run, qrels = synthetic(5)
    rng = np.random.default_rng(6)
    other = run.set_column(2, "score", pa.array(rng.permutation(run["score"].to_numpy()), pa.float32()))
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for table, p in zip((run, other), paths):
        pq.write_table(table, p)
    qp = tmp_path / "qrels.parquet"
    pq.write_table(qrels, qp)
    from vecpipe.formats.runs import read_run

    return qp, paths, [read_run(str(p)) for p in paths], qrels


def test_eval_cli_per_query_equals_ir_measures(cli, tmp_path):
    _need("cwl_eval")
    qp, [rp, _], [run, _], qrels = _files(tmp_path)
    names = ["SetP", "RBP(rel=1)", "NumQ", "nDCG@10"]
    res = cli("eval", rp, "--qrels", qp, *[a for n in names for a in ("-m", n)], "--format", "json", "--per-query")
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    for name, provider in (("SetP", "pytrec_eval"), ("RBP(rel=1)", "cwl_eval"), ("NumQ", "pytrec_eval")):
        per_query, agg = reference(run, qrels, name, provider)
        assert got["measures"][name] == pytest.approx(agg, abs=1e-12)
        for qid, values in got["per_query"].items():
            assert values[name] == pytest.approx(per_query.get(qid, 0.0), abs=1e-12)
    assert list(got["measures"]) == names


def test_compare_cli_provider_measures_equal_ir_measures(cli, tmp_path):
    _need("cwl_eval")
    qp, paths, tables, qrels = _files(tmp_path)
    res = cli("compare", *paths, "--qrels", qp, "-m", "SetF", "-m", "RBP(rel=1)", "-m", "nDCG@10", "--format", "json",
              "--per-query")
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)
    for run_json, table in zip(got["runs"], tables):
        for name, provider in (("SetF", "pytrec_eval"), ("RBP(rel=1)", "cwl_eval")):
            per_query, agg = reference(table, qrels, name, provider)
            assert run_json["measures"][name] == pytest.approx(agg, abs=1e-12)
            for qid, values in run_json["per_query"].items():
                assert values[name] == pytest.approx(per_query.get(qid, 0.0), abs=1e-12)
    tests = got["runs"][1]["tests"]
    assert set(tests) == {"SetF", "RBP(rel=1)", "nDCG@10"} and all(0 <= t["p"] <= 1 for t in tests.values())

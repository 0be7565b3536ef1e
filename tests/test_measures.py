"""The measure table: parsing (own parser == ir_measures' parse), trec_eval names, errors, and each
measure checked against pytrec_eval (trec_eval 9), or for ERR against gdeval as ir_measures runs it."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vecpipe.errors import InputError, UsageError
from vecpipe.evaluate import evaluate, format_tsv, parse_measure, parse_measures
from vecpipe.evaluate.measures import Measure
from vecpipe.evaluate.registry import REGISTRY
from vecpipe.formats.qrels import read_qrels

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------ parsing

# ir_measures notation for every row of the table, with parameterisations and spellings
NOTATION = [
    "nDCG", "nDCG@10", "NDCG@5", "nDCG(dcg='log2')@10", 'nDCG(dcg="log2")', "nDCG(cutoff=7)",
    "R", "R@100", "Recall@5", "R(rel=2)@10", "R(rel=0)@3",
    "RR", "RR@10", "MRR@10", "RR(rel=2)", "RR(rel=3)@5",
    "AP", "MAP", "AP@10", "AP(rel=2)@5", "MAP(rel=2)",
    "P@5", "Precision@10", "P(rel=2)@5", "P(rel=0)@1",
    "Judged", "Judged@10",
    "Success@1", "Success@10", "Success(rel=2)@5",
    "Rprec", "RPrec", "Rprec(rel=2)",
    "Bpref", "BPref", "Bpref(rel=2)",
    "infAP", "infAP(rel=2)",
    "ERR", "ERR@10", "ERR@20",
    "IPrec@0.5", "IPrec@0", "IPrec@1", "IPrec@0.25", "IPrec(rel=2)@0.3", "IPrec(recall=0.7)",
    "NumRet", "NumRet(rel=1)", "NumRet(rel=2)", "NumRelRet", "NumRelRet(rel=2)",
    "NumRel", "NumRel(rel=2)",
    # spellings Python's grammar allows, as ir_measures reads them
    "AP(rel = 2)", "nDCG@(10)", "nDCG@1_0", "P(rel=2,)@5", "nDCG@10 ",
]

TREC_NAMES = [
    "ndcg", "ndcg_cut_10", "ndcg_cut.5", "recall_100", "recall_5", "P_10", "P.5", "map", "map_cut_10",
    "recip_rank", "success_1", "success_10", "Rprec", "bpref", "infAP", "num_ret", "num_rel", "num_rel_ret",
    "iprec_at_recall_0.50", "iprec_at_recall_0.00", "iprec_at_recall_1.00", "iprec_at_recall.0.30",
]


def ir_parse(text: str) -> Measure:
    """The Measure that ir_measures' parse gives (what vecpipe's parse returned while it used ir_measures)."""
    import ir_measures

    m = ir_measures.parse_measure(text.strip())
    params = dict(m.params)
    rel = params.get("rel", None if m.NAME == "NumRet" else 1)
    recall = params.get("recall")
    return Measure(name=text.strip(), kind=m.NAME, cutoff=params.get("cutoff"), rel=rel,
                   recall=None if recall is None else float(recall))


def test_notation_covers_every_measure_in_the_table():
    assert {parse_measure(n).kind for n in NOTATION} == set(REGISTRY)
    assert {parse_measure(n).kind for n in TREC_NAMES} == set(REGISTRY) - {"Judged", "ERR"}  # not in trec_eval


@pytest.mark.parametrize("text", NOTATION)
def test_own_parse_equals_ir_measures_parse(text):
    pytest.importorskip("ir_measures")
    assert parse_measure(text) == ir_parse(text)


@pytest.mark.parametrize("text", TREC_NAMES)
def test_trec_eval_names_equal_ir_measures_trec_parse(text):
    ir_measures = pytest.importorskip("ir_measures")
    pytest.importorskip("pytrec_eval")
    [ref] = ir_measures.parse_trec_measure(text)
    mine = parse_measure(text)
    assert mine.name == text
    params = dict(ref.params)
    assert (mine.kind, mine.cutoff, mine.rel, mine.recall) == (
        ref.NAME, params.get("cutoff"), params.get("rel", None if ref.NAME == "NumRet" else 1),
        None if params.get("recall") is None else float(params["recall"]))


@pytest.mark.parametrize("trec,ir", [("ndcg_cut_10", "nDCG@10"), ("recall_100", "R@100"), ("P_10", "P@10"),
                                     ("map", "AP"), ("map_cut_10", "AP@10"), ("recip_rank", "RR"),
                                     ("success_10", "Success@10"), ("bpref", "Bpref"), ("num_ret", "NumRet"),
                                     ("num_rel_ret", "NumRelRet"), ("iprec_at_recall_0.50", "IPrec@0.5")])
def test_trec_alias_reported_under_its_own_name(trec, ir):
    qrels = qrels_table([("1", "a", 1), ("1", "b", 2), ("2", "c", 1)])
    run = run_table([("1", "a", 0.3), ("1", "x", 0.9), ("1", "b", 0.1), ("2", "c", 1.0)])
    res = evaluate(run, qrels, [trec, ir])
    assert res.names == [trec, ir]
    assert res.aggregate[trec] == res.aggregate[ir]


def test_parse_does_not_import_ir_measures():
    names = NOTATION[:-5] + TREC_NAMES
    code = ("import sys; from vecpipe.evaluate import parse_measures; "
            f"parse_measures({names!r}); assert 'ir_measures' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize(
    "name,match",
    [
        ("foo", r"^unknown measure 'foo'; known: nDCG@k"),
        ("ndcg@10", r"^unknown measure 'ndcg@10' \(did you mean nDCG@10\?\)"),
        ("mrr@10", r"did you mean MRR@10\?"),
        ("mAP", r"did you mean MAP\?"),
        ("sucess@5", r"did you mean Success@5\?"),
        ("ndcg_cutt_10", r"did you mean ndcg_cut_10\?"),
        ("RBP", r"^measure 'RBP': no ir_measures provider computes it with these parameters; forms they compute: RBP\(rel=REQUIRED"),
        ("SetP@10", r"^measure 'SetP@10': unsupported params found: \['cutoff'\]; forms ir_measures computes: SetP\("),
        ("BPM(max_rel=2)", r"^measure 'BPM\(max_rel=2\)': invalid param cutoff=missing; forms ir_measures computes: BPM\("),
        ("gm_map", r"unknown measure 'gm_map'"),
        ("nDGC@10", r"^unknown measure 'nDGC@10' \(did you mean nDCG@10\?\); known: "),
        ("SetQ", r"^unknown measure 'SetQ' \(did you mean SetR or SetP or SetF\?\)"),
        ("P", r"needs a cutoff, as in P@10"),
        ("IPrec", r"needs a recall level, as in IPrec@0.5"),
        ("ndcg_cut", r"needs a cutoff, as in ndcg_cut_10"),
        ("nDCG@0", r"cutoff must be a positive integer"),
        ("nDCG@x", r"cutoff must be a positive integer"),
        ("nDCG@-3", r"cutoff must be a positive integer"),
        ("P@2.5", r"cutoff must be a positive integer"),
        ("P_2.5", r"cutoff must be a positive integer"),
        ("Rprec@10", r"Rprec takes no cutoff"),
        ("NumRet@10", r"NumRet takes no cutoff"),
        ("IPrec@1.5", r"recall level must be a number from 0 to 1"),
        ("Success(rel=True)@5", r"rel must be a non-negative integer"),
        ("AP(rel=-1)", r"rel must be a non-negative integer"),
        ("nDCG(rel=2)@10", r"unsupported params found: \['rel'\]; forms ir_measures computes: nDCG\(dcg='log2'"),
        ("nDCG(dcg='exp')@10", r"forms ir_measures computes: nDCG\(dcg='log2'"),
        ("RR(judged_only=True)@5", r"no ir_measures provider computes it with these parameters; forms they compute: RR\("),
        ("nDCG@10@5", r"unknown measure"),
        ("nDCG(10)", r"unknown measure"),
        ("", r"empty measure name"),
    ],
)
def test_bad_names_are_usage_errors(name, match):
    with pytest.raises(UsageError, match=match) as exc:
        parse_measures([name]) if name else parse_measure(name)
    assert "\n" not in str(exc.value)
    assert exc.value.exit_code == 2


def test_parse_measures_splits_and_dedups():
    ms = parse_measures("nDCG@10, P(rel=2)@5 ndcg_cut_10 nDCG@10")
    assert [m.name for m in ms] == ["nDCG@10", "P(rel=2)@5", "ndcg_cut_10"]
    with pytest.raises(UsageError, match="no measure given"):
        parse_measures([])


# ------------------------------------------------------------------------------------------ helpers


def run_table(rows, score_type: pa.DataType | None = None) -> pa.Table:
    qid, docid, score = zip(*rows)
    score_type = score_type or pa.float32()
    return pa.table({"qid": pa.array(qid, pa.string()), "docid": pa.array(docid, pa.string()),
                     "score": pa.array(score, score_type)})


def qrels_table(rows) -> pa.Table:
    qid, docid, rel = zip(*rows)
    return pa.table({"qid": pa.array(qid, pa.string()), "docid": pa.array(docid, pa.string()),
                     "rel": pa.array(rel, pa.int32())})


def as_dicts(run: pa.Table, qrels: pa.Table):
    run_d: dict[str, dict[str, float]] = {}
    for q, d, s in zip(run["qid"].to_pylist(), run["docid"].to_pylist(), run["score"].to_pylist()):
        run_d.setdefault(q, {})[d] = float(s)
    qrels_d: dict[str, dict[str, int]] = {}
    for q, d, r in zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist(), qrels["rel"].to_pylist()):
        qrels_d.setdefault(q, {})[d] = int(r)
    return run_d, qrels_d


def trec_name(m: Measure) -> str:
    """The pytrec_eval measure computing ``m`` (its relevance level passed separately)."""
    k = m.cutoff
    if m.kind == "IPrec":
        return f"iprec_at_recall_{m.recall:.2f}"
    return {
        "nDCG": "ndcg" if k is None else f"ndcg_cut_{k}",
        "R": "set_recall" if k is None else f"recall_{k}",
        "P": f"P_{k}",
        "AP": "map" if k is None else f"map_cut_{k}",
        "RR": "recip_rank",
        "Success": f"success_{k}",
        "Rprec": "Rprec",
        "Bpref": "bpref",
        "infAP": "infAP",
        "NumRet": "num_ret" if m.rel is None else "num_rel_ret",
        "NumRel": "num_rel",
    }[m.kind]


def pytrec_reference(run: pa.Table, qrels: pa.Table, names: list[str]) -> dict[str, dict[str, float]]:
    """Per qrels query and measure, from pytrec_eval; a query the run lacks scores 0 (trec_eval -c),
    except NumRel, which the qrels alone define (trec_eval -c totals it over every qrels query)."""
    import pytrec_eval

    run_d, qrels_d = as_dicts(run, qrels)
    out: dict[str, dict[str, float]] = {q: {} for q in qrels_d}
    for m in parse_measures(names):
        te = trec_name(m)
        level = 1 if m.rel is None else m.rel
        ask = f"iprec_at_recall.{m.recall:.2f}" if m.kind == "IPrec" else te
        res = pytrec_eval.RelevanceEvaluator(qrels_d, {ask}, relevance_level=level).evaluate(
            {q: d for q, d in run_d.items() if q in qrels_d})
        for q, judged in qrels_d.items():
            if q in res:
                out[q][m.name] = res[q][te]
            elif m.kind == "NumRel":
                out[q][m.name] = float(sum(r >= level for r in judged.values()))
            else:
                out[q][m.name] = 0.0
    return out


def max_diff(run: pa.Table, qrels: pa.Table, names: list[str]) -> dict[str, float]:
    """Largest |vecpipe - pytrec_eval| per measure, over per-query values and the aggregate."""
    result = evaluate(run, qrels, names)
    ref = pytrec_reference(run, qrels, names)
    assert set(result.per_query) == set(ref)
    out = {}
    for m in result.measures:
        per = [abs(result.per_query[q][m.name] - ref[q][m.name]) for q in ref]
        agg = [ref[q][m.name] for q in ref]
        total = sum(agg) if m.spec.total else sum(agg) / len(agg)  # pytrec_eval: num_* are summed
        out[m.name] = max(max(per), abs(result.aggregate[m.name] - total))
    return out


NEW_MEASURES = [
    "Success@1", "Success@5", "Success@10", "Success@1000", "Success(rel=2)@5",
    "Rprec", "Rprec(rel=2)", "Bpref", "Bpref(rel=2)", "infAP", "infAP(rel=2)",
    "NumRet", "NumRelRet", "NumRet(rel=2)", "NumRel", "NumRel(rel=2)",
    *[f"IPrec@{x}" for x in (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)],
    "IPrec(rel=2)@0.5", "IPrec(rel=2)@0.1", "IPrec(rel=3)@0.2",
    # the trec_eval spellings of some of them
    "success_10", "bpref", "num_rel_ret", "iprec_at_recall_0.40",
]
OLD_MEASURES = ["nDCG@10", "nDCG", "R@100", "R", "RR", "AP", "AP@10", "P@10", "P(rel=2)@5", "AP(rel=2)"]


def synthetic(seed: int = 5, n_queries: int = 80, pool: int = 300):
    """Graded qrels (relevance -2..3, numeric qids) and a run with many tied scores, inf and -inf,
    qrels queries the run lacks, run-only queries, and a query judged only non-relevant."""
    rng = np.random.default_rng(seed)
    qrows, rrows = [], []
    for q in range(n_queries):
        docs = rng.choice(pool, size=int(rng.integers(1, 30)), replace=False)
        grades = [-2, -1, 0, 0, 0, 1, 1, 2, 3] if q % 9 else [0, -1]
        rels = [int(rng.choice(grades)) for _ in docs]
        if max(rels) < -1:  # trec_eval 9 corrupts memory on a query judged only below -1 (memset of -8 bytes)
            rels[0] = -1
        qrows.extend((str(q), f"d{d}", r) for d, r in zip(docs, rels))
        if q % 11 == 4:
            continue  # missing from the run
        depth = int(rng.integers(1, min(70, pool)))
        cand = set(rng.choice(pool, size=depth, replace=False).tolist())
        if rng.random() < 0.7:
            cand |= {int(d) for d in docs[: int(rng.integers(0, len(docs) + 1))]}
        for d in sorted(cand):
            s = float(np.round(rng.random() * 2, 1))  # few distinct values: ties everywhere
            u = rng.random()
            s = float("inf") if u < 0.03 else float("-inf") if u < 0.06 else s
            rrows.append((str(q), f"d{d}", s))
    for q in range(3):
        rrows.append((f"{1000 + q}", "d1", 1.0))
    return run_table(rrows), qrels_table(qrows)


def scifact_data(scifact: Path, seed: int = 13, extra: int = 60):
    """SciFact test qrels and a deterministic run: each query's judged docs (for 80% of queries) and
    ``extra`` random other corpus docs, scored by a seeded RNG rounded to 2 decimals (ties)."""
    import json

    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    with open(scifact / "corpus.jsonl", encoding="utf-8") as fh:
        corpus = [json.loads(line)["_id"] for line in fh]
    rng = np.random.default_rng(seed)
    judged: dict[str, list[str]] = {}
    for q, d in zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist()):
        judged.setdefault(q, []).append(d)
    rows = []
    for i, (q, docs) in enumerate(judged.items()):
        if i % 10 == 3:
            continue  # missing from the run
        cand = set(rng.choice(corpus, size=extra, replace=False).tolist())
        if rng.random() < 0.8:
            cand |= set(docs)
        for d in sorted(cand):
            rows.append((q, d, float(np.round(rng.random(), 2))))
    # graded variant: the real judgements, some promoted to 2 or 3, plus judged non-relevant and unjudged (-1)
    g_rows = [(q, d, int(rng.choice([1, 1, 2, 3]))) for q, d in zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist())]
    seen = {(q, d) for q, d, _ in g_rows}
    for q, *_ in list(g_rows)[:150]:
        for d in rng.choice(corpus, size=5, replace=False).tolist():
            if (q, d) not in seen:
                seen.add((q, d))
                g_rows.append((q, d, int(rng.choice([0, 0, -1]))))
    return run_table(rows), qrels, qrels_table(g_rows)


# ------------------------------------------------------------------------------------------ against pytrec_eval


def test_new_measures_match_pytrec_eval_on_synthetic_graded_qrels_with_ties():
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    run, qrels = synthetic()
    diffs = max_diff(run, qrels, NEW_MEASURES + OLD_MEASURES)
    assert max(diffs.values()) <= 1e-6, {k: v for k, v in diffs.items() if v > 1e-6}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_new_measures_match_pytrec_eval_other_seeds(seed):
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    run, qrels = synthetic(seed=seed, n_queries=40, pool=60)  # small pool: many judged docs retrieved
    diffs = max_diff(run, qrels, NEW_MEASURES)
    assert max(diffs.values()) <= 1e-6, {k: v for k, v in diffs.items() if v > 1e-6}


def test_new_measures_match_pytrec_eval_on_scifact(scifact):
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    run, qrels, graded = scifact_data(scifact)
    for q in (qrels, graded):
        diffs = max_diff(run, q, NEW_MEASURES)
        assert max(diffs.values()) <= 1e-6, {k: v for k, v in diffs.items() if v > 1e-6}
    res = evaluate(run, qrels, ["Success@10", "NumRel", "NumRet"])
    assert 0 < res.aggregate["Success@10"] < 1
    assert res.aggregate["NumRel"] == 339  # every judgement of SciFact test is relevant


def gdeval_err(run: pa.Table, qrels: pa.Table, k: int | None) -> dict[str, float]:
    """ERR as gdeval.pl computes it (a transcription), for every qrels query."""
    run_d, qrels_d = as_dicts(run, qrels)
    out = {}
    for q, judged in qrels_d.items():
        docs = sorted(run_d.get(q, {}).items(), key=lambda x: (-np.float32(x[1]), _Desc(x[0])))
        score, decay = 0.0, 1.0
        for i, (d, _) in enumerate(docs if k is None else docs[:k]):
            g = max(judged.get(d, 0), 0)
            r = (2**g - 1) / 2**4
            score += r * decay / (i + 1)
            decay *= 1 - r
        out[q] = score
    return out


class _Desc:
    def __init__(self, s: str):
        self.b = s.encode()

    def __lt__(self, other: _Desc) -> bool:
        return self.b > other.b

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.b == other.b


@pytest.mark.parametrize("k", [1, 5, 10, 20, None])
def test_err_matches_gdeval_formula(k):
    run, qrels = synthetic()
    name = "ERR" if k is None else f"ERR@{k}"
    res = evaluate(run, qrels, [name])
    ref = gdeval_err(run, qrels, k)
    assert max(abs(res.per_query[q][name] - v) for q, v in ref.items()) <= 1e-12


def _ir_measures_err(run: pa.Table, qrels: pa.Table, k: int) -> dict[str, float]:
    ir_measures = pytest.importorskip("ir_measures")
    if shutil.which("perl") is None:
        pytest.skip("perl is not installed: ir_measures' ERR provider (gdeval.pl) needs it")
    run_d, qrels_d = as_dicts(run, qrels)
    return {r.query_id: r.value for r in ir_measures.iter_calc([ir_measures.parse_measure(f"ERR@{k}")], qrels_d, run_d)}


@pytest.mark.parametrize("k", [1, 10, 20])
def test_err_matches_ir_measures_gdeval(k):
    """trec_eval has no ERR; ir_measures computes ERR@k with gdeval.pl, which prints 5 decimals."""
    run, qrels = synthetic()
    ref = _ir_measures_err(run, qrels, k)
    res = evaluate(run, qrels, [f"ERR@{k}"])
    assert max(abs(res.per_query[q][f"ERR@{k}"] - ref.get(q, 0.0)) for q in res.per_query) <= 1e-5  # gdeval prints 5 decimals


def test_err_on_scifact_matches_ir_measures_gdeval(scifact):
    run, _, graded = scifact_data(scifact)
    ref = _ir_measures_err(run, graded, 10)
    res = evaluate(run, graded, ["ERR@10"])
    assert max(abs(res.per_query[q]["ERR@10"] - ref.get(q, 0.0)) for q in res.per_query) <= 1e-5  # gdeval prints 5 decimals
    exact = gdeval_err(run, graded, 10)
    assert max(abs(res.per_query[q]["ERR@10"] - v) for q, v in exact.items()) <= 1e-12


def test_err_refuses_grades_above_4():
    qrels = qrels_table([("1", "a", 5), ("1", "b", 1)])
    run = run_table([("1", "a", 1.0)])
    with pytest.raises(InputError, match=r"ERR@10 takes relevance grades up to 4 .* query '1' judges document 'a' 5"):
        evaluate(run, qrels, ["ERR@10"], qrels_name="q.tsv")
    assert evaluate(run, qrels, ["nDCG@10"]).aggregate["nDCG@10"] > 0


# ------------------------------------------------------------------------------------------ hand-made values


def test_hand_computed_values():
    # trec_eval ranks (score desc, ties by docid desc): e(9, rel 3) c(5, rel 0) b(5, rel 2) x(4, not in the
    # qrels) u(3, rel -1: unjudged) a(1, rel 1); z (rel 1) is not retrieved: R = 4
    qrels = qrels_table([("q", "a", 1), ("q", "b", 2), ("q", "c", 0), ("q", "u", -1), ("q", "e", 3), ("q", "z", 1)])
    run = run_table([("q", "a", 1.0), ("q", "b", 5.0), ("q", "c", 5.0), ("q", "x", 4.0), ("q", "u", 3.0),
                     ("q", "e", 9.0)])
    res = evaluate(run, qrels, ["Success@1", "Rprec", "Bpref", "NumRet", "NumRelRet", "NumRel", "IPrec@0.5",
                                "infAP", "ERR@2"]).aggregate
    assert res["Success@1"] == 1.0
    assert res["Rprec"] == pytest.approx(2 / 4)  # R = 4 (a, b, e, z): e and b in the top 4
    # relevant e (0 non-relevant above), b (c above: 1 - 1/min(1, 4)), a (c above: same)
    assert res["Bpref"] == pytest.approx((1 + 0 + 0) / 4)
    assert (res["NumRet"], res["NumRelRet"], res["NumRel"]) == (6, 3, 4)
    # IPrec@0.5: c = int(0.5 * 4 + 0.9) = 2 relevant: b at rank 3 (2/3); a at rank 6 gives 3/6
    assert res["IPrec@0.5"] == pytest.approx(2 / 3)
    eps = 1e-5
    j2 = 1 / 3 + (2 / 3) * ((1 + 1 + 0) / 2) * ((1 + eps) / (1 + 1 + 2 * eps))
    j5 = 1 / 6 + (5 / 6) * ((2 + 1 + 1) / 5) * ((2 + eps) / (2 + 1 + 2 * eps))
    assert res["infAP"] == pytest.approx((1 + j2 + j5) / 4)
    assert res["ERR@2"] == pytest.approx(7 / 16)  # e (grade 3: p = (2**3 - 1) / 16) then c (grade 0)


def test_count_measures_sum_and_print_as_integers():
    qrels = qrels_table([("1", "a", 1), ("1", "b", 1), ("2", "c", 1), ("3", "d", 2)])
    run = run_table([("1", "a", 1.0), ("1", "x", 0.5), ("2", "c", 1.0), ("2", "y", 0.7), ("2", "z", 0.1)])
    res = evaluate(run, qrels, ["NumRet", "NumRel", "NumRelRet", "P@1"])
    assert res.aggregate == {"NumRet": 5.0, "NumRel": 4.0, "NumRelRet": 2.0, "P@1": pytest.approx(2 / 3)}
    assert res.per_query["3"] == {"NumRet": 0.0, "NumRel": 1.0, "NumRelRet": 0.0, "P@1": 0.0}  # missing query
    assert format_tsv(res).splitlines()[1:] == ["NumRet\t5", "NumRel\t4", "NumRelRet\t2", "P@1\t0.6667"]


def test_deeper_than_run():
    qrels = qrels_table([("1", "a", 1), ("2", "b", 1)])
    run = run_table([("1", "a", 1.0), ("1", "x", 0.5), ("1", "y", 0.2), ("2", "b", 0.4)])
    res = evaluate(run, qrels, ["R@1000", "nDCG@3", "P@4", "AP", "IPrec@0.5", "Success@3", "ndcg_cut_5"])
    assert res.max_depth == 3
    assert res.deeper_than_run == ["R@1000", "P@4", "ndcg_cut_5"]


# ------------------------------------------------------------------------------------------ ordering


def test_infinite_scores_order_like_pytrec_eval():
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels = qrels_table([("1", "a", 1), ("1", "b", 2), ("1", "c", 1), ("2", "d", 1), ("2", "e", 1)])
    rows = [("1", "a", math.inf), ("1", "b", math.inf), ("1", "x", -math.inf), ("1", "c", -math.inf), ("1", "y", 0.0),
            ("2", "d", -math.inf), ("2", "e", -0.0), ("2", "f", 0.0), ("2", "g", math.inf)]
    run = run_table(rows)
    diffs = max_diff(run, qrels, ["RR", "AP", "nDCG@3", "P@1", "Success@1", "IPrec@0.5", "Bpref", "infAP"])
    assert max(diffs.values()) == 0.0


def test_float64_scores_compare_as_float32_like_trec_eval_9():
    """trec_eval 9 (pytrec_eval) stores scores as C floats: 1 + 1e-9 ties with 1, and 1e39 with inf."""
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels = qrels_table([("1", "a", 1), ("2", "p", 1)])
    run = run_table([("1", "a", 1.0 + 1e-9), ("1", "b", 1.0), ("2", "p", math.inf), ("2", "q", 1e39)], pa.float64())
    res = evaluate(run, qrels, ["RR"])
    assert res.per_query == {"1": {"RR": 0.5}, "2": {"RR": 0.5}}  # b before a, q before p: docid descending
    assert max(max_diff(run, qrels, ["RR", "AP", "P@1"]).values()) == 0.0


def test_nan_scores_refused():
    with pytest.raises(InputError, match="1 scores are NaN"):
        evaluate(run_table([("1", "a", math.nan), ("1", "b", 1.0)]), qrels_table([("1", "a", 1)]))

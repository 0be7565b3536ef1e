"""Runs and qrels readers/writers, and measures checked against pytrec_eval (trec_eval)."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from vecpipe.errors import InputError, UsageError
from vecpipe.evaluate import evaluate, format_json, format_tsv, parse_measures
from vecpipe.formats.qrels import read_qrels
from vecpipe.formats.runs import RUN_SCHEMA, RunWriter, read_run, sort_run, write_run

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "scifact"

ALL_MEASURES = [
    "nDCG@10", "nDCG@3", "nDCG", "R@100", "R@5", "R", "RR@10", "RR@1", "RR", "AP", "AP@10",
    "P@10", "P@1", "Judged@10", "Judged",
]
GRADED_MEASURES = ["P(rel=2)@5", "AP(rel=2)", "RR(rel=2)", "R(rel=2)@10"]


# ------------------------------------------------------------------------------------------ helpers


def run_table(rows) -> pa.Table:
    qid, docid, score = zip(*rows)
    return pa.table({"qid": pa.array(qid, pa.string()), "docid": pa.array(docid, pa.string()),
                     "score": pa.array(score, pa.float32())})


def qrels_table(rows) -> pa.Table:
    qid, docid, rel = zip(*rows)
    return pa.table({"qid": pa.array(qid, pa.string()), "docid": pa.array(docid, pa.string()),
                     "rel": pa.array(rel, pa.int32())})


def trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's order: score descending, ties by docid descending (byte order)."""
    return [d for d, _ in sorted(docs.items(), key=lambda x: (-x[1], _neg_bytes(x[0])))]


class _neg_bytes:
    def __init__(self, s):
        self.b = s.encode()

    def __lt__(self, other):
        return self.b > other.b

    def __eq__(self, other):
        return self.b == other.b


def to_dicts(run: pa.Table, qrels: pa.Table):
    run_d: dict[str, dict[str, float]] = {}
    for q, d, s in zip(run["qid"].to_pylist(), run["docid"].to_pylist(), run["score"].to_pylist()):
        run_d.setdefault(q, {})[d] = float(s)
    qrels_d: dict[str, dict[str, int]] = {}
    for q, d, r in zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist(), qrels["rel"].to_pylist()):
        qrels_d.setdefault(q, {})[d] = int(r)
    return run_d, qrels_d


def reference(run: pa.Table, qrels: pa.Table, measures: list[str]) -> dict[str, dict[str, float]]:
    """Per-query values from pytrec_eval (trec_eval), -c style: every qrels query, missing ones 0."""
    import pytrec_eval

    run_d, qrels_d = to_dicts(run, qrels)
    out = {q: {} for q in qrels_d}
    for m in parse_measures(measures):
        k = m.cutoff
        if m.kind == "Judged":  # ir_measures' own measure, not in trec_eval
            for q in qrels_d:
                ranked = trec_order(run_d.get(q, {}))
                top = ranked if k is None else ranked[:k]
                out[q][m.name] = (sum(d in qrels_d[q] for d in top) / len(top)) if top else 0.0
            continue
        this_run = run_d
        if m.kind == "nDCG":
            te = "ndcg" if k is None else f"ndcg_cut_{k}"
        elif m.kind == "R":
            te = "set_recall" if k is None else f"recall_{k}"
        elif m.kind == "P":
            te = f"P_{k}"
        elif m.kind == "AP":
            te = "map" if k is None else f"map_cut_{k}"
        elif m.kind == "RR":
            te = "recip_rank"
            if k is not None:  # trec_eval has no cutoff for recip_rank: truncate the ranking
                this_run = {q: {d: docs[d] for d in trec_order(docs)[:k]} for q, docs in run_d.items()}
        else:
            raise AssertionError(m)
        ev = pytrec_eval.RelevanceEvaluator(qrels_d, {te}, relevance_level=m.rel)
        res = ev.evaluate({q: docs for q, docs in this_run.items() if q in qrels_d})
        for q in qrels_d:
            out[q][m.name] = res.get(q, {}).get(te, 0.0)
    return out


def assert_matches(run, qrels, measures):
    result = evaluate(run, qrels, measures)
    ref = reference(run, qrels, measures)
    assert set(result.per_query) == set(ref)
    for q, vals in ref.items():
        for name, value in vals.items():
            assert result.per_query[q][name] == pytest.approx(value, abs=1e-4), (q, name)
    for name in measures:
        mean = sum(ref[q][name] for q in ref) / len(ref)
        assert result.aggregate[name] == pytest.approx(mean, abs=1e-4), name
    return result


def load_scifact():
    if not (SCIFACT / "qrels" / "test.tsv").exists():
        pytest.skip(f"SciFact dataset not found at {SCIFACT} (shared/datasets/scifact); real-qrels checks skipped")
    qrels = read_qrels(SCIFACT / "qrels" / "test.tsv")
    corpus_ids = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            corpus_ids.append(json.loads(line)["_id"])
    return qrels, corpus_ids


def synthetic_run(qrels: pa.Table, corpus_ids: list[str], seed: int = 7, depth: int = 100) -> pa.Table:
    """Random scores with many ties (2 decimals); ~10% of qrels queries missing; run-only queries;
    relevant documents placed at random depths for about 70% of queries."""
    rng = np.random.default_rng(seed)
    qids = list(dict.fromkeys(qrels["qid"].to_pylist()))
    rel_docs: dict[str, list[str]] = {}
    for q, d in zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist()):
        rel_docs.setdefault(q, []).append(d)
    missing = set(rng.choice(qids, size=max(1, len(qids) // 10), replace=False).tolist())
    rows = []
    for q in qids + [f"run-only-{i}" for i in range(15)]:
        if q in missing:
            continue
        docs = set(rng.choice(corpus_ids, size=depth, replace=False).tolist())
        if rng.random() < 0.7:
            docs |= set(rel_docs.get(q, []))
        docs = sorted(docs)
        scores = np.round(rng.random(len(docs)) * 3, 2).astype(np.float32)
        if rng.random() < 0.2:  # whole-query ties
            scores[:] = np.float32(0.5)
        rows.extend(zip([q] * len(docs), docs, scores.tolist()))
    return run_table(rows)


def graded(qrels: pa.Table, corpus_ids: list[str], seed: int = 3) -> pa.Table:
    """Real qrels plus deterministic extra judgements: some rel 2, 0 and -1 for the same queries."""
    rng = np.random.default_rng(seed)
    rows = list(zip(qrels["qid"].to_pylist(), qrels["docid"].to_pylist(), qrels["rel"].to_pylist()))
    seen = {(q, d) for q, d, _ in rows}
    upgraded = []
    for q, d, r in rows:
        upgraded.append((q, d, 2 if rng.random() < 0.3 else r))
    for q in sorted({q for q, _, _ in rows})[:200]:
        for d in rng.choice(corpus_ids, size=8, replace=False).tolist():
            if (q, d) not in seen:
                seen.add((q, d))
                upgraded.append((q, d, int(rng.choice([0, 0, 1, 2, 3, -1]))))
    upgraded.append(("only-nonrelevant", corpus_ids[0], 0))
    return qrels_table(upgraded)


# ------------------------------------------------------------------------------------------ pytrec_eval


def test_matches_pytrec_eval_on_scifact_qrels():
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels, corpus_ids = load_scifact()
    run = synthetic_run(qrels, corpus_ids)
    result = assert_matches(run, qrels, ALL_MEASURES)
    nq = len(set(qrels["qid"].to_pylist()))
    assert result.n_qrels_queries == nq
    assert result.missing_queries == nq // 10
    assert result.n_run_queries == nq - nq // 10 + 15
    assert 0 < result.aggregate["nDCG@10"] < 1


def test_matches_pytrec_eval_graded_and_ties():
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels, corpus_ids = load_scifact()
    g = graded(qrels, corpus_ids)
    run = synthetic_run(g, corpus_ids, seed=11, depth=60)
    assert_matches(run, g, ALL_MEASURES + GRADED_MEASURES)


def test_matches_pytrec_eval_small_handmade():
    pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels = qrels_table([("a", "d1", 1), ("a", "d2", 2), ("a", "d3", 0), ("a", "d9", 1), ("b", "x", 0),
                         ("c", "y", -1), ("c", "z", 1), ("m", "d1", 1)])
    run = run_table([("a", "d1", 0.5), ("a", "d2", 0.5), ("a", "d3", 0.9), ("a", "d4", 0.5), ("b", "x", 1.0),
                     ("c", "y", 2.0), ("c", "z", 1.0), ("c", "w", 3.0), ("zz", "q", 1.0)])
    assert_matches(run, qrels, ALL_MEASURES + GRADED_MEASURES)


# ------------------------------------------------------------------------------------------ hand-made values


def test_ties_broken_by_docid_descending_like_trec_eval():
    qrels = qrels_table([("q", "a", 1)])
    run = run_table([("q", "a", 1.0), ("q", "b", 1.0), ("q", "c", 1.0)])
    # trec_eval ranks c, b, a: the relevant 'a' is third
    res = evaluate(run, qrels, ["RR", "P@1", "nDCG@3"])
    assert res.aggregate["RR"] == pytest.approx(1 / 3)
    assert res.aggregate["P@1"] == 0.0
    assert res.aggregate["nDCG@3"] == pytest.approx(1 / math.log2(4))


def test_rank_column_is_ignored():
    qrels = qrels_table([("q", "a", 1)])
    run = run_table([("q", "a", 0.1), ("q", "b", 0.9)]).append_column("rank", pa.array([1, 2], pa.int32()))
    assert evaluate(run, qrels, ["RR"]).aggregate["RR"] == pytest.approx(0.5)


def test_missing_queries_score_zero_and_run_only_ignored():
    qrels = qrels_table([("q1", "a", 1), ("q2", "b", 1)])
    run = run_table([("q1", "a", 1.0), ("other", "b", 1.0)])
    res = evaluate(run, qrels, ["P@1", "AP"])
    assert res.aggregate == {"P@1": 0.5, "AP": 0.5}
    assert res.per_query["q2"] == {"P@1": 0.0, "AP": 0.0}
    assert "other" not in res.per_query
    assert (res.n_qrels_queries, res.missing_queries, res.n_run_queries) == (2, 1, 2)


def test_ndcg_graded_hand_computed():
    qrels = qrels_table([("q", "a", 3), ("q", "b", 1), ("q", "c", 0), ("q", "z", 2)])
    run = run_table([("q", "b", 3.0), ("q", "c", 2.0), ("q", "a", 1.0)])
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    res = evaluate(run, qrels, ["nDCG@3", "nDCG@2", "R@2", "P@2", "AP", "Judged@10"])
    assert res.aggregate["nDCG@3"] == pytest.approx(dcg / idcg)
    assert res.aggregate["nDCG@2"] == pytest.approx(1 / (3 + 2 / math.log2(3)))
    assert res.aggregate["R@2"] == pytest.approx(1 / 3)
    assert res.aggregate["P@2"] == pytest.approx(0.5)
    assert res.aggregate["AP"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert res.aggregate["Judged@10"] == pytest.approx(1.0)


def test_per_query_table_and_formats():
    qrels = qrels_table([("q1", "a", 1), ("q2", "b", 1)])
    run = run_table([("q1", "a", 1.0), ("q2", "c", 2.0), ("q2", "b", 1.0)])
    res = evaluate(run, qrels, ["RR", "P@1"])
    t = res.per_query_table()
    assert t.column_names == ["qid", "measure", "value"]
    assert t.num_rows == 4
    assert t.to_pylist()[2] == {"qid": "q2", "measure": "RR", "value": 0.5}
    tsv = format_tsv(res)
    assert tsv.splitlines() == ["measure\tvalue", "RR\t0.7500", "P@1\t0.5000"]
    tsv_q = format_tsv(res, per_query=True).splitlines()
    assert tsv_q[0] == "qid\tmeasure\tvalue" and "q2\tRR\t0.5000" in tsv_q and tsv_q[-1] == "all\tP@1\t0.5000"
    doc = json.loads(format_json(res, per_query=True))
    assert doc["measures"] == {"RR": 0.75, "P@1": 0.5}
    assert doc["per_query"]["q2"]["RR"] == 0.5
    assert doc["queries"] == 2 and doc["missing_queries"] == 0 and doc["run_queries"] == 2


def test_default_measures():
    qrels = qrels_table([("q", "a", 1)])
    res = evaluate(run_table([("q", "a", 1.0)]), qrels)
    assert list(res.aggregate) == ["nDCG@10", "R@100", "RR@10", "AP"]
    assert all(v == 1.0 for v in res.aggregate.values())


# ------------------------------------------------------------------------------------------ measures


def test_parse_measures():
    ms = parse_measures(["nDCG@10", "R@100,RR@10", "AP", "P(rel=2)@5", "nDCG@10"])
    assert [m.name for m in ms] == ["nDCG@10", "R@100", "RR@10", "AP", "P(rel=2)@5"]
    assert (ms[0].kind, ms[0].cutoff) == ("nDCG", 10)
    assert ms[4].rel == 2


@pytest.mark.parametrize("name", ["foo", "ndcg@10", "nDCG@x", "nDCG@0", "P", "RBP", "RR(judged_only=True)@5"])
def test_unknown_or_unsupported_measure(name):
    with pytest.raises(UsageError) as exc:
        parse_measures([name])
    msg = str(exc.value)
    assert "\n" not in msg and name in msg
    if name in ("foo", "ndcg@10"):
        assert msg.startswith(f"unknown measure '{name}'") and "known: nDCG@k" in msg
    if name == "ndcg@10":
        assert "did you mean nDCG@10" in msg


def test_no_common_query():
    qrels = qrels_table([("1", "a", 1)])
    run = run_table([("PLAIN-5", "a", 1.0)])
    with pytest.raises(InputError, match=r"run and qrels share no query id; check that they come from the same "
                                         r"dataset \(run qids look like 'PLAIN-5', qrels qids look like '1'\)"):
        evaluate(run, qrels)


def test_duplicate_docs_refused():
    qrels = qrels_table([("q", "a", 1)])
    run = run_table([("q", "a", 1.0), ("q", "b", 0.5), ("q", "a", 0.2)])
    with pytest.raises(InputError, match="lists document 'a' more than once"):
        evaluate(run, qrels)


def test_missing_run_column():
    with pytest.raises(InputError, match="missing column 'score'"):
        evaluate(pa.table({"qid": ["q"], "docid": ["a"]}), qrels_table([("q", "a", 1)]))


# ------------------------------------------------------------------------------------------ qrels readers


QRELS_ROWS = [("1", "d1", 1), ("1", "d2", 0), ("2", "d3", 2)]


def test_read_qrels_beir_tsv(tmp_path):
    p = tmp_path / "test.tsv"
    p.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in QRELS_ROWS))
    t = read_qrels(p)
    assert t.schema.names == ["qid", "docid", "rel"] and t.schema.field("rel").type == pa.int32()
    assert list(zip(*[t[c].to_pylist() for c in t.column_names])) == QRELS_ROWS


def test_read_qrels_trec(tmp_path):
    p = tmp_path / "qrels.txt"
    p.write_text("".join(f"{q} 0 {d}  {r}\n" for q, d, r in QRELS_ROWS) + "\n")
    t = read_qrels(p)
    assert list(zip(*[t[c].to_pylist() for c in t.column_names])) == QRELS_ROWS


@pytest.mark.parametrize("fmt", ["parquet", "arrow-file", "arrow-stream"])
def test_read_qrels_tables(tmp_path, fmt):
    t = pa.table({"query-id": [int(q) for q, _, _ in QRELS_ROWS], "corpus-id": [d for _, d, _ in QRELS_ROWS],
                  "score": [float(r) for _, _, r in QRELS_ROWS]})
    p = tmp_path / "qrels.bin"
    if fmt == "parquet":
        pq.write_table(t, p)
    elif fmt == "arrow-file":
        with ipc.new_file(str(p), t.schema) as w:
            w.write_table(t)
    else:
        with ipc.new_stream(str(p), t.schema) as w:
            w.write_table(t)
    out = read_qrels(p)
    assert list(zip(*[out[c].to_pylist() for c in out.column_names])) == QRELS_ROWS


def test_read_qrels_scifact():
    if not (SCIFACT / "qrels" / "test.tsv").exists():
        pytest.skip(f"SciFact dataset not found at {SCIFACT}")
    t = read_qrels(SCIFACT / "qrels" / "test.tsv")
    assert t.num_rows == 339 and t["qid"][0].as_py() == "1" and t["docid"][0].as_py() == "31715818"


@pytest.mark.parametrize(
    "text,match",
    [
        ("1 0 d1 1\n1 0 d2\n", "line 2: expected 4 fields"),
        ("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\tx\n", "line 3: relevance 'x' is not an integer"),
        ("1 0 d1 1 extra more\n", "line 1: expected TREC qrels"),
        ("1 0 d1 1\n1 0 d1 2\n", "judges document 'd1' 2 times"),
        ("query-id\tcorpus-id\tscore\n", "no judgements"),
        ("", "input is empty"),
    ],
)
def test_read_qrels_bad(tmp_path, text, match):
    p = tmp_path / "qrels.tsv"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        read_qrels(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_read_qrels_missing_column(tmp_path):
    p = tmp_path / "q.parquet"
    pq.write_table(pa.table({"qid": ["1"], "docid": ["a"]}), p)
    with pytest.raises(InputError, match="miss a 'rel' column"):
        read_qrels(p)


def test_read_qrels_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_qrels(tmp_path / "nope.tsv")


# ------------------------------------------------------------------------------------------ runs


def sample_run() -> pa.Table:
    return sort_run(run_table([("q2", "b", 0.5), ("q2", "a", 0.5), ("q2", "c", 0.9), ("q1", "x", 1.25e-7),
                               ("q1", "y", 3.0)]))


def test_sort_run_order_and_ranks():
    t = sample_run()
    assert t.schema == RUN_SCHEMA
    assert t["qid"].to_pylist() == ["q2", "q2", "q2", "q1", "q1"]  # first-appearance order of queries
    assert t["docid"].to_pylist() == ["c", "a", "b", "y", "x"]  # ties: docid ascending
    assert t["rank"].to_pylist() == [1, 2, 3, 1, 2]


def _write_arrow(table, path, stream):
    with (ipc.new_stream if stream else ipc.new_file)(str(path), table.schema) as w:
        w.write_table(table)


@pytest.mark.parametrize("fmt", ["arrow-stream", "arrow-file", "parquet", "trec", "trec-tabs"])
def test_read_run_formats(tmp_path, fmt):
    t = sample_run()
    p = tmp_path / "run.data"
    if fmt == "arrow-stream":
        _write_arrow(t, p, True)
    elif fmt == "arrow-file":
        _write_arrow(t, p, False)
    elif fmt == "parquet":
        pq.write_table(t, p)
    elif fmt == "trec":
        p.write_bytes(b"".join(f"{q} Q0 {d} {r} {s!r} tag\n".encode() for q, d, r, s in
                               zip(*[t[c].to_pylist() for c in ("qid", "docid", "rank", "score")])))
    else:
        p.write_text("".join(f"{q}\tQ0\t{d}\t{r}\t{s!r}\ttag  \n" for q, d, r, s in
                             zip(*[t[c].to_pylist() for c in ("qid", "docid", "rank", "score")])))
    out = read_run(p)
    assert out.schema == RUN_SCHEMA
    assert out.equals(t)


def test_read_run_without_rank_is_sorted(tmp_path):
    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"query_id": [1, 1], "doc_id": ["a", "b"], "score": [0.1, 0.2]}), p)
    out = read_run(p)
    assert out["docid"].to_pylist() == ["b", "a"] and out["rank"].to_pylist() == [1, 2]
    assert out["qid"].to_pylist() == ["1", "1"]


def test_read_run_stdin(monkeypatch):
    t = sample_run()
    sink = io.BytesIO()
    with ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)

    class FakeStdin:
        buffer = io.BufferedReader(io.BytesIO(sink.getvalue()))

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert read_run("-").equals(t)


def test_read_run_stdin_trec(monkeypatch):
    class FakeStdin:
        buffer = io.BufferedReader(io.BytesIO(b"q1 Q0 a 1 2.5 t\nq1 Q0 b 2 1.5 t\n"))

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    out = read_run("-")
    assert out["docid"].to_pylist() == ["a", "b"] and out["score"].to_pylist() == [2.5, 1.5]


@pytest.mark.parametrize(
    "text,match",
    [
        ("q1 Q0 a 1 2.5 t\nq1 Q0 b 2 1.5 t\nq1 Q0 c 3 t\n", "line 3: expected 6 fields"),
        ("q1 Q0 a 1 2.5 t\nq1 Q0 b two 1.5 t\n", "line 2: rank 'two' is not an integer"),
        ("q1 Q0 a 1 high t\n", "line 1: score 'high' is not a number"),
        ("\n\n", "input is empty"),
        ("", "input is empty"),
    ],
)
def test_read_run_bad_trec(tmp_path, text, match):
    p = tmp_path / "run.trec"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        read_run(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_read_run_missing_column(tmp_path):
    p = tmp_path / "run.arrow"
    _write_arrow(pa.table({"qid": ["q"], "docid": ["a"]}), p, False)
    with pytest.raises(InputError, match=r"missing column 'score'.*a run needs columns qid, docid, score"):
        read_run(p)


def test_read_run_truncated(tmp_path):
    p = tmp_path / "run.parquet"
    pq.write_table(sample_run(), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"unreadable parquet data.*truncated or corrupt"):
        read_run(p)


@pytest.mark.parametrize("fmt,ext", [("arrow", ".arrow"), ("parquet", ".parquet"), ("trec", ".trec"), (None, ".trec"),
                                     (None, ".parquet")])
def test_write_run_round_trip(tmp_path, fmt, ext):
    t = sample_run()
    p = tmp_path / f"out{ext}"
    assert write_run(t, p, fmt, tag="mytag") == 5
    assert read_run(p).equals(t)
    if ext == ".trec":
        first = p.read_text().splitlines()[0]
        assert first == "q2 Q0 c 1 0.9 mytag"
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".")]  # no temporary files left


def test_run_writer_streams_batches(tmp_path):
    t = sample_run()
    p = tmp_path / "run.arrow"
    with RunWriter(p, "arrow") as w:
        for b in t.to_batches(max_chunksize=2):
            w.write(b)
        assert not p.exists()  # atomic: appears on close
    assert read_run(p).equals(t)
    assert w.rows == 5


def test_run_writer_failure_leaves_nothing(tmp_path):
    p = tmp_path / "run.trec"
    with pytest.raises(RuntimeError), RunWriter(p, "trec") as w:
        w.write(sample_run())
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_run_trec_stdout(capsysbinary):
    write_run(sample_run(), "-", "trec", tag="t")
    out = capsysbinary.readouterr().out.decode()
    assert out.splitlines()[3] == "q1 Q0 y 1 3 t"
    fields = out.splitlines()[4].split()
    assert fields[:4] == ["q1", "Q0", "x", "2"] and fields[5] == "t"
    assert np.float32(float(fields[4])) == np.float32(1.25e-7)


def test_write_run_arrow_stdout(capsysbinary):
    write_run(sample_run().to_batches(), None)
    data = capsysbinary.readouterr().out
    assert ipc.open_stream(data).read_all().equals(sample_run())


def test_write_run_bad_format_and_tag(tmp_path):
    with pytest.raises(UsageError):
        write_run(sample_run(), tmp_path / "x.out", "csv")
    with pytest.raises(UsageError):
        write_run(sample_run(), tmp_path / "x.trec", "trec", tag="has space")


def test_trec_round_trip_preserves_float32_scores(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(1000).astype(np.float32) * np.float32(1e-3)
    t = sort_run(pa.table({"qid": ["q"] * 1000, "docid": [f"d{i}" for i in range(1000)], "score": scores}))
    p = tmp_path / "r.trec"
    write_run(t, p)
    assert read_run(p).equals(t)


def test_eval_through_files(tmp_path):
    qp = tmp_path / "qrels.tsv"
    qp.write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\nq2\tb\t1\n")
    rp = tmp_path / "run.trec"
    write_run(run_table([("q1", "a", 2.0), ("q1", "b", 1.0), ("q2", "a", 2.0), ("q2", "b", 1.0)]), rp)
    res = evaluate(read_run(rp), read_qrels(qp), ["RR", "P@1"])
    assert res.aggregate == {"RR": 0.75, "P@1": 0.5}

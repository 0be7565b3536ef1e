"""Search-time techniques from the literature (issue 12) on a BEIR dataset: three tables.

    python bench/bench_literature.py ../shared/datasets/scifact \\
        --dense-docs .dev/scifact/cpu.docs.parquet --dense-queries .dev/scifact/cpu.queries.parquet

Fitting uses the train queries and qrels only; every figure is measured on the test queries.
Dense default model over a Flat index (the corpus and queries are embedded unless vectors are given).

1. Hubness reduction (search --hubness qbnorm|dbnorm --bank TRAIN_QUERY_VECTORS): nDCG@10, R@100
   and hubness (skewness of the k-occurrence distribution, share of documents in no top-k list) at
   several betas, and at the beta chosen on train (bank: half the train queries, the other half scored).
2. Calibrated cutoff (calibrate on the train run, cut the test run; top-100 of the dense run):
   ECE and PR-AUC against a global Platt fit of the raw cosine; at the threshold chosen for 95%
   recall of the train positives, the test precision and recall, against the global cosine threshold
   chosen the same way.
3. Vector pseudo-relevance feedback (search --prf K): nDCG@10 and R@100 against no feedback.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp

from vecpipe.evaluate.calibration import average_precision, expected_calibration_error, fit_logistic

BETAS = (1.0, 5.0, 20.0)
PRF_KS = (3, 5, 10)
TARGET_RECALL = 0.95


def measures(run: Path, qrels: Path) -> tuple[float, float]:
    _, out, _ = vp("eval", str(run), "--qrels", str(qrels), "-m", "nDCG@10", "-m", "R@100", "--format", "json", capture=True)
    m = json.loads(out)["measures"]
    return m["nDCG@10"], m["R@100"]


def qrels_ids(path: Path) -> set[str]:
    return {line.split("\t")[0] for line in path.read_text().splitlines()[1:] if line.strip()}


def relevant_pairs(path: Path) -> set[tuple[str, str]]:
    out = set()
    for line in path.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) >= 3 and int(parts[2]) > 0:
            out.add((parts[0], parts[1]))
    return out


def subset(queries: Path, ids: set[str], out: Path) -> Path:
    table = pq.read_table(queries)
    pq.write_table(table.filter(pc.is_in(table["id"], value_set=pa.array(sorted(ids)))), out)
    return out


def hubness(run: Path, n_docs: int, k: int) -> tuple[float, float]:
    """(skewness of the k-occurrence distribution, share of documents in no top-k list)."""
    table = pq.read_table(run)
    table = table.filter(pc.less_equal(table["rank"], k))
    counts = np.zeros(n_docs)
    _, per_doc = np.unique(table["docid"].to_numpy(zero_copy_only=False), return_counts=True)
    counts[: len(per_doc)] = per_doc
    mu, sd = counts.mean(), counts.std()
    return float(((counts - mu) ** 3).mean() / sd**3), float((counts == 0).mean())


def labelled(run: Path, pairs: set[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(run)
    y = np.array([(q, d) in pairs for q, d in zip(table["qid"].to_pylist(), table["docid"].to_pylist())], dtype=float)
    return table["score"].to_numpy().astype(np.float64), y


def table_print(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n## {title}\n")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--dense-docs", type=Path, default=None)
    ap.add_argument("--dense-queries", type=Path, default=None)
    args = ap.parse_args()
    require_dataset(args.data, ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"))
    data = args.data.resolve()
    test_qrels, train_qrels = data / "qrels" / "test.tsv", data / "qrels" / "train.tsv"
    test_ids, train_ids = qrels_ids(test_qrels), qrels_ids(train_qrels)
    with tempfile.TemporaryDirectory(prefix="vecpipe-literature-") as tmp:
        w = Path(tmp)
        docs = args.dense_docs.resolve() if args.dense_docs else w / "docs.parquet"
        queries = args.dense_queries.resolve() if args.dense_queries else w / "queries.parquet"
        if not args.dense_docs:
            vp("embed", str(data / "corpus.jsonl"), "-o", str(docs))
        if not args.dense_queries:
            vp("embed", str(data / "queries.jsonl"), "-o", str(queries))
        index = w / "flat.vpi"
        vp("build-index", str(docs), "--spec", "Flat", "-o", str(index))
        n_docs = pq.read_metadata(docs).num_rows
        test_q = subset(queries, test_ids, w / "test.parquet")
        train_q = subset(queries, train_ids, w / "train.parquet")
        half = sorted(train_ids)
        bank_a = subset(queries, set(half[::2]), w / "bank_a.parquet")
        dev_b = subset(queries, set(half[1::2]), w / "dev_b.parquet")
        dev_qrels = w / "dev_b.tsv"
        lines = train_qrels.read_text().splitlines()
        dev_qrels.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.split("\t")[0] in set(half[1::2]))]) + "\n")
        print(f"{data.name}: {n_docs} documents, {len(test_ids)} test queries, {len(train_ids)} train queries (fitting and banks)")

        def search(out: str, q: Path, *extra: str, k: str = "100") -> Path:
            path = w / out
            vp("search", str(q), "--index", str(index), "-k", k, "-o", str(path), "-q", *extra)
            return path

        # ------------------------------------------------------------------ 1. hubness reduction
        base = search("base.parquet", test_q)
        b_ndcg, b_r = measures(base, test_qrels)
        rows = []

        def hub_row(label: str, run: Path) -> None:
            ndcg, r100 = measures(run, test_qrels)
            s10, n10 = hubness(run, n_docs, 10)
            s100, n100 = hubness(run, n_docs, 100)
            rows.append([label, f"{ndcg:.4f}", f"{ndcg - b_ndcg:+.4f}", f"{r100:.4f}", f"{r100 - b_r:+.4f}",
                         f"{s10:.2f}", f"{n10:.1%}", f"{s100:.2f}", f"{n100:.1%}"])

        hub_row("no normalisation", base)
        chosen = {}
        for method in ("qbnorm", "dbnorm"):
            for beta in BETAS:
                run = search(f"{method}-{beta}.parquet", test_q, "--hubness", method, "--bank", str(train_q), "--beta", str(beta))
                hub_row(f"{method} beta {beta:g}", run)
            # beta chosen on train: bank = half the train queries, the other half scored
            dev = {beta: measures(search(f"dev-{method}-{beta}.parquet", dev_b, "--hubness", method, "--bank", str(bank_a),
                                         "--beta", str(beta)), dev_qrels)[0] for beta in BETAS}
            dev_base = measures(search("dev-base.parquet", dev_b), dev_qrels)[0]
            chosen[method] = (max(dev, key=lambda b: dev[b]), dev, dev_base)
            beta = chosen[method][0]
            hub_row(f"{method} beta {beta:g} (chosen on train)", w / f"{method}-{beta}.parquet")
        table_print("1. Hubness reduction (test queries; bank: the train queries)",
                    ["search", "nDCG@10", "delta", "R@100", "delta", "skew@10", "never@10", "skew@100", "never@100"], rows)
        for method, (beta, dev, dev_base) in chosen.items():
            print(f"{method}: train-half nDCG@10 without normalisation {dev_base:.4f}; by beta "
                  + ", ".join(f"{b:g}: {v:.4f}" for b, v in dev.items()) + f" -> beta {beta:g}")

        # ------------------------------------------------------------------ 2. calibrated relevance cutoff
        train_run = search("train-run.parquet", train_q)
        calib = w / "calib.json"
        vp("calibrate", str(train_run), "--qrels", str(train_qrels), "-o", str(calib))
        probs = w / "test-prob.parquet"
        vp("cut", str(base), "--calibration", str(calib), "--min-prob", "0", "--scores", "prob", "-o", str(probs), "-q")
        test_pairs = relevant_pairs(test_qrels)
        train_pairs = relevant_pairs(train_qrels)
        p_test, y_test = labelled(probs, test_pairs)
        cos_test, y_cos = labelled(base, test_pairs)
        assert y_cos.sum() == y_test.sum()
        cos_train, y_train = labelled(train_run, train_pairs)
        coef, intercept = fit_logistic((cos_train[:, None] - cos_train.mean()) / cos_train.std(), y_train)
        platt = 1 / (1 + np.exp(-(((cos_test - cos_train.mean()) / cos_train.std()) * coef[0] + intercept)))
        total_rel = len({p for p in test_pairs if p[0] in test_ids})
        doc = json.loads(calib.read_text())
        p_star = doc["positive_quantiles"][round((1 - TARGET_RECALL) * (len(doc["positive_quantiles"]) - 1))]
        cos_star = float(np.quantile(cos_train[y_train > 0], 1 - TARGET_RECALL, method="lower"))

        def at(keep: np.ndarray, y: np.ndarray) -> list[str]:
            kept = int(keep.sum())
            prec = float(y[keep].sum() / kept) if kept else 0.0
            return [f"{prec:.4f}", f"{y[keep].sum() / y.sum():.4f}", f"{y[keep].sum() / total_rel:.4f}",
                    f"{kept / len(test_ids):.1f}"]

        rows = [["global Platt fit of the cosine", f"{expected_calibration_error(platt, y_cos):.4f}",
                 f"{average_precision(platt, y_cos):.4f}", f"cos >= {cos_star:.4f}", *at(cos_test >= cos_star, y_cos)],
                ["vecpipe calibrate (query-conditioned)", f"{expected_calibration_error(p_test, y_test):.4f}",
                 f"{average_precision(p_test, y_test):.4f}", f"p >= {p_star:.4f}", *at(p_test >= p_star, y_test)]]
        table_print(f"2. Calibrated relevance cutoff (test, top-100 of the dense run; threshold for {TARGET_RECALL:.0%} recall on train)",
                    ["probability of relevance", "ECE", "PR-AUC", "threshold", "precision", "recall (run)", "recall (qrels)",
                     "kept/query"], rows)
        # the best global cosine threshold on test itself (an oracle): its precision at the calibrated cut's test recall
        order = np.argsort(-cos_test, kind="stable")
        hits = np.cumsum(y_cos[order])
        recall_cal = y_test[p_test >= p_star].sum() / y_test.sum()
        reach = int(np.searchsorted(hits, np.ceil(recall_cal * y_cos.sum() - 1e-9))) + 1
        print(f"oracle: the best global cosine threshold on test reaching the calibrated cut's run recall {recall_cal:.4f} keeps "
              f"{reach / len(test_ids):.1f} results/query at precision {hits[reach - 1] / reach:.4f}")

        # ------------------------------------------------------------------ 3. pseudo-relevance feedback
        rows = [["no feedback", f"{b_ndcg:.4f}", "", f"{b_r:.4f}", ""]]
        for k in PRF_KS:
            for beta in (0.5, 1.0):
                ndcg, r100 = measures(search(f"prf-{k}-{beta}.parquet", test_q, "--prf", str(k), "--prf-beta", str(beta)), test_qrels)
                rows.append([f"--prf {k} --prf-beta {beta:g}", f"{ndcg:.4f}", f"{ndcg - b_ndcg:+.4f}", f"{r100:.4f}", f"{r100 - b_r:+.4f}"])
        table_print("3. Vector pseudo-relevance feedback (Rocchio, alpha 1; test queries)",
                    ["search", "nDCG@10", "delta", "R@100", "delta"], rows)
        print("\nNo second collection: only SciFact is on this machine, so the held-out check is SciFact's train/test split.")


if __name__ == "__main__":
    main()

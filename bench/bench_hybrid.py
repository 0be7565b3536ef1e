"""Hybrid retrieval figures (issue 9) on a BEIR dataset, printed as a table.

    python bench/bench_hybrid.py ../shared/datasets/scifact [--dense-docs V.parquet --dense-queries Q.parquet]

BM25 (build-index --spec BM25, search, eval: whole commands, timed), the same BM25 done with bm25s
directly (its README's recipe, same settings) compared query by query, the dense default model
(Flat; the corpus is embedded unless vectors are given), and every fusion method of vecpipe fuse
over BM25 + dense. Test queries only (those in qrels/test.tsv).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp

ROOT = Path(__file__).resolve().parents[1]



def measures(run: Path, qrels: Path) -> tuple[float, float]:
    _, out, _ = vp("eval", str(run), "--qrels", str(qrels), "-m", "nDCG@10", "-m", "R@100", "--format", "json", capture=True)
    m = json.loads(out)["measures"]
    return m["nDCG@10"], m["R@100"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--dense-docs", type=Path, default=None)
    ap.add_argument("--dense-queries", type=Path, default=None)
    args = ap.parse_args()
    require_dataset(args.data)
    data = args.data.resolve()
    qrels = data / "qrels" / "test.tsv"
    test_ids = {line.split("\t")[0] for line in qrels.read_text().splitlines()[1:] if line.strip()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vecpipe-hybrid-") as tmp:
        work = Path(tmp)
        queries = work / "queries.test.jsonl"
        with open(data / "queries.jsonl") as src, open(queries, "w") as dst:
            for line in src:
                if line.strip() and json.loads(line)["_id"] in test_ids:
                    dst.write(line)
        n_q = sum(1 for _ in open(queries))
        t_build, _, _ = vp("build-index", str(data / "corpus.jsonl"), "--spec", "BM25", "-o", str(work / "bm25.vpi"), "-q")
        t_search, _, _ = vp("search", str(queries), "--index", str(work / "bm25.vpi"), "-k", "100", "-o", str(work / "bm25.run.parquet"), "-q")
        t_start, _, _ = vp("--version", capture=True)
        nd, r100 = measures(work / "bm25.run.parquet", qrels)
        rows.append(("BM25 (k1 1.2, b 0.75, lucene, English stopwords, Snowball stemmer)", nd, r100,
                     f"build {t_build:.2f} s; {n_q} queries {t_search:.2f} s (of which start-up {t_start:.2f} s)"))

        # bm25s directly, query by query
        import bm25s
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        import Stemmer

        docs = [json.loads(line) for line in open(data / "corpus.jsonl") if line.strip()]
        texts = [f"{d.get('title') or ''} {d.get('text') or ''}".strip() if d.get("title") else d.get("text", "") for d in docs]
        stemmer = Stemmer.Stemmer("english")
        t = time.perf_counter()
        retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
        t_bm25s = time.perf_counter() - t
        qs = [json.loads(line) for line in open(queries)]
        run = pq.read_table(work / "bm25.run.parquet")
        worst = 0.0
        same_sets = 0
        for q in qs:
            tokens = bm25s.tokenize([q["text"]], stopwords="en", stemmer=stemmer, show_progress=False)
            found, scores = retriever.retrieve(tokens, k=min(100, len(docs)), show_progress=False)
            mine = run.filter(pc.equal(run.column("qid"), q["_id"]))
            worst = max(worst, float(np.abs(mine.column("score").to_numpy() - scores[0][: mine.num_rows]).max()))
            kth = scores[0][-1]
            theirs = {docs[i]["_id"] for i, s in zip(found[0], scores[0]) if s > kth}
            same_sets += theirs <= set(mine.column("docid").to_pylist())
        rows.append(("bm25s itself, same settings (index in-process)", None, None,
                     f"index {t_bm25s:.2f} s; largest score difference {worst:.1e}; top-100 equal up to ties in {same_sets}/{len(qs)} queries"))

        if args.dense_docs is None or args.dense_queries is None:
            args.dense_docs, args.dense_queries = work / "docs.vec.parquet", work / "queries.vec.parquet"
            vp("embed", str(data / "corpus.jsonl"), "-o", str(args.dense_docs), "-q")
            vp("embed", str(queries), "-o", str(args.dense_queries), "-q")
        vp("build-index", str(args.dense_docs), "-o", str(work / "dense.vpi"), "-q")
        vp("search", str(args.dense_queries), "--index", str(work / "dense.vpi"), "-k", "100", "-o", str(work / "dense.run.parquet"), "-q")
        nd, r100 = measures(work / "dense.run.parquet", qrels)
        rows.append(("dense, default model, Flat", nd, r100, ""))
        for method in ("rrf", "zscore", "minmax", "combsum", "combmnz"):
            t, _, _ = vp("fuse", str(work / "bm25.run.parquet"), str(work / "dense.run.parquet"), "--method", method,
                      "-o", str(work / f"{method}.parquet"), "-q")
            nd, r100 = measures(work / f"{method}.parquet", qrels)
            rows.append((f"fuse --method {method}{' (default)' if method == 'rrf' else ''}: BM25 + dense", nd, r100, f"{t:.2f} s"))
    print(f"\n{data.name} test ({n_q} queries)\n")
    print("| run | nDCG@10 | R@100 | notes |\n|---|---|---|---|")
    for name, nd, r100, note in rows:
        print(f"| {name} | {'' if nd is None else f'{nd:.4f}'} | {'' if r100 is None else f'{r100:.4f}'} | {note} |")


if __name__ == "__main__":
    main()

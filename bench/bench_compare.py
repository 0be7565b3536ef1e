"""Comparing runs (issue 11): SciFact's compressions and hybrids side by side, and compare's speed.

    python bench/bench_compare.py ../shared/datasets/scifact [--dense-docs V --dense-queries Q]

1. SciFact test: float Flat, 1-bit + rescore x4, 1-bit Hamming, BM25 and BM25 + dense (z-score
   fusion) compared with `vecpipe compare` against float Flat (nDCG@10, R@100; paired t-test and
   randomization test, Holm-corrected), printed as Markdown. The corpus is embedded unless vectors
   are given.
2. Speed: three synthetic 1,000,000-row runs (10,000 queries x 100) compared with `vecpipe compare`
   (t-test; randomization test) against one `vecpipe eval` of one of them; whole commands.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp

ROOT = Path(__file__).resolve().parents[1]



def scifact(data: Path, work: Path, docs: Path | None, queries: Path | None) -> None:
    qrels = data / "qrels" / "test.tsv"
    if docs is None or queries is None:
        docs, queries = work / "docs.vec.parquet", work / "queries.vec.parquet"
        vp("embed", str(data / "corpus.jsonl"), "-o", str(docs), "-q")
        vp("embed", str(data / "queries.jsonl"), "-o", str(queries), "-q")
    vp("build-index", str(docs), "-o", str(work / "flat.vpi"), "-q")
    vp("search", str(queries), "--index", str(work / "flat.vpi"), "-k", "100", "-o", str(work / "float-flat.parquet"), "-q")
    vp("binarize", str(docs), "--bits", "1", "-o", str(work / "docs.b1.parquet"), "-q")
    vp("build-index", str(work / "docs.b1.parquet"), "--spec", "BFlat", "-o", str(work / "b1.vpi"), "-q")
    vp("search", str(queries), "--index", str(work / "b1.vpi"), "-k", "100", "-o", str(work / "1bit-hamming.parquet"), "-q")
    vp("search", str(queries), "--index", str(work / "b1.vpi"), "--rescore", str(docs), "-k", "100",
       "-o", str(work / "1bit-rescore.parquet"), "-q")
    vp("build-index", str(data / "corpus.jsonl"), "--spec", "BM25", "-o", str(work / "bm25.vpi"), "-q")
    vp("search", str(data / "queries.jsonl"), "--index", str(work / "bm25.vpi"), "-k", "100", "-o", str(work / "bm25.parquet"), "-q")
    vp("fuse", str(work / "bm25.parquet"), str(work / "float-flat.parquet"), "--method", "zscore", "-o", str(work / "hybrid.parquet"), "-q")
    runs = [str(work / f"{n}.parquet") for n in ("float-flat", "1bit-rescore", "1bit-hamming", "bm25", "hybrid")]
    for test in ("t", "randomization"):
        t, out, _ = vp("compare", *runs, "--qrels", str(qrels), "-m", "nDCG@10", "-m", "R@100", "--test", test, "--format", "markdown",
                    capture=True)
        print(f"\n`vecpipe compare ... --test {test}` ({t:.2f} s):\n\n{out}")


def speed(work: Path) -> None:
    from bench_eval import build

    paths = []
    qrels_path = work / "synthetic.qrels.parquet"
    for seed in (1, 2, 3):
        run, qrels = build(10_000, 100, seed, None)
        path = work / f"run{seed}.parquet"
        pq.write_table(run, path)
        paths.append(str(path))
    pq.write_table(qrels, qrels_path)
    rows = pq.read_metadata(paths[0]).num_rows
    t_eval, _, _ = vp("eval", paths[0], "--qrels", str(qrels_path), "-o", str(work / "m.tsv"), "-q")
    t_t, _, _ = vp("compare", *paths, "--qrels", str(qrels_path), "-o", str(work / "c-t.tsv"), "-q")
    t_r, _, _ = vp("compare", *paths, "--qrels", str(qrels_path), "--test", "randomization", "-o", str(work / "c-r.tsv"), "-q")
    print(f"\nthree runs of {rows:,} rows (10,000 queries x 100), default measures, whole commands:\n")
    print("| command | wall s | against one eval |\n|---|---|---|")
    print(f"| vecpipe eval (one run) | {t_eval:.2f} | 1x |")
    print(f"| vecpipe compare (three runs, t-test) | {t_t:.2f} | {t_t / t_eval:.2f}x |")
    print(f"| vecpipe compare (three runs, randomization, 10,000 permutations) | {t_r:.2f} | {t_r / t_eval:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--dense-docs", type=Path, default=None)
    ap.add_argument("--dense-queries", type=Path, default=None)
    args = ap.parse_args()
    require_dataset(args.data)
    with tempfile.TemporaryDirectory(prefix="vecpipe-compare-") as tmp:
        work = Path(tmp)
        scifact(args.data.resolve(), work, args.dense_docs and args.dense_docs.resolve(),
                args.dense_queries and args.dense_queries.resolve())
        speed(work)


if __name__ == "__main__":
    main()

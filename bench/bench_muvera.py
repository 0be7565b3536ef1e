"""MUVERA figures (issue 13) on a BEIR dataset with the default model's token vectors, printed as tables.

    python bench/bench_muvera.py ../shared/datasets/scifact --doc-tokens D.mv.parquet --query-tokens Q.mv.parquet \\
        --dense-docs V.parquet --dense-queries QV.parquet

Token vectors come from ``vecpipe embed --multi-vector`` (embedded here when not given; ~15 minutes
of CPU for SciFact on 2 cores), single vectors from ``vecpipe embed`` (likewise). Test queries only
(those in qrels/test.tsv). Every encoding, index, search, rerank and evaluation is a vecpipe
command; the exact Chamfer similarity of every test query with every document (the reference of
the correlation and recall figures, and the "exact Chamfer over all documents" run) is computed
here with numpy, and checked against rerank --chamfer on the pairs they share.

1. Correlation (Pearson) of FDE inner products with exact Chamfer over all query-document pairs
   (and the mean of per-query correlations), for (reps, ksim, dproj) = (20,3,8) (20,4,8) (20,5,8) (20,5,16).
2. Recall of each query's exact-Chamfer top 10 within its FDE top N (Flat index), N = 100, 500, 1000.
3. nDCG@10 and R@100: single-vector Flat; exact Chamfer over all documents; FDE top 500 then rerank --chamfer.
4. Bytes per document: token vectors, FDEs (float32), FDEs after quantize --to pq and binarize --bits 1
   (with the recall of the Chamfer top 10 in their top 500).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = [(20, 3, 8), (20, 4, 8), (20, 5, 8), (20, 5, 16)]
DEPTHS = (100, 500, 1000)


def measures(run: Path, qrels: Path) -> tuple[float, float]:
    _, out, _ = vp("eval", str(run), "--qrels", str(qrels), "-m", "nDCG@10", "-m", "R@100", "--format", "json", capture=True)
    m = json.loads(out)["measures"]
    return m["nDCG@10"], m["R@100"]


def keep_rows(src: Path, ids: set[str], dst: Path) -> None:
    """The rows of a table whose id is in ``ids`` (schema and metadata kept)."""
    table = pq.read_table(src) if src.read_bytes()[:4] == b"PAR1" else pa.ipc.open_file(str(src)).read_all()
    mask = pa.array([i in ids for i in table.column("id").to_pylist()])
    pq.write_table(table.filter(mask), dst)


def matrix(path: Path) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(path)
    col = table.column("embedding").combine_chunks()
    values = col.flatten()
    while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type):
        values = values.flatten()
    return table.column("id").to_pylist(), values.to_numpy().reshape(len(col), -1)


def exact_chamfer(q_flat: np.ndarray, q_off: np.ndarray, d_flat: np.ndarray, d_off: np.ndarray) -> np.ndarray:
    """[queries, docs] Chamfer similarity, by chunks of document tokens."""
    n_q, n_d = len(q_off) - 1, len(d_off) - 1
    out = np.zeros((n_q, n_d), dtype=np.float64)
    d_len = np.diff(d_off)
    q_starts = q_off[:-1]
    doc = 0
    chunk = 1 << 16
    while doc < n_d:
        stop = doc
        while stop < n_d and d_off[stop + 1] - d_off[doc] <= chunk:
            stop += 1
        stop = max(stop, doc + 1)
        a, b = int(d_off[doc]), int(d_off[stop])
        sims = q_flat @ d_flat[a:b].T  # [Tq, tokens of docs doc..stop]
        nonempty = np.flatnonzero(d_len[doc:stop] > 0)
        starts = d_off[doc:stop][nonempty] - a
        best = np.maximum.reduceat(sims, starts, axis=1)  # [Tq, docs with tokens]
        out[:, doc + nonempty] = np.add.reduceat(best, q_starts, axis=0)
        doc = stop
    return out


def write_trec(path: Path, qids: list[str], docids: list[str], scores: np.ndarray, k: int) -> None:
    with open(path, "w") as fh:
        for qi, q in enumerate(qids):
            order = np.lexsort((np.array(docids), -scores[qi]))[:k]
            for rank, j in enumerate(order, 1):
                fh.write(f"{q} Q0 {docids[j]} {rank} {scores[qi, j]:.6f} chamfer\n")


def recall_within(truth: np.ndarray, ranked: np.ndarray, depth: int) -> float:
    """Mean over queries of |top-10 of truth ∩ top-depth of ranked| / 10 (ties by position)."""
    hits = [len(set(t) & set(r[:depth])) / len(t) for t, r in zip(truth, ranked)]
    return float(np.mean(hits))


def run_order(run: Path, qids: list[str], docids: list[str]) -> np.ndarray:
    """A run's docs per query as column indexes (rank order)."""
    table = pq.read_table(run)
    pos = {d: i for i, d in enumerate(docids)}
    per: dict[str, list[int]] = {q: [] for q in qids}
    for q, d in zip(table.column("qid").to_pylist(), table.column("docid").to_pylist()):
        per[q].append(pos[d])
    return np.array([per[q] for q in qids], dtype=object)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--doc-tokens", type=Path, default=None)
    ap.add_argument("--query-tokens", type=Path, default=None)
    ap.add_argument("--dense-docs", type=Path, default=None)
    ap.add_argument("--dense-queries", type=Path, default=None)
    ap.add_argument("--pq-nbits", type=int, default=8, help="bits per PQ sub-quantizer of the size table (m = dim/8)")
    ap.add_argument("--sizes-only", action="store_true", help="only the setting 20,5,16 and the size table (no correlation sweep)")
    args = ap.parse_args()
    require_dataset(args.data)
    data = args.data.resolve()
    qrels = data / "qrels" / "test.tsv"
    test_ids = {line.split("\t")[0] for line in qrels.read_text().splitlines()[1:] if line.strip()}
    from vecpipe.formats.multivectors import read_multivectors

    with tempfile.TemporaryDirectory(prefix="vecpipe-muvera-") as tmp:
        work = Path(tmp)
        doc_tokens, query_tokens = args.doc_tokens, args.query_tokens
        if doc_tokens is None:
            doc_tokens = work / "docs.mv.parquet"
            vp("embed", str(data / "corpus.jsonl"), "--multi-vector", "-o", str(doc_tokens), "-q")
        if query_tokens is None:
            query_tokens = work / "queries.mv.parquet"
            vp("embed", str(data / "queries.jsonl"), "--multi-vector", "-o", str(query_tokens), "-q")
        q_mv = work / "queries.test.mv.parquet"
        keep_rows(query_tokens, test_ids, q_mv)
        dense_docs, dense_queries = args.dense_docs, args.dense_queries
        if dense_docs is None:
            dense_docs = work / "docs.parquet"
            vp("embed", str(data / "corpus.jsonl"), "-o", str(dense_docs), "-q")
        if dense_queries is None:
            dense_queries = work / "queries.parquet"
            vp("embed", str(data / "queries.jsonl"), "-o", str(dense_queries), "-q")
        dq = work / "queries.test.parquet"
        keep_rows(dense_queries, test_ids, dq)

        q_ids, q_flat, q_off, _ = read_multivectors(q_mv)
        d_ids, d_flat, d_off, _ = read_multivectors(doc_tokens)
        print(f"# {len(q_ids)} test queries ({len(q_flat)} token vectors, {len(q_flat) / len(q_ids):.1f} a query), "
              f"{len(d_ids)} documents ({len(d_flat)} token vectors, {len(d_flat) / len(d_ids):.1f} a document), dim {d_flat.shape[1]}")
        exact = exact_chamfer(q_flat, q_off, d_flat, d_off)
        truth = np.array([np.lexsort((np.array(d_ids), -row))[:10] for row in exact])

        # --- 1 and 2: correlation and recall per setting
        print("\n## FDE inner product vs exact Chamfer (all test-query x document pairs); recall of the Chamfer top 10 in the FDE top N")
        print(f"{'reps,ksim,dproj':<16} {'dim':>6} {'pearson':>8} {'per-query':>9} " + " ".join(f"{'R10@' + str(n):>8}" for n in DEPTHS))
        best = None
        for reps, ksim, dproj in SETTINGS[-1:] if args.sizes_only else SETTINGS:
            tag = f"{reps}-{ksim}-{dproj}"
            dfde, qfde = work / f"docs.fde.{tag}.parquet", work / f"queries.fde.{tag}.parquet"
            vp("fde", str(doc_tokens), "--role", "doc", "--reps", str(reps), "--ksim", str(ksim), "--dproj", str(dproj), "-o", str(dfde), "-q")
            vp("fde", str(q_mv), "--role", "query", "--like", str(dfde), "-o", str(qfde), "-q")
            fq_ids, fq = matrix(qfde)
            fd_ids, fd = matrix(dfde)
            assert fq_ids == q_ids and fd_ids == d_ids
            approx = fq.astype(np.float64) @ fd.T.astype(np.float64)
            pearson = float(np.corrcoef(approx.ravel(), exact.ravel())[0, 1])
            per_query = float(np.mean([np.corrcoef(a, e)[0, 1] for a, e in zip(approx, exact)]))
            index = work / f"fde.{tag}.vpi"
            vp("build-index", str(dfde), "--spec", "Flat", "-o", str(index), "-q")
            run = work / f"fde.{tag}.run.parquet"
            vp("search", str(qfde), "--index", str(index), "-k", str(max(DEPTHS)), "-o", str(run), "-q")
            ranked = run_order(run, q_ids, d_ids)
            recalls = [recall_within(truth, ranked, n) for n in DEPTHS]
            print(f"{reps},{ksim},{dproj:<11} {fd.shape[1]:>6} {pearson:>8.3f} {per_query:>9.3f} " + " ".join(f"{r:>8.3f}" for r in recalls))
            best = (tag, dfde, qfde, index, run, fd.shape[1])

        # --- 3: retrieval quality
        assert best is not None
        tag, dfde, qfde, index, run, fde_dim = best
        if args.sizes_only:
            return sizes(args, work, truth, q_ids, d_ids, d_flat, doc_tokens, tag, dfde, qfde, fde_dim)
        print(f"\n## Retrieval quality on the test queries (FDE setting {tag.replace('-', ',')})")
        rows = []
        flat_index = work / "dense.vpi"
        vp("build-index", str(dense_docs), "--spec", "Flat", "-o", str(flat_index), "-q")
        vp("search", str(dq), "--index", str(flat_index), "-k", "100", "-o", str(work / "dense.run.parquet"), "-q")
        rows.append(("single-vector Flat (mean pooled)", *measures(work / "dense.run.parquet", qrels)))
        write_trec(work / "chamfer.all.trec", q_ids, d_ids, exact, 100)
        rows.append(("exact Chamfer over all documents", *measures(work / "chamfer.all.trec", qrels)))
        vp("search", str(qfde), "--index", str(index), "-k", "100", "-o", str(work / "fde100.run.parquet"), "-q")
        rows.append(("FDE alone (Flat, top 100)", *measures(work / "fde100.run.parquet", qrels)))
        vp("search", str(qfde), "--index", str(index), "-k", "500", "-o", str(work / "fde500.run.parquet"), "-q")
        reranked = work / "fde500.chamfer.run.parquet"
        vp("rerank", str(work / "fde500.run.parquet"), "--chamfer", str(doc_tokens), "--queries", str(q_mv), "-k", "100",
           "-o", str(reranked), "-q")
        rows.append(("FDE top 500, then rerank --chamfer", *measures(reranked, qrels)))
        for name, nd, r100 in rows:
            print(f"{name:<40} nDCG@10 {nd:.4f}  R@100 {r100:.4f}")
        # rerank --chamfer agrees with the reference Chamfer on the pairs it scored
        table = pq.read_table(reranked)
        qpos, dpos = {q: i for i, q in enumerate(q_ids)}, {d: i for i, d in enumerate(d_ids)}
        ref = np.array([exact[qpos[q], dpos[d]] for q, d in zip(table.column("qid").to_pylist(), table.column("docid").to_pylist())])
        got = table.column("score").to_numpy()
        print(f"# rerank --chamfer vs the reference on {len(got)} pairs: largest difference {np.abs(got - ref).max():.2e}")

        sizes(args, work, truth, q_ids, d_ids, d_flat, doc_tokens, tag, dfde, qfde, fde_dim)


def sizes(args, work: Path, truth, q_ids, d_ids, d_flat, doc_tokens: Path, tag: str, dfde: Path, qfde: Path, fde_dim: int) -> None:
    # --- 4: sizes
    print("\n## Bytes per document")
    n_docs = len(d_ids)
    print(f"{'token vectors (float32, in memory)':<44} {d_flat.nbytes / n_docs:>10.0f}   (file {doc_tokens.stat().st_size / n_docs:.0f})")
    print(f"{'single vector (float32)':<44} {384 * 4:>10.0f}")
    print(f"{'FDE ' + tag.replace('-', ',') + ' (float32)':<44} {fde_dim * 4:>10.0f}   (file {dfde.stat().st_size / n_docs:.0f})")
    for label, cmd in ((f"FDE, quantize --to pq (m = dim/8, {args.pq_nbits} bits)", ["quantize", "--to", "pq", "--nbits", str(args.pq_nbits)]),
                       ("FDE, binarize --bits 1", ["binarize", "--bits", "1"])):
        coded = work / f"docs.fde.{cmd[0]}.parquet"
        vp(*cmd[:1], str(dfde), *cmd[1:], "-o", str(coded), "-q")
        _, codes = matrix(coded)
        idx = work / f"docs.fde.{cmd[0]}.vpi"
        vp("build-index", str(coded), "--spec", "Flat", "-o", str(idx), "-q")
        crun = work / f"fde.{cmd[0]}.run.parquet"
        vp("search", str(qfde), "--index", str(idx), "-k", "500", "-o", str(crun), "-q")
        r = recall_within(truth, run_order(crun, q_ids, d_ids), 500)
        print(f"{label:<44} {codes.shape[1] * codes.dtype.itemsize:>10.0f}   (Chamfer top 10 in its top 500: {r:.3f})")


if __name__ == "__main__":
    main()

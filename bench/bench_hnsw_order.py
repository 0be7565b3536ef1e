"""HNSW insertion order and local intrinsic dimensionality (issue 14): recall@10 at efSearch 16, 32
and 64 for each `build-index --spec HNSW32 --order input|random|lid-desc|lid-asc`, on SciFact vectors
and on seeded synthetic clustered vectors, and the correlation of recall with query LID
(`vecpipe inspect INDEX --diagnose --queries Q`).

    python bench/bench_hnsw_order.py [--scifact-docs D.parquet --scifact-queries Q.parquet] [--n 50000]

Graphs are built with --deterministic (one thread), so the order is the only thing that differs.
Recall is against exact search over the same vectors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_rows, synthetic_space, vp

ROOT = Path(__file__).resolve().parents[1]
ORDERS = ("input", "random", "lid-desc", "lid-asc")
EFS = (16, 32, 64)


def synthetic(work: Path, n: int, n_queries: int) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    centers, basis = synthetic_space(np.random.default_rng(0), 384, clusters=100, rank=128)
    paths = []
    for rows, seed, prefix in ((n, 1, "d"), (n_queries, 2, "q")):
        x = clustered_rows(np.random.default_rng(seed), rows, centers, basis, spread=4.0, noise=0.1)
        path = work / f"synthetic-{prefix}-{rows}.parquet"
        pq.write_table(pa.table({"id": [f"{prefix}{i}" for i in range(rows)],
                                 "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 384)}), path)
        paths.append(path)
    return paths[0], paths[1]


def recall_at(index: Path, queries: np.ndarray, gt: np.ndarray, ef: int) -> float:
    from vecpipe.index.search import load_index

    loaded = load_index(index)
    loaded.set_params(ef_search=ef)
    _, labels = loaded.search(queries, 10)
    ids = loaded.ids.to_numpy(zero_copy_only=False)
    got = ids[labels]
    return float(np.mean([len(set(gt[i]) & set(got[i])) / 10 for i in range(len(gt))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scifact-docs", type=Path, default=Path("/work/main/.dev/scifact/cpu.docs.parquet"))
    ap.add_argument("--scifact-queries", type=Path, default=Path("/work/main/.dev/scifact/cpu.queries.parquet"))
    ap.add_argument("--n", type=int, default=50_000, help="synthetic vectors")
    ap.add_argument("--queries", type=int, default=1000, help="synthetic queries")
    args = ap.parse_args()
    import faiss

    from vecpipe.formats.vectors import read_vectors

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = []
        if args.scifact_docs.exists() and args.scifact_queries.exists():
            sets.append(("SciFact (5,183 docs, 1,109 queries)", args.scifact_docs, args.scifact_queries))
        else:
            print(f"SciFact vectors not found at {args.scifact_docs}: skipped")
        docs, queries = synthetic(work, args.n, args.queries)
        sets.append((f"synthetic ({args.n:,} x 384, {args.queries} queries)", docs, queries))
        for title, d_path, q_path in sets:
            d, q = read_vectors(d_path), read_vectors(q_path)
            dm = np.ascontiguousarray(d.matrix, np.float32)
            qm = np.ascontiguousarray(q.matrix, np.float32)
            exact = faiss.knn(qm, dm, 10, faiss.METRIC_INNER_PRODUCT)[1]
            gt = d.ids.to_numpy(zero_copy_only=False)[exact]
            print(f"\n{title}: recall@10 of HNSW32 (built with --deterministic) against exact search")
            print(f"{'order':<9}" + "".join(f" {'ef' + str(ef):>7}" for ef in EFS) + f" {'Spearman(recall@ef16, query LID)':>33}")
            for order in ORDERS:
                index = work / f"{d_path.stem}-{order}.vpi"
                vp("build-index", str(d_path), "--spec", "HNSW32", "--order", order, "--deterministic", "--ef-search", "16",
                   "-o", str(index))
                recalls = [recall_at(index, qm, gt, ef) for ef in EFS]
                proc = subprocess.run([sys.executable, "-m", "vecpipe", "inspect", str(index), "--diagnose", "--queries", str(q_path),
                                       "--format", "json"], cwd=ROOT, text=True, capture_output=True,
                                      check=True)
                diag = json.loads(proc.stdout)
                rho = diag["recall_lid_spearman"]
                print(f"{order:<9}" + "".join(f" {r:>7.4f}" for r in recalls) + f" {rho if rho is None else f'{rho:.3f}':>33}",
                      flush=True)
            lid = diag["lid"]
            print(f"LID (MLE, 20 neighbours): queries median {lid['queries']['median']}, documents median {lid['documents']['median']}; "
                  f"at efSearch 16, mean recall {diag['recall_by_lid']['low_half']} for the lower-LID half of the queries, "
                  f"{diag['recall_by_lid']['high_half']} for the higher")


if __name__ == "__main__":
    main()

"""build-index --update against a full rebuild (issue 18, part 2), whole commands, printed as tables.

    python bench/bench_update.py [--n 1000000] [--dim 384] [--spec IVF1024,PQ48] [--changed 0.01]

A seeded clustered synthetic corpus (``--n`` x ``--dim``) is indexed; the new corpus has ``--changed``
of it changed: a third of that edited (new vectors under the same ids), a third removed, a third
added. For Flat and for ``--spec`` (a trained kind), each side timed as a whole ``vecpipe`` command,
alternately, in the same run:

1. ``build-index NEW --update OLD`` against ``build-index NEW`` (the full rebuild, training included),
   and their search results: identical for Flat; recall@10 against exact search for the trained kind.
2. Drift: the new corpus with 1%, 10% and 30% of its rows drawn from other clusters; the drift the
   update records, and recall@10 of the updated and of the rebuilt index.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_rows, synthetic_space, vp


def write(path: Path, ids: list[str], x: np.ndarray) -> Path:
    from vecpipe.formats import metadata
    from vecpipe.formats.tables import write_table
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    schema = vectors_schema(x.shape[1], "float32", metadata.new("vectors", dim=x.shape[1], dtype="float32", metric="cos", normalized=True))
    write_table(pa.Table.from_batches([vectors_batch(ids, x, schema)]), path)
    return path


def run_rows(path: Path) -> dict[str, list[str]]:
    table = pq.read_table(path) if path.suffix == ".parquet" else None
    assert table is not None
    out: dict[str, list[str]] = {}
    for q, d in zip(table.column("qid").to_pylist(), table.column("docid").to_pylist()):
        out.setdefault(q, []).append(d)
    return out


def recall(run: dict[str, list[str]], exact: dict[str, list[str]], k: int = 10) -> float:
    return float(np.mean([len(set(run.get(q, [])[:k]) & set(d[:k])) / k for q, d in exact.items()]))


def timed_pair(a: list[str], b: list[str], reps: int) -> tuple[float, float]:
    """Best of ``reps`` alternating runs of two commands (each forced: no up-to-date skip)."""
    ta, tb = [], []
    for _ in range(reps):
        ta.append(vp(*a, "--force", "-q")[0])
        tb.append(vp(*b, "--force", "-q")[0])
    return min(ta), min(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--spec", default="IVF1024,PQ48")
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--drift-n", type=int, default=200_000, help="rows of the drift part (its rebuilds are the slow part); 0 leaves it out")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, dim = args.n, args.dim
    centers, basis = synthetic_space(rng, dim)
    x = clustered_rows(rng, n, centers, basis)
    ids = [f"d{i}" for i in range(n)]
    third = max(1, int(n * args.changed / 3))
    new_x = x.copy()
    edited = rng.choice(np.arange(third, n), third, replace=False)
    new_x[edited] = clustered_rows(rng, third, centers, basis)
    keep = np.arange(third, n)  # the first `third` rows are removed
    added = clustered_rows(rng, third, centers, basis)
    new_ids = [ids[i] for i in keep] + [f"a{i}" for i in range(third)]
    new_x = np.vstack([new_x[keep], added])
    q = clustered_rows(rng, args.queries, centers, basis)
    print(f"corpus {n:,} x {dim}; new corpus: {third:,} edited, {third:,} removed, {third:,} added "
          f"({3 * third / n:.1%}); {args.queries} queries; whole commands, best of {args.reps}", flush=True)
    with tempfile.TemporaryDirectory(prefix="vecpipe-bench-update-") as tmp:
        w = Path(tmp)
        old, new, qp = write(w / "old.parquet", ids, x), write(w / "new.parquet", new_ids, new_x), write(w / "q.parquet", [f"q{i}" for i in range(len(q))], q)
        del x
        vp("build-index", str(new), "-o", str(w / "exact.vpi"), "-q")
        vp("search", str(qp), "--index", str(w / "exact.vpi"), "-k", "10", "-o", str(w / "exact.parquet"), "-q")
        exact = run_rows(w / "exact.parquet")
        print("\n| index | full rebuild | --update | ratio | search results |\n|---|---|---|---|---|")
        for spec in ("Flat", args.spec):
            slug = spec.replace(",", "-")
            vp("build-index", str(old), "--spec", spec, "-o", str(w / f"old-{slug}.vpi"), "-q")
            full = ["build-index", str(new), "--spec", spec, "-o", str(w / f"full-{slug}.vpi")]
            upd = ["build-index", str(new), "--update", str(w / f"old-{slug}.vpi"), "-o", str(w / f"upd-{slug}.vpi")]
            t_full, t_upd = timed_pair(full, upd, args.reps)
            runs = {}
            for side in ("full", "upd"):
                extra = ["--nprobe", str(args.nprobe)] if "IVF" in spec else []
                vp("search", str(qp), "--index", str(w / f"{side}-{slug}.vpi"), "-k", "10", *extra, "-o", str(w / f"{side}-{slug}.parquet"), "-q")
                runs[side] = run_rows(w / f"{side}-{slug}.parquet")
            if spec == "Flat":
                from vecpipe.formats import vpi

                a, b = vpi.read(w / "full-Flat.vpi"), vpi.read(w / "upd-Flat.vpi")
                same = bytes(a.index_bytes) == bytes(b.index_bytes) and a.ids.equals(b.ids)
                result = f"runs identical: {runs['full'] == runs['upd']}; index section and ids identical: {same}"
            else:
                result = f"recall@10 vs exact: rebuild {recall(runs['full'], exact):.4f}, update {recall(runs['upd'], exact):.4f}"
            print(f"| {spec} | {t_full:.2f} s | {t_upd:.2f} s | {t_full / t_upd:.1f}x faster | {result} |", flush=True)

        if args.drift_n <= 0:
            return
        print(f"\nDrift ({args.spec}): rows of the new corpus replaced by rows from clusters gathered around one direction")
        slug = args.spec.replace(",", "-")
        u = rng.standard_normal(dim).astype(np.float32)
        far = (0.3 * centers + 40.0 * u / np.linalg.norm(u)).astype(np.float32)  # the clusters pulled toward u
        if args.drift_n < len(new_x):  # a smaller old index over the first rows, for the drift part
            new_x, new_ids = new_x[: args.drift_n], new_ids[: args.drift_n]
            vp("build-index", str(write(w / "dold.parquet", new_ids, new_x)), "--spec", args.spec, "-o", str(w / f"old-{slug}.vpi"),
               "-q", "--force")
            print(f"(measured on the first {len(new_x):,} rows: an index over them, then its updates)")
        print("\n| rows replaced | drift recorded | advice | recall@10 updated | recall@10 rebuilt |\n|---|---|---|---|---|")
        for share in (0.01, 0.1, 0.3):
            m = int(len(new_x) * share)
            drifted = new_x.copy()
            drifted[:m] = clustered_rows(rng, m, far, basis)
            dpath = write(w / "drift.parquet", new_ids, drifted)
            qd = np.vstack([q[: len(q) // 2], clustered_rows(rng, len(q) - len(q) // 2, far, basis)])
            qdp = write(w / "qd.parquet", [f"q{i}" for i in range(len(qd))], qd)
            vp("build-index", str(dpath), "-o", str(w / "dexact.vpi"), "-q", "--force")
            vp("search", str(qdp), "--index", str(w / "dexact.vpi"), "-k", "10", "-o", str(w / "dexact.parquet"), "-q", "--force")
            dexact = run_rows(w / "dexact.parquet")
            _, _, err = vp("build-index", str(dpath), "--update", str(w / f"old-{slug}.vpi"), "-o", str(w / "dupd.vpi"), "--force")
            vp("build-index", str(dpath), "--spec", args.spec, "-o", str(w / "dfull.vpi"), "-q", "--force")
            from vecpipe.formats import vpi

            drift = vpi.read(w / "dupd.vpi").meta["update"].get("drift")
            rec = {}
            for side in ("dupd", "dfull"):
                vp("search", str(qdp), "--index", str(w / f"{side}.vpi"), "-k", "10", "--nprobe", str(args.nprobe),
                   "-o", str(w / f"{side}.parquet"), "-q", "--force")
                rec[side] = recall(run_rows(w / f"{side}.parquet"), dexact)
            advice = "retrain advised" if "re-training advised" in err else "-"
            print(f"| {share:.0%} | {drift} | {advice} | {rec['dupd']:.4f} | {rec['dfull']:.4f} |", flush=True)
    print(f"\n(finished {time.strftime('%Y-%m-%d %H:%M:%S')})")


if __name__ == "__main__":
    main()

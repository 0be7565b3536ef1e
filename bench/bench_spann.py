"""SPANN disk index figures (issue 14): recall@10 against queries/s, resident memory and bytes read
per query, beside faiss IVF-Flat and IVF-PQ, on seeded synthetic clustered vectors.

    python bench/bench_spann.py [--n 1000000] [--queries 1000] [--workdir DIR] [--spec SPANN]

The vectors are written to Parquet in batches (never whole in memory); SPANN is built with the
CLI (`vecpipe build-index --spec SPANN`: its wall time and peak RSS are the child process's); each
search runs in a fresh process that loads only that index, so its VmRSS is the searcher's resident
memory. Cold-cache runs evict the index file's pages with posix_fadvise(POSIX_FADV_DONTNEED) first
(dropping every cache through /proc/sys/vm/drop_caches would disturb others on a shared machine).
Queries/s and build seconds are only final on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_rows, synthetic_space, vp

DIM = 384
K = 10


def rss(field: str = "VmRSS") -> int:
    """VmRSS, or VmHWM for the peak (ru_maxrss survives exec on Linux: it would be the parent's)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def make_data(workdir: Path, n: int, n_queries: int) -> tuple[Path, Path]:
    """Seeded synthetic clustered vectors (100 broad clusters in a 128-dimensional subspace of 384, a little isotropic
    noise: IVF needs 16 of 1,216 lists for recall@10 0.99 at 100k), written by batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs, queries = workdir / f"docs-{n}.parquet", workdir / f"queries-{n_queries}.parquet"
    centers, basis = synthetic_space(np.random.default_rng(0), DIM, clusters=100, rank=128)
    schema = pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), DIM))])
    for path, rows, seed, prefix in ((docs, n, 1, "d"), (queries, n_queries, 2, "q")):
        if path.exists():
            continue
        rng = np.random.default_rng(seed)
        tmp = path.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, rows, 100_000):
                m = min(rows, start + 100_000) - start
                x = clustered_rows(rng, m, centers, basis, spread=4.0, noise=0.1)
                ids = pa.array([f"{prefix}{i}" for i in range(start, start + m)])
                writer.write_table(pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)},
                                            schema=schema))
        tmp.rename(path)
    return docs, queries


def batches(path: Path, size: int = 65536):
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=size):
        emb = batch.column(1)
        yield np.asarray(emb.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(emb), DIM)


def queries_of(path: Path) -> np.ndarray:
    return np.concatenate(list(batches(path)))


def ground_truth(docs: Path, q: np.ndarray, cache: Path) -> np.ndarray:
    """Exact top-10 by inner product, streamed over the docs."""
    import faiss

    if cache.exists():
        return np.load(cache)
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    base = 0
    for x in batches(docs):
        s, i = faiss.knn(q, x, K, faiss.METRIC_INNER_PRODUCT)
        s_all = np.concatenate([best_s, s], 1)
        i_all = np.concatenate([best_i, i + base], 1)
        top = np.argsort(-s_all, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(s_all, top, 1), np.take_along_axis(i_all, top, 1)
        base += len(x)
    np.save(cache, best_i)
    return best_i


def recall(gt: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([len(set(gt[i].tolist()) & set(labels[i].tolist())) / K for i in range(len(gt))]))


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child_spann(index: Path, queries: Path, gt_path: Path, settings: list[tuple[int, float]]) -> dict:
    from vecpipe.index.search import load_index

    base = rss()
    loaded = load_index(index)
    q = queries_of(queries)
    gt = np.load(gt_path)
    after_load = rss()
    rows = []
    for nprobe, ratio in settings:
        loaded.set_params(nprobe=nprobe, max_dist_ratio=ratio)
        out = {"nprobe": nprobe, "max_dist_ratio": ratio}
        for mode in ("cold", "warm"):
            if mode == "cold":
                evict(index)
            loaded.bytes_read, loaded.lists_read = 0, 0
            t = time.perf_counter()
            labels = np.concatenate([loaded.search(q[i : i + 256], K)[1] for i in range(0, len(q), 256)])
            dt = time.perf_counter() - t
            out[f"qps_{mode}"] = len(q) / dt
        out.update(recall=recall(gt, labels), bytes_per_query=loaded.bytes_read / len(q), lists_per_query=loaded.lists_read / len(q),
                   rss=rss())
        rows.append(out)
    return {"rss_before_load": base, "rss_after_load": after_load, "index_memory": loaded.memory_bytes, "rows": rows,
            "peak_rss": rss("VmHWM")}


def child_faiss_build(spec: str, docs: Path, out: Path, n: int) -> dict:
    import faiss

    t = time.perf_counter()
    index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    want = min(n, 100_000)
    keep = rng.random(n) < want / n
    sample, start = [], 0
    for x in batches(docs):
        sample.append(x[keep[start : start + len(x)]])
        start += len(x)
    index.train(np.concatenate(sample))
    del sample
    for x in batches(docs):
        index.add(x)
    faiss.write_index(index, str(out))
    return {"build_s": time.perf_counter() - t, "peak_rss": rss("VmHWM")}


def child_faiss_search(path: Path, queries: Path, gt_path: Path, nprobes: list[int]) -> dict:
    import faiss

    base = rss()
    index = faiss.read_index(str(path))
    q = queries_of(queries)
    gt = np.load(gt_path)
    after_load = rss()
    rows = []
    for nprobe in nprobes:
        faiss.extract_index_ivf(index).nprobe = nprobe
        t = time.perf_counter()
        _, labels = index.search(q, K)
        dt = time.perf_counter() - t
        rows.append({"nprobe": nprobe, "recall": recall(gt, labels), "qps_warm": len(q) / dt, "rss": rss()})
    return {"rss_before_load": base, "rss_after_load": after_load, "index_memory": path.stat().st_size, "rows": rows}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".spann")
    ap.add_argument("--spec", default="SPANN")
    ap.add_argument("--settings", default="4:0,8:0,16:0,32:0,64:0,128:0,64:1.5,128:1.5",
                    help="SPANN searches: nprobe:max_dist_ratio,...")
    ap.add_argument("--no-baselines", action="store_true", help="skip faiss IVF-Flat and IVF-PQ")
    ap.add_argument("--no-spann", action="store_true", help="the faiss baselines only")
    ap.add_argument("--docs", type=Path, help="384-d vectors to use instead of synthetic ones (e.g. SciFact's)")
    ap.add_argument("--query-vectors", type=Path, help="with --docs: the query vectors")
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "spann":
            settings = [(int(a), float(b)) for a, b in (s.split(":") for s in rest[3].split(","))]
            result = child_spann(Path(rest[0]), Path(rest[1]), Path(rest[2]), settings)
        elif kind == "faiss-build":
            result = child_faiss_build(rest[0], Path(rest[1]), Path(rest[2]), int(rest[3]))
        else:
            result = child_faiss_search(Path(rest[0]), Path(rest[1]), Path(rest[2]), [int(x) for x in rest[3].split(",")])
        print(json.dumps(result))
        return
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if args.docs:
        import pyarrow.parquet as pq

        docs, queries = args.docs, args.query_vectors
        n = pq.ParquetFile(docs).metadata.num_rows
        what = docs.name
    else:
        n = args.n
        docs, queries = make_data(work, n, args.queries)
        what = "synthetic clustered vectors"
    floats = n * DIM * 4
    q = queries_of(queries)
    gt_path = work / f"gt-{docs.stem}-{n}-{len(q)}.npy"
    ground_truth(docs, q, gt_path)
    print(f"data: {n:,} x {DIM} {what} ({floats / 2**20:,.0f} MiB as float32), {len(q)} queries; "
          f"data + exact ground truth {time.perf_counter() - t:.0f} s", flush=True)
    if not args.no_spann:
        index = work / f"spann-{n}.vpi"
        t = time.perf_counter()
        _, _, err = vp("build-index", str(docs), "--spec", args.spec, "-o", str(index), "--force")
        build_s = time.perf_counter() - t
        build_peak = int(float(err.rsplit("peak memory ", 1)[1].split()[0]) * 2**20)  # the CLI's peak RssAnon
        meta = json.loads(subprocess.run([sys.executable, "-m", "vecpipe", "inspect", str(index), "--format", "json"], text=True,
                                         stdout=subprocess.PIPE, check=True).stdout)["vecpipe"]
        info = meta["spann"]
        print(f"\nSPANN build: vecpipe build-index {docs.name} --spec {args.spec}: {build_s:.0f} s, peak anonymous RSS "
              f"{build_peak / 2**20:,.0f} MiB ({build_peak / floats:.0%} of the float vectors; the input Parquet is memory-mapped on top); "
              f"{info['heads']:,} heads, replication {info['replication']}, "
              f"lists {info['mean_list']} on average (max {info['max_list']}, cap {info['cap']}), "
              f"{index.stat().st_size / 2**20:,.0f} MiB file", flush=True)
        print("  " + err.strip().splitlines()[-1])
        settings = args.settings
        res = child("spann", str(index), str(queries), str(gt_path), settings)
        print(f"\nSPANN search (fresh process): RSS {res['rss_before_load'] / 2**20:.0f} MiB before loading, "
              f"{res['rss_after_load'] / 2**20:.0f} MiB after ({res['rss_after_load'] / floats:.1%} of the float vectors); "
              f"index's own memory {res['index_memory'] / 2**20:.0f} MiB ({res['index_memory'] / floats:.1%}); "
              f"peak RSS while searching {res['peak_rss'] / 2**20:.0f} MiB ({res['peak_rss'] / floats:.1%})")
        print(f"{'nprobe':>6} {'ratio':>5} {'recall@10':>9} {'q/s warm':>9} {'q/s cold':>9} {'KiB read/q':>10} {'lists/q':>7} "
              f"{'RSS MiB':>8} {'RSS/floats':>10}")
        for r in res["rows"]:
            print(f"{r['nprobe']:>6} {r['max_dist_ratio']:>5g} {r['recall']:>9.4f} {r['qps_warm']:>9.0f} {r['qps_cold']:>9.0f} "
                  f"{r['bytes_per_query'] / 1024:>10.0f} {r['lists_per_query']:>7.1f} {r['rss'] / 2**20:>8.0f} {r['rss'] / floats:>10.1%}",
                  flush=True)
    nlist = max(64, int(4 * np.sqrt(n)) // 64 * 64)
    for spec in () if args.no_baselines else (f"IVF{nlist},Flat", f"IVF{nlist},PQ64"):
        path = work / f"{spec.replace(',', '_')}-{n}.faiss"
        built = child("faiss-build", spec, str(docs), str(path), str(n))
        res = child("faiss-search", str(path), str(queries), str(gt_path), "1,2,4,8,16,32,64,128")
        print(f"\nfaiss {spec}: build {built['build_s']:.0f} s (peak RSS {built['peak_rss'] / 2**20:,.0f} MiB); searching process "
              f"RSS {res['rss_after_load'] / 2**20:,.0f} MiB after loading ({res['rss_after_load'] / floats:.1%} of the float "
              f"vectors), index {res['index_memory'] / 2**20:,.0f} MiB")
        print(f"{'nprobe':>6} {'recall@10':>9} {'q/s warm':>9} {'RSS MiB':>8} {'RSS/floats':>10}")
        for r in res["rows"]:
            print(f"{r['nprobe']:>6} {r['recall']:>9.4f} {r['qps_warm']:>9.0f} {r['rss'] / 2**20:>8.0f} {r['rss'] / floats:>10.1%}",
                  flush=True)
        path.unlink()


if __name__ == "__main__":
    main()

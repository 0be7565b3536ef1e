"""SPANN disk index figures (issue 14): recall@10 against queries/s, resident memory and bytes read
per query, beside faiss IVF-Flat and IVF-PQ, on seeded synthetic clustered vectors.

    python bench/bench_spann.py [--n 1000000] [--queries 1000] [--workdir DIR] [--spec SPANN] [--index SPANN.vpi]
        [--settings NPROBE:RATIO,...] [--rescore [--rescore-multiplier 4]] [--baselines Flat,PQ48,PQ96] [--nprobes 1,2,...]
        [--baseline-multipliers 4,20]

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


def evict(*paths: Path) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def arrow_copy(docs: Path, out: Path) -> Path:
    """The docs as an Arrow IPC file (streamed): what `search --rescore` memory-maps, touching only
    the candidates' pages (a Parquet file is read by row groups: 150 MB each here)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    if not out.exists():
        pf = pq.ParquetFile(docs)
        tmp = out.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, pf.schema_arrow) as writer:
            for batch in pf.iter_batches(batch_size=65536):
                writer.write_batch(batch)
        tmp.rename(out)
    return out


def raw_copy(docs: Path, out: Path) -> Path:
    """The docs as raw float32 rows, for the faiss baselines' rescoring by positioned reads."""
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            for x in batches(docs):
                fh.write(x.tobytes())
        tmp.rename(out)
    return out


def child_spann(index: Path, queries: Path, gt_path: Path, settings: list[tuple[int, float]], rescore: Path | None = None,
                multiplier: int = 4) -> dict:
    """Searches in this fresh process; with ``rescore``, k x ``multiplier`` candidates are rescored
    from the full vectors by vecpipe's Rescorer (the second stage of `search --rescore`)."""
    import pyarrow as pa

    from vecpipe.index.search import load_index

    base = rss()
    loaded = load_index(index)
    rescorer = None
    if rescore is not None:
        from vecpipe.index.rescore import Rescorer

        rescorer = Rescorer(rescore, multiplier=multiplier)
    q = queries_of(queries)
    gt = np.load(gt_path)
    gt_ids = np.asarray(loaded.ids.take(pa.array(gt.reshape(-1))).to_pylist(), object).reshape(gt.shape)
    qids = pa.array([str(i) for i in range(len(q))])
    after_load = rss()
    rows = []
    fetch = K * (multiplier if rescorer else 1)
    for nprobe, ratio in settings:
        loaded.set_params(nprobe=nprobe, max_dist_ratio=ratio)
        out = {"nprobe": nprobe, "max_dist_ratio": ratio}
        for mode in ("cold", "warm"):
            if mode == "cold":
                evict(index, *([rescore] if rescore else []))
            loaded.bytes_read, loaded.lists_read = 0, 0
            found: list[list[str]] = []
            t = time.perf_counter()
            for i in range(0, len(q), 256):
                _, labels = loaded.search(q[i : i + 256], fetch)
                if rescorer is None:
                    found += [loaded.ids.take(pa.array(row[row >= 0])).to_pylist() for row in labels]
                    continue
                run = rescorer.rescore(qids.slice(i, len(labels)), q[i : i + 256], labels, loaded.ids, K).to_pydict()
                per: dict[str, list[str]] = {}
                for qid, docid in zip(run["qid"], run["docid"], strict=True):
                    per.setdefault(qid, []).append(docid)
                found += [per.get(str(j), []) for j in range(i, i + len(labels))]
            dt = time.perf_counter() - t
            out[f"qps_{mode}"] = len(q) / dt
        out.update(recall=float(np.mean([len(set(gt_ids[i]) & set(found[i])) / K for i in range(len(q))])),
                   bytes_per_query=loaded.bytes_read / len(q), lists_per_query=loaded.lists_read / len(q),
                   rescored_per_query=fetch if rescorer else 0, rss=rss())
        rows.append(out)
    return {"rss_before_load": base, "rss_after_load": after_load, "index_memory": loaded.memory_bytes, "rows": rows,
            "peak_rss": rss("VmHWM")}


def child_faiss_build(spec: str, docs: Path, out: Path, n: int) -> dict:
    import faiss

    t = time.perf_counter()
    index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    want = min(n, 160_000)  # 40 per list of IVF4032 (faiss asks for 39)
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


def child_faiss_search(path: Path, queries: Path, gt_path: Path, nprobes: list[int], raw: Path | None = None,
                       multiplier: int = 4) -> dict:
    """With ``raw`` (float32 rows), k x ``multiplier`` candidates are rescored exactly from it by
    positioned reads (nothing mapped: the vectors never count in the process's memory)."""
    import faiss

    base = rss()
    index = faiss.read_index(str(path))
    q = queries_of(queries)
    gt = np.load(gt_path)
    fd = os.open(raw, os.O_RDONLY) if raw else None
    after_load = rss()
    rows = []
    for nprobe in nprobes:
        faiss.extract_index_ivf(index).nprobe = nprobe
        t = time.perf_counter()
        _, labels = index.search(q, K * multiplier if fd is not None else K)
        if fd is not None:
            size = DIM * 4
            for i, row in enumerate(labels):
                row = row[row >= 0]
                vecs = np.stack([np.frombuffer(os.pread(fd, size, int(r) * size), np.float32) for r in row.tolist()])
                labels[i, :K] = row[np.argsort(-(vecs @ q[i]), kind="stable")[:K]]
            labels = labels[:, :K]
        dt = time.perf_counter() - t
        rows.append({"nprobe": nprobe, "recall": recall(gt, labels), "qps_warm": len(q) / dt, "rss": rss()})
    return {"rss_before_load": base, "rss_after_load": after_load, "index_memory": path.stat().st_size, "rows": rows,
            "peak_rss": rss("VmHWM")}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout)


def print_spann(res: dict, floats: int, label: str) -> None:
    print(f"\n{label} (fresh process): RSS {res['rss_before_load'] / 2**20:.0f} MiB before loading, "
          f"{res['rss_after_load'] / 2**20:.0f} MiB after loading it and the queries ({res['rss_after_load'] / floats:.1%} of the float "
          f"vectors); index's own memory {res['index_memory'] / 2**20:.0f} MiB ({res['index_memory'] / floats:.1%}); "
          f"peak RSS (VmHWM: loading and searching) {res['peak_rss'] / 2**20:.0f} MiB ({res['peak_rss'] / floats:.1%})")
    print(f"{'nprobe':>6} {'ratio':>5} {'recall@10':>9} {'q/s warm':>9} {'q/s cold':>9} {'KiB read/q':>10} {'lists/q':>7} "
          f"{'rescored/q':>10} {'RSS MiB':>8} {'RSS/floats':>10}")
    for r in res["rows"]:
        print(f"{r['nprobe']:>6} {r['max_dist_ratio']:>5g} {r['recall']:>9.4f} {r['qps_warm']:>9.0f} {r['qps_cold']:>9.0f} "
              f"{r['bytes_per_query'] / 1024:>10.0f} {r['lists_per_query']:>7.1f} {r.get('rescored_per_query', 0):>10} "
              f"{r['rss'] / 2**20:>8.0f} {r['rss'] / floats:>10.1%}", flush=True)


def print_faiss(spec: str, built: dict | None, res: dict, floats: int) -> None:
    made = f"build {built['build_s']:.0f} s (peak RSS {built['peak_rss'] / 2**20:,.0f} MiB); " if built else "(built before); "
    print(f"\nfaiss {spec}: {made}searching process RSS {res['rss_after_load'] / 2**20:,.0f} MiB after loading "
          f"({res['rss_after_load'] / floats:.1%} of the float vectors), peak {res['peak_rss'] / 2**20:,.0f} MiB, "
          f"index file {res['index_memory'] / 2**20:,.0f} MiB")
    print(f"{'nprobe':>6} {'recall@10':>9} {'q/s warm':>9} {'RSS MiB':>8} {'RSS/floats':>10}")
    for r in res["rows"]:
        print(f"{r['nprobe']:>6} {r['recall']:>9.4f} {r['qps_warm']:>9.0f} {r['rss'] / 2**20:>8.0f} {r['rss'] / floats:>10.1%}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".spann")
    ap.add_argument("--spec", default="SPANN")
    ap.add_argument("--index", type=Path, help="search this SPANN index (built before, from the same vectors) instead of building one")
    ap.add_argument("--settings", default="4:0,8:0,16:0,32:0,64:0,128:0,64:1.5,128:1.5",
                    help="SPANN searches: nprobe:max_dist_ratio,...")
    ap.add_argument("--rescore", action="store_true", help="also search SPANN with k x --rescore-multiplier candidates "
                    "rescored from the full vectors (an Arrow IPC copy of them, written once in the workdir)")
    ap.add_argument("--rescore-multiplier", type=int, default=4)
    ap.add_argument("--baselines", default="Flat,PQ48,PQ96", help="faiss IVF{4 sqrt(n)},X baselines: X,... (PQ ones are also "
                    "searched with rescoring from the full vectors)")
    ap.add_argument("--nprobes", default="1,2,4,8,16,32,64,128", help="faiss baselines' nprobe sweep")
    ap.add_argument("--baseline-multipliers", default="4,20", help="the PQ baselines are also searched with k x M candidates "
                    "rescored from the full vectors, for each M")
    ap.add_argument("--no-baselines", action="store_true", help="skip faiss IVF-Flat and IVF-PQ")
    ap.add_argument("--no-spann", action="store_true", help="the faiss baselines only")
    ap.add_argument("--docs", type=Path, help="384-d vectors to use instead of synthetic ones (e.g. SciFact's)")
    ap.add_argument("--query-vectors", type=Path, help="with --docs: the query vectors")
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        extra = (Path(rest[4]), int(rest[5])) if len(rest) > 4 else ()
        if kind == "spann":
            settings = [(int(a), float(b)) for a, b in (s.split(":") for s in rest[3].split(","))]
            result = child_spann(Path(rest[0]), Path(rest[1]), Path(rest[2]), settings, *extra)
        elif kind == "faiss-build":
            result = child_faiss_build(rest[0], Path(rest[1]), Path(rest[2]), int(rest[3]))
        else:
            result = child_faiss_search(Path(rest[0]), Path(rest[1]), Path(rest[2]), [int(x) for x in rest[3].split(",")], *extra)
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
    mult = str(args.rescore_multiplier)
    if not args.no_spann:
        index = args.index or work / f"spann-{n}.vpi"
        if not args.index:
            t = time.perf_counter()
            _, _, err = vp("build-index", str(docs), "--spec", args.spec, "-o", str(index), "--force")
            build_s = time.perf_counter() - t
            build_peak = int(float(err.rsplit("peak memory ", 1)[1].split()[0]) * 2**20)  # the CLI's peak RssAnon
        meta = json.loads(subprocess.run([sys.executable, "-m", "vecpipe", "inspect", str(index), "--format", "json"], text=True,
                                         stdout=subprocess.PIPE, check=True).stdout)["vecpipe"]
        info = meta["spann"]
        made = (f"vecpipe build-index {docs.name} --spec {args.spec}: {build_s:.0f} s, peak anonymous RSS {build_peak / 2**20:,.0f} MiB "
                f"({build_peak / floats:.0%} of the float vectors; the input Parquet is memory-mapped on top)" if not args.index
                else f"{index.name} (built before: {meta['spec']})")
        print(f"\nSPANN: {made}; {info['heads']:,} heads, {info['codes']} codes, replication {info['replication']}, "
              f"lists {info['mean_list']} on average (max {info['max_list']}, cap {info['cap']}), "
              f"{index.stat().st_size / 2**20:,.0f} MiB file", flush=True)
        if not args.index:
            print("  " + err.strip().splitlines()[-1])
        print_spann(child("spann", str(index), str(queries), str(gt_path), args.settings), floats, "SPANN search")
        if args.rescore:
            full = arrow_copy(docs, work / f"{docs.stem}.arrow")
            res = child("spann", str(index), str(queries), str(gt_path), args.settings, str(full), mult)
            print_spann(res, floats, f"SPANN search + rescoring of k x {mult} candidates from {full.name} (memory-mapped)")
    nlist = max(64, int(4 * np.sqrt(n)) // 64 * 64)
    for kind in () if args.no_baselines else args.baselines.split(","):
        spec = f"IVF{nlist},{kind}"
        path = work / f"{spec.replace(',', '_')}-{n}.faiss"
        built = None if path.exists() else child("faiss-build", spec, str(docs), str(path), str(n))
        res = child("faiss-search", str(path), str(queries), str(gt_path), args.nprobes)
        print_faiss(spec, built, res, floats)
        for m in () if kind == "Flat" else args.baseline_multipliers.split(","):
            raw = raw_copy(docs, work / f"{docs.stem}.f32")
            res = child("faiss-search", str(path), str(queries), str(gt_path), args.nprobes, str(raw), m)
            print_faiss(f"{spec} + rescoring of k x {m} candidates from {raw.name} (positioned reads)", None, res, floats)


if __name__ == "__main__":
    main()

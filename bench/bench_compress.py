#!/usr/bin/env python
"""Compression benchmark: quality, size and speed of quantized / binarized indexes, with and without
exact rescoring, on SciFact (default model); binary vs float flat search speed on a synthetic
1,000,000 x 384 clustered corpus; peak memory of rerank against that corpus on disk.

    python bench/bench_compress.py ../shared/datasets/scifact --work /tmp/vpbench [--plot tradeoff.png]

The SciFact corpus and queries are embedded once with the default model and cached in --work
(about 4 minutes on 2 cores); later runs reuse them. Retention is nDCG@10 against float32 Flat.
--plot draws the SciFact table's quality / size / speed trade-off as a PNG (needs matplotlib:
pip install 'vecpipe[plot]'): nDCG@10 against bytes per vector and against queries per second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from _common import require_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vecpipe import api, compress  # noqa: E402
from vecpipe.evaluate import evaluate  # noqa: E402
from vecpipe.formats import vpi  # noqa: E402
from vecpipe.formats.qrels import read_qrels  # noqa: E402
from vecpipe.formats.tables import write_batches  # noqa: E402
from vecpipe.formats.vectors import Vectors, read_vectors, vectors_batch, vectors_schema  # noqa: E402
from vecpipe.index import build_index, load_index  # noqa: E402
from vecpipe.index.rescore import Rescorer  # noqa: E402
from vecpipe.index.search import search_run  # noqa: E402

VECPIPE = [sys.executable, "-m", "vecpipe"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def embed_cached(dataset: Path, work: Path) -> tuple[Path, Path]:
    corpus, queries = work / "corpus.vec.arrow", work / "queries.vec.arrow"
    for src, dst in ((dataset / "corpus.jsonl", corpus), (dataset / "queries.jsonl", queries)):
        if not dst.exists():
            log(f"embedding {src} -> {dst} (cached for later runs)")
            subprocess.run(VECPIPE + ["embed", str(src), "-o", str(dst), "-q"], check=True)
    return corpus, queries


def test_queries(queries: Path, qrels: pa.Table) -> Vectors:
    import pyarrow.compute as pc

    qv = read_vectors(queries)
    keep = pc.is_in(qv.ids, value_set=pc.unique(qrels.column("qid")))
    rows = np.flatnonzero(np.asarray(keep))
    return Vectors(ids=qv.ids.take(pa.array(rows)), matrix=qv.matrix[rows], meta=qv.meta, name=qv.name)


def run_search(index_path: Path, qv: Vectors, k: int, rescore: Path | None, multiplier: int) -> tuple[pa.Table, float]:
    """The search stage's own loop (vecpipe.index.search.search_run), timed in-process."""
    loaded = load_index(index_path)
    rescorer = Rescorer(rescore, multiplier=multiplier) if rescore else None
    t0 = time.perf_counter()
    batches = list(search_run(loaded, iter([(qv.ids, qv.matrix)]), k, batch_size=len(qv.ids), rescorer=rescorer))
    elapsed = time.perf_counter() - t0
    return pa.Table.from_batches(batches), len(qv.ids) / elapsed


def build_file(vectors: Path | Vectors, index: Path, spec: str, compress_index: bool = True) -> None:
    """build-index over a vectors file (the stage) or in-memory vectors (the library)."""
    if isinstance(vectors, Vectors):
        built = build_index(vectors, spec=spec)
        vpi.write(index, built.meta, built.ids, built.blob, compress=compress_index)
    else:
        api.build_index(vectors, index, force=True, spec=spec, compress=compress_index)


METHODS = [
    # name, compress step (or None), spec, bytes per vector (dim d)
    ("float32 Flat", None, "Flat"),
    ("float32 HNSW32", None, "HNSW32"),
    ("fp16 (SQfp16)", ("quantize", {"to": "fp16"}), "Flat"),
    ("int8 (SQ8)", ("quantize", {"to": "int8"}), "Flat"),
    ("PQ m=48 x 8 bits", ("quantize", {"to": "pq", "m": 48, "nbits": 8}), "Flat"),
    ("1-bit sign, Hamming", ("binarize", {"bits": 1}), "BFlat"),
    ("1-bit centered, Hamming", ("binarize", {"bits": 1, "center": True}), "BFlat"),
    ("2-bit residual", ("binarize", {"bits": 2}), "Flat"),
    ("4-bit residual", ("binarize", {"bits": 4}), "Flat"),
]


def bench_scifact(dataset: Path, work: Path, multiplier: int) -> list[dict]:
    corpus, queries = embed_cached(dataset, work)
    qrels = read_qrels(dataset / "qrels" / "test.tsv")
    qv = test_queries(queries, qrels)
    log(f"SciFact: {len(qv.ids)} test queries")
    rows = []
    base = None
    for name, step, spec in METHODS:
        art = corpus
        t0 = time.perf_counter()
        if step is not None:
            kind, params = step
            art = work / f"corpus.{name.split()[0].replace('-', '')}{'c' if params.get('center') else ''}.arrow"
            (api.quantize if kind == "quantize" else api.binarize)(corpus, art, force=True, **params)
        index = work / f"{art.stem}.{spec}.vpi"
        build_file(art, index, spec)
        build_s = time.perf_counter() - t0
        width = read_vectors(art).matrix
        bpv = width.shape[1] * width.dtype.itemsize
        for rescore in (False, True):
            if rescore and step is None:
                continue
            run, qps = run_search(index, qv, 100, corpus if rescore else None, multiplier)
            res = evaluate(run, qrels, ["nDCG@10", "R@100"]).aggregate
            if base is None:
                base = res["nDCG@10"]
            rows.append({
                "method": name + (f" + rescore x{multiplier}" if rescore else ""),
                "bytes/vec": bpv, "x smaller": f"{1536 / bpv:g}x",
                "index bytes": index.stat().st_size, "build s": build_s, "queries/s": qps,
                "nDCG@10": res["nDCG@10"], "R@100": res["R@100"], "retention": res["nDCG@10"] / base,
            })
            log(f"  {rows[-1]['method']}: nDCG@10 {res['nDCG@10']:.4f}")
    return rows


def clustered(n: int, dim: int, seed: int, rank: int = 32, clusters: int = 2000, chunk: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim)).astype(np.float32)
    centers = rng.standard_normal((clusters, rank)).astype(np.float32) * 2
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = centers[rng.integers(0, clusters, m)] + rng.standard_normal((m, rank), dtype=np.float32)
        x = z @ basis + 0.3 * rng.standard_normal((m, dim), dtype=np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_big_vectors(path: Path, matrix: np.ndarray, ids: pa.Array) -> None:
    from vecpipe.formats import metadata

    meta = metadata.new("vectors", dim=matrix.shape[1], dtype="float32", metric="cos", normalized=True,
                        model={"name": "synthetic", "sha256": "0" * 64})
    schema = vectors_schema(matrix.shape[1], "float32", meta)
    write_batches((vectors_batch(ids.slice(s, min(65536, len(matrix) - s)), matrix[s : s + 65536], schema)
                   for s in range(0, len(matrix), 65536)), schema, path)


def bench_synthetic(work: Path, n: int, dim: int, nq: int) -> tuple[list[dict], dict]:
    log(f"synthetic: {n} x {dim} clustered vectors")
    docs = clustered(n, dim, seed=0)
    ids = pa.array([f"d{i}" for i in range(n)], pa.string())
    meta = {"kind": "vectors", "dim": dim, "dtype": "float32", "metric": "cos", "normalized": True,
            "model": {"name": "synthetic", "sha256": "0" * 64}}
    rng = np.random.default_rng(1)
    q = docs[rng.choice(n, nq, replace=False)] + 0.05 * rng.standard_normal((nq, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    qids = pa.array([f"q{i}" for i in range(nq)])
    vecs = Vectors(ids=ids, matrix=docs, meta=meta, name="synthetic")
    rows = []
    results = {}
    bin_art = work / "synthetic.b1.arrow"
    coded = compress.binarize(vecs, bits=1)
    write_batches(coded.batches, coded.schema, bin_art)
    methods = (("float32 Flat", vecs, "Flat", None), ("1-bit BFlat", bin_art, "BFlat", None),
               ("1-bit BFlat, faiss's scan", bin_art, "BFlat", "faiss"))
    for name, art, spec, scan in methods:
        if scan:
            os.environ["VECPIPE_HAMMING"] = scan
        else:
            os.environ.pop("VECPIPE_HAMMING", None)
        index = work / f"synthetic.{spec}.vpi"
        t0 = time.perf_counter()
        build_file(art, index, spec, compress_index=False)
        build_s = time.perf_counter() - t0
        loaded = load_index(index)
        t0 = time.perf_counter()
        loaded.search(q[:64], 10)  # warm up: first-call costs (JIT compile or cache load, code layout)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _scores, labels = loaded.search(q, 10)
        elapsed = time.perf_counter() - t0
        results[name] = labels
        # Online serving: one query per call (no BLAS batching for the float index).
        single = min(nq, 100)
        t0 = time.perf_counter()
        for i in range(single):
            loaded.search(q[i:i + 1], 10)
        one_s = time.perf_counter() - t0
        rows.append({"method": name, "build s": build_s, "first call s": warm_s, "queries/s": nq / elapsed, "search s": elapsed,
                     "q/s one per call": single / one_s, "index bytes": index.stat().st_size})
        del loaded
        log(f"  {name}: {nq / elapsed:.1f} queries/s in one batch, {single / one_s:.1f} queries/s one per call")
        index.unlink()
    os.environ.pop("VECPIPE_HAMMING", None)
    for row in rows[1:]:
        row["speed-up"] = row["queries/s"] / rows[0]["queries/s"]
        row["speed-up one per call"] = row["q/s one per call"] / rows[0]["q/s one per call"]
    exact = results["float32 Flat"]
    rows[1]["R@10 vs exact"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, results["1-bit BFlat"])]))

    # two-stage: binary candidates rescored with the float32 vectors read from disk
    doc_file = work / "synthetic.docs.arrow"
    write_big_vectors(doc_file, docs, ids)
    index = work / "synthetic.BFlat.vpi"
    build_file(bin_art, index, "BFlat", compress_index=False)
    loaded = load_index(index)
    rescorer = Rescorer(doc_file, multiplier=10)
    t0 = time.perf_counter()
    _, labels = loaded.search(q, 100)
    batch = rescorer.rescore(qids, q, labels, loaded.ids, 10)
    elapsed = time.perf_counter() - t0
    got = np.asarray(batch.column(1).to_numpy(zero_copy_only=False)).reshape(nq, 10)
    exact_ids = np.asarray(ids.take(pa.array(exact.reshape(-1))).to_numpy(zero_copy_only=False)).reshape(nq, 10)
    rows.append({"method": "1-bit BFlat + rescore x10 (disk)", "queries/s": nq / elapsed, "search s": elapsed,
                 "speed-up": (nq / elapsed) / rows[0]["queries/s"],
                 "R@10 vs exact": float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, got)]))})
    log(f"  binary + rescore: {nq / elapsed:.1f} queries/s")
    del loaded
    index.unlink()
    bin_art.unlink()

    # rerank peak memory: 1,000 queries x 100 random candidates against the float32 file on disk
    del docs, vecs
    from vecpipe.formats.runs import write_run
    from vecpipe.formats.tables import write_table

    q_file, run_file = work / "synthetic.queries.arrow", work / "synthetic.cands.arrow"
    qmeta = dict(meta)
    qschema = vectors_schema(dim, "float32", qmeta)
    write_table(pa.Table.from_batches([vectors_batch(qids, q, qschema)]), q_file)
    cands = rng.integers(0, n, (nq, 100))
    write_run(pa.table({"qid": np.repeat(np.asarray(qids.to_pylist(), dtype=object), 100),
                        "docid": [f"d{j}" for j in cands.reshape(-1)],
                        "score": pa.array(rng.random(nq * 100), pa.float32())}), run_file)
    # A small wrapper process runs rerank and reports its children's peak RSS: measured from this
    # (large) process, the fork before exec would count our own pages.
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper] + VECPIPE + [
        "rerank", str(run_file), "--vectors", str(doc_file), "--queries", str(q_file),
        "-k", "10", "-o", str(work / "synthetic.rerank.arrow"), "-q"], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        log(proc.stderr)
    rss_mb = int(proc.stdout.split()[-1]) / 1024 if proc.stdout.split() else float("nan")
    memory = {"file MB": doc_file.stat().st_size / 2**20, "peak RSS MB": rss_mb, "seconds": elapsed,
              "ok": proc.returncode == 0}
    for p in (doc_file, q_file, run_file, work / "synthetic.rerank.arrow"):
        p.unlink(missing_ok=True)
    return rows, memory


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_table(rows: list[dict], cols: list[str]) -> None:
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(row, widths)) + " |")
    print()


def write_plot(rows: list[dict], path: Path) -> None:
    """The SciFact rows' trade-off (nDCG@10 against bytes/vector and against queries/s) as a PNG,
    written atomically."""
    from vecpipe.evaluate.plots import png_bytes, tradeoff_figure
    from vecpipe.formats.targets import atomic_path

    fig = tradeoff_figure(rows, quality="nDCG@10", size="bytes/vec", speed="queries/s",
                          title="SciFact test: quality against size and speed (squares: with rescoring)")
    data = png_bytes(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path, help="BEIR SciFact directory (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    ap.add_argument("--work", type=Path, default=Path("bench-work"), help="cache and scratch directory")
    ap.add_argument("--multiplier", type=int, default=4, help="rescoring candidates per result (k=100)")
    ap.add_argument("--synthetic-n", type=int, default=1_000_000)
    ap.add_argument("--synthetic-dim", type=int, default=384)
    ap.add_argument("--synthetic-queries", type=int, default=1000)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the SciFact trade-off (nDCG@10 against size and speed) to this PNG")
    args = ap.parse_args()
    if args.plot is not None:
        from vecpipe.errors import VecpipeError
        from vecpipe.evaluate.plots import require

        try:
            require()
        except VecpipeError as exc:
            ap.error(str(exc))
        if args.skip_scifact:
            ap.error("--plot draws the SciFact table: leave out --skip-scifact")
    require_dataset(args.dataset)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("VECPIPE_QUIET", "1")

    if not args.skip_scifact:
        rows = bench_scifact(args.dataset, args.work, args.multiplier)
        print("## SciFact test (300 queries), default model, k=100; retention = nDCG@10 / float32 Flat\n")
        print_table(rows, ["method", "bytes/vec", "x smaller", "index bytes", "build s", "queries/s", "nDCG@10", "R@100", "retention"])
        if args.plot is not None:
            write_plot(rows, args.plot)
    if not args.skip_synthetic:
        srows, memory = bench_synthetic(args.work, args.synthetic_n, args.synthetic_dim, args.synthetic_queries)
        print(f"## Synthetic {args.synthetic_n:,} x {args.synthetic_dim} clustered (seed 0), {args.synthetic_queries} queries, k=10, same run\n")
        print("queries/s and speed-up: all queries in one batch (faiss runs float search as a BLAS matrix product);")
        print("one per call: 100 queries searched one at a time, as an online service would.\n")
        print_table(srows, ["method", "build s", "index bytes", "first call s", "search s", "queries/s", "speed-up", "q/s one per call",
                            "speed-up one per call", "R@10 vs exact"])
        print(f"## rerank: {args.synthetic_queries} queries x 100 random candidates against a {memory['file MB']:,.0f} MB float32 Arrow file\n")
        print_table([memory], ["file MB", "peak RSS MB", "seconds", "ok"])


if __name__ == "__main__":
    main()

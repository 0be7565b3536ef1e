"""Whole commands against a plain script doing the same work around the same kernel.

    python bench/bench_commands.py [--n 200000] [--dim 384] [--queries 1000] [--repeat 5]
                                   [--work DIR] [--baseline-root DIR]

Each row times whole processes (start-up, reading, the kernel, writing) and alternates the sides in
every repetition, so both see the same machine state; medians are printed. Sides:

* ``vecpipe``: the commands a user runs, from this checkout;
* ``script``: a plain Python script with pyarrow + numpy + faiss reading the same Parquet file and
  writing the same run (the floor a tool can approach);
* ``baseline`` (with ``--baseline-root``): the same commands from another checkout, for before/after.

pyarrow imports pandas, when it is installed, the first time it converts a Python or NumPy value
(``pa.array``): 0.3-0.5 s of a script's life here. vecpipe keeps pyarrow from importing it. So that
the script side does not carry that cost, the scripts do the same by default (as if pandas were not
installed); ``--script-pandas`` lets them import it, as a plain script in an environment with pandas
(vecpipe[ray] brings it) would.

Rows: build-index Flat + search from Parquet; the same from an Arrow file; 1-bit binarize + build +
search; the 1-bit search command alone against a script searching the same codes; the search command
alone for one query (its fixed cost); ``vecpipe --help`` and a 1-row ``eval`` against the
``ir_measures`` command line's (``script`` side); ``--hnsw``: an HNSW32 build on every core against
faiss's. The finite-value check's share of a build is printed beside, measured in-process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

NO_PANDAS = r"""
import sys
class _NoPandas:  # as if pandas were not installed: pyarrow then skips its pandas checks
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not imported by this script", name=name)
        return None
sys.meta_path.insert(0, _NoPandas())
"""

SCRIPT_FLAT = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, pyarrow.ipc as ipc, faiss
def load(p):
    t = pq.read_table(p) if p.endswith(".parquet") else ipc.open_file(p).read_all()
    emb = t.column("embedding").combine_chunks()
    width = emb.type.list_size if hasattr(emb.type, "list_size") else len(emb[0])
    return t.column("id").combine_chunks(), emb.flatten().to_numpy().reshape(-1, width)
ids, x = load(sys.argv[1])
qids, q = load(sys.argv[2])
index = faiss.IndexFlatIP(x.shape[1]); index.add(np.ascontiguousarray(x, dtype=np.float32))
d, l = index.search(np.ascontiguousarray(q, dtype=np.float32), 100)
run = pa.table({"qid": qids.take(pa.array(np.repeat(np.arange(len(q)), 100))), "docid": ids.take(pa.array(l.reshape(-1))),
                "rank": pa.array(np.tile(np.arange(1, 101, dtype=np.int32), len(q))), "score": pa.array(d.reshape(-1))})
pq.write_table(run, sys.argv[3])
"""

SCRIPT_HNSW = r"""
import sys, numpy as np, pyarrow.ipc as ipc, faiss
t = ipc.open_file(sys.argv[1]).read_all()
emb = t.column("embedding").combine_chunks()
x = np.ascontiguousarray(emb.flatten().to_numpy().reshape(-1, emb.type.list_size), dtype=np.float32)
index = faiss.index_factory(x.shape[1], "HNSW32", faiss.METRIC_INNER_PRODUCT)
index.add(x)
faiss.write_index(index, sys.argv[2])
"""

LOAD_PARQUET = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, faiss
def load(p):
    t = pq.read_table(p)
    emb = t.column("embedding").combine_chunks()
    return t.column("id").combine_chunks(), emb.flatten().to_numpy().reshape(-1, emb.type.list_size)
def write_run(qids, ids, scores, labels, path):
    k = labels.shape[1]
    pq.write_table(pa.table({"qid": qids.take(pa.array(np.repeat(np.arange(len(labels)), k))),
                             "docid": ids.take(pa.array(labels.reshape(-1))),
                             "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), len(labels))),
                             "score": pa.array(scores.reshape(-1))}), path)
"""

SCRIPT_BINARY = LOAD_PARQUET + r"""
ids, x = load(sys.argv[1])
qids, q = load(sys.argv[2])
codes, qcodes = np.packbits(x > 0, axis=1), np.packbits(q > 0, axis=1)
index = faiss.IndexBinaryFlat(codes.shape[1] * 8); index.add(codes)
d, l = index.search(qcodes, 100)
write_run(qids, ids, -d.astype(np.float32), l, sys.argv[3])
"""


SCRIPT_BINARY_SEARCH = LOAD_PARQUET + r"""
ids, codes = load(sys.argv[1])
qids, q = load(sys.argv[2])
index = faiss.IndexBinaryFlat(codes.shape[1] * 8); index.add(np.ascontiguousarray(codes))
d, l = index.search(np.packbits(q > 0, axis=1), 100)
write_run(qids, ids, -d.astype(np.float32), l, sys.argv[3])
"""


def warm(cwd: Path) -> None:
    """Read the inputs every row may use, untimed: this machine's memory manager pages out files
    idle for a few seconds (DAMON), so without it a run pays, at random, a re-read from disk."""
    for name in ("docs.parquet", "docs.arrow", "queries.parquet", "queries.arrow", "b1.parquet", "b1.vpi", "flat.vpi"):
        path = cwd / name
        if path.exists():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def timed(commands: list[list[str]], env: dict, cwd: Path) -> float:
    warm(cwd)
    t0 = time.perf_counter()
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def clustered(n: int, dim: int, seed: int, rank: int = 32, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim)).astype(np.float32)
    centers = rng.standard_normal((clusters, rank)).astype(np.float32) * 3
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        z = centers[rng.integers(0, clusters, m)] + rng.standard_normal((m, rank), dtype=np.float32)
        x = z @ basis + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_inputs(work: Path, n: int, dim: int, nq: int) -> None:
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa

    from vecpipe.formats import metadata
    from vecpipe.formats.tables import write_batches
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    docs = clustered(n, dim, 0)
    rng = np.random.default_rng(1)
    q = docs[rng.choice(n, nq, replace=False)] + 0.05 * rng.standard_normal((nq, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    meta = metadata.new("vectors", dim=dim, dtype="float32", metric="cos", normalized=True,
                        model={"name": "synthetic", "sha256": "0" * 64})
    schema = vectors_schema(dim, "float32", meta)
    for name, mat, prefix in (("docs", docs, "d"), ("queries", q, "q")):
        ids = pa.array([f"{prefix}{i}" for i in range(len(mat))], pa.string())
        for ext in (".parquet", ".arrow"):
            write_batches((vectors_batch(ids.slice(s, min(65536, len(mat) - s)), mat[s:s + 65536], schema)
                           for s in range(0, len(mat), 65536)), schema, work / f"{name}{ext}")
    one = pa.Table.from_batches([vectors_batch(pa.array(["q0"]), q[:1], schema)])
    write_batches(one.to_batches(), schema, work / "one.parquet")
    (work / "one.trec").write_text("q0 Q0 d0 1 0.9 run\n")
    (work / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    (work / "qrels.trec").write_text("q0 0 d0 1\n")


def finite_share(work: Path) -> tuple[float, float]:
    """(seconds of the finite-value check, seconds of the whole in-process build-index read + add)."""
    sys.path.insert(0, str(ROOT))
    from vecpipe.formats.vectors import check_finite, read_vectors
    from vecpipe.index import build_index

    t0 = time.perf_counter()
    vecs = read_vectors(work / "docs.parquet")
    build_index(vecs, spec="Flat")
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(5):
        check_finite(vecs.matrix, "docs")
    return (time.perf_counter() - t0) / 5, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--baseline-root", type=Path, default=None, help="another vecpipe checkout to compare with")
    ap.add_argument("--hnsw", action="store_true", help="also time an HNSW32 build (vecpipe on every core against faiss)")
    ap.add_argument("--script-pandas", action="store_true", help="let the scripts' pyarrow import pandas (when installed)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vecpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "docs.parquet").exists():
        print(f"writing {args.n:,} x {args.dim} vectors and {args.queries:,} queries to {work}", file=sys.stderr)
        write_inputs(work, args.n, args.dim, args.queries)
    py = sys.executable
    head = "" if args.script_pandas else NO_PANDAS
    (work / "flat.py").write_text(head + SCRIPT_FLAT)
    (work / "binary.py").write_text(head + SCRIPT_BINARY)
    (work / "hnsw.py").write_text(head + SCRIPT_HNSW)
    (work / "binary-search.py").write_text(head + SCRIPT_BINARY_SEARCH)

    def vp(root: Path) -> tuple[list[str], dict]:
        return [py, "-m", "vecpipe"], dict(os.environ, PYTHONPATH=str(root))

    sides = {"vecpipe": ROOT}
    if args.baseline_root:
        sides["baseline"] = args.baseline_root
    for root in sides.values():
        # bytecode compiled ahead, as `pip install` does: an environment with PYTHONDONTWRITEBYTECODE
        # would otherwise compile every vecpipe module from source in every process
        subprocess.run([py, "-m", "compileall", "-q", str(Path(root) / "vecpipe")], check=True, stdout=subprocess.DEVNULL)
    rows = {
        "build-index Flat + search, from Parquet": lambda v: [
            v + ["build-index", "docs.parquet", "--spec", "Flat", "-o", "flat.vpi", "--force", "-q"],
            v + ["search", "queries.parquet", "--index", "flat.vpi", "-k", "100", "-o", "run.parquet", "--force", "-q"]],
        "build-index Flat + search, from Arrow": lambda v: [
            v + ["build-index", "docs.arrow", "--spec", "Flat", "-o", "flat.vpi", "--force", "-q"],
            v + ["search", "queries.arrow", "--index", "flat.vpi", "-k", "100", "-o", "run.parquet", "--force", "-q"]],
        "1-bit binarize + build + search": lambda v: [
            v + ["binarize", "docs.parquet", "--bits", "1", "-o", "b1.parquet", "--force", "-q"],
            v + ["build-index", "b1.parquet", "--spec", "BFlat", "-o", "b1.vpi", "--force", "-q"],
            v + ["search", "queries.parquet", "--index", "b1.vpi", "-k", "100", "-o", "run-b1.parquet", "--force", "-q"]],
        "1-bit search command alone": lambda v: [
            v + ["search", "queries.parquet", "--index", "b1.vpi", "-k", "100", "-o", "run-b1.parquet", "--force", "-q"]],
        "search command alone, 1 query": lambda v: [
            v + ["search", "one.parquet", "--index", "flat.vpi", "-k", "100", "-o", "run1.parquet", "--force", "-q"]],
        "vecpipe --help": lambda v: [v + ["--help"]],
        "1-row eval": lambda v: [v + ["eval", "one.trec", "--qrels", "qrels.tsv", "-m", "nDCG@10"]],
    }
    if args.hnsw:
        rows["HNSW32 build, every core"] = lambda v: [
            v + ["build-index", "docs.arrow", "--spec", "HNSW32", "-o", "hnsw.vpi", "--force", "-q"]]
    scripts = {
        "build-index Flat + search, from Parquet": [[py, "flat.py", "docs.parquet", "queries.parquet", "script-run.parquet"]],
        "build-index Flat + search, from Arrow": [[py, "flat.py", "docs.arrow", "queries.arrow", "script-run.parquet"]],
        "1-bit binarize + build + search": [[py, "binary.py", "docs.parquet", "queries.parquet", "script-run.parquet"]],
        "HNSW32 build, every core": [[py, "hnsw.py", "docs.arrow", "script-hnsw.faiss"]],
        "1-bit search command alone": [[py, "binary-search.py", "b1.parquet", "queries.parquet", "script-run.parquet"]],
        "vecpipe --help": [[py, "-m", "ir_measures", "--help"]],
        "1-row eval": [[py, "-m", "ir_measures", "qrels.trec", "one.trec", "nDCG@10"]],
    }
    results: dict[str, dict[str, list[float]]] = {}
    for name, make in rows.items():
        results[name] = {}
        for rep in range(args.repeat):
            order = list(sides) + (["script"] if name in scripts else [])
            if rep % 2:
                order.reverse()
            for side in order:
                if side == "script":
                    t = timed(scripts[name], dict(os.environ), work)
                else:
                    cmd, env = vp(sides[side])
                    t = timed(make(cmd), env, work)
                results[name].setdefault(side, []).append(t)
        print(f"  {name}: " + ", ".join(f"{s} {statistics.median(v):.3f}s" for s, v in results[name].items()), file=sys.stderr)
    cols = list(sides) + ["script"]
    print(f"\n{args.n:,} x {args.dim} float32 vectors, {args.queries:,} queries, k=100; median of {args.repeat} "
          f"alternating runs; {os.cpu_count()} CPUs; script side of --help and eval: the ir_measures command line; "
          f"scripts {'with' if args.script_pandas else 'without'} pandas\n")
    header = ("| what | " + " | ".join(f"{c} s" for c in cols) + " | vecpipe / script | paired ratios: median (range) |"
              + (" vecpipe / baseline |" if args.baseline_root else ""))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, by_side in results.items():
        med = {s: statistics.median(v) for s, v in by_side.items()}
        cells = [f"{med[c]:.3f}" if c in med else "" for c in cols]
        ratio = f"{med['vecpipe'] / med['script']:.2f}x" if "script" in med else ""
        paired = ""
        if "script" in by_side:  # each round's own ratio: a slow spell of the machine hits both sides of a round
            r = [a / b for a, b in zip(by_side["vecpipe"], by_side["script"])]
            paired = f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"
        line = f"| {name} | " + " | ".join(cells) + f" | {ratio} | {paired} |"
        if args.baseline_root:
            line += f" {med['vecpipe'] / med['baseline']:.2f}x |"
        print(line)
    check_s, build_s = finite_share(work)
    print(f"\nfinite-value check: {check_s * 1000:.1f} ms of a {build_s:.2f} s in-process read + Flat build "
          f"({100 * check_s / build_s:.1f}%)")


if __name__ == "__main__":
    main()

"""build-index --spec auto against autofaiss at the same memory budgets (issue 18, part 3).

    python bench/bench_autospec.py [--n 1000000] [--dim 384] [--vectors DOCS --queries QUERIES]
                                   [--autofaiss-python PYTHON]

For each corpus (seeded clustered synthetic ``--n`` x ``--dim``; and ``--vectors`` with its
``--queries`` when given, e.g. SciFact's embedded docs and queries) and each budget (10%, 30% and
100% of the float vectors' size): ``vecpipe build-index --spec auto --max-memory B`` and autofaiss's
``build_index(max_index_memory_usage=B)``, each timed as a whole; then both indexes searched the same
way (faiss, every core, their own tuned search parameters) with queries outside the corpus, k 10:
recall@10 against exact search and queries/s. An index ``--spec auto`` chose to rescore from disk is
searched with that rescoring (vecpipe's Rescorer reading the float vectors' Parquet file), so its
queries/s include the reads. ``--work DIR`` keeps the corpora and autofaiss's builds for a rerun
(``--sides vecpipe`` retakes vecpipe's rows only; ``--sides autofaiss`` builds autofaiss's ahead).
``--tune-share S`` (with ``--queries``) gives vecpipe a seeded share S of the real queries as
``build-index --queries`` to tune on, and measures both sides on the other queries only (autofaiss
has no such option: it tunes on corpus rows).

autofaiss pins numpy < 2, so it lives in its own environment:
``python3 -m venv /tmp/af && /tmp/af/bin/pip install autofaiss``, then ``--autofaiss-python
/tmp/af/bin/python``. Without it the autofaiss column is left out and the table says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clustered_rows, synthetic_space, vp

AUTOFAISS = r"""
import json, sys, time
import numpy as np
from autofaiss import build_index
import autofaiss
x = np.load(sys.argv[1])
t = time.perf_counter()
index, infos = build_index(embeddings=x, index_path=sys.argv[2], index_infos_path=sys.argv[3] + ".infos",
                           max_index_memory_usage=sys.argv[4], current_memory_available="16G", metric_type="ip",
                           min_nearest_neighbors_to_retrieve=10, nb_cores=None, verbose=40, save_on_disk=True)
json.dump({"seconds": time.perf_counter() - t, "version": autofaiss.__version__, "infos": infos}, open(sys.argv[3], "w"))
"""


def write(path: Path, x: np.ndarray, prefix: str) -> Path:
    import pyarrow as pa

    from vecpipe.formats import metadata
    from vecpipe.formats.tables import write_table
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    schema = vectors_schema(x.shape[1], "float32", metadata.new("vectors", dim=x.shape[1], dtype="float32", metric="cos", normalized=True))
    write_table(pa.Table.from_batches([vectors_batch([f"{prefix}{i}" for i in range(len(x))], x, schema)]), path)
    return path


def measure(index, q: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    index.search(q[:50], 10)
    t = time.perf_counter()
    _, labels = index.search(q, 10)
    t = time.perf_counter() - t
    hits = [len(set(a[a >= 0].tolist()) & set(b.tolist())) for a, b in zip(labels, truth)]
    return float(np.mean(hits)) / 10, len(q) / t


def measure_vecpipe(loaded, path: Path, q: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """As ``measure``, through vecpipe's own search: an index that records a rescore source fetches
    k x M candidates and rescores them with vecpipe's Rescorer, reading the float vectors from the
    Parquet file on disk (as ``vecpipe search`` does)."""
    import pyarrow as pa

    from vecpipe.index.rescore import Rescorer, source_path

    record = loaded.meta.get("rescore")
    if not record:
        return measure(loaded.index, q, truth)
    rescorer = Rescorer(source_path(record, path), multiplier=int(record["multiplier"]), metric=record.get("metric"))
    qids = pa.array([f"q{i}" for i in range(len(q))])

    def search(rows: slice) -> list[list[int]]:
        _, labels = loaded.search(q[rows], 10 * rescorer.multiplier)
        batch = rescorer.rescore(qids[rows], q[rows], labels, loaded.ids, 10)
        found: dict[str, list[int]] = {}
        for qid, doc in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            found.setdefault(qid, []).append(int(doc[1:]))
        return [found.get(f"q{i}", []) for i in range(rows.start or 0, rows.stop)]

    search(slice(0, 50))
    t = time.perf_counter()
    got = search(slice(0, len(q)))
    t = time.perf_counter() - t
    hits = [len(set(a) & set(b.tolist())) for a, b in zip(got, truth)]
    return float(np.mean(hits)) / 10, len(q) / t


def bench_corpus(name: str, x: np.ndarray, q: np.ndarray, work: Path, af_python: str | None, target: float,
                 sides: str = "both", reuse: bool = False, tune: np.ndarray | None = None,
                 shares: tuple[float, ...] = (0.1, 0.3, 1.0)) -> None:
    import faiss

    from vecpipe.index.search import load_index

    n, dim = x.shape
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    _, truth = exact.search(q, 10)
    del exact
    docs = work / f"{name}.parquet"
    if not docs.exists():  # the same seeded rows: a --work directory keeps them between runs
        write(docs, x, "d")
        np.save(work / f"{name}.npy", x)
    full = n * dim * 4
    tuning: list[str] = []
    if tune is not None:
        tune_path = write(work / f"{name}-tune-{len(tune)}.parquet", tune, "t")
        tuning = ["--queries", str(tune_path)]
    print(f"\n{name}: {n:,} x {dim}, float vectors {full / 2**20:.0f} MiB, {len(q)} queries outside the corpus, target recall@10 {target}"
          + (f"; vecpipe tuned on {len(tune)} other real queries (build-index --queries)" if tune is not None else ""))
    print("| budget | side | index | index MiB | build s | recall@10 | queries/s |\n|---|---|---|---|---|---|---|", flush=True)
    for share in shares:
        budget = int(full * share)
        if sides == "autofaiss":
            print(f"| {share:.0%} ({budget / 2**20:.1f} MiB) | | | | | | |", flush=True)
            autofaiss_row(name, share, budget, work, str(af_python), q, truth)
            continue
        out = work / f"{name}-{share}{f'-tuned{len(tune)}' if tune is not None else ''}.vpi"
        seconds = out.with_name(out.name + ".seconds")
        if reuse and out.exists() and seconds.exists():
            t_build = float(seconds.read_text())
        else:
            t_build, _, _err = vp("build-index", str(docs), "--spec", "auto", "--max-memory", str(budget), "--target-recall",
                                 str(target), *tuning, "-o", str(out), "--force")
            seconds.write_text(f"{t_build:.1f}")
        loaded = load_index(out)
        rec, qps = measure_vecpipe(loaded, out, q, truth)
        auto = loaded.meta["auto"]
        params = loaded.meta.get("search_params") or {}
        setting = ",".join(f"{k}={v}" for k, v in params.items())
        if loaded.meta.get("rescore"):
            setting += f" +rescore x{loaded.meta['rescore']['multiplier']} from disk"
        size = len((faiss.serialize_index_binary if loaded.meta.get("binary") else faiss.serialize_index)(loaded.index)) / 2**20
        print(f"| {share:.0%} ({budget / 2**20:.1f} MiB) | vecpipe | {loaded.meta['spec']} {setting} | {size:.2f} | {t_build:.1f} | {rec:.4f} | "
              f"{qps:,.0f} |", flush=True)
        if auto.get("why", "").startswith("none"):
            print(f"|  |  | ({auto['why']}) |  |  |  |  |")
        if af_python and sides == "both":
            autofaiss_row(name, share, budget, work, af_python, q, truth)


def autofaiss_row(name: str, share: float, budget: int, work: Path, af_python: str, q: np.ndarray, truth: np.ndarray) -> None:
    """autofaiss's choice at ``budget``: built once (reused from ``--work`` when there), then searched."""
    import faiss

    index_path, info_path = work / f"af-{name}-{share}.index", work / f"af-{name}-{share}.json"
    if not info_path.exists():
        proc = subprocess.run([af_python, "-c", AUTOFAISS, str(work / f"{name}.npy"), str(index_path), str(info_path),
                               f"{budget / 2**20:.0f}MB"], capture_output=True, text=True)
        if proc.returncode:
            print(f"| | autofaiss | failed: {proc.stderr.strip().splitlines()[-1][:200]} | | | | |", flush=True)
            return
    info = json.loads(info_path.read_text())
    index = faiss.read_index(str(index_path))
    param = (info["infos"] or {}).get("index_param", "")
    if param:
        faiss.ParameterSpace().set_index_parameters(index, param)
    rec, qps = measure(index, q, truth)
    size = index_path.stat().st_size / 2**20
    over = " (over the budget)" if index_path.stat().st_size > budget else ""
    print(f"| | autofaiss {info['version']} | {(info['infos'] or {}).get('index_key')} {param} | {size:.2f}{over} | {info['seconds']:.1f} | "
          f"{rec:.4f} | {qps:,.0f} |", flush=True)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries-n", type=int, default=1000)
    ap.add_argument("--vectors", type=Path, default=None, help="a real corpus's doc vectors (with --queries)")
    ap.add_argument("--queries", type=Path, default=None)
    ap.add_argument("--autofaiss-python", default=None)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the corpora and autofaiss's indexes here; a rerun reuses autofaiss's builds")
    ap.add_argument("--sides", choices=("both", "vecpipe", "autofaiss"), default="both")
    ap.add_argument("--budgets", default="0.1,0.3,1.0", help="the budgets, as shares of the float vectors' size")
    ap.add_argument("--tune-share", type=float, default=0.0,
                    help="with --queries: this seeded share of them tunes vecpipe (build-index --queries), the rest measure")
    ap.add_argument("--reuse", action="store_true", help="reuse vecpipe's indexes (and build times) found in --work")
    args = ap.parse_args()
    af = args.autofaiss_python
    if af and subprocess.run([af, "-c", "import autofaiss"], capture_output=True).returncode:
        print(f"bench_autospec: {af} cannot import autofaiss: the autofaiss column is left out")
        af = None
    if not af:
        print("autofaiss: not given (--autofaiss-python): vecpipe's side only")
    if args.sides == "autofaiss" and not af:
        ap.error("--sides autofaiss needs --autofaiss-python")
    if args.sides == "vecpipe":
        af = None
    shares = tuple(float(b) for b in args.budgets.split(","))
    with tempfile.TemporaryDirectory(prefix="vecpipe-bench-auto-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.vectors:
            from vecpipe.formats.vectors import read_vectors

            x = np.ascontiguousarray(read_vectors(args.vectors).matrix, dtype=np.float32)
            q = np.ascontiguousarray(read_vectors(args.queries).matrix, dtype=np.float32) if args.queries else x[:1000]
            tune = None
            if args.tune_share and args.queries:
                picked = np.random.default_rng(0).permutation(len(q))
                cut = round(len(q) * args.tune_share)
                tune, q = q[np.sort(picked[:cut])], q[np.sort(picked[cut:])]
            bench_corpus(args.vectors.stem, x, q, work, af, args.target_recall, args.sides, args.reuse, tune, shares)
        if not args.skip_synthetic:
            rng = np.random.default_rng(0)
            centers, basis = synthetic_space(rng, args.dim)
            x = clustered_rows(rng, args.n, centers, basis)
            q = clustered_rows(rng, args.queries_n, centers, basis)
            bench_corpus(f"synthetic{args.n}", x, q, work, af, args.target_recall, args.sides, args.reuse, shares=shares)


if __name__ == "__main__":
    main()

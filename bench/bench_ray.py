"""--engine ray against the local engine (issue 10): SciFact's corpus split into 8 JSONL files.

    python bench/bench_ray.py ../shared/datasets/scifact [--limit 500] [--workers 1,2,4] [--files 8]

1. overhead: `vecpipe embed F0..F7 -o local.parquet` (the local engine, every core) against
   `vecpipe embed F0..F7 --engine ray -o DIR` (a local Ray on every core), wall time of the whole
   command (Ray's start and stop included), and the largest difference between their vectors;
2. scaling on a simulated multi-node cluster on this machine (vecpipe.pipeline.ray_engine.LocalCluster:
   `ray start --head --num-cpus 1` plus N-1 more one-CPU nodes): `--address ... --workers N --threads 1`
   for each N of --workers, against the local engine with --threads 1.

On a machine with fewer cores than N the nodes share them: the scaling rows then say what the
overhead of more workers costs, not what more machines gain. The embedding cache is off (bench/_common).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp


def split_corpus(corpus: Path, dest: Path, files: int, limit: int | None) -> list[Path]:
    """The corpus's records in ``files`` JSONL files of consecutive records (the first ``limit``)."""
    lines = []
    with open(corpus) as fh:
        for line in fh:
            if line.strip():
                lines.append(line if line.endswith("\n") else line + "\n")
            if limit is not None and len(lines) >= limit:
                break
    per = -(-len(lines) // files)
    paths = []
    for k in range(files):
        path = dest / f"corpus-{k}.jsonl"
        path.write_text("".join(lines[k * per:(k + 1) * per]))
        paths.append(path)
    return paths


def max_diff(a: Path, b: Path) -> tuple[bool, float]:
    from vecpipe.formats.vectors import read_vectors

    x, y = read_vectors(a), read_vectors(b)
    return x.ids.equals(y.ids), float(np.abs(x.matrix - y.matrix).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="embed only the first N documents (a short run)")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts for the scaling rows ('' for none)")
    args = ap.parse_args()
    require_dataset(args.data, ("corpus.jsonl",))
    from vecpipe.pipeline.ray_engine import LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp_dir:
        tmp = Path(tmp_dir)
        files = split_corpus(args.data / "corpus.jsonl", tmp, args.files, args.limit)
        docs = sum(1 for f in files for _ in open(f))
        names = [str(f) for f in files]
        print(f"# {docs} SciFact documents in {len(files)} files; the default model (int8, CPU); whole commands, wall seconds")
        print(f"{'run':<44} {'seconds':>8} {'docs/s':>8} {'ratio':>6}  same rows (max |diff|)")

        t_local, _, _ = vp("embed", *names, "-o", str(tmp / "local.parquet"), "-q")
        print(f"{'local engine, every core':<44} {t_local:>8.1f} {docs / t_local:>8.1f} {1.0:>6.2f}")
        t_ray, _, _ = vp("embed", *names, "--engine", "ray", "-o", str(tmp / "ray"), "-q")
        same, diff = max_diff(tmp / "local.parquet", tmp / "ray")
        print(f"{'--engine ray, local Ray, every core':<44} {t_ray:>8.1f} {docs / t_ray:>8.1f} {t_ray / t_local:>6.2f}  {same} ({diff:.1e})")

        counts = [int(n) for n in args.workers.split(",") if n.strip()]
        if not counts:
            return
        t_one, _, _ = vp("embed", *names, "--threads", "1", "-o", str(tmp / "local1.parquet"), "-q")
        print(f"{'local engine, --threads 1':<44} {t_one:>8.1f} {docs / t_one:>8.1f} {1.0:>6.2f}")
        rows = []
        for n in counts:
            with LocalCluster(nodes=n, cpus=1) as cluster:
                out = tmp / f"ray{n}"
                t, _, _ = vp("embed", *names, "--engine", "ray", "--address", cluster.address, "--workers", str(n),
                             "--threads", "1", "-o", str(out), "-q", env=cluster.env)
            same, diff = max_diff(tmp / "local1.parquet", out)
            label = f"--engine ray, {n} node{'s' if n > 1 else ''} x 1 CPU, {n} worker{'s' if n > 1 else ''}"
            print(f"{label:<44} {t:>8.1f} {docs / t:>8.1f} {t / t_one:>6.2f}  {same} ({diff:.1e})")
            rows.append({"workers": n, "seconds": round(t, 2)})
        print("# ratio: this run's seconds over the local baseline's (ray row: local, every core; scaling rows: local "
              "--threads 1); below 1 is faster")
        print(json.dumps({"docs": docs, "local_s": round(t_local, 2), "ray_s": round(t_ray, 2), "local_1thread_s": round(t_one, 2),
                          "scaling": rows}))


if __name__ == "__main__":
    main()

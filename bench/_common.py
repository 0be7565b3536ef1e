"""What every benchmark shares: a one-line message when its data is missing; the embedding cache off."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Benchmarks measure embedding, not the embedding cache (bench_cache.py turns it back on for itself):
# every vecpipe process a benchmark starts inherits this.
os.environ.setdefault("VECPIPE_EMBED_CACHE", "off")


def require_dataset(path: Path | None, files: tuple[str, ...] = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")) -> None:
    """Exit with one line naming what is missing (never a traceback) unless ``path`` holds ``files``."""
    if path is None:
        return
    missing = [f for f in files if not (Path(path) / f).is_file()]
    if missing:
        raise SystemExit(f"{Path(__file__).parent.name}: {path} lacks {', '.join(missing)}: give a BEIR-layout dataset "
                         "directory, e.g. ../shared/datasets/scifact")


def vp(*args: str, capture: bool = False, env: dict | None = None) -> tuple[float, str, str]:
    """Run ``vecpipe ARGS`` from the project root: (wall seconds, stdout if ``capture``, stderr).
    A failure ends the benchmark with vecpipe's own error line."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vecpipe", *args], text=True, env=env, cwd=Path(__file__).resolve().parents[1],
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode:
        raise SystemExit(f"{Path(sys.argv[0]).stem}: vecpipe {args[0]} failed: {proc.stderr.strip()}")
    return time.perf_counter() - t, proc.stdout or "", proc.stderr


def synthetic_space(rng, dim: int, clusters: int = 1000, rank: int = 48):
    """(centers, basis) of a seeded synthetic embedding space: ``clusters`` centres and a ``rank``-dimensional
    subspace the rows spread in (real embeddings have few intrinsic dimensions: nearest neighbours mean something)."""
    import numpy as np

    basis = (rng.standard_normal((rank, dim)) / np.sqrt(rank)).astype(np.float32)
    centers = (3.0 * rng.standard_normal((clusters, rank)).astype(np.float32)) @ basis
    return centers, basis


def clustered_rows(rng, n: int, centers, basis, spread: float = 1.0, noise: float = 0.05):
    """``n`` L2-normalised rows: a centre, a spread in the basis's subspace, a little isotropic noise."""
    import numpy as np

    out = np.empty((n, basis.shape[1]), np.float32)
    for start in range(0, n, 131_072):
        m = min(n, start + 131_072) - start
        z = rng.standard_normal((m, basis.shape[0]), dtype=np.float32)
        x = centers[rng.integers(0, len(centers), m)] + spread * (z @ basis) + noise * rng.standard_normal((m, basis.shape[1]), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out

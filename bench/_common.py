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

"""What every benchmark shares: a one-line message when its data is missing; the embedding cache off."""

from __future__ import annotations

import os
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

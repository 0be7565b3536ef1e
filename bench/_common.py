"""What every benchmark shares: a one-line message when its data is missing."""

from __future__ import annotations

from pathlib import Path


def require_dataset(path: Path | None, files: tuple[str, ...] = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")) -> None:
    """Exit with one line naming what is missing (never a traceback) unless ``path`` holds ``files``."""
    if path is None:
        return
    missing = [f for f in files if not (Path(path) / f).is_file()]
    if missing:
        raise SystemExit(f"{Path(__file__).parent.name}: {path} lacks {', '.join(missing)}: give a BEIR-layout dataset "
                         "directory, e.g. ../shared/datasets/scifact")

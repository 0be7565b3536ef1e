"""Shared fixtures: a CLI runner, synthetic vectors, and the path to ../shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

# faiss spins OpenMP threads; on a 2-core machine shared with other work that is slower, not faster.
# Set before numpy/faiss start their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow as pa
import pytest
from tinymodel import tiny_model_dir  # noqa: F401  (the tiny ONNX model fixture, for every module)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SCIFACT = SHARED / "scifact"


@pytest.fixture
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        pytest.skip(f"needs the SciFact dataset at {SCIFACT} (present in CI; absent in a fresh clone)")
    return SCIFACT


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke the vecpipe app; returns the typer Result (exit_code, stdout, stderr)."""
    from vecpipe.cli import app

    def invoke(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


def clustered(n: int, dim: int, seed: int = 0, rank: int = 8, clusters: int = 20) -> np.ndarray:
    """Fixed-seed synthetic embeddings with few underlying dimensions, L2-normalised."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim))
    centers = rng.standard_normal((clusters, rank)) * 3
    z = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, rank))
    x = (z @ basis + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_vectors(path, matrix: np.ndarray, prefix: str = "d", meta: dict | None = None, ids=None) -> Path:
    from vecpipe.formats import metadata
    from vecpipe.formats.tables import write_table
    from vecpipe.formats.vectors import vectors_batch, vectors_schema

    dtype = {np.dtype("float32"): "float32", np.dtype("float16"): "float16"}[matrix.dtype]
    m = metadata.new("vectors", dim=matrix.shape[1], dtype=dtype, metric="cos", normalized=True)
    m.update(meta or {})
    schema = vectors_schema(matrix.shape[1], dtype, m)
    ids = ids or [f"{prefix}{i}" for i in range(len(matrix))]
    write_table(pa.Table.from_batches([vectors_batch(ids, matrix, schema)]), path)
    return Path(path)


@pytest.fixture
def docs_queries(tmp_path):
    """A 500-doc synthetic vectors file and 20 queries near some of the docs, as Parquet and Arrow."""
    docs = clustered(500, 32, seed=1)
    rng = np.random.default_rng(2)
    picks = rng.choice(500, 20, replace=False)
    q = docs[picks] + 0.02 * rng.standard_normal((20, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d_path = write_vectors(tmp_path / "docs.parquet", docs)
    q_path = write_vectors(tmp_path / "queries.arrow", q.astype(np.float32), prefix="q")
    return d_path, q_path, docs, q, picks


@pytest.fixture(scope="session")
def shared_graphs(tmp_path_factory, tiny_model_dir) -> Path:  # noqa: F811 - the fixture, by name
    """One directory of prepared model forms (the CPU's int8 form) for the whole session, with the
    tiny model's mean-pooled form built up front: a test's first embed does not build it (nor say
    so on stderr), whatever ran before it."""
    root = tmp_path_factory.mktemp("vecpipe-graphs-root")
    saved = os.environ.get("VECPIPE_CACHE_DIR")
    os.environ["VECPIPE_CACHE_DIR"] = str(root)
    try:
        from vecpipe.encode.gpu_graph import cached_graph
        from vecpipe.encode.model import resolve_model

        cached_graph(resolve_model(str(tiny_model_dir)), "int8", "mean")
    finally:
        if saved is None:
            os.environ.pop("VECPIPE_CACHE_DIR", None)
        else:
            os.environ["VECPIPE_CACHE_DIR"] = saved
    return root / "graphs"


@pytest.fixture(autouse=True)
def _no_color(monkeypatch, tmp_path_factory, shared_graphs):
    monkeypatch.setenv("NO_COLOR", "1")
    # each test its own embedding cache, never the user's (tests that set VECPIPE_CACHE_DIR keep theirs);
    # prepared model forms are shared by the session
    if "VECPIPE_CACHE_DIR" not in os.environ:
        cache = tmp_path_factory.mktemp("vecpipe-cache")
        (cache / "graphs").symlink_to(shared_graphs, target_is_directory=True)
        monkeypatch.setenv("VECPIPE_CACHE_DIR", str(cache))
    monkeypatch.delenv("VECPIPE_DEBUG", raising=False)
    yield

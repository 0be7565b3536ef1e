"""Artifacts pinned to their bytes: refactors must not change what any stage writes.

Every stage runs once on small fixed inputs (the tiny model, synthetic vectors, a fixed run and
qrels) and the sha256 of each output is compared with ``pinned_bytes.json``. The pins hold for one
set of library versions (Parquet footers name the pyarrow version, faiss serialises its own
layout, onnxruntime's arithmetic decides the last bits of embeddings), so they are keyed by those
versions: under other versions the test skips and says how to re-pin
(``python tests/test_pinned_bytes.py --update`` on a commit whose outputs are known to be right).
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import clustered, write_vectors  # noqa: E402

PINS = HERE / "pinned_bytes.json"
LIBS = ("pyarrow", "faiss-cpu", "onnxruntime", "numpy", "zstandard", "tokenizers")
MODEL = {"name": "pinned-model", "sha256": "ef" * 32}


def environment() -> str:
    parts = []
    for lib in LIBS:
        try:
            parts.append(f"{lib}=={importlib_metadata.version(lib)}")
        except importlib_metadata.PackageNotFoundError:
            parts.append(f"{lib}==absent")
    return " ".join(parts)


def _corpus(path: Path) -> Path:
    words = [f"w{j}" for j in range(97)]
    with open(path, "w") as fh:
        for i in range(150):
            text = " ".join(words[(i * 7 + j * 3) % 97] for j in range(i % 23 + 1))
            fh.write(json.dumps({"_id": f"doc{i}", "title": f"t{i % 5}", "text": text}) + "\n")
    return path


def produce(work: Path, model_dir: Path, invoke) -> dict[str, str]:
    """Run every stage into ``work``; return {artifact name: sha256 of its bytes}."""
    corpus = _corpus(work / "corpus.jsonl")
    docs = clustered(600, 32, seed=21)
    rng = np.random.default_rng(22)
    q = docs[rng.choice(600, 25, replace=False)] + 0.03 * rng.standard_normal((25, 32)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    write_vectors(work / "docs.parquet", docs, meta={"model": MODEL})
    write_vectors(work / "q.arrow", q, prefix="q", meta={"model": MODEL})
    (work / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{(i * 37) % 600}\t{1 + i % 2}\n" for i in range(25)))
    steps = [
        ("embed.parquet", ["embed", corpus, "--model", model_dir, "-o", "embed.parquet"]),
        ("embed.arrow", ["embed", corpus, "--model", model_dir, "--prefix", "q: ", "-o", "embed.arrow"]),
        ("embed-flat.vpi", ["build-index", "embed.parquet", "-o", "embed-flat.vpi"]),
        ("shard0.parquet", ["embed", corpus, "--model", model_dir, "--shard", "0/2", "-o", "shard0.parquet"]),
        ("shard1.parquet", ["embed", corpus, "--model", model_dir, "--shard", "1/2", "-o", "shard1.parquet"]),
        ("merged.parquet", ["merge", "shard1.parquet", "shard0.parquet", "-o", "merged.parquet"]),
        ("flat.vpi", ["build-index", "docs.parquet", "-o", "flat.vpi"]),
        ("hnsw.vpi", ["build-index", "docs.parquet", "--spec", "HNSW8", "-o", "hnsw.vpi"]),
        ("ivfpq.vpi", ["build-index", "docs.parquet", "--spec", "IVF4,PQ8x4", "--train-size", "400", "-o", "ivfpq.vpi"]),
        ("raw.vpi", ["build-index", "docs.parquet", "--metric", "l2", "--no-compress", "-o", "raw.vpi"]),
        ("i8.parquet", ["quantize", "docs.parquet", "--to", "int8", "-o", "i8.parquet"]),
        ("pq.arrow", ["quantize", "docs.parquet", "--to", "pq", "--m", "8", "--nbits", "4", "-o", "pq.arrow"]),
        ("d16.parquet", ["quantize", "docs.parquet", "--dim", "16", "-o", "d16.parquet"]),
        ("qi8.parquet", ["quantize", "q.arrow", "--like", "i8.parquet", "-o", "qi8.parquet"]),
        ("b1.parquet", ["binarize", "docs.parquet", "--bits", "1", "-o", "b1.parquet"]),
        ("b2.arrow", ["binarize", "docs.parquet", "--bits", "2", "-o", "b2.arrow"]),
        ("i8.vpi", ["build-index", "i8.parquet", "-o", "i8.vpi"]),
        ("b1.vpi", ["build-index", "b1.parquet", "--spec", "BFlat", "-o", "b1.vpi"]),
        ("b2.vpi", ["build-index", "b2.arrow", "-o", "b2.vpi"]),
        ("run.parquet", ["search", "q.arrow", "--index", "flat.vpi", "-k", "20", "-o", "run.parquet"]),
        ("run.trec", ["search", "q.arrow", "--index", "hnsw.vpi", "-k", "20", "--tag", "pin", "-o", "run.trec"]),
        ("run-ivf.arrow", ["search", "q.arrow", "--index", "ivfpq.vpi", "-k", "10", "--nprobe", "2", "-o", "run-ivf.arrow"]),
        ("run-i8.parquet", ["search", "qi8.parquet", "--index", "i8.vpi", "-k", "10", "-o", "run-i8.parquet"]),
        ("run-b1.trec", ["search", "q.arrow", "--index", "b1.vpi", "-k", "10", "--rescore", "docs.parquet", "-o", "run-b1.trec"]),
        ("run-b2.parquet", ["search", "q.arrow", "--index", "b2.vpi", "-k", "10", "-o", "run-b2.parquet"]),
        ("run-text.parquet", ["search", corpus, "--index", "embed-flat.vpi", "--model", model_dir, "-k", "5", "-o", "run-text.parquet"]),
        ("rerank.parquet", ["rerank", "run-b2.parquet", "--vectors", "docs.parquet", "--queries", "q.arrow", "-k", "5", "-o", "rerank.parquet"]),
        ("rerank.trec", ["rerank", "run.trec", "--vectors", "docs.parquet", "--queries", "q.arrow", "-k", "5", "-o", "rerank.trec"]),
        ("metrics.tsv", ["eval", "run.trec", "--qrels", "qrels.tsv", "-o", "metrics.tsv"]),
        ("metrics.json", ["eval", "run.parquet", "--qrels", "qrels.tsv", "-m", "nDCG@10", "-m", "P@5", "--per-query",
                          "--format", "json", "-o", "metrics.json"]),
    ]
    digests = {}
    for name, args in steps:
        invoke(args)
        digests[name] = hashlib.sha256((work / name).read_bytes()).hexdigest()
    digests["stdout-search.arrow"] = hashlib.sha256(invoke(["search", "q.arrow", "--index", "flat.vpi", "-k", "3"])).hexdigest()
    digests["stdout-eval.tsv"] = hashlib.sha256(invoke(["eval", "run.parquet", "--qrels", "qrels.tsv", "--format", "tsv"])).hexdigest()
    return digests


def _invoker(work: Path):
    import os

    from typer.testing import CliRunner

    from vecpipe.cli import app

    runner = CliRunner()

    def invoke(args: list) -> bytes:
        old = os.getcwd()
        os.chdir(work)
        try:
            res = runner.invoke(app, [str(a) for a in args] + ["-q"] if args[0] != "eval" or "-o" in args else [str(a) for a in args])
        finally:
            os.chdir(old)
        assert res.exit_code == 0, (args, res.output)
        return res.stdout_bytes

    return invoke


def test_outputs_are_byte_identical_to_the_pins(tmp_path, tiny_model_dir):
    pins = json.loads(PINS.read_text())
    env = environment()
    if pins["environment"] != env:
        pytest.skip(f"pins were made with {pins['environment']}; this is {env}: "
                    "re-pin with python tests/test_pinned_bytes.py --update")
    got = produce(tmp_path, tiny_model_dir, _invoker(tmp_path))
    changed = sorted(k for k in pins["sha256"] if got.get(k) != pins["sha256"][k])
    assert not changed, f"outputs changed bytes: {changed}"


if __name__ == "__main__":  # python tests/test_pinned_bytes.py --update
    import tempfile

    from tinymodel import make_tiny_model

    if "--update" not in sys.argv:
        sys.exit("usage: python tests/test_pinned_bytes.py --update")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        model = make_tiny_model(work / "tiny-bert", pooling="mean", max_seq_length=128)
        digests = produce(work, model, _invoker(work))
    PINS.write_text(json.dumps({"environment": environment(), "sha256": digests}, indent=1, sort_keys=True) + "\n")
    print(f"pinned {len(digests)} artifacts to {PINS}")

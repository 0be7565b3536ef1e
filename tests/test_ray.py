"""--engine ray (issue 10): the same rows as the local engine, on a local Ray and on a two-node cluster.

Needs the extra (pip install 'vecpipe[ray]'); skipped without it. One local Ray session is shared
by the module's in-process tests (started once: a Ray start costs seconds and much memory); the
two-node test starts its own cluster with `ray start` and runs vecpipe in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, clustered, write_vectors

pytest.importorskip("ray.data", reason="needs the [ray] extra (pip install 'vecpipe[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (two CPUs, quiet): RayEngine joins it instead of starting its own."""
    import ray

    from vecpipe.pipeline.ray_engine import RayEngine

    if ray.is_initialized():
        ray.shutdown()
    engine = RayEngine(workers=2)
    engine.start()  # ray.init with vecpipe's quiet settings, num_cpus=2
    yield ray
    engine.stop()


def _records(path: Path, prefix: str, n: int) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"_id": f"{prefix}{i}", "title": f"title {i}", "text": "some words " * (i % 9 + 1) + prefix}) + "\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-inputs")
    for k, n in enumerate((9, 14, 6)):
        _records(d / f"c{k}.jsonl", f"f{k}-", n)
    return sorted(d.glob("c*.jsonl"))


def _cli():
    from typer.testing import CliRunner

    from vecpipe.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_embed_ray_equals_local_and_resumes(local_ray, inputs, tmp_path, tiny_model_dir):
    from vecpipe.formats import dataset
    from vecpipe.formats.vectors import read_vectors

    cli = _cli()
    local = tmp_path / "local.parquet"
    assert cli("embed", *inputs, "--model", tiny_model_dir, "-o", local, "--no-cache").exit_code == 0
    out = tmp_path / "vecs"
    # blocks of 4 texts: several parts per input
    os.environ["VECPIPE_ENCODE_WINDOW"] = "4"
    try:
        assert cli("embed", *inputs, "--model", tiny_model_dir, "-o", local, "--no-cache", "--force").exit_code == 0
        res = cli("embed", *inputs, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
        assert res.exit_code == 0, res.output
        a, b = read_vectors(local), read_vectors(out)
        assert b.ids.to_pylist() == a.ids.to_pylist()  # input order, then block order
        assert np.abs(a.matrix - b.matrix).max() <= 1e-6
        assert b.meta["model"] == a.meta["model"] and b.meta["dim"] == a.meta["dim"]
        parts = sorted(p.name for p in out.glob("part-*.parquet"))
        assert parts[:3] == ["part-00000-00000.parquet", "part-00000-00001.parquet", "part-00000-00002.parquet"]
        assert len(parts) == 3 + 4 + 2
        before = {p.name: p.read_bytes() for p in out.glob("part-*")}

        res = cli("embed", *inputs, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
        assert res.exit_code == 0 and "up to date" in res.output

        # a killed job on changed parameters: its finished parts staged, one part never written, the
        # manifest of the earlier run still in place; the rerun embeds the missing part only
        (out / ".vecpipe-partial").mkdir()
        (out / "part-00000-00001.parquet").rename(out / ".vecpipe-partial" / "part-00000-00001.parquet")
        (out / dataset.MANIFEST).unlink()
        (out / "part-00001-00002.parquet").unlink()
        res = cli("embed", *inputs, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
        assert res.exit_code == 0, res.output
        assert "reused 25 rows of finished parts, embedded 4" in res.output
        assert {p.name: p.read_bytes() for p in out.glob("part-*")} == before
        assert not (out / ".vecpipe-partial").exists()
        c = read_vectors(out)
        assert c.ids.equals(b.ids) and np.array_equal(c.matrix, b.matrix)

        # bad data on a rerun: refused, and the earlier dataset stays whole
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"_id": "z1", "text": 5}\n')
        res = cli("embed", *inputs, bad, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
        assert res.exit_code == 1 and "bad.jsonl:1" in res.output
        d = read_vectors(out)
        assert d.ids.equals(b.ids) and np.array_equal(d.matrix, b.matrix) and not (out / ".vecpipe-partial").exists()
    finally:
        del os.environ["VECPIPE_ENCODE_WINDOW"]


def test_embed_ray_refusals(local_ray, inputs, tmp_path, tiny_model_dir):
    cli = _cli()
    dup = tmp_path / "dup.jsonl"
    _records(dup, "f0-", 2)  # f0-0, f0-1 are in c0.jsonl too
    out = tmp_path / "out"
    res = cli("embed", inputs[0], dup, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if "error" in line]
    assert len(errors) == 1 and "'f0-0' occurs in" in errors[0] and errors[0].endswith("ids must be unique across the inputs")
    assert not out.exists()  # nothing half-written
    res = cli("embed", *inputs, "--model", tiny_model_dir, "--engine", "ray")
    assert res.exit_code == 2 and "-o OUT_DIR" in res.output
    (tmp_path / "file").write_text("x")
    res = cli("embed", *inputs, "--model", tiny_model_dir, "--engine", "ray", "-o", tmp_path / "file")
    assert res.exit_code == 1 and "not a directory" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "z1", "text": "fine"}\n{"_id": "z2", "text": 5}\n')
    res = cli("embed", bad, "--model", tiny_model_dir, "--engine", "ray", "-o", out)
    errors = [line for line in res.output.splitlines() if "error" in line]
    assert res.exit_code == 1 and len(errors) == 1 and "bad.jsonl:2" in errors[0], res.output
    assert not out.exists()


def test_search_and_build_index_ray_equal_local(local_ray, tmp_path):
    cli = _cli()
    docs, queries = tmp_path / "d.parquet", tmp_path / "q.parquet"
    write_vectors(docs, clustered(2000, 16, seed=1), prefix="d")
    write_vectors(queries, clustered(50, 16, seed=2), prefix="q")
    for spec in ("IVF16,PQ4", "IVF8,Flat"):
        assert cli("build-index", docs, "--spec", spec, "-o", tmp_path / "l.vpi", "--force").exit_code == 0
        res = cli("build-index", docs, "--spec", spec, "-o", tmp_path / "r.vpi", "--engine", "ray", "--force")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "l.vpi").read_bytes() == (tmp_path / "r.vpi").read_bytes(), spec
    res = cli("build-index", docs, "--spec", "HNSW16", "-o", tmp_path / "h.vpi", "--engine", "ray")
    assert res.exit_code == 2 and "--engine ray builds IVF indexes" in res.output
    assert cli("search", "--index", tmp_path / "l.vpi", queries, "-k", "10", "-o", tmp_path / "l.trec").exit_code == 0
    res = cli("search", "--index", tmp_path / "l.vpi", queries, "-k", "10", "--batch-size", "7", "-o", tmp_path / "r.trec",
              "--engine", "ray")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "l.trec").read_text() == (tmp_path / "r.trec").read_text()
    assert len((tmp_path / "r.trec").read_text().splitlines()) == 500
    res = cli("search", "--index", tmp_path / "l.vpi", queries, "--rescore", docs, "--engine", "ray", "-o", tmp_path / "x.trec")
    assert res.exit_code == 2 and "--rescore" in res.output


def test_two_node_cluster_embed_with_address(inputs, tmp_path, tiny_model_dir):
    """`ray start --head --num-cpus 1` + a second `ray start --address ... --num-cpus 1`; embed --address
    joins them with two workers (one per node's CPU), the same rows as the local engine."""
    from vecpipe.formats.vectors import read_vectors
    from vecpipe.pipeline.ray_engine import LocalCluster

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with LocalCluster(nodes=2, cpus=1, env=env) as cluster:
        out = tmp_path / "vecs"
        # two workers of one CPU each: Ray Data waits for the second node's CPU
        res = subprocess.run([sys.executable, "-m", "vecpipe", "embed", *map(str, inputs), "--model", str(tiny_model_dir),
                              "--engine", "ray", "--address", cluster.address, "--workers", "2", "-o", str(out)],
                             env=cluster.env, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr
        assert [line for line in res.stderr.splitlines() if "vecpipe" not in line] == []  # Ray's own output kept quiet
        pids = [p.pid for p in cluster.procs]
    assert all(_gone(pid) for pid in pids)  # both nodes stopped
    local = tmp_path / "local.parquet"
    res = subprocess.run([sys.executable, "-m", "vecpipe", "embed", *map(str, inputs), "--model", str(tiny_model_dir),
                          "--no-cache", "-o", str(local)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    a, b = read_vectors(local), read_vectors(out)
    assert a.ids.equals(b.ids) and np.abs(a.matrix - b.matrix).max() <= 1e-6


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie nobody reaped counts as stopped
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True

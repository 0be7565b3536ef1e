"""Pipelines that survive operations: up-to-date reruns, atomic writes, resumable embed, shards, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", OMP_NUM_THREADS="1")
    env.pop("VECPIPE_DEBUG", None)
    return env


def vp(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    res = subprocess.run(VECPIPE + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=_env())
    if check and res.returncode != 0:
        raise AssertionError(f"vecpipe {' '.join(map(str, args))} failed ({res.returncode}): {res.stderr}")
    return res


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    words = [f"w{j}" for j in range(300)]
    with open(path, "w") as fh:
        for i in range(n):
            length = (i * 7 + seed) % 50 + 1
            text = " ".join(words[(i * 13 + j * (seed + 3)) % 300] for j in range(length))
            fh.write(json.dumps({"_id": f"doc{i}", "title": f"t{i % 11}", "text": text}) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", 300)


def test_every_stage_reruns_as_up_to_date_and_rebuilds_on_change(tmp_path, corpus, tiny_model_dir):
    m = tiny_model_dir
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\ndoc1\tdoc1\t1\ndoc2\tdoc5\t1\n")
    stages = [
        ("docs.parquet", ["embed", corpus, "--model", m, "-o", "docs.parquet"]),
        ("q.parquet", ["embed", corpus, "--model", m, "--prefix", "q: ", "-o", "q.parquet"]),
        ("docs.vpi", ["build-index", "docs.parquet", "--spec", "HNSW16", "-o", "docs.vpi"]),
        ("run.trec", ["search", "q.parquet", "--index", "docs.vpi", "-k", 20, "-o", "run.trec"]),
        ("run.parquet", ["search", "q.parquet", "--index", "docs.vpi", "-k", 20, "-o", "run.parquet"]),
        ("metrics.tsv", ["eval", "run.trec", "--qrels", qrels, "-o", "metrics.tsv"]),
        ("docs.i8.parquet", ["quantize", "docs.parquet", "--to", "int8", "-o", "docs.i8.parquet"]),
        ("docs.b1.arrow", ["binarize", "docs.parquet", "--bits", 1, "-o", "docs.b1.arrow"]),
        ("rr.trec", ["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", "q.parquet", "-k", 5, "-o", "rr.trec"]),
    ]
    before = {}
    for out, args in stages:
        vp(*args, cwd=tmp_path)
        before[out] = ((tmp_path / out).read_bytes(), (tmp_path / out).stat().st_mtime_ns)
    for out, args in stages:
        res = vp(*args, cwd=tmp_path)
        assert f"up to date: {out}" in res.stderr, (out, res.stderr)
        assert ((tmp_path / out).read_bytes(), (tmp_path / out).stat().st_mtime_ns) == before[out], out
    # --force rebuilds; identical work gives identical bytes
    for out, args in stages:
        res = vp(*args, "--force", cwd=tmp_path)
        assert "up to date" not in res.stderr
        assert (tmp_path / out).read_bytes() == before[out][0], f"{out} is not deterministic"
    # a changed parameter rebuilds
    assert "up to date" not in vp("build-index", "docs.parquet", "--spec", "HNSW16", "--ef-search", 99, "-o", "docs.vpi", cwd=tmp_path).stderr
    assert "up to date" not in vp("eval", "run.trec", "--qrels", qrels, "-m", "P@5", "-o", "metrics.tsv", cwd=tmp_path).stderr
    # a changed input rebuilds
    with open(corpus, "a") as fh:
        fh.write(json.dumps({"_id": "extra", "text": "one more"}) + "\n")
    assert "up to date" not in vp("embed", corpus, "--model", m, "-o", "docs.parquet", cwd=tmp_path).stderr
    assert pq.read_metadata(tmp_path / "docs.parquet").num_rows == 301


def test_stdin_input_always_runs(tmp_path, corpus, tiny_model_dir):
    with open(corpus, "rb") as fh:
        for _ in range(2):
            fh.seek(0)
            res = subprocess.run(VECPIPE + ["embed", "-", "--model", str(tiny_model_dir), "-o", "d.parquet"], stdin=fh,
                                 cwd=tmp_path, capture_output=True, text=True, env=_env())
            assert res.returncode == 0 and "up to date" not in res.stderr


def test_sigkill_midway_then_rerun_resumes_byte_identical(tmp_path, tiny_model_dir):
    corpus = write_corpus(tmp_path / "big.jsonl", 12000, seed=1)
    vp("embed", corpus, "--model", tiny_model_dir, "-o", "clean.parquet", "--no-checkpoint", "-q", cwd=tmp_path)
    proc = subprocess.Popen(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "-o", "out.parquet", "-q"],
                            cwd=tmp_path, env=_env())
    partial = tmp_path / ".out.parquet.vecpipe-partial"
    deadline = time.monotonic() + 120
    while not (partial / "block-00000001.arrow").exists():
        assert proc.poll() is None, "embed finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out.parquet").exists()
    res = vp("embed", corpus, "--model", tiny_model_dir, "-o", "out.parquet", cwd=tmp_path)
    reused = int(res.stderr.split("reused ")[1].split()[0])
    assert 4096 <= reused < 12000
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "clean.parquet").read_bytes()
    assert not partial.exists()
    assert not [p.name for p in tmp_path.iterdir() if "vecpipe-tmp" in p.name]


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_leave_the_old_output_and_no_temporary_files(tmp_path, tiny_model_dir, sig, status):
    corpus = write_corpus(tmp_path / "big.jsonl", 12000, seed=2)
    (tmp_path / "out.parquet").write_bytes(b"the old output")
    proc = subprocess.Popen(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "-o", "out.parquet", "-q",
                                       "--no-checkpoint", "--force"], cwd=tmp_path, env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if "vecpipe-tmp" in p.name]:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "out.parquet"]
    assert (tmp_path / "out.parquet").read_bytes() == b"the old output"


def test_shards_merge_byte_identical_to_unsharded(tmp_path, tiny_model_dir):
    corpus = write_corpus(tmp_path / "c.jsonl", 9000, seed=3)
    vp("embed", corpus, "--model", tiny_model_dir, "-o", "full.parquet", "-q", cwd=tmp_path)
    procs = [subprocess.Popen(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "--shard", f"{i}/4",
                                         "-o", f"s{i}.parquet", "-q"], cwd=tmp_path, env=_env()) for i in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    rows = [pq.read_metadata(tmp_path / f"s{i}.parquet").num_rows for i in range(4)]
    assert sum(rows) == 9000 and min(rows) > 0
    vp("merge", "s3.parquet", "s1.parquet", "s0.parquet", "s2.parquet", "-o", "merged.parquet", cwd=tmp_path)
    assert (tmp_path / "merged.parquet").read_bytes() == (tmp_path / "full.parquet").read_bytes()
    assert "up to date" in vp("merge", "s0.parquet", "s1.parquet", "s2.parquet", "s3.parquet", "-o", "merged.parquet", cwd=tmp_path).stderr
    # incomplete or foreign sets are refused and write nothing
    res = vp("merge", "s0.parquet", "s1.parquet", "s2.parquet", "-o", "bad.parquet", cwd=tmp_path, check=False)
    assert res.returncode == 1 and "missing 3/4" in res.stderr and not (tmp_path / "bad.parquet").exists()
    vp("embed", corpus, "--model", tiny_model_dir, "--shard", "3/4", "--prefix", "x", "-o", "other3.parquet", "-q", cwd=tmp_path)
    res = vp("merge", "s0.parquet", "s1.parquet", "s2.parquet", "other3.parquet", "-o", "bad.parquet", cwd=tmp_path, check=False)
    assert res.returncode == 1 and "not a shard of the same job" in res.stderr
    res = vp("merge", "full.parquet", "-o", "bad.parquet", cwd=tmp_path, check=False)
    assert res.returncode == 1 and "not a shard" in res.stderr
    res = vp("embed", corpus, "--shard", "4/4", "-o", "x.parquet", cwd=tmp_path, check=False)
    assert res.returncode == 2


def test_concurrent_writers_leave_one_complete_file(tmp_path, tiny_model_dir):
    corpus = write_corpus(tmp_path / "c.jsonl", 4000, seed=4)
    procs = [subprocess.Popen(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "-o", "out.parquet",
                                         "-q", "--no-checkpoint", "--force"], cwd=tmp_path, env=_env()) for _ in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 4000
    assert not [p.name for p in tmp_path.iterdir() if "vecpipe-tmp" in p.name]


def test_skip_bad_keeps_going_and_reports(tmp_path, tiny_model_dir):
    p = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"_id": "ok1", "text": "fine"}),
        '{"_id": "broken", "text": ',
        '{"_id": "sur", "text": "lone \\ud800 surrogate"}',
        json.dumps({"_id": "nul", "text": "has a \u0000 NUL"}),
        json.dumps({"_id": "rtl", "text": "\u202eright to left \u05d0\u05d1"}),
        json.dumps({"_id": "big", "text": "word " * 200_000}),
        json.dumps({"_id": "ok1", "text": "duplicate"}),
        json.dumps({"_id": "notext"}),
    ]
    p.write_text("\n".join(lines) + "\n")
    res = vp("embed", p, "--model", tiny_model_dir, "-o", "v.parquet", cwd=tmp_path, check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "c.jsonl:2: malformed JSON" in res.stderr
    assert not (tmp_path / "v.parquet").exists()
    res = vp("embed", p, "--model", tiny_model_dir, "-o", "v.parquet", "--skip-bad", cwd=tmp_path)
    assert "skipped 4 bad records" in res.stderr
    for where in ("c.jsonl:2", "c.jsonl:3", "c.jsonl:7", "c.jsonl:8"):
        assert f"skipped {tmp_path / where}" in res.stderr or f"skipped {where}" in res.stderr.replace(str(tmp_path) + "/", "")
    assert pq.read_table(tmp_path / "v.parquet").column("id").to_pylist() == ["ok1", "nul", "rtl", "big"]


def test_log_lines_plain_and_json(tmp_path, corpus, tiny_model_dir):
    env = dict(_env(), VECPIPE_LOG_INTERVAL="0")
    res = subprocess.run(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "-o", "a.parquet"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    last = res.stderr.strip().splitlines()[-1]
    assert " vecpipe embed: 300/300 docs" in last and last[:4].isdigit()
    # --no-cache: the first run's vectors would all be found in the embedding cache
    res = subprocess.run(VECPIPE + ["--log-format", "json", "embed", str(corpus), "--model", str(tiny_model_dir), "--no-cache",
                                    "-o", "b.parquet"], cwd=tmp_path, capture_output=True, text=True, env=env)
    records = [json.loads(line) for line in res.stderr.strip().splitlines()]
    assert records[-1]["event"] == "done" and records[-1]["docs"] == 300 and "time" in records[-1]
    assert any(r["event"] == "progress" for r in records)
    # with the cache, the counts come as one more line of the log, after the progress line
    res = subprocess.run(VECPIPE + ["--log-format", "json", "embed", str(corpus), "--model", str(tiny_model_dir), "-o", "c.parquet"],
                         cwd=tmp_path, capture_output=True, text=True, env=env)
    records = [json.loads(line) for line in res.stderr.strip().splitlines()]
    assert records[-1]["message"] == "cache: 300 vectors reused, 0 embedded" and records[-2]["docs"] == 300


def test_rich_progress_on_a_terminal(tmp_path, corpus, tiny_model_dir):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(VECPIPE + ["embed", str(corpus), "--model", str(tiny_model_dir), "-o", "a.parquet"],
                              cwd=tmp_path, stderr=follower, stdout=subprocess.DEVNULL, env=_env(), timeout=120)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "300/300" in shown and "docs/s" in shown and "tok/s" in shown

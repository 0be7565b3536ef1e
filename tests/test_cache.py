"""The embedding cache (issue 18): reruns embed only what changed, and the cache survives hostile use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _records(n: int, start: int = 0, tag: str = "") -> list[dict]:
    return [{"_id": f"d{i}", "text": f"document {i} about topic {i % 7} {tag}".strip()} for i in range(start, start + n)]


def _write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _matrix(path: Path) -> tuple[list[str], np.ndarray]:
    t = pq.read_table(path)
    return t.column("id").to_pylist(), np.stack(t.column("embedding").to_numpy(zero_copy_only=False))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("VECPIPE_CACHE_DIR", str(d))
    return d / "embeddings"


def test_rerun_reuses_every_vector_byte_for_byte(cli, tmp_path, tiny_model_dir, cache):
    corpus = _write(tmp_path / "c.jsonl", _records(200))
    res = cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "a.parquet")
    assert res.exit_code == 0 and "reused" not in res.stderr
    res = cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "b.parquet")
    assert res.exit_code == 0 and "cache: 200 vectors reused, 0 embedded" in res.stderr
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    meta = pq.read_schema(tmp_path / "b.parquet").metadata[b"vecpipe"].decode()
    assert "reused" not in meta and "hits" not in meta  # nothing run-specific in the output


def test_changed_corpus_embeds_only_what_changed(cli, tmp_path, tiny_model_dir, cache):
    recs = _records(300)
    cli("embed", _write(tmp_path / "old.jsonl", recs), "--model", tiny_model_dir, "-o", tmp_path / "old.parquet", "-q")
    new = [r for r in recs if r["_id"] not in ("d5", "d6", "d7")]  # 3 removed
    for r in new[:3]:
        r["text"] += " edited"  # 3 edited
    new += _records(3, start=1000, tag="new")  # 3 added
    path = _write(tmp_path / "new.jsonl", new)
    res = cli("embed", path, "--model", tiny_model_dir, "-o", tmp_path / "cached.parquet")
    assert res.exit_code == 0 and "cache: 294 vectors reused, 6 embedded" in res.stderr, res.stderr
    res = cli("embed", path, "--model", tiny_model_dir, "--no-cache", "-o", tmp_path / "clean.parquet", "-q")
    ids_a, a = _matrix(tmp_path / "cached.parquet")
    ids_b, b = _matrix(tmp_path / "clean.parquet")
    assert ids_a == ids_b == [r["_id"] for r in new]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999999


def test_settings_that_shape_vectors_are_separate_spaces(cli, tmp_path, tiny_model_dir, cache):
    corpus = _write(tmp_path / "c.jsonl", _records(20))
    cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "a.parquet", "-q")
    for opts in (["--prefix", "query: "], ["--max-length", "8"], ["--pooling", "cls"]):
        res = cli("embed", corpus, "--model", tiny_model_dir, *opts, "-o", tmp_path / "x.parquet", "--force")
        assert res.exit_code == 0 and "reused" not in res.stderr, opts
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 4


def test_no_cache_and_the_off_switch_write_nothing(cli, tmp_path, tiny_model_dir, cache, monkeypatch):
    corpus = _write(tmp_path / "c.jsonl", _records(10))
    assert cli("embed", corpus, "--model", tiny_model_dir, "--no-cache", "-o", tmp_path / "a.parquet", "-q").exit_code == 0
    assert not cache.exists()
    monkeypatch.setenv("VECPIPE_EMBED_CACHE", "off")
    assert cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "b.parquet", "-q").exit_code == 0
    assert not cache.exists()
    for opts, words in ((["--no-cache", "--cache", tmp_path], "--no-cache"), (["--cache-size", "lots"], "--cache-size")):
        res = cli("embed", corpus, "--model", tiny_model_dir, *opts, "-o", tmp_path / "c.parquet")
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and words in res.stderr


def test_torn_and_foreign_files_are_never_read(cli, tmp_path, tiny_model_dir, cache):
    corpus = _write(tmp_path / "c.jsonl", _records(30))
    cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "a.parquet", "-q")
    space = next(p for p in cache.iterdir() if p.is_dir())
    seg = next(space.glob("seg-*.arrow"))
    # a killed writer's temporary file, a truncated segment and garbage with a segment's name
    (space / ".tmp-999-dead-seg-x.arrow").write_bytes(seg.read_bytes()[:100])
    (space / "seg-00000000000000000001-1-aaaa.arrow").write_bytes(seg.read_bytes()[: len(seg.read_bytes()) // 2])
    (space / "seg-00000000000000000002-1-bbbb.arrow").write_bytes(b"not arrow at all")
    res = cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / "b.parquet")
    assert res.exit_code == 0 and "cache: 30 vectors reused" in res.stderr
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    old = time.time() - 7200
    os.utime(space / ".tmp-999-dead-seg-x.arrow", (old, old))
    assert cli("cache", "prune", "--max-size", "1GiB", "-q").exit_code == 0
    assert not (space / ".tmp-999-dead-seg-x.arrow").exists()


def test_an_unusable_cache_is_a_note(cli, tmp_path, tiny_model_dir):
    corpus = _write(tmp_path / "c.jsonl", _records(5))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = cli("embed", corpus, "--model", tiny_model_dir, "--cache", blocker / "sub", "-o", tmp_path / "a.parquet")
    assert res.exit_code == 0 and "cannot be used" in res.stderr and (tmp_path / "a.parquet").exists()


def test_concurrent_writers_share_the_cache(tmp_path, tiny_model_dir, cache):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = []
    for i in range(2):
        corpus = _write(tmp_path / f"c{i}.jsonl", _records(150, start=i * 100))  # 50 records in common
        procs.append(subprocess.Popen([sys.executable, "-m", "vecpipe", "embed", str(corpus), "--model", str(tiny_model_dir),
                                       "-o", str(tmp_path / f"o{i}.parquet"), "-q"], env=env))
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    both = _write(tmp_path / "both.jsonl", _records(250))
    proc = subprocess.run([sys.executable, "-m", "vecpipe", "embed", str(both), "--model", str(tiny_model_dir),
                           "-o", str(tmp_path / "both.parquet")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "cache: 250 vectors reused, 0 embedded" in proc.stderr


def test_stats_prune_clear(cli, tmp_path, tiny_model_dir, cache):
    for i in range(3):
        corpus = _write(tmp_path / f"c{i}.jsonl", _records(40, start=i * 40))
        cli("embed", corpus, "--model", tiny_model_dir, "-o", tmp_path / f"o{i}.parquet", "-q")
        time.sleep(0.02)
    res = cli("cache", "stats", "--format", "json")
    info = json.loads(res.stdout)
    assert res.exit_code == 0 and info["spaces"][0]["vectors"] == 120 and info["spaces"][0]["segments"] == 3
    res = cli("cache", "stats", "--format", "tsv")
    assert res.stdout.splitlines()[0].split("\t")[:4] == ["space", "model", "dim", "vectors"]
    assert "120 vectors" in cli("cache", "stats").stdout
    space = next(p for p in cache.iterdir() if p.is_dir())
    segs = sorted(space.glob("seg-*.arrow"), key=lambda p: p.stat().st_mtime)
    # a hit makes a segment recently used: the oldest one survives a prune that keeps one segment
    cli("embed", tmp_path / "c0.jsonl", "--model", tiny_model_dir, "-o", tmp_path / "again.parquet", "-q")
    keep = max(p.stat().st_size for p in segs)
    res = cli("cache", "prune", "--max-size", str(keep))
    assert res.exit_code == 0 and "removed 2 segments" in res.stderr
    assert [p.name for p in space.glob("seg-*.arrow")] == [segs[0].name]
    assert cli("cache", "prune", "--max-size", "many").exit_code == 2
    res = cli("cache", "clear")
    assert res.exit_code == 0 and not any(cache.iterdir())
    assert json.loads(cli("cache", "stats", "--format", "json").stdout)["spaces"] == []


def test_cache_size_cap_applies_after_each_embed(cli, tmp_path, tiny_model_dir, cache):
    for i in range(3):
        corpus = _write(tmp_path / f"c{i}.jsonl", _records(40, start=i * 40))
        assert cli("embed", corpus, "--model", tiny_model_dir, "--cache-size", "1", "-o", tmp_path / f"o{i}.parquet", "-q").exit_code == 0
    space = next(p for p in cache.iterdir() if p.is_dir())
    assert not list(space.glob("seg-*.arrow"))  # a 1-byte cap keeps nothing

"""Outputs that mean their extension, and reruns that let make settle (issue 17, items 3 and 4)."""

from __future__ import annotations

import json
import os
import time

import pyarrow.parquet as pq
from conftest import clustered, write_vectors


def _setup(cli, tmp_path):
    d = write_vectors(tmp_path / "docs.parquet", clustered(60, 8))
    q = write_vectors(tmp_path / "q.parquet", clustered(5, 8, seed=3), prefix="q")
    assert cli("build-index", d, "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i * 7}\t1\n" for i in range(5)))
    return d, q


def test_each_extension_writes_its_format(cli, tmp_path):
    _d, q = _setup(cli, tmp_path)
    assert cli("search", q, "--index", tmp_path / "i.vpi", "-k", 4, "-o", tmp_path / "r.tsv", "-q").exit_code == 0
    assert cli("search", q, "--index", tmp_path / "i.vpi", "-k", 4, "-o", tmp_path / "r.trec", "-q").exit_code == 0
    lines = (tmp_path / "r.tsv").read_text().splitlines()
    assert len(lines) == 20 and all(len(ln.split("\t")) == 3 for ln in lines)  # MS MARCO: qid, docid, rank
    trec = [ln.split() for ln in (tmp_path / "r.trec").read_text().splitlines()]
    assert [ln.split("\t") for ln in lines] == [[t[0], t[2], t[3]] for t in trec]
    # eval reads an MS MARCO run (ordered by rank) and gives the TREC run's numbers
    a = cli("eval", tmp_path / "r.tsv", "--qrels", tmp_path / "qrels.tsv", "-o", tmp_path / "m.json")
    b = cli("eval", tmp_path / "r.trec", "--qrels", tmp_path / "qrels.tsv", "-o", tmp_path / "m.tsv")
    assert a.exit_code == b.exit_code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["measures"]  # .json is JSON
    tsv = dict(line.split("\t") for line in (tmp_path / "m.tsv").read_text().splitlines()[1:])
    assert {k: f"{v:.4f}" for k, v in metrics.items()} == tsv


def test_an_extension_a_stage_cannot_write_is_a_usage_error(cli, tmp_path):
    d, q = _setup(cli, tmp_path)
    cases = [
        (["build-index", d, "-o", tmp_path / "x.parquet"], ".vpi"),
        (["eval", tmp_path / "r.trec", "--qrels", tmp_path / "qrels.tsv", "-o", tmp_path / "m.parquet"], ".json"),
        (["search", q, "--index", tmp_path / "i.vpi", "-o", tmp_path / "r.json"], ".trec"),
        (["quantize", d, "--to", "int8", "-o", tmp_path / "x.trec"], ".parquet"),
    ]
    for args, listed in cases:
        res = cli(*args)
        assert res.exit_code == 2 and "unknown output extension" in res.stderr and listed in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1
    assert not list(tmp_path.glob("x.*")) and not (tmp_path / "m.parquet").exists()
    assert cli("build-index", d, "-o", tmp_path / "noext", "-q").exit_code == 0  # no extension: the kind's format
    assert (tmp_path / "noext").read_bytes()[:4] == b"VPI1"


def test_an_up_to_date_output_follows_its_inputs_mtime_so_make_settles(cli, tmp_path):
    d, _ = _setup(cli, tmp_path)
    out = tmp_path / "i.vpi"
    before = out.read_bytes()
    later = time.time() + 5
    os.utime(d, (later, later))  # touch the input: newer than the output, same content
    res = cli("build-index", d, "-o", out)
    assert "up to date" in res.stderr and out.read_bytes() == before
    assert out.stat().st_mtime_ns >= d.stat().st_mtime_ns  # make sees the target as current now
    stamp = out.stat().st_mtime_ns
    assert "up to date" in cli("build-index", d, "-o", out).stderr and out.stat().st_mtime_ns == stamp


def test_input_fingerprints_use_a_stat_cache_and_handle_the_racy_case(tmp_path, monkeypatch):
    from vecpipe.pipeline import manifest

    calls = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: calls.append(str(p)) or real(p))
    monkeypatch.setenv("VECPIPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(manifest.StatCache, "RACY_S", 0.2)
    old = tmp_path / "old.bin"
    old.write_bytes(b"a" * 1000)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    time.sleep(0.3)  # its ctime (the last change, which utime cannot set back) is now old enough
    first = manifest.build_manifest("s", {"x": old}, {})
    assert manifest.build_manifest("s", {"x": old}, {}) == first and len(calls) == 1  # second: from the cache
    old.write_bytes(b"b" * 1000)  # same size, then the old mtime put back: ctime still moves
    os.utime(old, (hour_ago, hour_ago))
    changed = manifest.build_manifest("s", {"x": old}, {})
    assert changed != first and len(calls) == 2
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"c" * 10)  # written just now: racily clean, never trusted from the cache
    manifest.build_manifest("s", {"x": fresh}, {})
    manifest.build_manifest("s", {"x": fresh}, {})
    assert calls.count(str(fresh)) == 2


def test_parquet_vectors_output_keeps_its_format(cli, tmp_path):
    d, _ = _setup(cli, tmp_path)
    assert cli("quantize", d, "--to", "int8", "-o", tmp_path / "x.pq", "-q").exit_code == 0
    assert pq.read_metadata(tmp_path / "x.pq").num_rows == 60


def test_a_changed_companion_ids_file_makes_a_npy_input_stale(cli, tmp_path):
    import numpy as np

    np.save(tmp_path / "v.npy", clustered(20, 8))
    ids = tmp_path / "v.ids.txt"
    ids.write_text("".join(f"a{i}\n" for i in range(20)))
    assert cli("build-index", tmp_path / "v.npy", "-o", tmp_path / "v.vpi", "-q").exit_code == 0
    assert "up to date" in cli("build-index", tmp_path / "v.npy", "-o", tmp_path / "v.vpi").stderr
    ids.write_text("".join(f"b{i}\n" for i in range(20)))
    res = cli("build-index", tmp_path / "v.npy", "-o", tmp_path / "v.vpi")
    assert res.exit_code == 0 and "up to date" not in res.stderr
    from vecpipe.formats import vpi

    assert vpi.read(tmp_path / "v.vpi").ids.to_pylist()[:2] == ["b0", "b1"]


def test_large_outputs_start_their_writeback_while_written(cli, tmp_path, monkeypatch):
    """An index and a vectors table ask the kernel to start writing their pages every
    WRITE_BEHIND_BYTES while they are written (so the closing fsync waits for the tail only); the
    files are the same as without it."""
    from vecpipe.formats import targets

    d = write_vectors(tmp_path / "docs.parquet", clustered(6000, 128))
    assert cli("build-index", d, "-o", tmp_path / "plain.vpi", "-q").exit_code == 0
    assert cli("quantize", d, "--to", "fp16", "-o", tmp_path / "plain.arrow", "-q").exit_code == 0
    calls: list[int] = []
    real = targets.start_writeback
    monkeypatch.setattr(targets, "start_writeback", lambda fd: (calls.append(os.fstat(fd).st_size), real(fd)))
    monkeypatch.setattr(targets, "WRITE_BEHIND_BYTES", 64 << 10)
    assert cli("build-index", d, "-o", tmp_path / "behind.vpi", "-q").exit_code == 0
    assert calls and calls == sorted(calls), calls  # 3 MiB of vectors
    assert (tmp_path / "behind.vpi").read_bytes() == (tmp_path / "plain.vpi").read_bytes()
    calls.clear()
    assert cli("quantize", d, "--to", "fp16", "-o", tmp_path / "behind.arrow", "-q", "--force").exit_code == 0
    assert calls, "the table sink never started a writeback"
    assert (tmp_path / "behind.arrow").read_bytes() == (tmp_path / "plain.arrow").read_bytes()
    fd = os.open(tmp_path / "behind.arrow", os.O_RDONLY)
    try:
        real(fd)  # the real call on this platform: no error (a no-op where it does not exist)
    finally:
        os.close(fd)

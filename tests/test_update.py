"""build-index NEW --update OLD.vpi (issue 18, part 2): rows added, removed and changed by id."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from conftest import clustered, write_vectors

from vecpipe.formats import vpi
from vecpipe.index import update
from vecpipe.index.faiss_util import read_index_view


def _corpora(tmp_path, n=3_000, dim=32, seed=1):
    """An old table and a new one: ids 0..99 removed, 100 new ids, rows 500..549 edited."""
    x = clustered(n, dim, seed=seed)
    old_ids = [f"d{i}" for i in range(n)]
    edited = clustered(50, dim, seed=seed + 7)
    added = clustered(100, dim, seed=seed + 8)
    new = np.vstack([x[100:], added]).copy()
    new[400:450] = edited  # rows 500..549 of the old table
    new_ids = old_ids[100:] + [f"n{i}" for i in range(100)]
    old_path = write_vectors(tmp_path / "old.parquet", x, ids=old_ids)
    new_path = write_vectors(tmp_path / "new.parquet", new.astype(np.float32), ids=new_ids)
    return old_path, new_path, new, new_ids


def _index(path):
    container = vpi.read(path)
    index, keep = read_index_view(container.index_bytes, bool(container.meta.get("binary")))
    return container, index, keep


def test_flat_update_is_the_full_rebuild_and_counts_what_changed(cli, tmp_path):
    old, new, _, _ = _corpora(tmp_path)
    assert cli("build-index", old, "-o", tmp_path / "old.vpi").exit_code == 0
    res = cli("build-index", new, "--update", tmp_path / "old.vpi", "-o", tmp_path / "upd.vpi")
    assert res.exit_code == 0, res.output
    assert "100 rows added, 100 removed, 50 changed, 2850 unchanged" in res.stderr
    assert cli("build-index", new, "-o", tmp_path / "full.vpi").exit_code == 0
    upd, full = vpi.read(tmp_path / "upd.vpi"), vpi.read(tmp_path / "full.vpi")
    assert bytes(upd.index_bytes) == bytes(full.index_bytes) and upd.ids.equals(full.ids)
    assert upd.meta["update"] == {"added": 100, "removed": 100, "changed": 50, "unchanged": 2850, "rebuilt": False}
    q = write_vectors(tmp_path / "q.parquet", clustered(20, 32, seed=9), prefix="q")
    runs = [cli("search", q, "--index", tmp_path / name, "-k", 10, "--format", "trec").stdout for name in ("upd.vpi", "full.vpi")]
    assert runs[0] == runs[1] and runs[0].count("\n") == 200


@pytest.mark.parametrize("spec", ["IVF16,PQ8", "IVF8,Flat", "IVF8,SQ8", "SQ8", "PQ8"])
def test_trained_update_keeps_training_and_equals_a_reencode_of_the_new_table(cli, tmp_path, spec):
    old, new, new_x, new_ids = _corpora(tmp_path)
    assert cli("build-index", old, "--spec", spec, "--train-size", 2000, "-o", tmp_path / "old.vpi").exit_code == 0
    res = cli("build-index", new, "--update", tmp_path / "old.vpi", "-o", tmp_path / "upd.vpi")
    assert res.exit_code == 0, res.output
    assert "encoding 150 added or changed rows" in res.stderr
    container, got, _keep = _index(tmp_path / "upd.vpi")
    _, old_index, _keep2 = _index(tmp_path / "old.vpi")
    expected = faiss.deserialize_index(faiss.serialize_index(old_index))
    expected.reset()
    expected.add(new_x)  # the old training, every new row encoded afresh, in the new table's order
    np.testing.assert_array_equal(update.stored_codes(got), update.stored_codes(expected))
    assert container.ids.to_pylist() == new_ids
    meta = container.meta
    assert meta["spec"] == spec and meta["update"]["encoded_since_training"] == 150
    assert np.frombuffer(container.extra["rowhash"], "<u8").tolist() == update.row_hashes(new_x).tolist()
    # a second update on top counts the rows encoded since training
    again = new_x.copy()
    again[:10] = clustered(10, 32, seed=40)
    write_vectors(tmp_path / "new2.parquet", again, ids=new_ids)
    assert cli("build-index", tmp_path / "new2.parquet", "--update", tmp_path / "upd.vpi", "-o", tmp_path / "upd2.vpi").exit_code == 0
    assert vpi.read(tmp_path / "upd2.vpi").meta["update"]["encoded_since_training"] == 160


def test_stored_codes_are_what_the_index_encodes():
    x = clustered(2_000, 16, seed=3)
    for spec in ("IVF8,PQ4", "IVF4,Flat", "SQ8", "PQ4"):
        index = faiss.index_factory(16, spec, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.add(x)
        np.testing.assert_array_equal(update.stored_codes(index), index.sa_encode(x))


def test_drift_is_measured_and_advises_retraining(cli, tmp_path):
    x = clustered(3_000, 32, seed=1)
    ids = [f"d{i}" for i in range(3_000)]
    write_vectors(tmp_path / "old.parquet", x, ids=ids)
    assert cli("build-index", tmp_path / "old.parquet", "--spec", "IVF16,Flat", "-o", tmp_path / "old.vpi").exit_code == 0
    assert vpi.read(tmp_path / "old.vpi").meta["train_error"] > 0
    same = clustered(3_100, 32, seed=1)[3_000:]  # more rows of the same distribution
    write_vectors(tmp_path / "more.parquet", np.vstack([x, same]), ids=ids + [f"m{i}" for i in range(100)])
    res = cli("build-index", tmp_path / "more.parquet", "--update", tmp_path / "old.vpi", "-o", tmp_path / "a.vpi")
    assert res.exit_code == 0 and "re-training advised" not in res.stderr
    assert vpi.read(tmp_path / "a.vpi").meta["update"]["drift"] < update.DRIFT_LIMIT
    rng = np.random.default_rng(0)
    other = rng.standard_normal((1_000, 32)).astype(np.float32)  # another distribution entirely
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    write_vectors(tmp_path / "drift.parquet", np.vstack([x, other]), ids=ids + [f"o{i}" for i in range(1_000)])
    res = cli("build-index", tmp_path / "drift.parquet", "--update", tmp_path / "old.vpi", "-o", tmp_path / "b.vpi")
    assert res.exit_code == 0 and "re-training advised" in res.stderr
    assert vpi.read(tmp_path / "b.vpi").meta["update"]["drift"] > update.DRIFT_LIMIT


def test_an_index_without_fingerprints_is_encoded_again_whole(cli, tmp_path):
    old, new, new_x, _ = _corpora(tmp_path)
    assert cli("build-index", old, "--spec", "IVF8,PQ8", "--train-size", 2000, "-o", tmp_path / "old.vpi").exit_code == 0
    c = vpi.read(tmp_path / "old.vpi")
    vpi.write(tmp_path / "bare.vpi", c.meta, c.ids, c.index_bytes)  # as an older vecpipe wrote it
    res = cli("build-index", new, "--update", tmp_path / "bare.vpi", "-o", tmp_path / "upd.vpi")
    assert res.exit_code == 0, res.output
    assert "no row fingerprints" in res.stderr and "encoding 3000 added or changed rows" in res.stderr
    _, got, _keep = _index(tmp_path / "upd.vpi")
    _, old_index, _keep2 = _index(tmp_path / "old.vpi")
    np.testing.assert_array_equal(update.stored_codes(got), old_index.sa_encode(new_x))


def test_hnsw_is_rebuilt_and_says_so(cli, tmp_path):
    old, new, _, _ = _corpora(tmp_path, n=800)
    assert cli("build-index", old, "--spec", "HNSW8", "-o", tmp_path / "old.vpi").exit_code == 0
    res = cli("build-index", new, "--update", tmp_path / "old.vpi", "-o", tmp_path / "upd.vpi")
    assert res.exit_code == 0, res.output
    assert "faiss cannot take rows out of HNSW8: rebuilt from" in res.stderr
    meta = vpi.read(tmp_path / "upd.vpi").meta
    assert meta["spec"] == "HNSW8" and meta["count"] == 800 and meta["update"]["rebuilt"] is True


def test_binary_flat_update_equals_the_rebuild(cli, tmp_path):
    _corpora(tmp_path)
    for name in ("old", "new"):
        assert cli("binarize", tmp_path / f"{name}.parquet", "--bits", 1, "-o", tmp_path / f"{name}.b.arrow").exit_code == 0
    assert cli("build-index", tmp_path / "old.b.arrow", "--spec", "BFlat", "-o", tmp_path / "old.vpi").exit_code == 0
    res = cli("build-index", tmp_path / "new.b.arrow", "--update", tmp_path / "old.vpi", "-o", tmp_path / "upd.vpi")
    assert res.exit_code == 0, res.output
    assert "100 rows added, 100 removed" in res.stderr
    assert cli("build-index", tmp_path / "new.b.arrow", "--spec", "BFlat", "-o", tmp_path / "full.vpi").exit_code == 0
    assert bytes(vpi.read(tmp_path / "upd.vpi").index_bytes) == bytes(vpi.read(tmp_path / "full.vpi").index_bytes)


def test_update_reruns_are_up_to_date_until_an_input_changes(cli, tmp_path):
    old, new, new_x, new_ids = _corpora(tmp_path, n=600)
    assert cli("build-index", old, "--spec", "IVF4,Flat", "-o", tmp_path / "old.vpi").exit_code == 0
    args = ("build-index", new, "--update", tmp_path / "old.vpi", "-o", tmp_path / "upd.vpi")
    assert cli(*args).exit_code == 0
    assert "up to date" in cli(*args).stderr
    write_vectors(new, new_x[::-1].copy(), ids=new_ids[::-1])
    res = cli(*args)
    assert res.exit_code == 0 and "up to date" not in res.stderr
    # in place: the old index replaced atomically by its update
    assert cli("build-index", new, "--update", tmp_path / "old.vpi", "-o", tmp_path / "old.vpi").exit_code == 0
    assert vpi.read(tmp_path / "old.vpi").meta["update"]["unchanged"] == 450


def _one_line_failure(res, code, text):
    assert res.exit_code == code, res.output
    last = res.stderr.strip().splitlines()
    assert len(last) == 1 and text in last[0], res.stderr


def test_update_refuses_what_it_cannot_follow(cli, tmp_path):
    old, new, new_x, new_ids = _corpora(tmp_path, n=600)
    assert cli("build-index", old, "--spec", "IVF4,Flat", "-o", tmp_path / "old.vpi").exit_code == 0
    out = tmp_path / "out.vpi"
    cases = [
        (("--spec", "HNSW8"), 2, "--update keeps"),
        (("--nprobe", 4), 2, "--update keeps the old index's training"),
        (("--train-size", 50), 2, "--update keeps the old index's training"),
        (("--metric", "l2"), 2, "--update keeps"),
    ]
    for extra, code, text in cases:
        _one_line_failure(cli("build-index", new, "--update", tmp_path / "old.vpi", *extra, "-o", out), code, text)
    write_vectors(tmp_path / "other.parquet", new_x, ids=new_ids, meta={"model": {"name": "other-model", "sha256": "ab" * 32}})
    c = vpi.read(tmp_path / "old.vpi")
    vpi.write(tmp_path / "modelled.vpi", {**c.meta, "model": {"name": "m", "sha256": "cd" * 32}}, c.ids, c.index_bytes, extra=c.extra)
    _one_line_failure(cli("build-index", tmp_path / "other.parquet", "--update", tmp_path / "modelled.vpi", "-o", out), 1, "embedded with")
    write_vectors(tmp_path / "wide.parquet", clustered(10, 16), ids=[f"d{i}" for i in range(10)])
    _one_line_failure(cli("build-index", tmp_path / "wide.parquet", "--update", tmp_path / "old.vpi", "-o", out), 1, "16-dimensional")
    write_vectors(tmp_path / "dup.parquet", new_x[:4], ids=["a", "b", "a", "c"])
    _one_line_failure(cli("build-index", tmp_path / "dup.parquet", "--update", tmp_path / "old.vpi", "-o", out), 1, "more than once")
    bad = new_x[:5].copy()
    bad[2, 3] = np.nan
    write_vectors(tmp_path / "nan.parquet", bad, ids=[f"x{i}" for i in range(5)])
    res = cli("build-index", tmp_path / "nan.parquet", "--update", tmp_path / "old.vpi", "-o", out)
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    raw = bytearray((tmp_path / "old.vpi").read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / "corrupt.vpi").write_bytes(bytes(raw))
    _one_line_failure(cli("build-index", new, "--update", tmp_path / "corrupt.vpi", "-o", out), 1, "corrupt")
    assert cli("build-index", tmp_path / "docs.txt", "--spec", "BM25", "-o", tmp_path / "bm.vpi").exit_code != 0  # (no text here)
    (tmp_path / "c.jsonl").write_text(json.dumps({"_id": "a", "text": "some words here"}) + "\n")
    assert cli("build-index", tmp_path / "c.jsonl", "--spec", "BM25", "-o", tmp_path / "bm.vpi").exit_code == 0
    _one_line_failure(cli("build-index", new, "--update", tmp_path / "bm.vpi", "-o", out), 2, "BM25")
    assert not out.exists()


def test_row_hashes_see_every_bit_and_are_stable():
    x = clustered(64, 48, seed=2)
    base = update.row_hashes(x)
    assert len(set(base.tolist())) == 64
    assert update.row_hashes(x.copy()).tolist() == base.tolist()
    words = x.view(np.uint32)
    for word in (0, 1, 17, 47):
        for bit in (0, 13, 31):
            y = words.copy()
            y[5, word] ^= np.uint32(1 << bit)
            assert update.row_hashes(y.view(np.float32))[5] != base[5]
    y = words.copy()
    y[7, 1] ^= np.uint32(1 << 31)
    y[7, 3] ^= np.uint32(1 << 31)  # two sign bits at once (a weak spot of plain multiply-add hashes)
    assert update.row_hashes(y.view(np.float32))[7] != base[7]
    odd = np.arange(30, dtype=np.uint8).reshape(3, 10)  # rows not a multiple of 8 bytes
    assert len(set(update.row_hashes(odd).tolist())) == 3


# -- build-index --spec auto (issue 18, part 3) ------------------------------------------------------


def test_spec_auto_picks_inside_the_budget_and_records_the_trial(cli, tmp_path):
    from vecpipe.index import autospec

    x = clustered(4_000, 32, seed=5)
    write_vectors(tmp_path / "x.parquet", x)
    full = 4_000 * 32 * 4
    for share in (1.0, 0.3):
        out = tmp_path / f"auto{share}.vpi"
        res = cli("build-index", tmp_path / "x.parquet", "--spec", "auto", "--max-memory", str(int(full * share)),
                  "--target-recall", 0.9, "-o", out)
        assert res.exit_code == 0, res.output
        meta = vpi.read(out).meta
        auto = meta["auto"]
        chosen = next(c for c in autospec.candidates(4_000, 32) if c.spec == meta["spec"])
        assert chosen.memory <= full * share and auto["chosen"] == meta["spec"]
        assert auto["recall"] >= 0.9 and "over budget" in res.stderr  # HNSW32 needs more than the float vectors
        fitting = {c.label for c in autospec.candidates(4_000, 32) if c.memory <= full * share}
        tried = {t["spec"] + (f" +rescore x{t['rescore']}" if t.get("rescore") else "") for t in auto["tried"]}
        assert tried | set(auto["not_tried"]) == fitting and all(v.startswith("skipped: PQ") for v in auto["not_tried"].values())
        assert auto["measured_on"]["held_out"] is True and "--spec auto:" in res.stderr
        faster = [t for t in auto["tried"] if t["recall"] >= 0.9 and t["latency_ms"] < auto["latency_ms"]]
        assert not faster  # the fastest of those meeting the target
        if meta["spec"].startswith("IVF"):
            assert meta["search_params"]["nprobe"] >= 1


def test_spec_auto_memory_estimates_follow_faiss_layouts():
    from vecpipe.index import autospec

    n, dim = 20_000, 32
    x = clustered(n, dim, seed=6)
    from vecpipe.index.specs import check_spec, make_index

    for c in autospec.candidates(n, dim, rescore=False):  # the new kinds: tests/test_autospec.py
        if "PQ" in c.spec:
            continue
        index = make_index(check_spec(c.spec, dim=dim, n_vectors=n, train_size=10_000, metric="ip"), "ip")
        index.train(x[:10_000])
        index.add(x)
        actual = len(faiss.serialize_index(index))
        assert 0.7 * actual <= c.memory <= 1.4 * actual, (c.spec, c.memory, actual)


def test_spec_auto_with_queries_latency_cap_and_refusals(cli, tmp_path):
    x = clustered(3_000, 32, seed=7)
    write_vectors(tmp_path / "x.parquet", x)
    write_vectors(tmp_path / "q.parquet", clustered(200, 32, seed=8), prefix="q")
    res = cli("build-index", tmp_path / "x.parquet", "--spec", "auto", "--max-memory", "10MB", "--queries", tmp_path / "q.parquet",
              "--max-latency-ms", 1e-9, "-o", tmp_path / "a.vpi")
    assert res.exit_code == 0, res.output
    auto = vpi.read(tmp_path / "a.vpi").meta["auto"]
    assert auto["measured_on"] == {"rows": 3_000, "queries": 200, "held_out": False}
    assert "none reached" in auto["why"] and auto["recall"] == max(t["recall"] for t in auto["tried"])
    out = tmp_path / "no.vpi"
    for args, code, text in [
        (("--spec", "auto"), 2, "needs --max-memory"),
        (("--spec", "auto", "--max-memory", "lots"), 2, "--max-memory lots"),
        (("--spec", "auto", "--max-memory", "1KB"), 2, "no index kind fits"),
        (("--spec", "auto", "--max-memory", "1GB", "--target-recall", 1.5), 2, "--target-recall"),
        (("--spec", "auto", "--max-memory", "1GB", "--nprobe", 4), 2, "tunes the search default"),
        (("--max-memory", "1GB"), 2, "apply to --spec auto only"),
        (("--spec", "Flat", "--queries", tmp_path / "q.parquet"), 2, "apply to --spec auto only"),
    ]:
        _one_line_failure(cli("build-index", tmp_path / "x.parquet", *args, "-o", out), code, text)
    write_vectors(tmp_path / "q16.parquet", clustered(20, 16, seed=8), prefix="q")
    _one_line_failure(cli("build-index", tmp_path / "x.parquet", "--spec", "auto", "--max-memory", "1GB", "--queries",
                          tmp_path / "q16.parquet", "-o", out), 1, "16-dimensional")
    assert not out.exists()


def test_spec_auto_refuses_hostile_inputs(cli, tmp_path):
    x = clustered(300, 16, seed=9)
    out = tmp_path / "o.vpi"
    bad = x.copy()
    bad[4, 1] = np.inf
    write_vectors(tmp_path / "inf.parquet", bad)
    _one_line_failure(cli("build-index", tmp_path / "inf.parquet", "--spec", "auto", "--max-memory", "1MB", "-o", out), 1, "inf.parquet")
    write_vectors(tmp_path / "dup.parquet", x[:3], ids=["a", "b", "a"])
    _one_line_failure(cli("build-index", tmp_path / "dup.parquet", "--spec", "auto", "--max-memory", "1MB", "-o", out), 1, "more than once")
    write_vectors(tmp_path / "x.parquet", x, meta={"model": {"name": "m", "sha256": "cd" * 32}})
    write_vectors(tmp_path / "q.parquet", x[:20], prefix="q", meta={"model": {"name": "other", "sha256": "ab" * 32}})
    _one_line_failure(cli("build-index", tmp_path / "x.parquet", "--spec", "auto", "--max-memory", "1MB", "--queries",
                          tmp_path / "q.parquet", "-o", out), 1, "embedded with")
    assert not out.exists()

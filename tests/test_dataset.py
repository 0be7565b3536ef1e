"""Several inputs as one, and dataset directories of Parquet parts (issue 10); no Ray needed here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow as pa
import pytest
from conftest import write_vectors

from vecpipe.errors import InputError


def _records(path, prefix: str, n: int, start: int = 0) -> None:
    with open(path, "w") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"_id": f"{prefix}{i}", "title": "t", "text": "word " * (i % 7 + 1) + prefix}) + "\n")


@pytest.fixture
def three_inputs(tmp_path):
    for k, n in enumerate((5, 7, 4)):
        _records(tmp_path / f"in{k}.jsonl", f"f{k}-", n)
    return [tmp_path / f"in{k}.jsonl" for k in range(3)]


def test_expand_inputs_files_directories_globs(tmp_path, three_inputs):
    from vecpipe.formats.dataset import expand_inputs

    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "sub").mkdir()
    names = [str(p) for p in three_inputs]
    assert expand_inputs([str(tmp_path / "in*.jsonl")]) == names
    assert expand_inputs([str(tmp_path)]) == names  # hidden files and directories left out, name order
    assert expand_inputs([names[2], names[0]]) == [names[2], names[0]]  # the order given is kept
    assert expand_inputs([f"file://{names[1]}"]) == [f"file://{names[1]}"]
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "nothing*.jsonl")])
    with pytest.raises(InputError, match="given twice"):
        expand_inputs([names[0], str(tmp_path / "in0.*")])
    with pytest.raises(InputError, match="standard input"):
        expand_inputs(["-", names[0]])


def test_embed_several_inputs_equals_concatenation_per_block(cli, tmp_path, three_inputs, tiny_model_dir):
    """embed a b c: rows in input order, each input's ids; the same vectors as each input alone."""
    from vecpipe.formats.vectors import read_vectors

    out = tmp_path / "all.parquet"
    res = cli("embed", *three_inputs, "--model", tiny_model_dir, "-o", out, "--no-cache")
    assert res.exit_code == 0, res.output
    whole = read_vectors(out)
    parts = []
    for k, path in enumerate(three_inputs):
        res = cli("embed", path, "--model", tiny_model_dir, "-o", tmp_path / f"one{k}.parquet", "--no-cache")
        assert res.exit_code == 0, res.output
        parts.append(read_vectors(tmp_path / f"one{k}.parquet"))
    assert whole.ids.to_pylist() == [i for p in parts for i in p.ids.to_pylist()]
    np.testing.assert_array_equal(whole.matrix, np.concatenate([p.matrix for p in parts]))
    # a glob and a directory give the same table; the rerun is up to date
    res = cli("embed", tmp_path / "in*.jsonl", "--model", tiny_model_dir, "-o", out, "--no-cache")
    assert res.exit_code == 0 and "up to date" in res.output


def test_embed_duplicate_id_across_inputs(cli, tmp_path, tiny_model_dir):
    _records(tmp_path / "a.jsonl", "x", 4)
    _records(tmp_path / "b.jsonl", "x", 3, start=3)  # x3 again
    res = cli("embed", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "--model", tiny_model_dir, "-o", tmp_path / "o.parquet")
    assert res.exit_code == 1
    assert "'x3' occurs more than once" in res.output
    assert not (tmp_path / "o.parquet").exists()


def _parts(tmp_path, meta_b=None):
    rng = np.random.default_rng(0)
    d = tmp_path / "vecs"
    d.mkdir()
    a, b = rng.standard_normal((6, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)
    write_vectors(d / "part-00000-00000.parquet", a, prefix="a")
    write_vectors(d / "part-00001-00000.parquet", b, prefix="b", meta=meta_b)
    return d, np.concatenate([a, b])


def test_directory_of_parts_is_one_table_for_every_reader(cli, tmp_path):
    from vecpipe.formats.vectors import read_vectors

    d, matrix = _parts(tmp_path)
    vecs = read_vectors(d)
    assert vecs.ids.to_pylist() == [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(5)]
    np.testing.assert_array_equal(vecs.matrix, matrix)
    assert cli("build-index", d, "--spec", "Flat", "-o", tmp_path / "i.vpi").exit_code == 0
    res = cli("search", "--index", tmp_path / "i.vpi", d, "-k", "2", "--format", "trec")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 22
    res = cli("quantize", d, "--to", "int8", "-o", tmp_path / "q.parquet")  # a reader that spools the parts into one file
    assert res.exit_code == 0, res.output
    res = cli("inspect", d)
    assert res.exit_code == 0 and "parquet dataset" in res.stdout and "rows: 11" in res.stdout


def test_directory_part_from_another_model_is_refused(cli, tmp_path):
    from conftest import clustered  # noqa: F401 - the fixtures module

    from vecpipe.formats import metadata

    other = metadata.new("vectors", dim=8, dtype="float32", metric="cos", normalized=True, model={"name": "m2", "sha256": "b" * 64})
    first = metadata.new("vectors", dim=8, dtype="float32", metric="cos", normalized=True, model={"name": "m1", "sha256": "a" * 64})
    d = tmp_path / "vecs"
    d.mkdir()
    rng = np.random.default_rng(1)
    write_vectors(d / "part-00000-00000.parquet", rng.standard_normal((3, 8)).astype(np.float32), prefix="a", meta=first)
    write_vectors(d / "part-00001-00000.parquet", rng.standard_normal((3, 8)).astype(np.float32), prefix="b", meta=other)
    res = cli("build-index", d, "--spec", "Flat", "-o", tmp_path / "i.vpi")
    assert res.exit_code == 1
    assert "part-00001-00000.parquet" in res.output and "model" in res.output
    assert not (tmp_path / "i.vpi").exists()


def test_manifest_refuses_unlisted_missing_and_changed_parts(tmp_path):
    from vecpipe.formats import dataset
    from vecpipe.formats.vectors import read_vectors

    d, _ = _parts(tmp_path)
    first, second = sorted(d.glob("part-*"))
    entries = [{"name": p.name, "rows": r, "size": p.stat().st_size} for p, r in ((first, 6), (second, 5))]
    (d / dataset.MANIFEST).write_bytes(dataset.manifest_bytes({"kind": "vectors", "dim": 8}, entries[:1]))
    with pytest.raises(InputError, match="not a part of this dataset"):
        read_vectors(d)
    (d / dataset.MANIFEST).write_bytes(dataset.manifest_bytes({"kind": "vectors", "dim": 8}, entries))
    assert len(read_vectors(d)) == 11
    fp = dataset.fingerprint(d)
    second.write_bytes(second.read_bytes() + b"x")
    with pytest.raises(InputError, match="changed since"):
        read_vectors(d)
    second.unlink()
    with pytest.raises(InputError, match="missing"):
        read_vectors(d)
    assert fp["dataset_sha256"] and fp["rows"] == 11


def test_engine_ray_without_the_extra_is_one_line(cli, tmp_path, monkeypatch, three_inputs, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if vecpipe[ray] were not installed
    res = cli("embed", *three_inputs, "--model", tiny_model_dir, "--engine", "ray", "-o", tmp_path / "out")
    assert res.exit_code == 1
    assert res.output.strip() == "vecpipe: error: --engine ray needs Ray Data: pip install 'vecpipe[ray]'"
    assert not (tmp_path / "out").exists()


def test_engine_options_need_engine_ray(cli, tmp_path, three_inputs, tiny_model_dir):
    res = cli("embed", three_inputs[0], "--model", tiny_model_dir, "--workers", "2", "-o", tmp_path / "o.parquet")
    assert res.exit_code == 2 and "--workers: applies with --engine ray only" in res.output
    res = cli("build-index", tmp_path / "nothing.parquet", "--spec", "Flat", "--address", "auto", "-o", tmp_path / "i.vpi")
    assert res.exit_code == 2 and "--address" in res.output


def test_dataset_write_part_is_atomic_and_described(tmp_path):
    from vecpipe.formats import dataset

    table = pa.table({"id": ["a", "b"], "x": [1, 2]})
    entry = dataset.write_part(tmp_path / "part-00000-00000.parquet", table)
    assert entry["rows"] == 2 and entry["size"] == (tmp_path / "part-00000-00000.parquet").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000-00000.parquet"]  # no temporary file left

"""Inputs people have (issue 17, item 2): NumPy .npy/.npz vectors wherever vectors are read, qrels,
runs and metric files recognised where records or vectors are expected, dataset directories answered
with the file to give, compressed NumPy inputs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, clustered

from vecpipe.errors import InputError
from vecpipe.formats import sniff
from vecpipe.formats.records import read_records
from vecpipe.formats.vectors import companion_ids, read_vectors

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", OMP_NUM_THREADS="1")
    env.pop("VECPIPE_DEBUG", None)
    return env


def _plain_parquet(path: Path, ids: list[str], matrix: np.ndarray) -> Path:
    """A vectors table as another tool writes it: id, embedding (fixed_size_list), no vecpipe metadata."""
    value_type = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8()}[matrix.dtype.name]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).reshape(-1), type=value_type), matrix.shape[1])
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "embedding": emb}), path)
    return path


def _refusal(res) -> str:
    assert res.exit_code == 1, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vecpipe: error: "), res.stderr
    return lines[0]


@pytest.fixture
def vectors(tmp_path):
    docs = clustered(300, 16, seed=3)
    rng = np.random.default_rng(4)
    queries = docs[rng.choice(300, 12, replace=False)] + 0.05 * rng.standard_normal((12, 16)).astype(np.float32)
    return docs, queries.astype(np.float32)


# ------------------------------------------------------------------------------------------ NumPy


@pytest.mark.parametrize("stored", ["float32", "float64", "float16"])
def test_build_index_and_search_from_npy_and_npz_equal_parquet(cli, tmp_path, vectors, stored):
    docs, queries = vectors
    read_as = "float32" if stored == "float64" else stored
    doc_ids = [f"d{i}" for i in range(len(docs))]
    row_ids = [str(i) for i in range(len(queries))]
    # the references: plain Parquet files (no vecpipe metadata) holding what the NumPy files hold
    ref_docs = _plain_parquet(tmp_path / "docs.parquet", doc_ids, docs.astype(stored).astype(read_as))
    ref_queries = _plain_parquet(tmp_path / "queries.parquet", row_ids, queries.astype(stored).astype(read_as))
    np.savez(tmp_path / "docs.npz", embeddings=docs.astype(stored), ids=np.array(doc_ids))
    np.save(tmp_path / "queries.npy", queries.astype(stored))  # ids: row numbers
    np.save(tmp_path / "docs.npy", np.asfortranarray(docs.astype(stored)))  # ids from the companion file
    (tmp_path / "docs.ids.txt").write_text("".join(f"{i}\n" for i in doc_ids))

    def run(doc_file, query_file, name):
        res = cli("build-index", doc_file, "--spec", "Flat", "--metric", "cos", "-o", tmp_path / f"{name}.vpi", "-q")
        assert res.exit_code == 0, res.output
        res = cli("search", query_file, "--index", tmp_path / f"{name}.vpi", "-k", 5, "--format", "trec", "-q")
        assert res.exit_code == 0, res.output
        return res.stdout

    want = run(ref_docs, ref_queries, "ref")
    assert len(want.splitlines()) == 60
    assert run(tmp_path / "docs.npz", tmp_path / "queries.npy", "npz") == want
    assert run(tmp_path / "docs.npy", tmp_path / "queries.npy", "npy") == want


def test_npy_reads_the_same_vectors_as_parquet_in_every_vectors_stage(cli, tmp_path, vectors):
    docs, queries = vectors
    ids = [f"d{i}" for i in range(len(docs))]
    _plain_parquet(tmp_path / "ref.parquet", ids, docs)
    np.savez_compressed(tmp_path / "docs.npz", vectors=docs, ids=np.array(ids, dtype="S"))  # bytes ids, compressed
    for args in (["quantize", "--to", "int8"], ["binarize", "--bits", "1"], ["quantize", "--to", "fp16"]):
        outs = []
        for src in ("ref.parquet", "docs.npz"):
            out = tmp_path / f"{args[0]}-{args[-1]}-{src}.parquet"
            res = cli(args[0], tmp_path / src, *args[1:], "-o", out, "-q")
            assert res.exit_code == 0, res.output
            outs.append(pq.read_table(out).select(["id", "embedding"]))
        assert outs[0].equals(outs[1]), args
    # rerank --queries from a .npy: the same run as from the Parquet queries
    np.save(tmp_path / "q.npy", queries)
    _plain_parquet(tmp_path / "q.parquet", [str(i) for i in range(len(queries))], queries)
    assert cli("build-index", tmp_path / "ref.parquet", "--spec", "Flat", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    assert cli("search", tmp_path / "q.parquet", "--index", tmp_path / "i.vpi", "-k", 10, "-o", tmp_path / "run.parquet", "-q").exit_code == 0
    runs = []
    for q in ("q.parquet", "q.npy"):
        res = cli("rerank", tmp_path / "run.parquet", "--vectors", tmp_path / "ref.parquet", "--queries", tmp_path / q,
                  "-k", 3, "--format", "trec", "-q")
        assert res.exit_code == 0, res.output
        runs.append(res.stdout)
    assert runs[0] == runs[1] and len(runs[0].splitlines()) == 36


def test_numpy_ids_rule(tmp_path):
    x = clustered(5, 4)
    np.save(tmp_path / "v.npy", x)
    assert read_vectors(tmp_path / "v.npy").ids.to_pylist() == ["0", "1", "2", "3", "4"]
    assert read_vectors(tmp_path / "v.npy").meta == {}  # no model, metric or normalisation recorded
    (tmp_path / "v.ids.txt").write_text("a\nb\nc\nd\ne\n")
    assert read_vectors(tmp_path / "v.npy").ids.to_pylist() == list("abcde")
    np.savez(tmp_path / "v.npz", embedding=x, ids=np.arange(10, 15))
    assert read_vectors(tmp_path / "v.npz").ids.to_pylist() == ["10", "11", "12", "13", "14"]  # the array wins
    np.savez(tmp_path / "w.npz", only=x)  # the only 2-D array; no ids array and no companion: row numbers
    assert read_vectors(tmp_path / "w.npz").ids.to_pylist() == ["0", "1", "2", "3", "4"]
    assert companion_ids("dir/x.npy.gz") == Path("dir/x.ids.txt") and companion_ids("x.npz") == Path("x.ids.txt")
    # recognised by content, never by extension
    (tmp_path / "v.npy").rename(tmp_path / "vectors.bin")
    assert read_vectors(tmp_path / "vectors.bin").ids.to_pylist() == ["0", "1", "2", "3", "4"]
    with sniff.Input(tmp_path / "w.npz") as inp:
        assert inp.format == sniff.NPZ


@pytest.mark.parametrize("case", ["int64", "1-D", "3-D", "object", "truncated", "header", "no-embeddings",
                                  "ids-count", "ids-duplicate", "nan", "empty-id", "zip"])
def test_numpy_refusals_are_one_line(cli, tmp_path, case):
    x = clustered(6, 4)
    f = tmp_path / "v.npy"
    expect = {
        "int64": "has dtype int64; vectors must be float32, float16, float64 (read as float32), int8 or uint8",
        "1-D": "is a 1-D array of shape (6,)",
        "3-D": "is a 3-D array",
        "object": "pickled object array",
        "truncated": "truncated NumPy data: the header promises 6 rows, the data ends after row 5",
        "header": "damaged NumPy header",
        "no-embeddings": "no embeddings array among a (6, 4), b (6, 4)",
        "ids-count": "v.ids.txt: 5 ids for the 6 vectors",
        "ids-duplicate": "id 'x' occurs more than once",
        "nan": "id '2' has a non-finite value (nan)",
        "empty-id": "v.ids.txt:2: empty id",
        "zip": "is a zip archive, not a .npz of NumPy arrays; unzip it",
    }[case]
    if case == "int64":
        np.save(f, x.astype(np.int64))
    elif case == "1-D":
        np.save(f, x[0].repeat(2)[:6])
    elif case == "3-D":
        np.save(f, x.reshape(6, 2, 2))
    elif case == "object":
        np.save(f, np.array([[1.0, "a"]] * 6, dtype=object), allow_pickle=True)
    elif case in ("truncated", "header"):
        np.save(f, x)
        data = f.read_bytes()
        f.write_bytes(data[:-3] if case == "truncated" else data[:30])
    elif case == "no-embeddings":
        f = tmp_path / "v.npz"
        np.savez(f, a=x, b=x)
    elif case in ("ids-count", "ids-duplicate", "empty-id"):
        np.save(f, x)
        text = {"ids-count": "a\nb\nc\nd\ne\n", "ids-duplicate": "a\nb\nx\nx\nc\nd\n", "empty-id": "a\n\nb\nc\nd\ne\n"}[case]
        (tmp_path / "v.ids.txt").write_text(text)
    elif case == "nan":
        x[2, 1] = np.nan
        np.save(f, x)
    elif case == "zip":
        import zipfile

        f = tmp_path / "v.npz"
        with zipfile.ZipFile(f, "w") as zf:
            zf.writestr("notes.txt", "hello")
    line = _refusal(cli("build-index", f, "--spec", "Flat", "-o", tmp_path / "i.vpi"))
    assert expect in line and str(f.name) in line
    assert not (tmp_path / "i.vpi").exists()


def test_numpy_from_stdin_fifo_gzip_and_zstd(tmp_path, vectors):
    import zstandard

    docs, _ = vectors
    np.save(tmp_path / "docs.npy", docs)
    data = (tmp_path / "docs.npy").read_bytes()
    (tmp_path / "docs.npy.gz").write_bytes(gzip.compress(data))
    (tmp_path / "docs.npy.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    np.savez_compressed(tmp_path / "docs.npz", embeddings=docs)
    want = read_vectors(tmp_path / "docs.npy")
    for name in ("docs.npy.gz", "docs.npy.zst"):
        got = read_vectors(tmp_path / name)
        assert got.ids.equals(want.ids) and np.array_equal(got.matrix, want.matrix)

    def build(args, stdin=None):
        out = tmp_path / "out.vpi"
        out.unlink(missing_ok=True)
        res = subprocess.run(VECPIPE + ["build-index", *args, "--spec", "Flat", "-o", str(out), "-q"], stdin=stdin,
                             capture_output=True, env=_env(), cwd=tmp_path, timeout=120)
        assert res.returncode == 0, res.stderr
        return out.read_bytes()

    def index_bytes(blob: bytes) -> bytes:  # the manifest differs (a stream has none); the ids and index do not
        from vecpipe.formats import vpi

        path = tmp_path / "cmp.vpi"
        path.write_bytes(blob)
        loaded = vpi.read(path)
        return bytes(loaded.index_bytes) + "\n".join(loaded.ids.to_pylist()).encode()

    ref = index_bytes(build(["docs.npy"]))
    with open(tmp_path / "docs.npy", "rb") as fh:
        assert index_bytes(build(["-"], stdin=fh)) == ref
    assert index_bytes(build(["docs.npy.gz"])) == ref
    assert index_bytes(build(["docs.npz"])) == ref
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(data))
    feeder.start()
    try:
        assert index_bytes(build([str(fifo)])) == ref
    finally:
        feeder.join(timeout=60)


def test_rescore_with_a_npy_is_refused_with_one_line(cli, tmp_path, vectors):
    docs, _ = vectors
    _plain_parquet(tmp_path / "docs.parquet", [str(i) for i in range(len(docs))], docs)
    np.save(tmp_path / "docs.npy", docs)
    assert cli("build-index", tmp_path / "docs.parquet", "--spec", "Flat", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    line = _refusal(cli("search", tmp_path / "docs.npy", "--index", tmp_path / "i.vpi", "--rescore", tmp_path / "docs.npy", "-k", 3))
    assert "docs.npy" in line
    # the conversion that fixes it: quantize --to float32 writes the same vectors as a Parquet table
    res = cli("quantize", tmp_path / "docs.npy", "--to", "float32", "-o", tmp_path / "docs32.parquet", "-q")
    assert res.exit_code == 0, res.output
    res = cli("search", tmp_path / "docs.npy", "--index", tmp_path / "i.vpi", "--rescore", tmp_path / "docs32.parquet", "-k", 3, "-q")
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------- qrels, runs, metrics misplaced

QRELS_BEIR = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td1\t2\n"
QRELS_TREC = "q1 0 d1 1\nq1 0 d2 0\nq2 0 d1 2\n"
RUN_TREC = "q1 Q0 d1 1 0.9 vecpipe\nq1 Q0 d2 2 0.5 vecpipe\nq2 Q0 d1 1 0.7 vecpipe\n"
METRICS = "measure\tvalue\nnDCG@10\t0.5000\nR@100\t0.9000\n"
KNOWN = {
    "qrels.tsv": (QRELS_BEIR, "this is a qrels file (query-id, corpus-id, score)"),
    "qrels.txt": (QRELS_TREC, "this is a TREC qrels file (qid 0 docid rel)"),
    "run.trec": (RUN_TREC, "this is a TREC run (qid Q0 docid rank score tag)"),
    "m.tsv": (METRICS, "this is a metrics file (measure, value) written by vecpipe eval"),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_qrels_runs_and_metrics_are_named_where_records_or_vectors_are_read(cli, tmp_path, name, tiny_model_dir):
    text, what = KNOWN[name]
    f = tmp_path / name
    f.write_text(text)
    line = _refusal(cli("embed", f, "--model", tiny_model_dir, "-o", tmp_path / "out.parquet"))
    assert f"{f}: {what}, not text records (JSONL with _id/text, TSV id<TAB>text, Parquet)" in line
    line = _refusal(cli("build-index", f, "--spec", "Flat", "-o", tmp_path / "i.vpi"))
    assert f"{f}: {what}, not vectors" in line
    line = _refusal(cli("quantize", f, "--to", "int8", "-o", tmp_path / "q.parquet"))
    assert what in line
    # compressed, and from stdin, the same
    (tmp_path / "z.gz").write_bytes(gzip.compress(text.encode()))
    assert what in _refusal(cli("build-index", tmp_path / "z.gz", "--spec", "Flat", "-o", tmp_path / "i.vpi"))
    with pytest.raises(InputError, match="this is"):
        list(read_records(tmp_path / "z.gz"))
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "i.vpi").exists()


def test_tsv_records_are_still_records(tmp_path, cli, tiny_model_dir):
    # text holding tabs and numbers: split on the first tab, never taken for qrels or a run
    f = tmp_path / "c.tsv"
    f.write_text("d1\tcats 0 dogs\t1\nd2\tbirds 0 fish\t2\nd3\tQ0 x 1 0.5 y\n")
    got = [b.to_pylist() for b in read_records(f)]
    assert got[0] == [{"id": "d1", "text": "cats 0 dogs\t1"}, {"id": "d2", "text": "birds 0 fish\t2"},
                      {"id": "d3", "text": "Q0 x 1 0.5 y"}]
    header = tmp_path / "h.tsv"
    header.write_text("id\ttext\nd1\thello\n")
    assert next(b.to_pylist() for b in read_records(header)) == [{"id": "d1", "text": "hello"}]
    res = cli("embed", f, "--model", tiny_model_dir, "-o", tmp_path / "c.parquet", "-q")
    assert res.exit_code == 0, res.output
    assert pq.read_table(tmp_path / "c.parquet").column("id").to_pylist() == ["d1", "d2", "d3"]
    # BEIR qrels without their header are ambiguous: the repeated query id says what they may be
    bare = tmp_path / "bare.tsv"
    bare.write_text("q1\td1\t1\nq1\td2\t0\n")
    with pytest.raises(InputError, match="give it to vecpipe eval --qrels"):
        list(read_records(bare))


# ---------------------------------------------------------------------------------- directories


def test_directories_are_answered_with_the_file_to_give(cli, tmp_path, vectors, tiny_model_dir):
    beir = tmp_path / "scifact"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "b"}\n')
    (beir / "qrels" / "test.tsv").write_text(QRELS_BEIR)
    line = _refusal(cli("embed", beir, "--model", tiny_model_dir, "-o", tmp_path / "o.parquet"))
    assert line == (f"vecpipe: error: {beir}: is a BEIR dataset directory; give {beir}/corpus.jsonl "
                    f"(or {beir}/queries.jsonl)")
    np.save(tmp_path / "docs.npy", vectors[0])
    assert cli("build-index", tmp_path / "docs.npy", "--spec", "Flat", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    (tmp_path / "run.trec").write_text(RUN_TREC)
    line = _refusal(cli("eval", tmp_path / "run.trec", "--qrels", beir / "qrels"))
    assert f"{beir}/qrels: is a directory, expected a file; give a file inside it, such as {beir}/qrels/test.tsv (qrels)" in line
    line = _refusal(cli("build-index", tmp_path, "--spec", "Flat", "-o", tmp_path / "j.vpi"))
    assert "is a directory, expected a file; give a file inside it, such as" in line
    assert f"{tmp_path}/docs.npy (npy)" in line and line.count("(") <= 4  # three files at most
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _refusal(cli("build-index", empty, "--spec", "Flat", "-o", tmp_path / "j.vpi")).endswith(
        f"{empty}: is a directory, expected a file")
    # relative paths stay relative
    res = subprocess.run(VECPIPE + ["search", "scifact", "--index", "i.vpi"], capture_output=True, text=True, env=_env(),
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 1 and res.stderr.strip().endswith(
        "scifact: is a BEIR dataset directory; give scifact/corpus.jsonl (or scifact/queries.jsonl)")


def test_sniffing_reads_enough_of_the_head_for_zip_members(tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    np.savez(buf, embeddings=np.zeros((2, 2), np.float32))
    assert sniff.sniff_bytes(buf.getvalue()[: sniff.HEAD_BYTES]) == sniff.NPZ
    assert sniff.sniff_bytes(buf.getvalue()[:8]) == sniff.NPZ  # too short to tell: a zip that starts like one
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("corpus.jsonl", "{}")
    assert sniff.sniff_bytes(other.getvalue()[: sniff.HEAD_BYTES]) == sniff.ZIP
    assert sniff.sniff_bytes(b"\x93NUMPY\x01\x00") == sniff.NPY


def test_search_names_a_qrels_file_given_as_query_texts(cli, tmp_path, tiny_model_dir):
    (tmp_path / "c.jsonl").write_text("".join(f'{{"_id": "d{i}", "text": "document number {i}"}}\n' for i in range(5)))
    assert cli("embed", tmp_path / "c.jsonl", "--model", tiny_model_dir, "-o", tmp_path / "d.parquet", "-q").exit_code == 0
    assert cli("build-index", tmp_path / "d.parquet", "--spec", "Flat", "-o", tmp_path / "i.vpi", "-q").exit_code == 0
    (tmp_path / "qrels.tsv").write_text(QRELS_BEIR)
    line = _refusal(cli("search", tmp_path / "qrels.tsv", "--index", tmp_path / "i.vpi", "--model", tiny_model_dir, "-k", 2))
    assert "qrels.tsv: this is a qrels file (query-id, corpus-id, score), not text records" in line
    # and .npy query vectors through a pipe give the run of the same vectors in a file
    np.save(tmp_path / "q.npy", read_vectors(tmp_path / "d.parquet").matrix[:3])
    runs = []
    for args, stdin in ((["q.npy"], None), (["-"], open(tmp_path / "q.npy", "rb"))):
        res = subprocess.run(VECPIPE + ["search", *args, "--index", "i.vpi", "-k", "2", "--format", "trec", "-q"], stdin=stdin,
                             capture_output=True, env=_env(), cwd=tmp_path, timeout=120)
        if stdin is not None:
            stdin.close()
        assert res.returncode == 0, res.stderr
        runs.append(res.stdout)
    assert runs[0] == runs[1] and runs[0].startswith(b"0 Q0 d0 1 ")

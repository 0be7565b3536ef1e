"""Text record readers: every input format, sniffing, and each kind of bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from vecpipe.errors import InputError
from vecpipe.formats.records import Fields, read_records


def _all(path, **kw):
    table = pa.Table.from_batches(list(read_records(path, **kw)))
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def test_beir_jsonl_joins_title_and_text(tmp_path):
    p = tmp_path / "corpus.jsonl"
    p.write_text(
        json.dumps({"_id": "a", "title": "Title A", "text": "body a", "metadata": {}}) + "\n"
        + json.dumps({"_id": "b", "title": "", "text": "body b"}) + "\n\n"
        + json.dumps({"_id": 7, "text": "no title"}) + "\n"
    )
    assert _all(p) == (["a", "b", "7"], ["Title A body a", "body b", "no title"])


def test_generic_jsonl_fields(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"pid": "p1", "body": "hello", "head": "H"}) + "\n")
    assert _all(p, fields=Fields(id="pid", text="body", title="head")) == (["p1"], ["H hello"])
    with pytest.raises(InputError, match="no text field"):
        _all(p, fields=Fields(id="pid", text="missing"))


def test_tsv_with_and_without_header(tmp_path):
    p = tmp_path / "collection.tsv"
    p.write_text("0\tfirst passage\n1\tsecond\twith tab\n")
    assert _all(p) == (["0", "1"], ["first passage", "second\twith tab"])
    h = tmp_path / "h.tsv"
    h.write_text("id\ttext\nx\thello\n")
    assert _all(h) == (["x"], ["hello"])


def test_parquet_and_arrow_inputs_are_sniffed_not_named(tmp_path):
    t = pa.table({"_id": ["a", "b"], "title": ["T", None], "text": ["one", "two"]})
    pq.write_table(t, tmp_path / "records.dat")
    assert _all(tmp_path / "records.dat") == (["a", "b"], ["T one", "two"])
    sink = io.BytesIO()
    with ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    (tmp_path / "records.parquet").write_bytes(sink.getvalue())  # a misleading extension
    assert _all(tmp_path / "records.parquet") == (["a", "b"], ["T one", "two"])


def test_batches_are_bounded(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"_id": str(i), "text": "t"}) + "\n" for i in range(25)))
    sizes = [b.num_rows for b in read_records(p, batch_size=10)]
    assert sizes == [10, 10, 5]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', r"c.jsonl:2: malformed JSON"),
        ('{"text": "x"}\n', r"c.jsonl:1: no id field"),
        ('{"_id": "a"}\n', r"c.jsonl:1: no text field"),
        ('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', r"c.jsonl:2: duplicate id 'a'"),
        ('{"_id": "a", "text": 5}\n', r"must be a string"),
        ("[1, 2]\n", r"c.jsonl:1: expected .* or a JSON object"),
        ("\n\n", r"no records found"),
        ("", r"input is empty"),
        ("no tab here\n", r"c.jsonl:1: expected 'id<TAB>text'"),
    ],
)
def test_bad_records(tmp_path, content, message):
    p = tmp_path / "c.jsonl"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        _all(p)


def test_invalid_utf8_names_the_line(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_bytes(b"a\tfine\nb\t\xff\xfe bad\n")
    with pytest.raises(InputError, match=r"c.tsv:2: not valid UTF-8"):
        _all(p)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        _all(tmp_path / "nope.jsonl")


def test_stdin_records_in_a_subprocess(tmp_path):
    code = "import sys; from vecpipe.formats.records import read_records; print(sum(b.num_rows for b in read_records('-')))"
    out = subprocess.run([sys.executable, "-c", code], input=b"a\tx\nb\ty\n", capture_output=True, check=True)
    assert out.stdout.strip() == b"2"

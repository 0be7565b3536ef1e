"""stderr as a log: with --log-format json (or VECPIPE_LOG_FORMAT=json) every line is one JSON object
of the documented schema (README, "Operations"); plain lines stay as they were; -q leaves errors only."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ROOT

VECPIPE = [sys.executable, "-m", "vecpipe"]
LEVELS = {"info", "warning", "error"}
EVENTS = {"note", "warning", "up_to_date", "wrote", "skipped", "waiting", "progress", "done", "error", "interrupted",
          "terminated"}
PROGRESS_FIELDS = {"unit", "total", "rate", "elapsed_s"}


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", OMP_NUM_THREADS="1", VECPIPE_LOG_INTERVAL="0")
    for key in ("VECPIPE_DEBUG", "VECPIPE_LOG_FORMAT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _run(args, cwd: Path, env: dict, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(VECPIPE + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env,
                          stdin=stdin, timeout=300)


def _records(res: subprocess.CompletedProcess) -> list[dict]:
    """Every stderr line, parsed and checked against the schema."""
    records = []
    for line in res.stderr.splitlines():
        record = json.loads(line)  # every line is JSON, nothing else
        assert list(record)[:5] == ["time", "level", "event", "stage", "message"], record
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None, record
        assert record["level"] in LEVELS and record["event"] in EVENTS, record
        assert record["stage"] is None or isinstance(record["stage"], str), record
        assert isinstance(record["message"], str) and record["message"], record
        if record["event"] in ("progress", "done"):
            assert set(record) >= PROGRESS_FIELDS and isinstance(record[record["unit"]], int), record
            assert record["level"] == "info"
        if record["level"] == "error":
            assert record["event"] in ("error", "interrupted", "terminated")
            assert record["exit_status"] == res.returncode, record
        else:
            assert "exit_status" not in record
        records.append(record)
    return records


def _write_inputs(tmp: Path) -> None:
    lines = [json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"document {i} about topic {i % 7}"})
             for i in range(120)]
    lines.insert(60, '{"_id": "broken", "text": ')
    (tmp / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (tmp / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"topic {i}"}) + "\n" for i in range(7)))
    (tmp / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(7)))


def test_json_logs_cover_every_stderr_line_of_a_pipeline(tmp_path, tiny_model_dir):
    _write_inputs(tmp_path)
    env = _env(VECPIPE_LOG_FORMAT="json")
    m = tiny_model_dir
    seen: dict[str, list[dict]] = {}

    def step(name, args, code=0, stdin=None, env=env):
        res = _run(args, tmp_path, env, stdin=stdin)
        assert res.returncode == code, (name, res.stderr)
        seen[name] = _records(res)
        return seen[name]

    recs = step("embed", ["embed", "corpus.jsonl", "--model", m, "--skip-bad", "-o", "docs.parquet"])
    skipped = [r for r in recs if r["event"] == "skipped"]
    assert skipped and all(r["level"] == "warning" and r["stage"] == "embed" for r in skipped)
    assert any("corpus.jsonl:61" in r["message"] for r in skipped)
    assert any(r["event"] == "progress" for r in recs)
    done = [r for r in recs if r["event"] == "done"]
    assert done and done[-1]["docs"] == 120 and done[-1]["unit"] == "docs" and done[-1]["tokens"] > 0

    recs = step("rerun", ["embed", "corpus.jsonl", "--model", m, "--skip-bad", "-o", "docs.parquet"])
    assert [(r["event"], r["level"], r["stage"]) for r in recs] == [("up_to_date", "info", "embed")]
    assert recs[0]["message"] == "up to date: docs.parquet"

    recs = step("build-index", ["build-index", "docs.parquet", "--spec", "IVF4,Flat", "-o", "docs.vpi"])
    assert any(r["event"] == "wrote" and "docs.vpi" in r["message"] for r in recs)
    assert {r["stage"] for r in recs} == {"build-index"}

    step("queries", ["embed", "queries.jsonl", "--model", m, "-o", "queries.parquet"])
    recs = step("search", ["search", "queries.parquet", "--index", "docs.vpi", "-k", 5, "-o", "run.trec"])
    assert any(r["event"] == "done" and r["queries"] == 7 for r in recs)

    recs = step("eval", ["eval", "run.trec", "--qrels", "qrels.tsv", "-m", "nDCG@10", "-m", "P@100", "-o", "metrics.tsv"])
    assert any(r["level"] == "warning" and "P@100" in r["message"] for r in recs)

    recs = step("failure", ["eval", "run.trec", "--qrels", "missing.tsv"], code=1)
    assert [(r["event"], r["level"], r["stage"]) for r in recs] == [("error", "error", "eval")]
    assert "missing.tsv" in recs[0]["message"] and not recs[0]["message"].startswith("vecpipe:")

    recs = step("usage", ["search", "queries.parquet", "--index", "docs.vpi", "-k", 0], code=2)
    assert [(r["event"], r["stage"]) for r in recs] == [("error", "search")] and "-k" in recs[0]["message"]
    recs = step("unknown command", ["serach"], code=2)
    assert recs[0]["stage"] is None and "serach" in recs[0]["message"]
    recs = step("no command", [], code=2)
    assert len(recs) == 1 and recs[0]["event"] == "error"

    # the root option, without the variable; and a usage error in the root options themselves
    plain_env = _env()
    recs = step("root option", ["--log-format", "json", "eval", "run.trec", "--qrels", "missing.tsv"], code=1, env=plain_env)
    assert recs[0]["event"] == "error"
    recs = step("root usage", ["--log-format=json", "--no-such", "eval"], code=2, env=plain_env)
    assert recs[0]["stage"] is None and "--no-such" in recs[0]["message"]
    step("root option rerun", ["--log-format", "json", "embed", "corpus.jsonl", "--model", m, "--skip-bad",
                               "-o", "docs.parquet"], env=plain_env)
    assert seen["root option rerun"][0]["event"] == "up_to_date"
    # the option wins over the variable
    res = _run(["--log-format", "plain", "eval", "run.trec", "--qrels", "missing.tsv"], tmp_path, env)
    assert res.returncode == 1 and res.stderr.startswith("vecpipe: error: ")

    assert all(seen[name] for name in seen if name not in ("queries",))


def test_quiet_leaves_errors_only(tmp_path, tiny_model_dir):
    _write_inputs(tmp_path)
    for fmt in ("json", "plain"):
        env = _env(VECPIPE_LOG_FORMAT=fmt)
        out = f"docs-{fmt}.parquet"
        for _ in range(2):  # the run (progress, skipped records) and the up-to-date rerun
            res = _run(["embed", "corpus.jsonl", "--model", tiny_model_dir, "--skip-bad", "-q", "-o", out], tmp_path, env)
            assert res.returncode == 0 and res.stderr == "", res.stderr
        res = _run(["build-index", out, "--spec", "IVF4,PQ4x4", "-q", "-o", f"{fmt}.vpi"], tmp_path, env)
        assert res.returncode == 0 and res.stderr == "", res.stderr  # faiss's warnings and spec warnings too
        res = _run(["eval", "missing.trec", "--qrels", "qrels.tsv", "-q"], tmp_path, env)
        assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
        if fmt == "json":
            assert json.loads(res.stderr)["exit_status"] == 1
        else:
            assert res.stderr.startswith("vecpipe: error: missing.trec")


def test_plain_lines_are_unchanged(tmp_path, tiny_model_dir):
    _write_inputs(tmp_path)
    env = _env()
    args = ["embed", "corpus.jsonl", "--model", tiny_model_dir, "--skip-bad", "-o", "docs.parquet"]
    res = _run(args, tmp_path, env)
    lines = res.stderr.splitlines()
    assert "vecpipe: skipped corpus.jsonl:61: malformed JSON" in lines[0]
    assert lines[-1] == "vecpipe: skipped 1 bad records"
    assert any(" vecpipe embed: 120/121 docs" in ln and ln[:4].isdigit() for ln in lines)
    res = _run(args, tmp_path, env)
    assert res.stderr == "vecpipe: up to date: docs.parquet\n"
    res = _run(["eval", "run.trec", "--qrels", "qrels.tsv"], tmp_path, env)
    assert res.returncode == 1 and res.stderr == "vecpipe: error: run.trec: no such file; check the path\n"


@pytest.mark.parametrize("sig,code,event", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signals_are_json_lines_too(tmp_path, sig, code, event):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(VECPIPE + ["--log-format", "json", "inspect", str(fifo)], stderr=subprocess.PIPE, text=True,
                            env=_env())
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # opening the write end succeeds once vecpipe has opened the read end
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "vecpipe never opened the FIFO"
                time.sleep(0.05)
        time.sleep(0.2)  # blocked reading: no data comes
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    records = [json.loads(line) for line in err.splitlines()]
    assert [(r["event"], r["level"], r["exit_status"], r["stage"]) for r in records] == [(event, "error", code, "inspect")]


def test_python_warnings_become_json_lines():
    code = ("from vecpipe.cli import _progress; _progress.set_log_format('json'); _progress.install_warning_hook(); "
            "import warnings; warnings.warn('careful', RuntimeWarning)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    record = json.loads(res.stderr)
    assert (record["level"], record["event"]) == ("warning", "warning")
    assert record["message"] == "RuntimeWarning: careful"


def test_notes_are_classified():
    from vecpipe.cli._progress import classify

    assert classify("up to date: docs.parquet") == ("up_to_date", "info")
    assert classify("wrote docs.vpi: 300 vectors, HNSW32, metric cos") == ("wrote", "info")
    assert classify("skipped c.jsonl:2: malformed JSON") == ("skipped", "warning")
    assert classify("waiting for another vecpipe writing docs.vpi") == ("waiting", "info")
    assert classify("faiss: clustering 300 points to 16 centroids") == ("warning", "warning")
    assert classify("--spec 'IVF16,PQ4': 300 training vectors are fewer than the 9,984 faiss recommends") == ("warning", "warning")
    assert classify("warning: mine: model.onnx is missing") == ("warning", "warning")
    assert classify("training IVF16,PQ4 on 300 vectors") == ("note", "info")


def test_log_progress_json_schema():
    from vecpipe.pipeline.progress import LogProgress

    stream = io.StringIO()
    progress = LogProgress(interval=0, fmt="json", stream=stream)
    progress.start("embed", total=4, unit="docs")
    progress.advance(2, tokens=10)
    progress.note("resumed from checkpoint: reused 2 rows")
    progress.advance(2, tokens=10)
    progress.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["progress", "note", "progress", "done"]
    assert all(list(r)[:5] == ["time", "level", "event", "stage", "message"] and r["stage"] == "embed" for r in records)
    assert records[-1]["docs"] == 4 and records[-1]["total"] == 4 and records[-1]["tokens"] == 20
    assert "eta_s" in records[0] and "eta_s" not in records[-1]
    plain = io.StringIO()
    progress = LogProgress(interval=0, fmt="plain", stream=plain)
    progress.start("search", unit="queries")
    progress.advance(3)
    progress.close()
    assert all(" vecpipe search: 3 queries, " in line for line in plain.getvalue().splitlines())

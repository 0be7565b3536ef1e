"""Command-line behaviour shared by every subcommand: help, docs, exit codes, pipes, terminals."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

VECPIPE = [sys.executable, "-m", "vecpipe"]


def _commands():
    import typer

    from vecpipe.cli import app

    return sorted(typer.main.get_command(app).commands)


def test_every_command_has_help_and_a_man_page(cli):
    commands = _commands()
    assert {"embed", "build-index", "search", "eval", "inspect"} <= set(commands)
    for name in commands:
        res = cli(name, "--help")
        assert res.exit_code == 0, name
        assert "Usage" in res.stdout
        assert (ROOT / "man" / f"vecpipe-{name}.1").exists(), f"man page for {name} missing"


def test_generated_docs_are_current():
    from vecpipe.cli._docs import generate

    stale = [rel for rel, text in generate().items() if not (ROOT / rel).exists() or (ROOT / rel).read_text() != text]
    assert not stale, f"stale generated files {stale}; run: python -m vecpipe.cli._docs"


def test_version_and_no_args(cli):
    res = cli("--version")
    assert res.exit_code == 0 and res.stdout.startswith("vecpipe ")
    res = cli()
    assert res.exit_code in (0, 2) and "embed" in res.output


def test_usage_errors_exit_2(cli, tmp_path):
    res = cli("search", "-k", "0", "--index", "x.vpi")
    assert res.exit_code == 2
    res = cli("build-index", "--spec", "Flat")  # missing -o
    assert res.exit_code == 2
    res = cli("eval", "--no-such-option")
    assert res.exit_code == 2


def _sh(cmd: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    env.pop("VECPIPE_DEBUG", None)
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, capture_output=True, env=env, **kw)


def test_subprocess_errors_are_one_line_and_debug_shows_traceback(tmp_path):
    py = f"{sys.executable} -m vecpipe"
    res = _sh(f"{py} inspect missing.parquet", tmp_path)
    assert res.returncode == 1
    assert res.stderr.decode().strip().count("\n") == 0
    assert "missing.parquet: no such file" in res.stderr.decode()
    res = _sh(f"{py} inspect missing.parquet --debug", tmp_path)
    assert res.returncode == 1 and "Traceback" in res.stderr.decode()
    res = _sh(f"VECPIPE_DEBUG=1 {py} inspect missing.parquet", tmp_path)
    assert "Traceback" in res.stderr.decode()


def test_closed_pipe_ends_quietly(tmp_path, docs_queries):
    docs, queries, *_ = docs_queries
    py = f"{sys.executable} -m vecpipe"
    assert _sh(f"{py} build-index {docs} -o i.vpi -q", tmp_path).returncode == 0
    res = _sh(f"{py} search {queries} --index i.vpi -k 400 --format trec -q | head -n 1", tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().count("\n") == 1
    assert res.stderr == b""


def test_binary_output_to_a_terminal_is_refused(tmp_path, docs_queries):
    docs, *_ = docs_queries
    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    try:
        res = subprocess.run(VECPIPE + ["inspect", str(docs)], stdout=follower, stderr=subprocess.PIPE, env=env)
        assert res.returncode == 0  # text output to a terminal is fine
        (tmp_path / "c.tsv").write_text("a\thello\n")
        res = subprocess.run(
            VECPIPE + ["search", str(docs), "--index", str(tmp_path / "none.vpi")], stdout=follower, stderr=subprocess.PIPE, env=env
        )
        assert res.returncode == 2  # refused before anything is read or written: the usage error comes first
        from vecpipe.api import build_index

        build_index(docs, tmp_path / "i.vpi")
        res = subprocess.run(
            VECPIPE + ["search", str(docs), "--index", str(tmp_path / "i.vpi"), "-k", "2", "-q"],
            stdout=follower, stderr=subprocess.PIPE, env=env,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert res.returncode == 2  # a usage error (issue 17), refused before any work or progress bar
    assert b"refusing to write binary Arrow data to a terminal" in res.stderr
    assert res.stderr.strip().count(b"\n") == 0


def test_a_command_line_builds_only_its_subcommand():
    """typer builds every registered command before parsing: main() hands it only the one the
    command line names (root options first), and the whole app for help, version or an unknown name."""
    from vecpipe.cli import _app_for, app

    narrowed = _app_for(["--log-format", "json", "--debug", "search", "q.parquet", "--index", "i.vpi"])
    assert [c.name for c in narrowed.registered_commands] == ["search"] and narrowed.registered_groups == []
    assert [g.name for g in _app_for(["cache", "stats"]).registered_groups] == ["cache"]
    for args in (["--help"], ["-h", "search"], ["--version"], ["bogus"], []):
        assert _app_for(args) is app
    assert len(app.registered_commands) > 10  # the global app is left whole

"""Docs and completions: what pip installs, what the shells complete, what man and --help say."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

VECPIPE = [sys.executable, "-m", "vecpipe"]
HEAVY = ("numpy", "pyarrow", "faiss", "onnxruntime", "ir_measures", "numba")


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    for key in ("VECPIPE_DEBUG", "VECPIPE_LOG_FORMAT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _commands() -> list[str]:
    import typer

    from vecpipe.cli import app

    return sorted(typer.main.get_command(app).commands)


# ------------------------------------------------------------------ a fresh venv: pip install


def _build_wheel(src: Path, out: Path) -> Path:
    """A wheel of ``src``: without build isolation (fast, offline) when this Python can build one;
    else with isolation (pip's configured index); skip when neither works."""
    import importlib.util

    import setuptools

    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    own_bdist_wheel = tuple(int(x) for x in setuptools.__version__.split(".")[:2]) >= (70, 1)
    ways = [["--no-build-isolation"]] if own_bdist_wheel or importlib.util.find_spec("wheel") else []
    tries = []
    for extra in ways + [[]]:
        res = subprocess.run(base[:5] + extra + base[5:], capture_output=True, text=True, timeout=300)
        wheels = list(out.glob("vecpipe-*.whl"))
        if res.returncode == 0 and wheels:
            return wheels[0]
        tries.append(res.stderr.strip().splitlines()[-1:] or ["?"])
    pytest.skip(f"cannot build a wheel here (no bdist_wheel, no index): {tries}")


def test_pip_install_puts_man_pages_and_completions_where_man_and_shells_look(tmp_path):
    # A copy of the files the wheel is built from, so that the build leaves nothing in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("vecpipe", "man", "completions"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    wheel = _build_wheel(src, tmp_path / "dist")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr

    from vecpipe.cli._docs import COMPLETION_FILES

    pages = sorted((ROOT / "man").glob("*.1"))  # checked in, and current (test_cli checks that)
    assert {p.name for p in pages} >= {"vecpipe.1", "vecpipe-eval.1"}
    for page in pages:
        installed = venv / "share" / "man" / "man1" / page.name
        assert installed.read_text() == page.read_text(), page.name
    for shell, (rel, where) in COMPLETION_FILES.items():
        assert (venv / where).read_text() == (ROOT / rel).read_text(), shell
    assert (venv / "bin" / "vecpipe").exists()

    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian: apt-get install man-db); the pages are in place")
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    for page in ("vecpipe", "vecpipe-eval"):
        found = subprocess.run(["man", "-w", page], capture_output=True, text=True, env=env, timeout=60)
        assert found.returncode == 0, found.stderr
        assert found.stdout.strip() == str(venv / "share" / "man" / "man1" / f"{page}.1")


# ------------------------------------------------------------------ completion


def _bash_complete(script: Path, words: list[str], line: str | None = None, cwd: Path | None = None) -> list[str]:
    """Run the generated bash function as bash does on TAB and return COMPREPLY."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    setup = f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; unset COMP_LINE COMP_POINT"
    if line is not None:
        setup = f"COMP_LINE='{line}'; COMP_POINT={len(line)}"
    code = f"source '{script}'; {setup}; _vecpipe; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert res.returncode == 0, res.stderr
    return [w for w in res.stdout.splitlines() if w]


@pytest.fixture(scope="module")
def bash_script() -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return ROOT / "completions" / "vecpipe"


def test_bash_completes_values_not_only_options(bash_script, tmp_path):
    measures = _bash_complete(bash_script, ["vecpipe", "eval", "-m", ""])
    assert {"nDCG@10", "R@100", "RR@10", "AP", "P@10", "Success@10", "Judged@10"} <= set(measures)
    assert "nDCG@10" in _bash_complete(bash_script, ["vecpipe", "eval", "run.trec", "--measure", "nD"])
    specs = _bash_complete(bash_script, ["vecpipe", "build-index", "docs.parquet", "--spec", ""])
    assert {"Flat", "HNSW32", "IVF1024,Flat", "IVF1024,PQ48", "SQ8", "PQ48", "BFlat", "BHNSW32", "BIVF1024"} <= set(specs)
    assert _bash_complete(bash_script, ["vecpipe", "build-index", "--spec", "HNSW3"]) == ["HNSW32", "HNSW32_SQ8", "HNSW32,Flat"]
    assert _bash_complete(bash_script, ["vecpipe", "binarize", "--bits", ""]) == [str(b) for b in range(1, 9)]
    assert _bash_complete(bash_script, ["vecpipe", "quantize", "--to", ""]) == ["int8", "uint8", "fp16", "pq", "float32"]
    assert _bash_complete(bash_script, ["vecpipe", "search", "--format", ""]) == ["arrow", "parquet", "trec", "msmarco"]
    assert _bash_complete(bash_script, ["vecpipe", "embed", "--device", ""]) == ["auto", "cpu", "cuda"]
    assert _bash_complete(bash_script, ["vecpipe", "embed", "--pooling", ""]) == ["mean", "cls", "max"]
    assert _bash_complete(bash_script, ["vecpipe", "build-index", "--metric", ""]) == ["ip", "l2", "cos", "hamming"]
    assert _bash_complete(bash_script, ["vecpipe", "--log-format", ""]) == ["plain", "json"]
    assert _bash_complete(bash_script, ["vecpipe", "completions", ""]) == ["bash", "zsh", "fish"]
    assert "embed" in _bash_complete(bash_script, ["vecpipe", "--log-format", "json", "e"])
    assert "--skip-bad" in _bash_complete(bash_script, ["vecpipe", "embed", "--sk"])
    assert "--debug" in _bash_complete(bash_script, ["vecpipe", "eval", "--de"])
    assert _bash_complete(bash_script, ["vecpipe", "search", "-k", ""]) == []  # a number: nothing to offer
    # paths for path options and arguments
    (tmp_path / "docs.vec.parquet").write_bytes(b"")
    (tmp_path / "model").mkdir()
    assert "docs.vec.parquet" in _bash_complete(bash_script, ["vecpipe", "embed", "-o", "do"], cwd=tmp_path)
    assert "docs.vec.parquet" in _bash_complete(bash_script, ["vecpipe", "build-index", "d"], cwd=tmp_path)
    assert _bash_complete(bash_script, ["vecpipe", "embed", "--model", ""], cwd=tmp_path) == ["model"]
    # as bash splits the line at @ and =: the candidates continue the word after the break
    assert _bash_complete(bash_script, [], line="vecpipe eval -m nDCG@1") == ["1", "10", "100", "1000"]
    assert _bash_complete(bash_script, [], line="vecpipe build-index --spec=HNSW6") == ["HNSW64"]


def test_completion_scripts_are_the_command_output_and_parse(cli):
    from vecpipe.cli._docs import COMPLETION_FILES

    for shell, (rel, _) in COMPLETION_FILES.items():
        res = cli("completions", shell)
        assert res.exit_code == 0
        assert res.stdout == (ROOT / rel).read_text(), shell
    assert cli("completions", "tcsh").exit_code == 2
    for shell, flag, rel in (("bash", "-n", "completions/vecpipe"), ("zsh", "-n", "completions/_vecpipe"),
                             ("fish", "--no-execute", "completions/vecpipe.fish")):
        if shutil.which(shell) is None:
            continue
        res = subprocess.run([shell, flag, str(ROOT / rel)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, (shell, res.stderr)


def test_fish_completes_measures_and_specs():
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    script = ROOT / "completions" / "vecpipe.fish"

    def complete(line: str) -> list[str]:
        res = subprocess.run(["fish", "--no-config", "-c", f"source '{script}'; complete -C '{line}'"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        return [ln.split("\t")[0] for ln in res.stdout.splitlines()]

    assert "nDCG@10" in complete("vecpipe eval -m nD")
    assert "HNSW32" in complete("vecpipe build-index --spec HN")
    assert complete("vecpipe binarize --bits ") == [str(b) for b in range(1, 9)]


def test_zsh_loads_the_completion():
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    script = ROOT / "completions" / "_vecpipe"
    res = subprocess.run(["zsh", "-f", "-c", f"autoload -Uz compinit; compinit -u -D; source '{script}'; print -r -- $_comps[vecpipe]"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "_vecpipe", res.stderr
    text = script.read_text()
    assert "nDCG@10" in text and "HNSW32" in text and "(plain json)" in text


# ------------------------------------------------------------------ man pages


def _environment_variables() -> set[str]:
    """Every variable the code reads: os.environ.get("X"), os.environ["X"], os.getenv("X")."""
    found = set()
    pattern = re.compile(r"""(?:environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Z_][A-Z0-9_]*)["']|environ\[\s*["']([A-Z_][A-Z0-9_]*)["']\s*\]""")
    for path in (ROOT / "vecpipe").rglob("*.py"):
        for m in pattern.finditer(path.read_text()):
            found.add(m.group(1) or m.group(2))
    return found


def test_man_pages_have_examples_environment_exit_status_and_files():
    pages = {p.name: p.read_text() for p in (ROOT / "man").glob("*.1")}
    assert "vecpipe.1" in pages and {f"vecpipe-{c}.1" for c in _commands()} <= set(pages)
    variables = _environment_variables()
    assert {"VECPIPE_DEBUG", "VECPIPE_LOG_FORMAT", "VECPIPE_LOG_INTERVAL", "VECPIPE_HAMMING", "NO_COLOR"} <= variables
    for name, text in pages.items():
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"):
            assert f"\n.SH {section}\n" in text, (name, section)
        env = text.split("\n.SH ENVIRONMENT\n")[1].split("\n.SH ")[0]
        for var in variables | {"OMP_NUM_THREADS"}:
            assert f".B {var.replace('_', '_')}" in env, (name, var)
        status = text.split("\n.SH EXIT STATUS\n")[1].split("\n.SH ")[0]
        assert re.findall(r"^\.B (\d+)$", status, re.M) == ["0", "1", "2", "130", "143"], name
        files = text.split("\n.SH FILES\n")[1].split("\n.SH ")[0].replace("\\-", "-")
        for mark in (".NAME.vecpipe.json", ".NAME.vecpipe-partial/", ".NAME.vecpipe-tmp-*", ".NAME.vecpipe-lock"):
            assert mark in files, (name, mark)
        examples = text.split("\n.SH EXAMPLES\n")[1].split("\n.SH ")[0].replace("\\-", "-")
        command = name[len("vecpipe-"):-2] if name != "vecpipe.1" else None
        assert f"vecpipe {command}" in examples if command else "| vecpipe search" in examples, name
    root = pages["vecpipe.1"].replace("\\-", "-")
    assert "--log-format" in root and "exit_status" in root and "--debug" in root
    if shutil.which("groff"):
        for name in pages:
            res = subprocess.run(["groff", "-man", "-ww", "-z", str(ROOT / "man" / name)], capture_output=True, text=True)
            assert res.returncode == 0 and not res.stderr, (name, res.stderr)


# ------------------------------------------------------------------ --help


def test_help_lists_debug_flags_as_flags_and_output_formats(cli):
    from vecpipe.formats import registry

    res = cli("--help")
    assert res.exit_code == 0 and "--debug" in res.stdout and "--log-format" in res.stdout
    for name in _commands():
        text = cli(name, "--help").stdout
        assert "--debug" in text, name
        assert "<bool>" not in text, name  # flags are shown as flags
        assert not re.search(r"--(force|quiet|debug)\s+\S*(bool|BOOLEAN)", text), name
    flat = lambda text: " ".join(text.split())
    eval_help = flat(cli("eval", "--help").stdout)
    assert "-o, --output FILE" in eval_help
    for fmt in registry.formats_for(registry.METRICS):
        assert fmt.name in eval_help.split("--output FILE", 1)[1].split("--force")[0], fmt.name
    for name, kind in (("embed", registry.VECTORS), ("quantize", registry.VECTORS), ("search", registry.RUN),
                       ("rerank", registry.RUN), ("build-index", registry.INDEX)):
        text = flat(cli(name, "--help").stdout).split("--output FILE", 1)[1]
        for fmt in registry.formats_for(kind):
            for ext in fmt.extensions:
                assert ext in text, (name, ext)


def test_debug_before_or_after_the_subcommand_shows_the_traceback(tmp_path, cli):
    for args in (["--debug", "inspect", "missing.parquet"], ["inspect", "missing.parquet", "--debug"]):
        res = subprocess.run(VECPIPE + args, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
        assert res.returncode == 1 and "Traceback" in res.stderr, args
        res = cli(*args)  # CliRunner: the error propagates instead of being reported
        assert res.exception is not None and not isinstance(res.exception, SystemExit), args
    res = subprocess.run(VECPIPE + ["inspect", "missing.parquet"], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(VECPIPE_DEBUG="1"), timeout=60)
    assert res.returncode == 1 and "Traceback" in res.stderr
    res = cli("inspect", tmp_path / "missing.parquet")  # and the next command has no --debug left over
    assert res.exit_code == 1 and "no such file" in res.stderr


@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"], ["embed", "--help"], ["completions", "--help"]])
def test_help_imports_nothing_heavy(args):
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "vecpipe", *args], capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert res.returncode == 0 and "Usage" in res.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_completed_measures_are_the_registry_s_and_eval_accepts_each():
    from vecpipe.cli import options
    from vecpipe.evaluate.measures import parse_measure
    from vecpipe.evaluate.registry import SPECS

    offered = options.measure_names()  # read from registry.py as text
    expected = list(dict.fromkeys(form for s in SPECS
                                  for form in options._measure_forms(s.name, s.at, s.at_required, dict(s.aliases))))
    assert offered == expected
    assert {"nDCG@10", "R@100", "RR@10", "AP", "P@10", "Success@10", "Judged@10"} <= set(offered)
    for name in offered:
        parse_measure(name)  # a usage error if eval would refuse it
    for spec in options.SPECS:
        assert spec.replace(",", "").replace("_", "").isalnum(), spec


def test_text_eval_imports_no_compute_module(tmp_path):
    """A 1-row eval of text files loads none of Arrow's slow-to-import Python layers: the kernels it
    needs are called through vecpipe.formats.arrowfn (pyarrow.compute costs 50-80 ms a process)."""
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.5 t\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "vecpipe", "eval", "run.trec", "--qrels", "qrels.tsv",
                          "-m", "nDCG@10", "-m", "RR@10"], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[1:] == ["nDCG@10\t0.6309", "RR@10\t0.5000"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    slow = {"pyarrow.compute", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.acero", "pydantic", "hashlib"}
    assert not imported & slow, sorted(imported & slow)

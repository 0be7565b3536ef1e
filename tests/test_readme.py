"""The README is tested: its shell blocks run, in order, as one story (issue 17).

Every fenced ``sh`` block of README.md runs in one bash session (``set -euo pipefail``) in a scratch
directory, with ``vecpipe`` on PATH (this checkout) and the dataset the README names replaced by the
small example corpus (``examples/tiny``, BEIR layout), so the story is checked in seconds wherever
the tests run. A block right after a line ``<!-- not run by the README test: REASON -->`` is skipped
(the fresh-machine install commands, which the CI job itself runs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SKIP = re.compile(r"<!-- not run by the README test: (.+?) -->")
TINY = ROOT / "examples" / "tiny"


def readme_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, reason to skip or None) of every fenced ``sh`` block, in order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i + 1
            j = start
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            skip = SKIP.search(before)
            blocks.append((start + 1, "\n".join(lines[start:j]), skip.group(1) if skip else None))
            i = j
        i += 1
    return blocks


def story(text: str, dataset: Path) -> str:
    """The runnable blocks as one script, on ``dataset`` instead of the README's SciFact path."""
    parts = []
    for line, code, skip in readme_blocks(text):
        if skip:
            continue
        code = code.replace("../shared/datasets/scifact", str(dataset))
        # indented blocks inside list items keep their indentation in Markdown
        code = "\n".join(ln[2:] if ln.startswith("  ") and not ln.startswith("   ") else ln for ln in code.splitlines())
        parts.append(f"echo '--- README line {line}' >&2\n{code}")
    return "\n".join(parts)


def test_every_sh_block_is_run_or_says_why_not():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 6
    skipped = [b for b in blocks if b[2]]
    assert all(reason.strip() for _, _, reason in skipped)
    assert len(skipped) <= 3, "most of the README must run"


@pytest.mark.skipif(not (TINY / "corpus.jsonl").exists(), reason="examples/tiny is part of the repository")
def test_the_readme_runs_as_one_story(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "vecpipe"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vecpipe "$@"\n')
    shim.chmod(0o755)
    script = "set -euo pipefail\n" + story((ROOT / "README.md").read_text(), TINY)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", PYTHONPATH=str(ROOT), NO_COLOR="1",
               VECPIPE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("VECPIPE_DEBUG", None)
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"README story failed:\n{res.stderr[-4000:]}"

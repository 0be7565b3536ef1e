"""Every usage error exits 2 with one line on stderr: a walk over every subcommand's options.

For each subcommand: every option with a fixed set of choices gets a value outside them, every
integer option with bounds gets a value beyond each bound, every required option is left out.
Data and runtime errors (a missing input file) exit 1.
"""

from __future__ import annotations

from enum import Enum

import pytest
import typer

from vecpipe.cli import app


def _commands() -> dict:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _cases() -> list[tuple[str, list[str], str]]:
    cases = []
    for name, cmd in sorted(_commands().items()):
        required = []
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and p.required:
                required.append(p)
        base = []
        for p in required:  # a plausible value for each required option
            base += [p.opts[0], "x"]
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "option" or p.is_flag:
                continue
            flag = p.opts[0]
            ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
            if isinstance(ann, type) and issubclass(ann, Enum):
                cases.append((name, base + [flag, "no-such-choice"], f"{flag} bad choice"))
            low, high = getattr(p, "min", None), getattr(p, "max", None)
            if low is not None:
                cases.append((name, base + [flag, str(low - 1)], f"{flag} below {low}"))
            if high is not None:
                cases.append((name, base + [flag, str(high + 1)], f"{flag} above {high}"))
        for p in required:
            rest = [a for q in required if q is not p for a in (q.opts[0], "x")]
            cases.append((name, rest, f"missing {p.opts[0]}"))
        cases.append((name, ["--no-such-option"], "unknown option"))
    return cases


CASES = _cases()


def test_the_walk_covers_every_command():
    assert {c[0] for c in CASES} == set(_commands())
    assert len(CASES) > 40


@pytest.mark.parametrize("command,args,why", CASES, ids=[f"{c}-{w}" for c, _, w in CASES])
def test_usage_errors_exit_2_in_one_line(cli, command, args, why):
    res = cli(command, *args)
    assert res.exit_code == 2, (why, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vecpipe: error: "), res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


@pytest.mark.parametrize("command", ["embed", "quantize", "binarize", "build-index", "inspect"])
def test_a_missing_input_file_exits_1(cli, tmp_path, command):
    args = [command, tmp_path / "missing.parquet"]
    args += {"quantize": ["--to", "int8"], "binarize": ["--bits", "1"], "build-index": ["-o", tmp_path / "x.vpi"]}.get(command, [])
    res = cli(*args)
    assert res.exit_code == 1 and "missing.parquet: no such file" in res.stderr

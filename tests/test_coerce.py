"""Option values coerced without pydantic (vecpipe.cli._coerce) agree with typer's own coercion:
the same values, the same error messages, for every plain option of every command."""

from __future__ import annotations

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from vecpipe.cli import _app_for, app
from vecpipe.cli._coerce import PlainParam

VALUES = ["5", " 7 ", "-3", "+2", "0", "1_000", "abc", "", "1.5", "-0.25", "1e3", "inf", "nan", "2.0", "x1", "auto", "cpu",
          "CUDA", "plain", "json", "mean", "ip", "99999999999999999999", "2.", "1.00", "0x10", "\u0663", " -0 ", "1__0", "_1"]


def _outcome(runtime, value, param, ctx):
    try:
        return ("ok", runtime.coerce(value, param=param, ctx=ctx))
    except BadParameter as exc:
        return ("error", exc.format_message())


def _plain_params():
    out = []
    for name in sorted(typer.main.get_command(app).commands):
        cmd = typer.main.get_command(_app_for([name])).commands[name]
        for p in cmd.params:
            if isinstance(p._runtime_param, PlainParam) and p._runtime_param.kind is not None:
                out.append((name, p))
    return out


PARAMS = _plain_params()


def test_most_options_are_coerced_without_pydantic():
    from enum import Enum

    enums = {p._runtime_param.kind.__name__ for _, p in PARAMS if issubclass(p._runtime_param.kind, Enum)}
    assert len(PARAMS) > 100 and len(enums) > 5


@pytest.mark.parametrize("command,param", PARAMS, ids=[f"{c}-{p.name}" for c, p in PARAMS])
def test_plain_coercion_equals_typers(command, param):
    ctx = typer.main.get_command(_app_for([command])).commands[command].make_context(command, ["--help"], resilient_parsing=True)
    typers = build_runtime_param(param.type_descriptor)
    values = [None, *VALUES]
    if param._runtime_param.kind is list:
        values = [None, ("a", "b"), ["nDCG@10"], ()]
    for value in values:
        mine, theirs = _outcome(param._runtime_param, value, param, ctx), _outcome(typers, value, param, ctx)
        if theirs[0] == "ok" and isinstance(theirs[1], float) and theirs[1] != theirs[1]:
            assert mine[0] == "ok" and mine[1] != mine[1]  # nan
            continue
        assert mine == theirs, (command, param.name, value)

"""The ``vecpipe`` command: one typer app, one module per subcommand.

Subcommand modules are thin: parse options, open streams, call one library function. Errors are
mapped to exit codes in one place, :func:`exit_status`.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from vecpipe import __version__
from vecpipe.cli import _progress
from vecpipe.errors import VecpipeError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from typer._click import Command, Context  # typer's own copy of click

#: ``--debug`` seen on this command line (root option, any subcommand's option, or anywhere in argv).
_debug = False
#: ``--debug`` taken out of argv by :func:`main` (so that it works in any position, for any command).
_debug_in_argv = False


def debug_enabled() -> bool:
    return _debug or os.environ.get("VECPIPE_DEBUG", "") not in ("", "0") or "--debug" in sys.argv

class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that temporary files are removed on the way out."""


def exit_status(exc: BaseException) -> int | None:
    """Report ``exc`` on stderr in one line and return the exit status; ``None``: let it propagate.

    The one mapping of exceptions to exit codes: 1 bad data or runtime failure, 2 usage error,
    130 interrupted, 143 terminated, 0 for a closed pipe. With ``--debug`` or ``VECPIPE_DEBUG=1``
    errors propagate with their traceback.
    """
    if isinstance(exc, BrokenPipeError):
        _quiet_broken_pipe()
        return 0
    cause = exc.__cause__ if isinstance(exc, typer.Abort) else exc
    if isinstance(cause, Terminated):
        _progress.error("terminated", 143, event="terminated", plain="vecpipe: terminated")
        return 143
    if isinstance(cause, (KeyboardInterrupt, typer.Abort)):
        _progress.error("interrupted", 130, event="interrupted", plain="vecpipe: interrupted")
        return 130
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare ``vecpipe``: the help, on stderr
        if _progress.log_format() == "json":
            _progress.error(usage_message(exc, "missing command"), 2)
        else:
            _emit(_help_text(exc).rstrip("\n"))
        return 2
    if _is_usage_error(exc):
        _progress.error(usage_message(exc), 2)
        return 2
    if debug_enabled():
        return None
    if isinstance(exc, VecpipeError):
        _progress.error(str(exc), exc.exit_code)
        return exc.exit_code
    _progress.error(f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)
    return 1


def usage_message(exc: BaseException, text: str | None = None) -> str:
    """A usage error (typer's) as one line: what is wrong and where the help is."""
    if text is None:
        text = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "vecpipe"
    return f"{text.rstrip('.')} (see '{where} --help')"


def _help_text(exc: BaseException) -> str:
    ctx = getattr(exc, "ctx", None)
    try:
        return ctx.get_help() if ctx is not None else ""
    except Exception:  # noqa: BLE001  (a help that cannot be formatted still ends in exit status 2)
        return "Usage: vecpipe [OPTIONS] COMMAND [ARGS]... (see 'vecpipe --help')"


def _emit(line: str) -> None:
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class _Group(typer.core.TyperGroup):
    """Puts :func:`exit_status` around every subcommand, so that ``typer.testing.CliRunner`` and the
    installed command behave the same; gives every subcommand the root's ``--debug`` and the help
    details of :func:`_polish`; records the subcommand running (the ``stage`` of log lines)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        _plain_coercion(self)  # the root's options, coerced without pydantic as the subcommands' are
        debug = next((p for p in self.params if p.name == "debug"), None)
        for name, cmd in self.commands.items():
            _polish(name, cmd, debug)

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        # Before parsing, so that a usage error on this command line is already reported as it asks.
        global _debug
        argv = list(sys.argv[1:] if args is None else args)
        _debug = _debug_in_argv or "--debug" in argv
        _progress.set_log_format(_root_log_format(argv))
        _progress.set_stage(None)
        return super().main(argv, *rest, **kwargs)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if ctx.parent is None:
            _progress.set_stage(getattr(cmd, "name", None) or name)
        return name, cmd, rest

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            code = exit_status(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None


def _root_log_format(argv: list[str]) -> str | None:
    """``--log-format`` among the root options (those before the subcommand), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--log-format" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-") or arg == "--":
            return None
        i += 1
    return None


def _plain_coercion(cmd) -> None:  # type: ignore[no-untyped-def]
    """Options of plain types coerced without pydantic (:mod:`vecpipe.cli._coerce`): the command's
    declared options and the help option typer adds while parsing."""
    from vecpipe.cli._coerce import plain_param

    for p in cmd.params:
        plain = plain_param(p)
        if plain is not None:
            p._runtime_param = plain
    make_help = cmd.get_help_option

    def get_help_option(ctx):  # type: ignore[no-untyped-def]
        option = make_help(ctx)
        if option is not None and getattr(option, "_runtime_param", False) is None:
            option._runtime_param = plain_param(option)
        return option

    cmd.get_help_option = get_help_option


def _polish(name: str, cmd, debug) -> None:  # type: ignore[no-untyped-def]
    """Help details for one subcommand (and, for a group, its own subcommands): ``--debug`` as an
    option of its own, value placeholders (``FILE``, ``SPEC``, ``N``; flags show none), and the
    ``-o`` help that lists the output formats it accepts (:data:`vecpipe.cli.options.OUTPUT_HELP`)."""
    from vecpipe.cli import options

    params = getattr(cmd, "params", None)
    if params is None:
        return
    if debug is not None and not any(getattr(p, "name", None) == "debug" for p in params):
        sub_debug = copy.copy(debug)
        sub_debug.expose_value = False  # the command's function never sees it
        params.append(sub_debug)
    _plain_coercion(cmd)
    for p in params:
        kind = getattr(p, "param_type_name", "")
        if kind == "argument":
            if p.metavar is None and p.name:
                p.metavar = p.name.upper()
            continue
        if kind != "option":
            continue
        if p.is_flag or getattr(p, "count", False):
            p.metavar = ""  # rich help would show the type (<bool>) of a flag
            continue
        if "--output" in p.opts and name in options.OUTPUT_HELP:
            p.help = options.OUTPUT_HELP[name]
        if p.metavar is None:
            p.metavar = options.metavar(p.opts, options.annotation(p))
    for sub_name, sub in (getattr(cmd, "commands", None) or {}).items():
        _polish(sub_name, sub, debug)


app = typer.Typer(
    cls=_Group,
    name="vecpipe",
    help="Unix-style utilities for embedding-based retrieval: embed, compress, index, search, rerank, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, no rich import for --help
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"vecpipe {__version__}")
        raise typer.Exit()


def _debug_option(value: bool) -> None:
    global _debug
    if value:
        _debug = True


class _LogFormat(str, Enum):
    plain = "plain"
    json = "json"


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    log_format: Annotated[_LogFormat | None, typer.Option(
        "--log-format", help="What vecpipe writes on stderr: plain (vecpipe: notes and errors, timestamped "
        "progress lines off a terminal) or json (one JSON object a line: time, level, event, stage, message, ...; "
        "every note, warning, error and progress line). Give it before the subcommand. Default: VECPIPE_LOG_FORMAT, "
        "else plain.", show_default=False,
    )] = None,
    debug: Annotated[bool, typer.Option("--debug", callback=_debug_option,
                                        help="On an error, show the Python traceback (also VECPIPE_DEBUG=1).")] = False,
) -> None:
    """Unix-style utilities for embedding-based retrieval.

    Stages read a table from a file or stdin (-) and write one to a file or stdout, so they chain
    through pipes, Makefiles and cron jobs.
    """
    if log_format is not None:
        _progress.set_log_format(log_format.value)


# Subcommand modules register themselves on ``app`` when imported.
from vecpipe.cli import commands as _commands  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, map errors to exit codes, end quietly on a closed pipe."""
    global _debug_in_argv
    args = list(sys.argv[1:] if argv is None else argv)
    _terminate_cleanly()
    _guard_standard_fds()
    _arrow_without_pandas()
    _progress.install_warning_hook()
    _debug_in_argv = "--debug" in args
    if _debug_in_argv:  # anywhere: after a subcommand's arguments too, whatever the command
        args.remove("--debug")
    try:
        rv = _app_for(args)(args=args, prog_name="vecpipe", standalone_mode=False)
        code: int | None = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except (Exception, KeyboardInterrupt) as exc:  # parse errors and anything outside a subcommand
        code = exit_status(exc)
        if code is None:
            raise
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError:
        pass
    sys.exit(code)


def _app_for(args: list[str]) -> typer.Typer:
    """The app holding only the subcommand this command line runs, where it names one: typer builds
    every registered command (and its options' help) before parsing, a tenth of a second that one
    command does not need. Help, version and unknown names get the whole app."""
    name = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help", "--version"):
            return app
        if arg == "--log-format":
            i += 2
            continue
        if not arg.startswith("-"):
            name = arg
            break
        i += 1
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        return app
    narrowed = copy.copy(app)
    narrowed.registered_commands = commands
    narrowed.registered_groups = groups
    return narrowed


class _NoPandasForArrow:
    """A meta-path finder that answers "not installed" when pyarrow (or vecpipe) imports pandas.

    pyarrow imports pandas the first time it converts a Python value (``pa.array``, ``pa.scalar``, a
    compute call with a Python number), only to ask whether the value is a pandas object: a quarter
    of a second of a short command's life. vecpipe hands pyarrow no pandas objects. Anyone else
    (an ir_measures provider) still imports pandas as usual.
    """

    _OURS = (f"{os.sep}pyarrow{os.sep}", f"{os.sep}vecpipe{os.sep}")

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name != "pandas":
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None and any(part in frame.f_code.co_filename for part in self._OURS):
            raise ModuleNotFoundError("pandas is not imported for pyarrow by vecpipe", name="pandas")
        return None


def _arrow_without_pandas() -> None:
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandasForArrow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandasForArrow())


def _is_usage_error(exc: BaseException) -> bool:
    # typer carries a private copy of click; its UsageError family has an exit_code of 2 and show().
    return getattr(exc, "exit_code", None) == 2 and hasattr(exc, "show")


def _guard_standard_fds() -> None:
    """A closed stdin, stdout or stderr gets /dev/null on its descriptor, so that no file this process
    opens can land on descriptors 0-2 (where C libraries' messages would corrupt it). Python's own
    ``sys.stdin``/``sys.stdout``/``sys.stderr`` stay ``None``: a stage that needs a closed stream
    refuses with one line, and notes to a closed stderr are dropped. A file-size limit makes writes
    fail with EFBIG (reported as such) instead of killing the process with SIGXFSZ."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass
    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


def _terminate_cleanly() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


def _quiet_broken_pipe() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


"""The ``vecpipe`` command: one typer app, one module per subcommand.

Subcommand modules are thin: parse options, open streams, call one library function. Errors are
mapped to exit codes in one place, :func:`exit_status`.
"""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from typing import Optional

import typer
import typer.core

from vecpipe import __version__
from vecpipe.errors import VecpipeError


def debug_enabled() -> bool:
    return os.environ.get("VECPIPE_DEBUG", "") not in ("", "0") or "--debug" in sys.argv

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
        _emit("vecpipe: terminated")
        return 143
    if isinstance(cause, (KeyboardInterrupt, typer.Abort)):
        _emit("vecpipe: interrupted")
        return 130
    if _is_usage_error(exc):
        _emit(f"vecpipe: error: {usage_message(exc)}")
        return 2
    if debug_enabled():
        return None
    if isinstance(exc, VecpipeError):
        _emit(f"vecpipe: error: {exc}")
        return exc.exit_code
    _emit(f"vecpipe: error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
    return 1


def usage_message(exc: BaseException) -> str:
    """A usage error (typer's) as one line: what is wrong and where the help is."""
    text = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "vecpipe"
    return f"{text.rstrip('.')} (see '{where} --help')"


def _emit(line: str) -> None:
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class _Group(typer.core.TyperGroup):
    """Puts :func:`exit_status` around every subcommand, so that ``typer.testing.CliRunner`` and the
    installed command behave the same."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            code = exit_status(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Group,
    name="vecpipe",
    help="Unix-style utilities for embedding-based retrieval: embed, compress, index, search, rerank, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"vecpipe {__version__}")
        raise typer.Exit()


class _LogFormat(str, Enum):
    plain = "plain"
    json = "json"


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    log_format: Optional[_LogFormat] = typer.Option(
        None, "--log-format", help="Progress lines on a non-terminal stderr: plain (timestamped) or json. Also VECPIPE_LOG_FORMAT.",
        show_default=False,
    ),
) -> None:
    """Unix-style utilities for embedding-based retrieval.

    Stages read a table from a file or stdin (-) and write one to a file or stdout, so they chain
    through pipes, Makefiles and cron jobs.
    """
    if log_format is not None:
        os.environ["VECPIPE_LOG_FORMAT"] = log_format.value


# Subcommand modules register themselves on ``app`` when imported.
from vecpipe.cli import commands as _commands  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, map errors to exit codes, end quietly on a closed pipe."""
    args = list(sys.argv[1:] if argv is None else argv)
    _terminate_cleanly()
    _guard_standard_fds()
    if "--debug" in args:
        args.remove("--debug")
    try:
        rv = app(args=args, prog_name="vecpipe", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
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


def _is_usage_error(exc: Exception) -> bool:
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
    def handler(signum, frame):
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


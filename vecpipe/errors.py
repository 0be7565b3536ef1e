"""Exceptions the command line maps to exit codes and one-line messages.

The library raises these; ``vecpipe.cli`` turns them into ``vecpipe: error: ...`` on stderr and an
exit status. Messages name the file, the place and the fix, on one line.
"""

from __future__ import annotations


class VecpipeError(Exception):
    """Bad data or a runtime failure the user can fix: exit status 1."""

    exit_code = 1


class InputError(VecpipeError):
    """An input file is missing, malformed or inconsistent."""


class ModelError(VecpipeError):
    """A model directory or model file is missing or does not verify."""


class ExtraError(VecpipeError):
    """A feature needs an optional extra (or a package) that is not installed: exit status 1; the
    message names what to install (``pip install 'vecpipe[plot]'``)."""


class UsageError(VecpipeError):
    """Options that do not fit together: exit status 2, as typer's own usage errors."""

    exit_code = 2

"""vecpipe completions: print the shell completion script for bash, zsh or fish."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command("completions")
def completions(
    shell: Annotated[Shell, typer.Argument(help="The shell: bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the completion script for a shell: commands, options and their values.

    Values are completed too: measure names for eval -m, index specs for build-index --spec, formats,
    devices, metrics, pooling, --to, --bits and files. pip installs the same scripts where the shells
    look (share/bash-completion/completions, share/zsh/site-functions, share/fish/vendor_completions.d);
    this command is for other setups: eval "$(vecpipe completions bash)" in ~/.bashrc.
    """
    from vecpipe.cli._docs import COMPLETIONS

    typer.echo(COMPLETIONS[shell.value](), nl=False)

"""vecpipe cache: what the embedding cache holds; prune it to a size; clear it."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o

cache_app = typer.Typer(
    name="cache",
    help=("The embedding cache of vecpipe embed: vectors kept by the text they were made from and the model settings, "
          "in $XDG_CACHE_HOME/vecpipe/embeddings (or $VECPIPE_CACHE_DIR/embeddings, or --cache DIR). "
          "vecpipe cache stats shows it, prune keeps it under a size, clear empties it."),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(cache_app, name="cache")

CacheDir = Annotated[str | None, typer.Option("--cache", metavar="DIR", help="The cache directory (default: the user's embedding cache).",
                                              show_default=False)]


class StatsFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"


def _root(cache: str | None) -> Path:
    from vecpipe.stages.cache import root

    return root(cache)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@cache_app.command("stats")
def stats(cache: CacheDir = None,
          format: Annotated[StatsFormat, typer.Option("--format", help="table, tsv or json.")] = StatsFormat.table) -> None:
    """One line per model configuration: vectors, segments, bytes, last use."""
    from vecpipe.stages import cache as store

    rows = store.stats(cache)
    if format == StatsFormat.json:
        typer.echo(json.dumps({"cache": str(_root(cache)), "spaces": rows}, indent=1))
        return
    head = ["space", "model", "dim", "vectors", "segments", "bytes", "last_used"]
    lines = []
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])) if r["last_used"] else "-"
        size = str(r["bytes"]) if format == StatsFormat.tsv else _human(r["bytes"])
        lines.append([r["space"], str(r["model"] or "-"), str(r["dim"]), str(r["vectors"]), str(r["segments"]), size, used])
    if format == StatsFormat.tsv:
        typer.echo("\t".join(head))
        for line in lines:
            typer.echo("\t".join(line))
        return
    total = sum(r["bytes"] for r in rows)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)] if lines else [len(h) for h in head]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for line in lines:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths)))
    typer.echo(f"{_root(cache)}: {sum(r['vectors'] for r in rows)} vectors, {_human(total)}")


@cache_app.command("prune")
def prune(cache: CacheDir = None,
          max_size: Annotated[str, typer.Option("--max-size", metavar="SIZE", help="Keep at most SIZE (4GiB, 500MB, 0...): the least "
                                                "recently used segments go first.")] = "4GiB",
          quiet: o.Quiet = False) -> None:
    """Remove the least recently used segments until the cache holds at most --max-size."""
    from vecpipe.errors import UsageError
    from vecpipe.stages import cache as store

    try:
        cap = store.parse_size(max_size)
    except ValueError:
        raise UsageError(f"--max-size {max_size}: give a size such as 4GiB, 500MB or 0") from None
    removed, freed = store.prune(cache, cap)
    if not quiet:
        typer.echo(f"vecpipe: removed {removed} segments, {_human(freed)}", err=True)


@cache_app.command("clear")
def clear(cache: CacheDir = None, quiet: o.Quiet = False) -> None:
    """Remove every cached vector."""
    from vecpipe.stages import cache as store

    freed = store.clear(cache)
    if not quiet:
        typer.echo(f"vecpipe: cleared {_root(cache)} ({_human(freed)})", err=True)

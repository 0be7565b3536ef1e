"""vecpipe model: export sentence-transformers models to ONNX into the model cache, list them."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app, debug_enabled
from vecpipe.cli import options as o

model_app = typer.Typer(
    name="model",
    help=(
        "Models by name: export sentence-transformers models to ONNX into the model cache, list them.\n\n"
        "vecpipe model export NAME_OR_DIR [--name NAME] [--force] writes $XDG_CACHE_HOME/vecpipe/models/NAME "
        "(default ~/.cache/vecpipe/models/NAME); from then on --model NAME finds it (a directory of that "
        "path still wins). vecpipe model list (ls) shows what the cache holds. Exporting needs the optional "
        "extra: pip install 'vecpipe[export]'."
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(model_app, name="model")


class ListFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"


@model_app.command("export")
def export(
    source: Annotated[str, typer.Argument(
        metavar="NAME_OR_DIR", show_default=False,
        help="A Hugging Face hub id such as BAAI/bge-small-en-v1.5 (needs the hub) or a local "
             "sentence-transformers model directory.")],
    name: Annotated[str | None, typer.Option(
        "--name", show_default=False,
        help="Name in the cache, used with --model (default: the hub id, or the directory's name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Export again even if NAME is already in the cache.")] = False,
    quiet: o.Quiet = False,
) -> None:
    """Export a sentence-transformers model to ONNX into the model cache, for --model NAME.

    Writes model.onnx, tokenizer.json and the sentence-transformers configuration vecpipe reads
    (pooling, max length, normalisation), checked against sentence-transformers' own encode before
    it is put in place (atomically). Needs pip install 'vecpipe[export]'.
    """
    from vecpipe.cli._progress import note
    from vecpipe.stages.model import display_path, export_model

    def say(message: str) -> None:
        note(message, quiet)

    result = export_model(source, name=name, force=force, note=say, verbose=debug_enabled())
    where = display_path(result.path)
    if result.up_to_date:
        say(f"up to date: {result.name} ({where}); --force exports it again")
        return
    norm = "normalised" if result.normalize else "not normalised"
    say(f"wrote {result.name}: {where} (dim {result.dim}, {result.pooling} pooling, max length "
        f"{result.max_length}, {norm}; cosine {result.min_cosine:.6f} against sentence-transformers); "
        f"use it with --model {result.name}")


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


@model_app.command("list")
def list_(
    format: Annotated[ListFormat, typer.Option("--format", help="table, tsv or json.")] = ListFormat.table,
) -> None:
    """List the exported models in the cache: name, dim, pooling, max length, normalisation, sha256."""
    from vecpipe.cli._progress import note
    from vecpipe.stages.model import display_path, list_models, models_dir

    models = list_models()
    if format is ListFormat.json:
        typer.echo(json.dumps([m.as_dict() for m in models], indent=2))
        return
    if not models:
        note(f"no exported models in {display_path(models_dir())}; add one with: vecpipe model export NAME_OR_DIR")
        return
    header = ["name", "dim", "pooling", "max_length", "normalize", "sha256"]
    rows = [[m.name, str(m.dim or "?"), m.pooling or "?", str(m.max_length or "?"), _yes_no(m.normalize),
             m.sha256 or "?"] for m in models]
    if format is ListFormat.tsv:
        for row in [header, *rows]:
            typer.echo("\t".join(row))
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for m in models:
        if m.problem:
            note(f"warning: {m.name}: {m.problem}")


model_app.command("ls", hidden=True, help="Same as vecpipe model list.")(list_)

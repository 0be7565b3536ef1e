"""vecpipe embed: text records to vectors."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import note, reporter
from vecpipe.cli._stage import begin


@app.command("embed")
def embed(
    input: o.InputArg = "-",
    output: o.Output = None,
    model: o.ModelDir = None,
    pooling: o.PoolingOpt = None,
    max_length: o.MaxLength = None,
    prefix: o.Prefix = "",
    batch_size: o.EmbedBatch = 32,
    threads: o.Threads = None,
    device: o.DeviceOpt = o.Device.auto,
    id_field: o.IdField = None,
    text_field: o.TextField = None,
    title_field: o.TitleField = None,
    format: Annotated[Optional[o.TableFormat], typer.Option("--format", help="Output format (default: by extension; Arrow stream on stdout).", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Embed only shard I of N (I/N, 0-based): blocks I, I+N, ... of the input; join shards with vecpipe merge.", show_default=False)] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed records (bad JSON, missing fields, unencodable text, duplicate ids) and list them on stderr.")] = False,
    no_checkpoint: Annotated[bool, typer.Option("--no-checkpoint", help="Do not keep finished blocks beside the output for resuming after a kill.")] = False,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Embed text records (BEIR/generic JSONL, TSV, Parquet, Arrow) into a vectors table.

    BEIR corpora join title and text with a space. Output rows keep the input order. With a file
    output, finished blocks are checkpointed beside it: rerunning the same command after a kill
    reuses them, and the result is byte-identical to an uninterrupted run.
    """
    from vecpipe.encode import load_encoder
    from vecpipe.encode.job import embed_file, parse_shard
    from vecpipe.encode.model import resolve_model
    from vecpipe.formats.records import Fields

    shard_spec = parse_shard(shard)
    fields = Fields(id=id_field, text=text_field, title=title_field)
    spec = resolve_model(model)
    manifest = begin("embed", output, {"input": input}, {
        "model": {"name": spec.name, "sha256": spec.sha256}, "pooling": pooling.value if pooling else None,
        "max_length": max_length, "prefix": prefix, "batch_size": batch_size, "fields": vars(fields),
        "shard": shard, "skip_bad": skip_bad, "format": format.value if format else None,
    }, force, quiet)
    encoder = load_encoder(
        model=model, pooling=pooling.value if pooling else None, max_length=max_length, prefix=prefix,
        batch_size=batch_size, threads=threads, device=device.value,
    )
    skipped: list[str] = []

    def on_bad(where: str, reason: str) -> None:
        skipped.append(where)
        note(f"skipped {where}: {reason}", quiet)

    counts = embed_file(
        input, output, encoder, fields, fmt=format.value if format else None, progress=reporter(quiet),
        manifest=manifest, shard=shard_spec, skip_bad=on_bad if skip_bad else None, checkpoint=not no_checkpoint,
    )
    if skipped:
        note(f"skipped {len(skipped)} bad records", quiet)
    if counts["reused"]:
        note(f"reused {counts['reused']} rows from the checkpoint, embedded {counts['embedded']}", quiet)

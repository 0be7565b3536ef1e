"""vecpipe embed: text records to vectors."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import reporter


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
    quiet: o.Quiet = False,
) -> None:
    """Embed text records (BEIR/generic JSONL, TSV, Parquet, Arrow) into a vectors table.

    BEIR corpora join title and text with a space. Output rows keep the input order.
    """
    from vecpipe.encode import load_encoder
    from vecpipe.encode.job import embed_file
    from vecpipe.formats.records import Fields

    encoder = load_encoder(
        model=model, pooling=pooling.value if pooling else None, max_length=max_length, prefix=prefix,
        batch_size=batch_size, threads=threads, device=device.value,
    )
    fields = Fields(id=id_field, text=text_field, title=title_field)
    embed_file(input, output, encoder, fields, fmt=format.value if format else None, progress=reporter(quiet))

"""vecpipe embed: text records to vectors."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("embed")
def embed(
    inputs: o.InputsArg = None,
    output: o.Output = None,
    model: o.ModelDir = None,
    pooling: o.PoolingOpt = None,
    max_length: o.MaxLength = None,
    prefix: o.Prefix = "",
    batch_size: o.EmbedBatch = None,
    threads: o.Threads = None,
    device: o.DeviceOpt = o.Device.auto,
    precision: o.PrecisionOpt = o.Precision.auto,
    id_field: o.IdField = None,
    text_field: o.TextField = None,
    title_field: o.TitleField = None,
    format: Annotated[o.TableFormat | None, typer.Option("--format", help="Output format (default: by extension; Arrow stream on "
                                                                          "stdout).", show_default=False)] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="Embed only shard I of N (I/N, 0-based): blocks I, I+N, ... of the input; join shards "
                                                              "with vecpipe merge.", show_default=False)] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed records (bad JSON, missing fields, unencodable text, duplicate ids) "
                                                              "and list them on stderr.")] = False,
    no_checkpoint: Annotated[bool, typer.Option("--no-checkpoint", help="Do not keep finished blocks beside the output for resuming after a kill.")] = False,
    cache: Annotated[str | None, typer.Option("--cache", metavar="DIR", help="The embedding cache: vectors found again by their text and "
                                              "model settings (default: $XDG_CACHE_HOME/vecpipe/embeddings).", show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed every record; neither read nor add to the embedding cache.")] = False,
    cache_size: Annotated[str | None, typer.Option("--cache-size", metavar="SIZE", help="Keep the embedding cache under SIZE (4GiB, "
                                                   "500MB...), least recently used segments removed first (default 4GiB).",
                                                   show_default=False)] = None,
    multi_vector: Annotated[bool, typer.Option("--multi-vector", help="One vector per token (the model's last hidden state, padding "
                                               "masked, L2-normalised) instead of one pooled vector per text: a list of vectors per row, "
                                               "for vecpipe fde and rerank --chamfer.")] = False,
    special_tokens: Annotated[o.SpecialTokens | None, typer.Option("--special-tokens", help="--multi-vector: drop the tokenizer's special "
                                                                   "tokens ([CLS], [SEP]) or keep them (default: drop).",
                                                                   show_default=False)] = None,
    engine: o.EngineOpt = o.EngineName.local,
    address: o.Address = None,
    workers: o.Workers = None,
    gpus_per_worker: o.GpusPerWorker = 0.0,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Embed text records (BEIR/generic JSONL, TSV, Parquet, Arrow) into a vectors table.

    BEIR corpora join title and text with a space. Output rows keep the input order. With a file
    output, finished blocks are checkpointed beside it: rerunning the same command after a kill
    reuses them, and the result is byte-identical to an uninterrupted run.

    Every vector is kept in the embedding cache, keyed by the exact text and everything that shapes
    the vector (model sha256, pooling, normalisation, max length, prefix, precision, device): a rerun
    over a corpus that changed a little embeds only what changed.

    With --multi-vector each row holds one vector per token (late interaction, ColBERT-style): the
    table's metadata says kind multivectors; vecpipe fde turns it into fixed-dimensional encodings
    any index can search, and rerank --chamfer scores candidates exactly with it. The embedding
    cache is not used then.

    Several inputs (files, directories, globs, URIs) are read in order as one input; blocks are cut
    per input. With --engine ray the work runs on a Ray cluster (Ray Data: tasks read the inputs, a
    pool of --workers actors each holding one model session embeds them) and -o names a directory:
    Parquet parts (one per block of each input) plus one manifest, read by every other command as
    one vectors table with the same rows, ids and vectors as the local engine. A rerun after a kill
    keeps the finished parts.
    """
    from vecpipe.formats.records import Fields
    from vecpipe.stages.embed import Embed

    run_stage(Embed(
        input=inputs or ["-"], output=output, model=str(model) if model else None, pooling=value(pooling), max_length=max_length,
        prefix=prefix, batch_size=batch_size, precision=value(precision), fields=Fields(id=id_field, text=text_field, title=title_field),
        shard=shard, skip_bad=skip_bad, format=value(format), threads=threads, checkpoints=not no_checkpoint,
        cache=cache, no_cache=no_cache, cache_size=cache_size, multi_vector=multi_vector, special_tokens=value(special_tokens),
    ), force, quiet, device.value, engine.value, address=address, workers=workers, gpus_per_worker=gpus_per_worker)

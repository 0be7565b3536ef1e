"""vecpipe search: queries (vectors or texts) against a .vpi index, to a run."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import reporter
from vecpipe.cli._stage import begin


@app.command("search")
def search(
    queries: Annotated[str, typer.Argument(help="Query vectors (from embed) or query texts, a file or '-' for stdin.")] = "-",
    index: Annotated[str, typer.Option("--index", "-i", help="The .vpi index to search.")] = ...,  # type: ignore[assignment]
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Results per query.")] = 100,
    output: o.Output = None,
    format: Annotated[Optional[o.RunFormat], typer.Option("--format", help="arrow, parquet or trec text (default: by extension; Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", min=1, help="IVF lists searched (default: recorded in the index).", show_default=False)] = None,
    ef_search: Annotated[Optional[int], typer.Option("--ef-search", min=1, help="HNSW efSearch (default: recorded in the index).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Queries searched per batch.")] = 1024,
    rescore: Annotated[Optional[str], typer.Option("--rescore", help="Full-precision vectors file: fetch k x --rescore-multiplier candidates, rescore them exactly, keep k.", show_default=False)] = None,
    rescore_multiplier: Annotated[int, typer.Option("--rescore-multiplier", min=1, help="Candidates fetched per result kept, with --rescore.")] = 4,
    threads: o.Threads = None,
    model: o.ModelDir = None,
    prefix: o.Prefix = "",
    device: o.DeviceOpt = o.Device.auto,
    id_field: o.IdField = None,
    text_field: o.TextField = None,
    title_field: o.TitleField = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Search a .vpi index and write a run (qid, docid, rank, score).

    Text queries are embedded with the model the index records (or --model). Ties are broken by docid.
    """
    from vecpipe.formats.records import Fields
    from vecpipe.formats.runs import RunWriter
    from vecpipe.index import load_index
    from vecpipe.index.query import query_vectors, search_run
    from vecpipe.pipeline.uptodate import record_sidecar

    fields = Fields(id=id_field, text=text_field, title=title_field)
    fmt = format.value if format else None
    manifest = begin("search", output, {"queries": queries, "index": index, "rescore": rescore}, {
        "k": k, "format": fmt, "tag": tag, "nprobe": nprobe, "ef_search": ef_search,
        "rescore_multiplier": rescore_multiplier if rescore else None, "model": str(model) if model else None,
        "prefix": prefix, "fields": vars(fields)}, force, quiet)
    rescorer = None
    if rescore is not None:
        from vecpipe.index.rescore import Rescorer

        rescorer = Rescorer(rescore, multiplier=rescore_multiplier)
    loaded = load_index(index, threads=threads)
    loaded.set_params(nprobe=nprobe, ef_search=ef_search)

    def encoder_factory(model_meta: dict):
        from vecpipe.encode import load_encoder
        from vecpipe.errors import InputError

        encoder = load_encoder(
            model=model, pooling=model_meta.get("pooling"), max_length=model_meta.get("max_length"),
            prefix=prefix, threads=threads, device=device.value,
        )
        want = model_meta.get("sha256")
        if want and encoder.info.get("sha256") != want:
            raise InputError(
                f"{index}: built with model {model_meta.get('name')!r}, which is not "
                f"{encoder.info.get('name')!r}; give that model with --model DIR, or query vectors"
            )
        return encoder

    progress = reporter(quiet)
    progress.start("search", unit="queries")
    try:
        batches = search_run(loaded, query_vectors(queries, loaded, encoder_factory, fields, progress), k, batch_size,
                             rescorer=rescorer)
        from vecpipe.formats import metadata

        run_meta = metadata.new("run", k=k, index={key: loaded.meta.get(key) for key in ("spec", "metric", "count", "dim")},
                                model=(loaded.meta.get("model") or {}).get("name"),
                                rescore={"multiplier": rescore_multiplier, "metric": rescorer.metric} if rescorer else None,
                                manifest=manifest)
        with RunWriter(output, fmt=fmt, tag=tag, metadata=run_meta) as writer:
            for batch in batches:
                writer.write(batch)
        if writer.format == "trec" and output:
            record_sidecar(output, manifest)
    finally:
        progress.close()

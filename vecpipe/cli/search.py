"""vecpipe search: queries (vectors or texts) against a .vpi index, to a run."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("search")
def search(
    queries: Annotated[str, typer.Argument(help="Query vectors (from embed) or query texts, a file or '-' for stdin.")] = "-",
    index: Annotated[str, typer.Option("--index", "-i", help="The .vpi index to search.")] = ...,  # type: ignore[assignment]
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=o.INT_MAX, help="Results per query.")] = 100,
    output: o.Output = None,
    format: Annotated[o.RunFormat | None, typer.Option("--format", help="arrow, parquet, trec text or msmarco (qid, docid, rank TSV) (default: by "
                                                                        "extension; Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    nprobe: Annotated[int | None, typer.Option("--nprobe", min=1, max=o.INT_MAX, help="IVF lists (or SPANN posting "
                                                                                      "lists) searched (default: recorded in the index; IVF "
                                                                                      "and SPANN indexes only).", show_default=False)] = None,
    max_dist_ratio: Annotated[float | None, typer.Option(
        "--max-dist-ratio", min=0, max=100, help="SPANN: skip posting lists whose head is further than R times the nearest "
        "head (R >= 1; 0: no limit; default: recorded in the index).", show_default=False)] = None,
    ef_search: Annotated[int | None, typer.Option("--ef-search", min=1, max=o.INT_MAX, help="HNSW efSearch (default: recorded in the index; HNSW "
                                                                                            "indexes only).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=o.INT_MAX, help="Queries searched per batch.")] = 1024,
    rescore: Annotated[str | None, typer.Option("--rescore", help="Full-precision vectors file: fetch k x --rescore-multiplier candidates, rescore "
                                                                  "them exactly, keep k (default: the vectors an index built by --spec auto "
                                                                  "records, when it rescores).", show_default=False)] = None,
    rescore_multiplier: Annotated[int | None, typer.Option("--rescore-multiplier", min=1, max=o.INT_MAX, help="Candidates fetched per result kept, "
        "with --rescore (default: the index's recorded multiplier, else 4).", show_default=False)] = None,
    hubness: Annotated[o.Hubness | None, typer.Option("--hubness", help="Hubness reduction: qbnorm (querybank normalisation) or dbnorm "
                                                      "(query and gallery banks); log Z(d) is kept beside the index.",
                                                      show_default=False)] = None,
    bank: Annotated[str | None, typer.Option("--bank", help="Query vectors of the bank, with --hubness (training queries, never the "
                                             "queries searched).", show_default=False)] = None,
    beta: Annotated[float | None, typer.Option("--beta", min=0.0, max=1000.0, help="Inverse temperature of --hubness (default 20).",
                                               show_default=False)] = None,
    prf: Annotated[int | None, typer.Option("--prf", min=1, max=o.INT_MAX, help="Pseudo-relevance feedback: search again with "
                                            "A q + B mean(vectors of the top K results); K at most -k.", show_default=False)] = None,
    prf_alpha: Annotated[float | None, typer.Option("--prf-alpha", min=0.0, help="A, the query's weight with --prf (default 1).",
                                                    show_default=False)] = None,
    prf_beta: Annotated[float | None, typer.Option("--prf-beta", min=0.0, help="B, the feedback's weight with --prf (default 0.5).",
                                                   show_default=False)] = None,
    min_prob: o.MinProb = None,
    calibration: Annotated[str | None, typer.Option("--calibration", help="Calibration file (vecpipe calibrate), with --min-prob.",
                                                    show_default=False)] = None,
    threads: o.Threads = None,
    model: o.ModelDir = None,
    prefix: o.Prefix = "",
    device: o.DeviceOpt = o.Device.auto,
    id_field: o.IdField = None,
    text_field: o.TextField = None,
    title_field: o.TitleField = None,
    allow_mismatch: o.AllowMismatch = False,
    engine: o.EngineOpt = o.EngineName.local,
    address: o.Address = None,
    workers: o.Workers = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Search a .vpi index and write a run (qid, docid, rank, score).

    Text queries are embedded with the model the index records (or --model). Ties are broken by docid.

    --hubness ranks by B<q,d> - log Z(d) (QB-Norm; DBNorm: 2B<q,d> less the query-bank and the
    gallery-bank log Z), in one exact search over the documents with log Z(d) appended; their vectors
    come from a flat index or from --rescore. --prf reads the top K results' vectors the same way.
    --min-prob drops results whose calibrated probability of relevance is under P.
    """
    from vecpipe.formats.records import Fields
    from vecpipe.stages.search import Search

    run_stage(Search(
        queries=queries, index=index, rescore=rescore, output=output, k=k, format=value(format), tag=tag, nprobe=nprobe,
        ef_search=ef_search, max_dist_ratio=max_dist_ratio, rescore_multiplier=rescore_multiplier, model=str(model) if model else None, prefix=prefix,
        fields=Fields(id=id_field, text=text_field, title=title_field), allow_mismatch=allow_mismatch,
        batch_size=batch_size, threads=threads, hubness=value(hubness), bank=bank, hubness_beta=beta, prf=prf,
        prf_alpha=prf_alpha, prf_beta=prf_beta, min_prob=min_prob, calibration=calibration,
    ), force, quiet, device.value, engine.value, address=address, workers=workers)

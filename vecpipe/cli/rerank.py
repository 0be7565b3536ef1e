"""vecpipe rerank: rescore a run exactly with full-precision vectors read by id."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("rerank")
def rerank(
    run: Annotated[str, typer.Argument(help="The run to rerank (Arrow, Parquet or TREC text), a file or '-' for stdin.")] = "-",
    vectors: Annotated[str | None, typer.Option("--vectors", help="Full-precision document vectors (Arrow file or Parquet); only the candidate "
                                                              "rows are read.", show_default=False)] = None,
    queries: Annotated[str | None, typer.Option("--queries", help="Float query vectors (from vecpipe embed); with --cross-encoder, query texts.",
                                                show_default=False)] = None,
    cross_encoder: Annotated[str | None, typer.Option("--cross-encoder", metavar="MODEL_DIR", help="Rescore with an ONNX cross-encoder "
                                                      "(model.onnx + tokenizer.json, one logit per query-document pair) over the texts.",
                                                      show_default=False)] = None,
    corpus: Annotated[str | None, typer.Option("--corpus", help="--cross-encoder: the document texts (read once; only the candidates' "
                                                                "texts are kept).", show_default=False)] = None,
    depth: Annotated[int, typer.Option("--depth", min=1, max=o.INT_MAX, help="--cross-encoder: candidates rescored per query (the run's "
                                                                             "top ranks).")] = 100,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=o.INT_MAX, help="--cross-encoder: most pairs per model "
                                                                                             "batch (default 32).", show_default=False)] = None,
    chamfer: Annotated[str | None, typer.Option("--chamfer", metavar="DOC_MULTIVECTORS", help="Rescore by exact Chamfer similarity "
                                                "(MaxSim: each query token's best inner product over the document's tokens, summed) with "
                                                "these document token vectors (embed --multi-vector); --queries gives the queries' token "
                                                "vectors.", show_default=False)] = None,
    threads: o.Threads = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=o.INT_MAX, help="Results kept per query.")] = 100,
    metric: Annotated[o.FloatMetric | None, typer.Option("--metric", help="ip, l2 or cos (default: what the vectors record).", show_default=False)] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Drop run rows whose docid (or qid) has no vector instead of failing.")] = False,
    output: o.Output = None,
    format: Annotated[o.RunFormat | None, typer.Option("--format", help="arrow, parquet, trec text or msmarco (qid, docid, rank TSV) (default: by "
                                                                        "extension; Arrow stream on stdout).", show_default=False)] = None,
    tag: Annotated[str, typer.Option("--tag", help="Run tag in TREC output.")] = "vecpipe",
    allow_mismatch: o.AllowMismatch = False,
    device: o.DeviceOpt = o.Device.auto,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Rescore each query's candidates exactly (ip, cos or l2 as the vectors record), re-sort and keep k.

    Reads only the candidate rows of the document vectors: an Arrow IPC file is memory-mapped, a
    Parquet file is read by the row groups that hold candidates. Ties are broken by docid.

    With --cross-encoder MODEL_DIR, each query's top --depth candidates are rescored by a
    cross-encoder over the query's text (--queries) and the document's (--corpus, title and text
    joined as embed joins them), in batches by a token budget, on the GPU where there is one.

    With --chamfer DOC_MULTIVECTORS, each candidate is scored by the exact Chamfer similarity of the
    query's token vectors (--queries, embed --multi-vector) and the document's: the sum over query
    tokens of the largest inner product with a document token. The document table is read as a
    stream and only the candidates are scored, so memory stays bounded (the candidates of FDE
    search: vecpipe fde).
    """
    from vecpipe.stages.rerank import Rerank

    run_stage(Rerank(
        run_input=run, vectors=vectors, queries=queries, output=output, k=k, metric=value(metric),
        allow_missing=allow_missing, format=value(format), tag=tag, allow_mismatch=allow_mismatch,
        cross_encoder=cross_encoder, corpus=corpus, depth=depth, batch_size=batch_size, threads=threads, chamfer=chamfer,
    ), force, quiet, device.value)

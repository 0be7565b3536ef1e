"""vecpipe build-index: vectors to a .vpi index container."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("build-index")
def build_index(
    vectors: o.InputArg = "-",
    output: Annotated[str, typer.Option("--output", "-o", help="The .vpi file to write.")] = ...,  # type: ignore[assignment]
    spec: Annotated[str, typer.Option("--spec", help="faiss index_factory string: Flat, HNSW32, IVF1024,Flat, IVF1024,PQ48, OPQ48,IVF1024,PQ48, SQ8, "
                                                     "...")] = "Flat",
    metric: Annotated[o.Metric | None, typer.Option("--metric", help="ip, l2 or cos (default: what the vectors record).", show_default=False)] = None,
    train_size: Annotated[int, typer.Option("--train-size", min=1, max=o.INT_MAX, help="Vectors sampled to train IVF/PQ/OPQ.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", min=0, max=o.INT_MAX, help="Seed of the training sample.")] = 0,
    nprobe: Annotated[int | None, typer.Option("--nprobe", min=1, max=o.INT_MAX, help="Default IVF lists searched, recorded in the index "
                                                                                      "(32).", show_default=False)] = None,
    ef_search: Annotated[int | None, typer.Option("--ef-search", min=1, max=o.INT_MAX, help="Default HNSW efSearch, recorded in the index "
                                                                                            "(128).", show_default=False)] = None,
    threads: o.Threads = None,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Build HNSW graphs on one thread, so the same input "
                                                "gives the same bytes (slower; reruns rely on manifests, not on bytes).")] = False,
    no_compress: Annotated[bool, typer.Option("--no-compress", help="Store the index uncompressed (larger file, loads without decompression).")] = False,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Build a faiss index over a vectors table and store it, with ids and metadata, in a .vpi file.

    Builds use every core (or --threads). HNSW graphs built on several threads depend on their timing:
    --deterministic builds them on one thread, so the same input gives the same bytes.
    """
    from vecpipe.stages.build_index import BuildIndex

    run_stage(BuildIndex(
        vectors=vectors, output=output, spec=spec, metric=value(metric), train_size=train_size, seed=seed,
        nprobe=nprobe, ef_search=ef_search, threads=threads, deterministic=deterministic, compress=not no_compress,
    ), force, quiet)

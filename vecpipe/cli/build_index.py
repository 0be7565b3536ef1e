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
    spec: Annotated[str | None, typer.Option("--spec", help="faiss index_factory string: Flat, HNSW32, IVF1024,Flat, IVF1024,PQ48, OPQ48,IVF1024,PQ48, SQ8, "
                                                     "...; SPANN[,key=value...] for the disk index; BM25; auto (default Flat; with --update, "
                                                     "the old index's).", show_default=False)] = None,
    order: Annotated[o.InsertionOrder, typer.Option("--order", help="HNSW insertion order: input, random (--seed), lid-desc or lid-asc "
                                                    "(by local intrinsic dimensionality, highest or lowest first); recorded in the index.")]
    = o.InsertionOrder.input,
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
    k1: Annotated[float | None, typer.Option("--k1", help="BM25 term-frequency saturation (--spec BM25; default 1.2).", show_default=False)] = None,
    b: Annotated[float | None, typer.Option("--b", help="BM25 length normalisation, 0..1 (--spec BM25; default 0.75).", show_default=False)] = None,
    bm25_method: Annotated[o.Bm25Method | None, typer.Option("--bm25-method", help="BM25 variant (--spec BM25; default lucene).",
                                                             show_default=False)] = None,
    stemmer: Annotated[str | None, typer.Option("--stemmer", help="Snowball stemmer language, or none (--spec BM25; default english).",
                                                show_default=False)] = None,
    stopwords: Annotated[str | None, typer.Option("--stopwords", help="Stopword list language, or none (--spec BM25; default english).",
                                                  show_default=False)] = None,
    id_field: o.IdField = None,
    text_field: o.TextField = None,
    title_field: o.TitleField = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="--spec BM25: skip malformed records and list them on stderr.")] = False,
    max_memory: Annotated[str | None, typer.Option("--max-memory", metavar="SIZE", help="--spec auto: the memory the index may take "
                                                   "(500MB, 2GB, 4GiB).", show_default=False)] = None,
    target_recall: Annotated[float | None, typer.Option("--target-recall", help="--spec auto: the recall@10 to reach against exact "
                                                        "search (default 0.95).", show_default=False)] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", help="--spec auto: milliseconds a query may take.",
                                                         show_default=False)] = None,
    queries: Annotated[str | None, typer.Option("--queries", metavar="QUERY_VECTORS", help="--spec auto: measure recall with these "
                                                "queries (default: held-out corpus rows).", show_default=False)] = None,
    update: Annotated[str | None, typer.Option("--update", metavar="OLD.vpi", help="Follow the corpus from OLD.vpi: rows matched by id; "
                                               "Flat/BFlat written as a rebuild would; IVF/SQ/PQ keep their training and stored codes, "
                                               "encoding only added and changed rows; other kinds rebuilt (said on stderr).",
                                               show_default=False)] = None,
    engine: o.EngineOpt = o.EngineName.local,
    address: o.Address = None,
    workers: o.Workers = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Build a faiss index over a vectors table and store it, with ids and metadata, in a .vpi file.

    --spec auto --max-memory SIZE tries the index kinds that fit the budget on a sample, measures their
    recall@10 and speed, and builds the fastest that reaches --target-recall (the table of what it
    tried goes to stderr and into the index's metadata); over a corpus larger than the sample, the
    built index is checked against exact search over every row and its search setting raised until
    the target holds there. From a file, it also tries compressed kinds
    (IVF-PQ, OPQ-IVF-PQ, 1-bit codes) whose candidates are rescored with the float vectors read from
    that file on disk (outside the budget): such an index records the file's location and sha256,
    and search rescores from it by default.

    Builds use every core (or --threads). HNSW graphs built on several threads depend on their timing:
    --deterministic builds them on one thread, so the same input gives the same bytes.

    --spec BM25 builds a BM25 index over text records instead (BEIR/generic JSONL, TSV, Parquet,
    Arrow, as embed reads them), searched with query texts: bm25s's scoring and tokenizer (lowercase,
    words of two characters or more, stopwords) with a Snowball stemmer.

    With --engine ray an IVF or flat-code index (IVFn,Flat, IVFn,PQm, IVFn,SQ8, PQm, SQ8) is trained
    here on the same seeded sample, the rows are added on --workers actors in contiguous chunks, and
    the chunks are merged in row order: the same index as the local build.

    --spec SPANN builds a SPANN-style disk index (Chen et al., NeurIPS 2021): balanced hierarchical
    k-means heads (a share `heads` of the vectors) in an in-memory HNSW graph, each vector in the
    posting lists of up to `replicas` nearest heads (within 1+`eps` of the nearest, RNG rule), lists
    capped at `cap` entries (0: 4x the mean) and stored in 4 KB blocks of the .vpi file, as `codes`
    f32, f16 or sq8. Parameters, written SPANN,key=value,... (defaults): heads=0.02, replicas=8,
    eps=0.5, rng=1, cap=0, codes=f16, head_codes=sq8, m=16, nprobe=128, max_dist_ratio=0
    (the last two: search defaults). The vectors are streamed through a temporary
    file beside the output; memory holds the heads and the assignments, not the vectors.
    """
    from vecpipe.formats.records import Fields
    from vecpipe.stages.build_index import BuildIndex

    run_stage(BuildIndex(
        vectors=vectors, output=output, update=update, queries=queries, max_memory=max_memory,
        target_recall=target_recall, max_latency_ms=max_latency_ms,
        spec=spec if spec is not None else ("" if update else "Flat"), metric=value(metric), train_size=train_size, seed=seed,
        nprobe=nprobe, ef_search=ef_search, threads=threads, deterministic=deterministic, compress=not no_compress,
        k1=k1, b=b, bm25_method=value(bm25_method), stemmer=stemmer, stopwords=stopwords,
        fields=Fields(id=id_field, text=text_field, title=title_field), skip_bad=skip_bad, order=order.value,
    ), force, quiet, engine=engine.value, address=address, workers=workers)

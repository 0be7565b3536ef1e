"""vecpipe fde: multi-vector tables to fixed-dimensional encodings (MUVERA)."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("fde")
def fde(
    vectors: Annotated[str, typer.Argument(help="A multi-vector table (vecpipe embed --multi-vector), a file or '-' for stdin.")] = "-",
    role: Annotated[o.FdeRole | None, typer.Option("--role", help="query: each bucket's vectors summed; doc: averaged, empty buckets "
                                                                  "filled from the nearest vector.", show_default=False)] = None,
    reps: Annotated[int | None, typer.Option("--reps", min=1, max=4096, help="Repetitions (independent partitions), each adding "
                                                                             "2^ksim x dproj values (default 20).", show_default=False)] = None,
    ksim: Annotated[int | None, typer.Option("--ksim", min=0, max=12, help="SimHash hyperplanes per repetition: 2^ksim buckets "
                                                                           "(default 5).", show_default=False)] = None,
    dproj: Annotated[int | None, typer.Option("--dproj", min=1, max=o.INT_MAX, help="Each bucket's block is projected to this many "
                                                                                   "dimensions by random +-1 (default 16; the token "
                                                                                   "dimension: no projection).", show_default=False)] = None,
    final_dim: Annotated[int | None, typer.Option("--final-dim", min=1, max=o.INT_MAX, help="Map the encoding to D dimensions by a "
                                                                                           "count sketch (default: keep all).",
                                                  show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Seed of every random draw (default 0).", show_default=False)] = None,
    like: Annotated[str | None, typer.Option("--like", metavar="DOC_FDE", help="Take every parameter and the seed from these "
                                             "encodings (or an artifact or index made from them): encode queries --like the "
                                             "documents.", show_default=False)] = None,
    output: o.Output = None,
    format: Annotated[o.TableFormat | None, typer.Option("--format", help="Output format (default: by extension; Arrow stream on "
                                                                          "stdout).", show_default=False)] = None,
    allow_mismatch: o.AllowMismatch = False,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Encode each row's token vectors as one fixed-dimensional vector (MUVERA) whose inner product
    approximates Chamfer similarity.

    Per repetition, ksim seeded Gaussian hyperplanes split the space into 2^ksim buckets (SimHash);
    each bucket's vectors are projected to dproj dimensions by a seeded random +-1 matrix and summed
    (queries) or averaged (documents; a document's empty bucket takes its vector whose bits are
    nearest in Hamming distance). The output is an ordinary vectors table (metric ip): build-index,
    quantize, binarize and search take it. Queries and documents must share every parameter and
    the seed (give the queries --like DOC_FDE); search refuses encodings made otherwise. Rerank the
    candidates exactly with vecpipe rerank --chamfer.
    """
    from vecpipe.stages.fde import Fde

    run_stage(Fde(vectors=vectors, like=like, output=output, role=value(role), reps=reps, ksim=ksim, dproj=dproj,
                  final_dim=final_dim, seed=seed, format=value(format), allow_mismatch=allow_mismatch), force, quiet)

"""vecpipe quantize: float vectors to int8/uint8/fp16/PQ codes, or Matryoshka-truncated vectors."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


class QuantizeTo(str, Enum):
    int8 = "int8"
    uint8 = "uint8"
    fp16 = "fp16"
    pq = "pq"
    float32 = "float32"


@app.command("quantize")
def quantize(
    vectors: o.InputArg = "-",
    to: Annotated[QuantizeTo | None, typer.Option("--to", help="int8/uint8 (per-dimension ranges calibrated on the input), fp16, pq (product "
                                                               "quantizer), or float32 (truncation only). Default: what --like records.",
                                                               show_default=False)] = None,
    like: Annotated[str | None, typer.Option("--like", help="Apply this artifact's calibration (ranges, codebooks) instead of learning it: quantize "
                                                            "queries --like the corpus artifact.", show_default=False)] = None,
    dim: Annotated[int | None, typer.Option("--dim", min=1, max=o.INT_MAX, help="Keep the first N dimensions (Matryoshka truncation) and "
                                                                                "renormalise.", show_default=False)] = None,
    m: Annotated[int | None, typer.Option("--m", min=1, max=o.INT_MAX, help="PQ sub-quantizers; must divide the dimension (default: dim/8). --to pq "
                                                                            "only.", show_default=False)] = None,
    nbits: Annotated[int | None, typer.Option("--nbits", min=1, max=16, help="PQ bits per sub-quantizer (default 8). --to pq "
                                                                             "only.", show_default=False)] = None,
    train_size: Annotated[int | None, typer.Option("--train-size", min=1, max=o.INT_MAX, help="Vectors sampled to train the PQ codebooks (default "
                                                                                              "100000). --to pq only.", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, max=o.INT_MAX, help="Seed of the PQ training sample and k-means (default 0). --to pq "
                                                                                  "only.", show_default=False)] = None,
    output: o.Output = None,
    format: Annotated[o.TableFormat | None, typer.Option("--format", help="Output format (default: by extension; Arrow stream on "
                                                                          "stdout).", show_default=False)] = None,
    allow_mismatch: o.AllowMismatch = False,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Quantize float vectors; the calibration is stored in the output's metadata.

    int8 codes are the faiss SQ8 codes minus 128; build-index maps every kind to the matching faiss
    index without retraining, and search codes float queries as the index records.
    """
    from vecpipe.stages.compress import Quantize

    run_stage(Quantize(
        vectors=vectors, like=like, output=output, to=value(to), dim=dim, m=m, nbits=nbits, train_size=train_size,
        seed=seed, format=value(format), allow_mismatch=allow_mismatch,
    ), force, quiet)

"""vecpipe quantize: float vectors to int8/uint8/fp16/PQ codes, or Matryoshka-truncated vectors."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._progress import note
from vecpipe.cli._stage import begin


class QuantizeTo(str, Enum):
    int8 = "int8"
    uint8 = "uint8"
    fp16 = "fp16"
    pq = "pq"
    float32 = "float32"


@app.command("quantize")
def quantize(
    vectors: o.InputArg = "-",
    to: Annotated[Optional[QuantizeTo], typer.Option("--to", help="int8/uint8 (per-dimension ranges calibrated on the input), fp16, pq (product quantizer), or float32 (truncation only). Default: what --like records.", show_default=False)] = None,
    like: Annotated[Optional[str], typer.Option("--like", help="Apply this artifact's calibration (ranges, codebooks) instead of learning it: quantize queries --like the corpus artifact.", show_default=False)] = None,
    dim: Annotated[Optional[int], typer.Option("--dim", min=1, help="Keep the first N dimensions (Matryoshka truncation) and renormalise.", show_default=False)] = None,
    m: Annotated[Optional[int], typer.Option("--m", min=1, help="PQ sub-quantizers; must divide the dimension (default: dim/8).", show_default=False)] = None,
    nbits: Annotated[int, typer.Option("--nbits", min=1, max=16, help="PQ bits per sub-quantizer.")] = 8,
    train_size: Annotated[int, typer.Option("--train-size", min=1, help="Vectors sampled to train the PQ codebooks.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the PQ training sample and k-means.")] = 0,
    output: o.Output = None,
    format: Annotated[Optional[o.TableFormat], typer.Option("--format", help="Output format (default: by extension; Arrow stream on stdout).", show_default=False)] = None,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Quantize float vectors; the calibration is stored in the output's metadata.

    int8 codes are the faiss SQ8 codes minus 128; build-index maps every kind to the matching faiss
    index without retraining, and search codes float queries as the index records.
    """
    from vecpipe.compress import quantize as run

    fmt = format.value if format else None
    manifest = begin("quantize", output, {"vectors": vectors, "like": like}, {
        "to": to.value if to else None, "dim": dim, "m": m, "nbits": nbits, "train_size": train_size,
        "seed": seed, "format": fmt}, force, quiet)
    meta = run(vectors, output, to=to.value if to else None, like=like, dim=dim, m=m, nbits=nbits,
               train_size=train_size, seed=seed, fmt=fmt, manifest=manifest,
               on_progress=lambda msg: note(msg, quiet))
    if output not in (None, "-"):
        note(f"wrote {output}: {meta['compression']['method']}, dim {meta['dim']}", quiet)

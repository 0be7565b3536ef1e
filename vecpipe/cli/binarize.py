"""vecpipe binarize: float vectors to packed bits (1-bit sign, or 2..8-bit residual binarization)."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpipe.cli import app
from vecpipe.cli import options as o
from vecpipe.cli._stage import run_stage, value


@app.command("binarize")
def binarize(
    vectors: o.InputArg = "-",
    bits: Annotated[int | None, typer.Option("--bits", min=1, max=8, help="Bits per dimension: 1 = sign bits (Hamming search), 2..8 = residual "
                                                                          "binarization (asymmetric float scoring). Default: what --like records.",
                                                                          show_default=False)] = None,
    center: Annotated[bool, typer.Option("--center", help="1-bit: threshold each dimension at the corpus mean instead of 0 (not with --like).")] = False,
    like: Annotated[str | None, typer.Option("--like", help="Apply this artifact's thresholds/scales instead of learning them (binarize queries "
                                                            "--like the corpus).", show_default=False)] = None,
    output: o.Output = None,
    format: Annotated[o.TableFormat | None, typer.Option("--format", help="Output format (default: by extension; Arrow stream on "
                                                                          "stdout).", show_default=False)] = None,
    allow_mismatch: o.AllowMismatch = False,
    force: o.Force = False,
    quiet: o.Quiet = False,
) -> None:
    """Binarize float vectors into uint8 codes of ceil(dim * bits / 8) bytes.

    Bits are packed with numpy.packbits, big-endian within a byte (dimension 0 is the most significant
    bit of byte 0); a bit is 1 when the value is above the threshold. With 2..8 bits, r0 = x - mean,
    b_t = sign(r_{t-1}), alpha_t = mean |r_{t-1}| per dimension, r_t = r_{t-1} - alpha_t b_t; the bit
    planes b_1..b_T follow one another (bit t*dim + j). The mean and the alpha_t are stored in the metadata.
    """
    from vecpipe.stages.compress import Binarize

    run_stage(Binarize(vectors=vectors, like=like, output=output, bits=bits, center=center, format=value(format),
                       allow_mismatch=allow_mismatch), force, quiet)

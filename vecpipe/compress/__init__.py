"""Compression of embedding vectors: scalar (int8/uint8), fp16, product quantization, 1-bit sign and
residual multi-bit binarization, Matryoshka truncation. :mod:`vecpipe.compress.codecs` holds the code
layouts (a registry of codecs); :mod:`vecpipe.compress.artifact` codes a whole vectors artifact in
memory. Reading and writing files is the business of the quantize/binarize stages."""

from vecpipe.compress.artifact import Coded, binarize, quantize

__all__ = ["Coded", "binarize", "quantize"]

"""Compression of embedding vectors: scalar (int8/uint8), fp16, product quantization, 1-bit sign and
residual multi-bit binarization, Matryoshka truncation. See :mod:`vecpipe.compress.codecs` for the
code layouts and :mod:`vecpipe.compress.artifact` for the quantize/binarize stages."""

from vecpipe.compress.artifact import binarize, quantize, read_artifact_meta

__all__ = ["quantize", "binarize", "read_artifact_meta"]

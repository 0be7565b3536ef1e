"""Text encoders: texts in, float32 vectors out (one row per text, input order).

    from vecpipe.encode import load_encoder
    enc = load_encoder()                  # default model: all-MiniLM-L6-v2, int8 ONNX
    for arr in enc.encode_batches(lists_of_texts, on_progress=cb):
        ...                               # float32 [len(list), enc.dim], L2-normalised

This package never imports the command-line libraries; heavy imports (onnxruntime, tokenizers,
the default model's weights package) happen when an encoder is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vecpipe.encode.base import Encoder, ProgressFn
from vecpipe.encode.model import DEFAULT_NAME, DEFAULT_SHA256, ModelSpec, resolve_model

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_SHA256",
    "Encoder",
    "ModelSpec",
    "ProgressFn",
    "load_encoder",
    "resolve_model",
]


def load_encoder(
    model: str | os.PathLike[str] | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    prefix: str = "",
    batch_size: int | None = None,
    threads: int | None = None,
    device: str = "auto",
    normalize: bool | None = None,
    *,
    max_batch_tokens: int | None = None,
    window: int | None = None,
    precision: str | None = None,
    on_note: Callable[[str], object] | None = None,
    tokens: str | None = None,
) -> Encoder:
    """Resolve, verify and open a model.

    ``model``: None for the default model, else a directory with ``model.onnx`` and
    ``tokenizer.json``. ``pooling``/``max_length``: None to take them from the model's
    sentence-transformers config (mean pooling and 512 tokens when absent). ``prefix`` is
    prepended to every text. ``batch_size``: most texts per inference batch (None: 32 on the CPU, 256
    on a GPU); ``max_batch_tokens``
    additionally caps padded tokens per batch. ``window``: how many texts are gathered, sorted by
    length and batched together (bounds memory and read-ahead). ``threads``: onnxruntime intra-op
    threads (None: all cores). ``device``: auto, cpu or cuda. ``precision``: the GPU form of the model
    (:mod:`vecpipe.encode.gpu_graph`), fp16 by default on a GPU; fp16 on the CPU is a usage error.
    ``on_note``: called with one-line notes (building the GPU form). ``tokens``: None for one pooled
    vector per text; ``"keep"`` or ``"drop"`` for one vector per token of the last hidden state
    (padding never, the tokenizer's special tokens kept or dropped): ``encode_batches`` then yields
    a list of float32 ``[n_tokens, dim]`` arrays per input list. ``normalize``: L2-normalise the vectors
    (None: as the model says — a sentence-transformers model ending in a Normalize module, or a model
    exported by ``vecpipe model export``, records it — and True when it says nothing).

    Raises :class:`vecpipe.errors.ModelError` (missing/corrupt files, no CUDA provider) and
    :class:`vecpipe.errors.UsageError` (bad option values).
    """
    from vecpipe.encode.onnx import OnnxEncoder

    spec = resolve_model(model)
    return OnnxEncoder(
        spec,
        pooling=pooling,
        max_length=max_length,
        prefix=prefix,
        batch_size=batch_size,
        threads=threads,
        device=device,
        normalize=normalize if normalize is not None else (spec.normalize if spec.normalize is not None else True),
        max_batch_tokens=max_batch_tokens,
        window=window,
        precision=precision,
        on_note=on_note,
        tokens=tokens,
    )

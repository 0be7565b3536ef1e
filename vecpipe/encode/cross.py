"""Cross-encoders on onnxruntime: (query, document) pairs in, one relevance logit per pair out.

A cross-encoder directory holds ``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and
optionally ``token_type_ids``; one output of shape ``[batch, 1]`` or ``[batch]``: a logit per pair)
and ``tokenizer.json`` (whose post-processor joins a pair as ``[CLS] query [SEP] document [SEP]``
for BERT). A sentence-transformers ``CrossEncoder`` exported to ONNX is one. Pairs are truncated
longest-first at the maximum length, sorted by length and batched by a token budget, each batch
padded to its own longest pair; scores come back in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vecpipe.encode.model import read_max_length, read_max_positions, sha256_file
from vecpipe.errors import ModelError, UsageError

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 8192


class CrossEncoder:
    def __init__(self, model_dir: str | Path, max_length: int | None = None, batch_size: int | None = None,
                 device: str = "auto", threads: int | None = None, max_batch_tokens: int | None = None) -> None:
        from vecpipe.encode.onnx import _first_line, cpu_count, open_session, providers_for

        root = Path(model_dir)
        if not root.is_dir():
            raise ModelError(f"{root}: no such cross-encoder directory; give a directory with model.onnx and tokenizer.json")
        for needed in ("model.onnx", "tokenizer.json"):
            if not (root / needed).is_file():
                raise ModelError(f"{root}: not a cross-encoder directory: no {needed} (export a sentence-transformers "
                                 "CrossEncoder to ONNX: model.onnx and tokenizer.json)")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"--batch-size {batch_size}: must be at least 1")
        self.dir = root
        self.name = root.name
        self.sha256 = sha256_file(root / "model.onnx")
        positions = read_max_positions(root)
        self.max_length = int(max_length or read_max_length(root, positions))
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self.max_batch_tokens = int(max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS)
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
            raise ModelError(f"{root / 'tokenizer.json'}: cannot load tokenizer: {_first_line(exc)}") from None
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_length, strategy="longest_first")
        self._tokenizer = tok
        pad = tok.token_to_id("[PAD]")
        self._pad_id = int(pad) if pad is not None else 0
        self._session, _ = open_session(root / "model.onnx", providers_for(device), int(threads or cpu_count()))
        self._inputs = [i.name for i in self._session.get_inputs()]
        if "input_ids" not in self._inputs:
            raise ModelError(f"{root / 'model.onnx'}: no input_ids input; not a text cross-encoder")
        self._output = self._session.get_outputs()[0].name
        probe = self._run(*self._pad([self._tokenizer.encode("a", "b")]))
        if probe.size != 1:
            raise ModelError(f"{root / 'model.onnx'}: gives {probe.size} values per pair (output shape "
                             f"{list(probe.shape)}); a cross-encoder gives one logit per pair")

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "max_length": self.max_length}

    def _pad(self, encs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        width = max((len(e.ids) for e in encs), default=1) or 1
        ids = np.full((len(encs), width), self._pad_id, dtype=np.int64)
        types = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for r, e in enumerate(encs):
            n = len(e.ids)
            ids[r, :n] = e.ids
            types[r, :n] = e.type_ids
            mask[r, :n] = 1
        return ids, mask, types

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        from vecpipe.encode.onnx import _first_line

        feed = {}
        for name in self._inputs:
            feed[name] = ids if name == "input_ids" else mask if name == "attention_mask" else types
        try:
            (out,) = self._session.run([self._output], feed)
        except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
            raise ModelError(f"{self.dir / 'model.onnx'}: inference failed: {_first_line(exc)}") from None
        return np.asarray(out, dtype=np.float32)

    def score(self, pairs: Sequence[tuple[str, str]], on_progress: Callable[[int], object] | None = None) -> np.ndarray:
        """One logit per (query, document) pair, in input order."""
        out = np.empty(len(pairs), dtype=np.float32)
        step = 4096  # pairs tokenized at once
        for start in range(0, len(pairs), step):
            chunk = list(pairs[start : start + step])
            encs = self._tokenizer.encode_batch(chunk)
            lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            order = np.argsort(-lengths, kind="stable")
            i = 0
            while i < len(order):
                longest = max(int(lengths[order[i]]), 1)
                take = max(1, min(self.batch_size, self.max_batch_tokens // longest, len(order) - i))
                rows = order[i : i + take]
                logits = self._run(*self._pad([encs[r] for r in rows]))
                if logits.size != len(rows):
                    raise ModelError(f"{self.dir / 'model.onnx'}: gives {logits.size // max(1, len(rows))} values per pair; "
                                     "a cross-encoder gives one logit per pair")
                out[start + rows] = logits.reshape(-1)
                if on_progress:
                    on_progress(len(rows))
                i += take
        return out

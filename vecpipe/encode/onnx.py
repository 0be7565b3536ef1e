"""Text encoder on onnxruntime: tokenize, batch by length, run, pool, normalise.

The hot loop:

* Incoming lists are gathered into a *window* of up to ``window`` texts. The window is tokenized in
  one ``encode_batch`` call (Rust, parallel, releases the GIL), sorted by token length, and cut into
  inference batches of at most ``batch_size`` texts and at most ``max_batch_tokens`` padded tokens,
  each padded only to its own longest text, so almost no compute goes to padding.
* A background thread reads, tokenizes and pads window *k+1* while the calling thread runs the
  model on window *k*; onnxruntime releases the GIL in ``run``.
* Rows are scattered back to their input positions, so output order is input order; the arrays
  are yielded one per input list once their window is done (memory is bounded by the window).

* The softmax NaN guards of PyTorch-exported attention are stripped from the graph
  (:mod:`vecpipe.encode.graph`): the identity for our inputs, a fifth of the CPU time otherwise.

Pooling (mean over the attention mask, CLS, or max) and L2 normalisation are done in numpy.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecpipe.encode import runtime
from vecpipe.encode.base import Encoder, ProgressFn
from vecpipe.encode.graph import strip_softmax_nan_guards
from vecpipe.encode.model import POOLINGS, ModelSpec
from vecpipe.errors import InputError, ModelError, UsageError

DEVICES = ("auto", "cpu", "cuda")
#: what a multi-vector encoder does with the tokenizer's special tokens ([CLS], [SEP], ...)
TOKEN_MODES = ("keep", "drop")
DEFAULT_WINDOW = 2048
DEFAULT_MAX_BATCH_TOKENS = 4096
DEFAULT_BATCH_SIZE = 32
#: On a GPU: big batches (up to 256 texts of 256 tokens), windows of 4,096 texts, two tokenized at once
#: ahead of the model (bench/results/gpu-h200-run5.log: 7,905 docs/s through the CLI, 7,056 with 16,384).
GPU_WINDOW = 4096
GPU_MAX_BATCH_TOKENS = 65536
GPU_BATCH_SIZE = 256
#: On a GPU: batch widths padded up to a multiple of this many tokens. Each new input shape costs
#: onnxruntime's CUDA provider about 20 ms (bench/results/gpu-h200-run6.log: a window's batches ran at
#: 2.15M tokens/s the first time, 8.93M the second), and a corpus's batches otherwise come in every
#: width up to the maximum length; padding costs a few percent of compute.
GPU_WIDTH_MULTIPLE = 32
#: On a GPU: batches run by two threads at once (onnxruntime sessions take concurrent runs), so the
#: GPU has the next batch queued while the other thread takes the GIL back and stores its result.
GPU_RUNNERS = 2
#: On a GPU: cores left out of the tokenizer's thread pool (RAYON_NUM_THREADS, when the user has not
#: set it) for the threads that read, launch the model's kernels and write: a tokenizer on every core
#: delays the launches and the GPU waits.
GPU_SPARE_CORES = 2
#: On a GPU: the interpreter's thread switch interval (seconds) while batches run, so a runner whose
#: batch is done gets the GIL back from the preparing threads sooner than the default 5 ms.
GPU_SWITCH_INTERVAL = 0.0005


def _env_int(name: str) -> int | None:
    """A positive integer from the environment (tuning knobs), None when unset; one line when bad."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name}={text}: expected a positive integer")
    return int(text)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def providers_for(device: str) -> list[str]:
    ort = runtime.onnxruntime()
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError(f"--device cuda: onnxruntime has no CUDA provider here: {runtime.cuda_missing_reason()}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise UsageError(f"--device {device}: expected one of {', '.join(DEVICES)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def spinning(threads: int) -> bool:
    """Whether onnxruntime's CPU threads spin between operators (``VECPIPE_ENCODE_SPIN``: ``1``,
    ``0``, or ``auto``, the default). Spinning keeps a thread on its core for the next operator, which
    pays on an idle machine (300 SciFact docs 9% faster here) and costs on a busy one (17% slower,
    and worse the busier): a spinning thread takes the core another process was to use, and waits
    for its own threads that lost theirs. ``auto`` spins unless other processes are running on the
    cores this run's threads would take (see :func:`others_running`)."""
    value = os.environ.get("VECPIPE_ENCODE_SPIN", "auto").strip().lower()
    if value in ("0", "1"):
        return value == "1"
    if value != "auto":
        raise UsageError(f"VECPIPE_ENCODE_SPIN={value!r}: expected auto, 1 or 0")
    return others_running() < max(1, cpu_count() - threads) + 0.5


def others_running() -> float:
    """Runnable tasks besides this process right now: Linux's count of running tasks
    (``/proc/loadavg``), less this one, the least of four samples 5 ms apart (a passing task is
    not load). Elsewhere the 1-minute load average (which also counts this process's own recent
    work: an idle machine that just ran a batch looks busy to it for a minute)."""
    try:
        least = None
        for i in range(4):
            if i:
                time.sleep(0.005)
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0]) - 1
            least = running if least is None else min(least, running)
        return float(max(0, least or 0))
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def open_session(
    path: Path, providers: list[str], threads: int, rewrite: bool = True
) -> tuple[Any, bool]:
    """An onnxruntime session, and whether the softmax NaN guards were stripped (see graph.py)."""
    ort = runtime.onnxruntime()

    ort.set_default_logger_severity(3)  # errors only: warnings never reach the user's stderr
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if providers and providers[0] == "CUDAExecutionProvider":
        # The GPU does the work: one CPU thread for the few host-side nodes, and no thread that
        # spins between runs, so that every core is left to the tokenizer feeding the GPU.
        so.intra_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif not spinning(threads):
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if rewrite:
        try:
            edited = strip_softmax_nan_guards(path.read_bytes())
        except Exception:  # noqa: BLE001 - not a model we can parse: let onnxruntime say what is wrong
            edited = None
        if edited is not None:
            try:
                return ort.InferenceSession(edited, sess_options=so, providers=providers), True
            except Exception:  # noqa: BLE001 - e.g. external data files need the path: load as it is
                pass
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers), False
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"{path}: onnxruntime cannot load the model: {_first_line(exc)}") from None


@dataclass
class _Batch:
    rows: np.ndarray  # positions within the window
    feed: dict[str, np.ndarray]
    mask: np.ndarray  # [b, L] int64
    n_tokens: int
    keep: np.ndarray | None = None  # [b, L] bool: the tokens a multi-vector encoder returns


@dataclass
class _Window:
    sizes: list[int]
    n_texts: int
    batches: list[_Batch]


_DONE = object()


class OnnxEncoder(Encoder):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        prefix: str = "",
        batch_size: int | None = None,
        threads: int | None = None,
        device: str = "auto",
        normalize: bool = True,
        max_batch_tokens: int | None = None,
        window: int | None = None,
        rewrite: bool = True,
        precision: str | None = None,
        on_note: Any = None,
        tokens: str | None = None,
    ) -> None:
        if tokens is not None and tokens not in TOKEN_MODES:
            raise UsageError(f"--special-tokens {tokens}: expected one of {', '.join(TOKEN_MODES)}")
        if tokens is not None and precision not in (None, "auto"):
            raise UsageError("--precision: --multi-vector runs the model as it is (its prepared forms are for pooled vectors)")
        if pooling is not None and pooling not in POOLINGS:
            raise UsageError(f"--pooling {pooling}: expected one of {', '.join(POOLINGS)}")
        if max_length is not None:
            if max_length < 2:
                raise UsageError(f"--max-length {max_length}: must be at least 2")
            if max_length > spec.max_positions:
                raise UsageError(
                    f"--max-length {max_length}: the model {spec.name} has "
                    f"{spec.max_positions} positions at most"
                )
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"--batch-size {batch_size}: must be at least 1")
        if precision == "auto":
            precision = None
        if precision is not None and precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"--precision {precision}: expected auto, fp32, fp16 or int8")
        if threads is not None and threads < 1:
            raise UsageError(f"--threads {threads}: must be at least 1")
        if device not in DEVICES:
            raise UsageError(f"--device {device}: expected one of {', '.join(DEVICES)}")
        if prefix is None:
            prefix = ""

        self.spec = spec
        self.pooling = pooling or spec.pooling
        self.max_length = int(max_length or spec.max_length)
        self.prefix = prefix
        #: None: one pooled vector per text; "keep"/"drop": one vector per token, special tokens kept or dropped
        self.tokens = tokens
        self.normalize = bool(normalize)
        self.threads = int(threads or cpu_count())
        self._providers = providers_for(device)
        #: where the model runs: "cuda" when onnxruntime's CUDA provider leads, else "cpu"
        self.device = "cuda" if self._providers[0] == "CUDAExecutionProvider" else "cpu"
        if precision == "fp16" and self.device != "cuda":
            raise UsageError("--precision fp16 runs on a GPU only (--device cuda); on the CPU vecpipe runs fp32 or int8")
        if precision == "int8" and self.device == "cuda":
            raise UsageError("--precision int8 is the CPU form (--device cpu); on a GPU vecpipe runs fp16 or fp32")
        #: None for the model as it is (CPU, --precision fp32); "fp32"/"fp16" for its GPU form, "int8" for
        #: its CPU form (gpu_graph.py), the CPU's default
        self.precision = (precision or "fp16") if self.device == "cuda" else (None if precision == "fp32" else "int8")
        if tokens is not None:
            self.precision = None
        gpu = self.device == "cuda"
        self.batch_size = int(batch_size or (GPU_BATCH_SIZE if gpu else DEFAULT_BATCH_SIZE))
        self.max_batch_tokens = int(max_batch_tokens or (GPU_MAX_BATCH_TOKENS if gpu else DEFAULT_MAX_BATCH_TOKENS))
        self.window = int(window or _env_int("VECPIPE_ENCODE_WINDOW") or max(GPU_WINDOW if gpu else DEFAULT_WINDOW, self.batch_size))
        self.prepare_threads = _env_int("VECPIPE_ENCODE_PREPARE_THREADS") or (2 if gpu else 1)
        #: batch widths padded up to a multiple of this many tokens (fewer distinct shapes for the GPU)
        self.width_multiple = _env_int("VECPIPE_ENCODE_WIDTH_MULTIPLE") or (GPU_WIDTH_MULTIPLE if gpu else 1)
        #: threads running batches at once (pooled vectors only; token vectors run one at a time)
        self.runners = _env_int("VECPIPE_ENCODE_RUNNERS") or (GPU_RUNNERS if gpu else 1)
        if gpu and "RAYON_NUM_THREADS" not in os.environ and cpu_count() > GPU_SPARE_CORES + 1:
            # read by the tokenizer when its pool starts (the first batch encoded in this process)
            os.environ["RAYON_NUM_THREADS"] = str(cpu_count() - GPU_SPARE_CORES)

        self._tokenizer = self._load_tokenizer(spec.tokenizer_path)
        graph = None
        if self.precision is not None:
            from vecpipe.encode.gpu_graph import FormUnavailable, cached_graph

            try:
                graph = cached_graph(spec, self.precision, self.pooling, note=on_note)
            except FormUnavailable as exc:
                if precision is not None or self.device == "cuda":
                    raise
                # the CPU's default int8 form cannot be made of this model: run it as it is
                if on_note:
                    on_note(f"{spec.name} runs as it is (fp32), not in its int8 CPU form: {exc}")
                self.precision = None
        if graph is not None:
            self._session, self.rewritten = open_session(graph, self._providers, self.threads, rewrite=False)
        else:
            self._session, self.rewritten = open_session(
                spec.onnx_path, self._providers, self.threads, rewrite=rewrite
            )
        self._input_names = [i.name for i in self._session.get_inputs()]
        known = {"input_ids", "attention_mask", "token_type_ids"}
        unknown = [n for n in self._input_names if n not in known]
        if unknown or "input_ids" not in self._input_names:
            raise ModelError(
                f"{spec.onnx_path}: unsupported model inputs {self._input_names}; expected "
                "input_ids and optionally attention_mask, token_type_ids"
            )
        outputs = self._session.get_outputs()
        names = [o.name for o in outputs]
        self._output_name = "last_hidden_state" if "last_hidden_state" in names else names[0]
        self._dim = self._probe_dim()

    # -- setup ------------------------------------------------------------------------------

    def _load_tokenizer(self, path: Path) -> Any:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
            raise ModelError(f"{path}: cannot load tokenizer: {_first_line(exc)}") from None
        # tokenizer.json of sentence-transformers models often fixes padding/truncation at 128:
        # pad dynamically (ourselves, per batch) and truncate at our max length.
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_length)
        self._cut_chars = cut_chars(tok, self.max_length)
        pad_id = tok.token_to_id("[PAD]")
        if pad_id is None:
            pad_id = tok.token_to_id("<pad>")
        self._pad_id = int(pad_id) if pad_id is not None else 0
        return tok

    def _probe_dim(self) -> int:
        out = self._session.get_outputs()
        shape = next(o.shape for o in out if o.name == self._output_name)
        if shape and isinstance(shape[-1], int) and shape[-1] > 0 and len(shape) in (2, 3):
            return int(shape[-1])
        arr = self._run_raw(*self._pad([[self._pad_id, self._pad_id]]))
        return int(arr.shape[-1])

    # -- public -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def info(self) -> dict[str, Any]:
        info = {
            "name": self.spec.name,
            "sha256": self.spec.sha256,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "prefix": self.prefix,
            "normalize": self.normalize,
            "dim": self._dim,
        }
        if self.tokens is not None:  # one vector per token: the pooling is not applied
            info["pooling"] = None
            info["tokens"] = self.tokens
        if self.precision is not None:  # a prepared form (GPU fp16/fp32, CPU int8): recorded with the vectors
            info["precision"] = self.precision
            info["device"] = self.device
        return info

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def close(self) -> None:
        self._session = None

    def encode_batches(
        self,
        batches: Iterable[Sequence[str]],
        on_progress: ProgressFn | None = None,
    ) -> Iterator[np.ndarray]:
        if self._session is None:
            raise ModelError(f"{self.spec.name}: encoder is closed")
        return self._pipeline(iter(batches), on_progress)

    # -- hot loop ---------------------------------------------------------------------------

    def _pipeline(
        self, source: Iterator[Sequence[str]], on_progress: ProgressFn | None
    ) -> Iterator[np.ndarray]:
        jobs: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    jobs.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            # Windows are read in order and prepared (tokenized, padded) by ``prepare_threads``
            # workers, handed over in order: on a GPU two windows are prepared at once, so the
            # Python half of one (ids, padding) overlaps the tokenizer's parallel half of the other.
            from concurrent.futures import ThreadPoolExecutor

            pending: collections.deque[Any] = collections.deque()
            try:
                with ThreadPoolExecutor(max_workers=self.prepare_threads, thread_name_prefix="vecpipe-prepare") as pool:
                    for sizes, texts in self._windows(source):
                        pending.append(pool.submit(self._prepare, sizes, texts))
                        while len(pending) >= self.prepare_threads:
                            if not put(pending.popleft().result()):
                                return
                    while pending:
                        if not put(pending.popleft().result()):
                            return
                put(_DONE)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
                put(exc)
            finally:
                for fut in pending:
                    fut.cancel()

        worker = threading.Thread(target=produce, name="vecpipe-tokenize", daemon=True)
        worker.start()
        runners = None
        if self.runners > 1 and not self.tokens:
            from concurrent.futures import ThreadPoolExecutor

            runners = ThreadPoolExecutor(max_workers=self.runners, thread_name_prefix="vecpipe-run")
        switch = sys.getswitchinterval()
        if self.device == "cuda" and GPU_SWITCH_INTERVAL:
            sys.setswitchinterval(min(switch, GPU_SWITCH_INTERVAL))
        # windows whose batches are running: (window, its output, one future per batch or None)
        running: collections.deque[tuple[_Window, Any, list[Any] | None]] = collections.deque()
        progress = [0, 0]  # texts, tokens done

        def finish(window: _Window, out: Any, futures: list[Any] | None) -> Iterator[np.ndarray]:
            for i, b in enumerate(window.batches):
                if futures is not None:
                    out[b.rows] = futures[i].result()
                elif self.tokens:
                    for r, vecs in zip(b.rows, self._embed_tokens(b)):
                        out[r] = vecs
                else:
                    out[b.rows] = self._embed(b)
                progress[0] += len(b.rows)
                progress[1] += b.n_tokens
                if on_progress is not None:
                    on_progress(progress[0], progress[1])
            start = 0
            for n in window.sizes:
                yield out[start : start + n].copy() if len(window.sizes) > 1 else out
                start += n

        try:
            while True:
                item = jobs.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                window: _Window = item
                out: Any = [None] * window.n_texts if self.tokens else np.empty((window.n_texts, self._dim), dtype=np.float32)
                futures = [runners.submit(self._embed, b) for b in window.batches] if runners is not None else None
                running.append((window, out, futures))
                # with runners, the next window's batches are queued before this one is collected,
                # so the GPU does not wait at a window's end
                while len(running) > (1 if runners is not None else 0):
                    yield from finish(*running.popleft())
            while running:
                yield from finish(*running.popleft())
        finally:
            stop.set()
            if runners is not None:
                runners.shutdown(wait=True, cancel_futures=True)
            sys.setswitchinterval(switch)
            try:
                while True:
                    jobs.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=1)

    def _windows(self, source: Iterator[Sequence[str]]) -> Iterator[tuple[list[int], list[str]]]:
        sizes: list[int] = []
        texts: list[str] = []
        seen = 0  # texts in earlier windows, for error messages
        for lst in source:
            if isinstance(lst, (str, bytes)) or not hasattr(lst, "__len__"):
                raise InputError(
                    f"encode_batches expects lists of strings, got {type(lst).__name__}"
                )
            for i, t in enumerate(lst):
                if not isinstance(t, str):
                    raise InputError(
                        f"text {seen + len(texts) + i + 1}: expected a string, "
                        f"got {type(t).__name__}"
                    )
            sizes.append(len(lst))
            texts.extend(lst)
            if len(texts) >= self.window:
                seen += len(texts)
                yield sizes, texts
                sizes, texts = [], []
        if sizes:
            yield sizes, texts

    def _prepare(self, sizes: list[int], texts: list[str]) -> _Window:
        if self.prefix:
            texts = [self.prefix + t for t in texts]
        encs = self._encode(texts) if texts else []
        ids = [e.ids for e in encs]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        # Longest first: a batch's first text sets its padded length.
        order = np.argsort(-lengths, kind="stable")
        batches: list[_Batch] = []
        i = 0
        n = len(order)
        multiple = self.width_multiple
        while i < n:
            longest = max(int(lengths[order[i]]), 1)
            width = max(longest, min(-(-longest // multiple) * multiple, self.max_length))
            take = max(1, min(self.batch_size, self.max_batch_tokens // width, n - i))
            rows = order[i : i + take]
            input_ids, mask = self._pad([ids[r] for r in rows], width)
            keep = None
            if self.tokens == "drop":
                special, _ = self._pad([encs[r].special_tokens_mask for r in rows])
                keep = (mask > 0) & (special == 0)
            elif self.tokens == "keep":
                keep = mask > 0
            batches.append(
                _Batch(
                    rows=rows,
                    feed=self._feed(input_ids, mask),
                    mask=mask,
                    n_tokens=int(lengths[rows].sum()),
                    keep=keep,
                )
            )
            i += take
        return _Window(sizes=sizes, n_texts=n, batches=batches)

    def _encode(self, texts: list[str]) -> list[Any]:
        """Token ids of each text, truncated at the maximum length. Where the tokenizer splits on
        whitespace before anything else (BERT's WordPiece), a text far longer than the maximum is
        tokenized from a prefix cut at whitespace: its tokens are the first tokens of the whole
        text, so when the prefix fills the maximum length the result is the same; a prefix that
        does not is tokenized again whole. This saves the tokenizer the part that truncation drops."""
        cut_at = self._cut_chars
        if not cut_at:
            return list(self._tokenizer.encode_batch(texts, add_special_tokens=True))
        cut = []
        for t in texts:
            m = _WHITESPACE.search(t, cut_at) if len(t) > cut_at else None
            cut.append(t[: m.start()] if m else t)
        encs = list(self._tokenizer.encode_batch(cut, add_special_tokens=True))
        again = [i for i, (c, t, e) in enumerate(zip(cut, texts, encs)) if c is not t and len(e) < self.max_length]
        if again:
            for i, e in zip(again, self._tokenizer.encode_batch([texts[i] for i in again], add_special_tokens=True)):
                encs[i] = e
        return encs

    def _pad(self, seqs: list[list[int]], width: int = 0) -> tuple[np.ndarray, np.ndarray]:
        width = max(width, max((len(s) for s in seqs), default=1), 1)
        input_ids = np.full((len(seqs), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            input_ids[r, : len(s)] = s
            mask[r, : len(s)] = 1
        return input_ids, mask

    def _feed(self, input_ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {}
        for name in self._input_names:
            if name == "input_ids":
                feed[name] = input_ids
            elif name == "attention_mask":
                feed[name] = mask
            else:  # token_type_ids: single-segment input
                feed[name] = np.zeros_like(input_ids)
        return feed

    def _run_raw(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._run(self._feed(input_ids, mask))

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            (out,) = self._session.run([self._output_name], feed)
        except Exception as exc:  # noqa: BLE001 - a library boundary: any failure becomes one line
            raise ModelError(
                f"{self.spec.onnx_path}: inference failed: {_first_line(exc)}"
            ) from None
        return out

    def _embed_tokens(self, b: _Batch) -> list[np.ndarray]:
        """One float32 ``[n_tokens, dim]`` array per text of the batch: the last hidden state at the
        tokens ``b.keep`` marks (padding never; special tokens as ``tokens`` says), L2-normalised."""
        hidden = self._run(b.feed)
        if hidden.ndim != 3:
            raise ModelError(
                f"{self.spec.onnx_path}: output {self._output_name} has shape {hidden.shape}; --multi-vector needs "
                "token embeddings [batch, sequence, hidden] (a model whose graph pools cannot give them)"
            )
        assert b.keep is not None
        hidden = hidden.astype(np.float32, copy=False)
        out = []
        for r in range(hidden.shape[0]):
            vecs = np.ascontiguousarray(hidden[r][b.keep[r]])
            out.append(l2_normalize(vecs) if self.normalize else vecs)
        return out

    def _embed(self, b: _Batch) -> np.ndarray:
        hidden = self._run(b.feed)
        if hidden.ndim == 2:  # already pooled by the graph
            vecs = hidden.astype(np.float32, copy=False)
        elif hidden.ndim == 3:
            vecs = pool(hidden, b.mask, self.pooling)
        else:
            raise ModelError(
                f"{self.spec.onnx_path}: output {self._output_name} has shape {hidden.shape}; "
                "expected [batch, sequence, hidden] or [batch, hidden]"
            )
        if self.normalize:
            vecs = l2_normalize(vecs)
        return vecs


_WHITESPACE = re.compile(r"\s")
#: Pre-tokenizers that split on whitespace first: a text cut at whitespace tokenizes to a prefix of
#: the whole text's tokens (normalizers of these tokenizers work character by character).
_SPLITTING = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_LOCAL_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFKD", "NFC", "NFKC", "StripAccents"}
#: Characters kept per token of the maximum length before a text is cut (SciFact averages 4.4
#: characters a token; a prefix too short to fill the maximum is tokenized again whole).
CUT_CHARS_PER_TOKEN = 6


def cut_chars(tokenizer: Any, max_length: int) -> int:
    """Characters after which texts may be cut before tokenizing (0: never), see ``_encode``."""
    import json

    try:
        spec = json.loads(tokenizer.to_str())
    except (ValueError, AttributeError):
        return 0
    pre = spec.get("pre_tokenizer") or {}
    kinds = [p.get("type") for p in pre.get("pretokenizers", [])] if pre.get("type") == "Sequence" else [pre.get("type")]
    if not kinds or kinds[0] not in _SPLITTING:
        return 0
    if any(any(ch.isspace() for ch in str(t.get("content", ""))) for t in spec.get("added_tokens") or []):
        return 0  # an added token with a space in it could straddle the cut
    norm = spec.get("normalizer") or {}
    norms = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm] if norm else []
    if any(n.get("type") not in _LOCAL_NORMALIZERS for n in norms):
        return 0
    return CUT_CHARS_PER_TOKEN * max_length


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Pool ``hidden [b, L, d]`` over the real tokens given by ``mask [b, L]``."""
    hidden = hidden.astype(np.float32, copy=False)
    if mode == "cls":
        return np.ascontiguousarray(hidden[:, 0, :])
    m = mask.astype(np.float32)
    if mode == "mean":
        summed = np.einsum("bld,bl->bd", hidden, m)
        counts = np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
        return (summed / counts).astype(np.float32, copy=False)
    if mode == "max":
        masked = np.where(m[:, :, None] > 0, hidden, np.float32(-1e9))
        return masked.max(axis=1).astype(np.float32, copy=False)
    raise UsageError(f"--pooling {mode}: expected one of {', '.join(POOLINGS)}")


def l2_normalize(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

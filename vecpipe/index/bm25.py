"""BM25 as an index kind: text records in, a sparse index in a ``.vpi`` container out, text queries searched.

Scoring is bm25s's (BM25 on sparse matrices: each term's column holds its precomputed score per
document, so a query's scores are a sum of a few columns), tokenizing too: bm25s's tokenizer
(lowercase, ``\\b\\w\\w+\\b`` words, stopwords) with a PyStemmer stemmer, the same settings at index
and query time. The scores vecpipe writes are bm25s's ``get_scores_from_ids``, query by query.

The container's index section holds the sparse matrix (``data``, ``indices``, ``indptr``; the
non-occurrence array of BM25L and BM25+) and the vocabulary, in a small deterministic layout (a JSON
header, then 64-byte aligned arrays): reruns are byte-identical. Building streams the records:
memory holds the token ids and the index, never the texts.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import vpi
from vecpipe.index.search import id_ranks, run_batch

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
DEFAULTS = {"k1": 1.2, "b": 0.75, "method": "lucene", "stemmer": "english", "stopwords": "english"}
SPLITTER = r"(?u)\b\w\w+\b"
_ALIGN = 64
_MAGIC = b"VPBM25\0\0"


def stemmer_names() -> list[str]:
    try:
        import Stemmer
    except ImportError:
        return []
    return sorted(Stemmer.algorithms())


#: Stopword lists bm25s ships, by the names it takes.
STOPWORDS = ("english", "english_plus", "german", "dutch", "french", "spanish", "portuguese", "italian", "russian",
             "swedish", "norwegian", "chinese", "turkish", "korean", "danish")


def check_options(k1: float, b: float, method: str, stemmer: str, stopwords: str) -> None:
    """Usage errors (exit 2) for BM25 options, before any work."""
    if not (k1 >= 0 and np.isfinite(k1)):
        raise UsageError(f"--k1 {k1}: must be a finite number >= 0")
    if not (0 <= b <= 1):
        raise UsageError(f"--b {b}: must be between 0 and 1")
    if method not in METHODS:
        raise UsageError(f"--bm25-method {method}: choose one of {', '.join(METHODS)}")
    if stemmer != "none" and stemmer not in stemmer_names():
        raise UsageError(f"--stemmer {stemmer}: choose none or one of {', '.join(stemmer_names()) or '(PyStemmer is not installed)'}")
    if stopwords != "none" and stopwords not in STOPWORDS:
        raise UsageError(f"--stopwords {stopwords}: choose none or one of {', '.join(STOPWORDS)}")


def _tokenizer(stemmer: str, stopwords: str) -> Any:
    try:
        from bm25s.tokenization import Tokenizer
    except ImportError:
        raise InputError("BM25 needs bm25s and PyStemmer: pip install bm25s PyStemmer") from None
    stem: Callable[[str], str] | None = None
    if stemmer != "none":
        import Stemmer

        stem = Stemmer.Stemmer(stemmer).stemWord
    words: Any = None if stopwords == "none" else stopwords
    return Tokenizer(lower=True, splitter=SPLITTER, stopwords=words, stemmer=stem)


def _vocab(tok: Any) -> dict[str, int]:
    return dict(tok.get_vocab_dict())


# -- the index section -----------------------------------------------------------------------------


def pack(arrays: dict[str, np.ndarray], header: dict[str, Any]) -> bytes:
    """A JSON header and aligned arrays, deterministic byte for byte."""
    entries = []
    offset = 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        entries.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "nbytes": arr.nbytes})
        offset += -(-arr.nbytes // _ALIGN) * _ALIGN
    head = json.dumps({**header, "arrays": entries}, sort_keys=True, separators=(",", ":")).encode()
    start = -(-(len(_MAGIC) + 8 + len(head)) // _ALIGN) * _ALIGN
    out = bytearray(start + offset)
    out[: len(_MAGIC)] = _MAGIC
    out[len(_MAGIC): len(_MAGIC) + 8] = struct.pack("<Q", len(head))
    out[len(_MAGIC) + 8: len(_MAGIC) + 8 + len(head)] = head
    for (_name, arr), entry in zip(arrays.items(), entries):
        raw = np.ascontiguousarray(arr).tobytes()
        out[start + entry["offset"]: start + entry["offset"] + len(raw)] = raw
    return bytes(out)


def unpack(blob: Any, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    view = memoryview(blob)
    if bytes(view[: len(_MAGIC)]) != _MAGIC:
        raise InputError(f"{name}: the BM25 index inside is not readable; rebuild it with vecpipe build-index --spec BM25")
    (n,) = struct.unpack("<Q", view[len(_MAGIC): len(_MAGIC) + 8])
    header = json.loads(bytes(view[len(_MAGIC) + 8: len(_MAGIC) + 8 + n]))
    start = -(-(len(_MAGIC) + 8 + n) // _ALIGN) * _ALIGN
    arrays = {}
    for e in header.pop("arrays"):
        raw = view[start + e["offset"]: start + e["offset"] + e["nbytes"]]
        arrays[e["name"]] = np.frombuffer(raw, dtype=np.dtype(e["dtype"])).reshape(e["shape"])
    return arrays, header


# -- build -------------------------------------------------------------------------------------------


def build(records: Iterator[pa.RecordBatch], name: str, k1: float, b: float, method: str, stemmer: str,
          stopwords: str, on_rows: Callable[[int], object] | None = None) -> tuple[pa.Array, bytes, dict[str, Any]]:
    """(ids, index section, metadata) of a BM25 index over (id, text) record batches."""
    import bm25s

    tok = _tokenizer(stemmer, stopwords)
    ids: list[pa.Array] = []
    token_ids: list[list[int]] = []
    for batch in records:
        ids.append(batch.column(0))
        token_ids.extend(tok.streaming_tokenize(batch.column(1).to_pylist(), update_vocab=True, allow_empty=False))
        if on_rows:
            on_rows(batch.num_rows)
    n = len(token_ids)
    if n == 0:
        raise InputError(f"{name}: no records found; the input is empty")
    vocab = _vocab(tok)
    if not any(t != "" for t in vocab):
        raise InputError(f"{name}: no indexable token in {n} records (words of two or more letters or digits, "
                         f"not stopwords); check --text-field, --stopwords")
    retriever = bm25s.BM25(k1=k1, b=b, method=method)
    retriever.index((token_ids, vocab), show_progress=False)
    scores = retriever.scores
    arrays: dict[str, np.ndarray] = {"data": np.asarray(scores["data"], np.float32), "indices": np.asarray(scores["indices"], np.int32),
              "indptr": np.asarray(scores["indptr"], np.int64)}
    if getattr(retriever, "nonoccurrence_array", None) is not None:
        arrays["nonoccurrence"] = np.asarray(retriever.nonoccurrence_array, np.float32)
    tokens = [""] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    params = {"k1": k1, "b": b, "method": method, "stemmer": stemmer, "stopwords": stopwords, "splitter": SPLITTER,
              "lower": True, "bm25s": bm25s.__version__}
    stop = sorted(tok.stopwords) if tok.stopwords else []
    blob = pack(arrays, {"vocab": tokens, "num_docs": int(scores["num_docs"]), "stopword_list": stop, **params})
    meta = {"index_kind": "bm25", "spec": "BM25", "metric": "bm25", "count": n, "dim": None,
            "bm25": {**params, "vocabulary": len(tokens), "documents": n, "postings": len(arrays["data"])}}
    return pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids]), blob, meta


# -- search ------------------------------------------------------------------------------------------


class QueryTokenizer:
    """bm25s's tokenizer at query time (``update_vocab=False``), without importing bm25s (and numba):
    lowercase, the same word pattern, the index's stopwords, the same stemmer, known terms only."""

    def __init__(self, vocab: dict[str, int], stopwords: list[str], stemmer: str):
        import re

        self.vocab = vocab
        self.stopwords = frozenset(stopwords)
        self.split = re.compile(SPLITTER).findall
        self.stem: Callable[[str], str] | None = None
        if stemmer != "none":
            import Stemmer

            self.stem = Stemmer.Stemmer(stemmer).stemWord
        self._cache: dict[str, int | None] = {}

    def ids(self, text: str) -> list[int]:
        out = []
        for word in self.split(text.lower()):
            tid = self._cache.get(word, -1)
            if tid == -1:
                tid = None if word in self.stopwords else self.vocab.get(self.stem(word) if self.stem else word)
                self._cache[word] = tid
            if tid is not None:
                out.append(tid)
        return out


class Bm25Index:
    """A loaded BM25 index: text queries in, (scores, labels) out, ties ordered by docid."""

    text_queries = True
    binary = False
    compression = None

    def __init__(self, container: vpi.Container, name: str):
        arrays, header = unpack(container.index_bytes, name)
        self.meta = container.meta
        self.name = name
        self.ids = container.ids
        p = self.meta.get("bm25") or {}
        self.data, self.indices, self.indptr = arrays["data"], arrays["indices"], arrays["indptr"]
        self.nonoccurrence = arrays.get("nonoccurrence")
        self.num_docs = int(header["num_docs"])
        vocab = {t: i for i, t in enumerate(header["vocab"]) if t != ""}
        self.tokenizer = QueryTokenizer(vocab, header.get("stopword_list") or [], p.get("stemmer", "english"))
        self._id_rank = id_ranks(self.ids)
        self.empty_queries = 0
        if len(self.ids) != self.num_docs or len(self.indptr) < 1:
            raise InputError(f"{name}: index holds {self.num_docs} documents but {len(self.ids)} ids; rebuild it")

    def scores_of(self, token_ids: list[int]) -> np.ndarray:
        """bm25s's sum of the query terms' columns (its numpy scorer, term by term), plus the
        non-occurrence scores of BM25L and BM25+."""
        scores = np.zeros(self.num_docs, dtype=np.float32)
        for t in token_ids:
            start, end = self.indptr[t], self.indptr[t + 1]
            np.add.at(scores, self.indices[start:end], self.data[start:end])
        if self.nonoccurrence is not None:
            scores += self.nonoccurrence[np.asarray(token_ids, np.int64)].sum()
        return scores

    @property
    def dim(self) -> int:
        return 0

    @property
    def metric(self) -> str:
        return "bm25"

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        return None

    def applies(self, param: str) -> bool:
        return False

    def use_device(self, device: str, note: Callable[[str], object] | None = None) -> str:
        if device == "cuda" and note:
            note(f"{self.name} (BM25) is searched on the CPU")
        return "cpu"

    def query_ids(self, texts: list[str]) -> list[list[int]]:
        return [self.tokenizer.ids(t) for t in texts]

    def search(self, texts: Any, k: int, qmeta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.ids)
        k_eff = min(k, n)
        queries = self.query_ids(list(texts))
        scores = np.full((len(queries), k_eff), -np.inf, np.float32)
        labels = np.full((len(queries), k_eff), -1, np.int64)
        for row, ids in enumerate(queries):
            if not ids:  # no indexed term: nothing to rank (bm25s would rank every document at 0)
                self.empty_queries += 1
                continue
            s = self.scores_of(ids)
            if k_eff < n:
                top = np.argpartition(-s, k_eff - 1)[:k_eff]
                kth = s[top].min()
                top = np.flatnonzero(s >= kth)  # every tie of the k-th score, ordered by docid below
            else:
                top = np.arange(n)
            order = np.lexsort((self._id_rank[top], -s[top]))[:k_eff]
            scores[row, : len(order)] = s[top[order]]
            labels[row, : len(order)] = top[order]
        return scores, labels

    def order(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return scores, labels

    def run_batch(self, qids: pa.Array, scores: np.ndarray, labels: np.ndarray) -> pa.RecordBatch:
        return run_batch(self.ids, qids, scores, labels)


def load(container: vpi.Container, name: str) -> Bm25Index:
    return Bm25Index(container, name)

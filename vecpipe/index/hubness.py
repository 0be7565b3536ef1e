"""Hubness reduction at search time: QB-Norm and DBNorm as one search over an augmented index.

Hubs are documents that turn up in the top-k of very many queries whatever they ask. Both methods
divide a document's similarity by how similar it already is to a bank of other vectors (an inverted
softmax), derived here from the papers rather than the reference code:

- QB-Norm (Bogolin et al., CVPR 2022, "Cross Modal Retrieval with Querybank Normalisation"), with
  its inverted softmax and no activation set:
  ``score(q, d) = B<q, d> - log Z_Q(d)``, ``Z_Q(d) = sum over bank queries b of exp(B<b, d>)``.
- DBNorm (Wang et al., EMNLP 2023, "Balance Act: Mitigating Hubness in Cross-Modal Retrieval with
  Query and Gallery Banks"), the dual inverted softmax: the query-bank term times a gallery-bank term,
  ``exp(B<q,d>) / Z_Q(d) * exp(B<q,d>) / Z_G(d)``, whose log is
  ``2B<q, d> - log Z_Q(d) - log Z_G(d)``, ``Z_G(d) = sum over gallery vectors g != d of exp(B<g, d>)``
  (the gallery bank here is the indexed documents themselves, each without itself).

Either way the correction is one number per document, ``log Z(d)``, computed once per index and bank
(:func:`log_z`). Since ``[c B q, -1] . [d, log Z(d)] = c B <q, d> - log Z(d)``, one inner-product
search over the documents with ``log Z(d)`` appended as an extra dimension (:class:`HubnessSearch`)
ranks exactly as the formula does, at the cost of a flat search.

:func:`hubness_stats` measures hubness of a result list: the skewness of the k-occurrence
distribution (how many top-k lists each document is in) and the share of documents in none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vecpipe.errors import InputError
from vecpipe.metric import l2_normalize

METHODS = ("qbnorm", "dbnorm")
DEFAULT_BETA = 20.0
CHUNK = 2048


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.asarray((np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top).squeeze(axis))


def query_bank_log_z(docs: np.ndarray, bank: np.ndarray, beta: float) -> np.ndarray:
    """log sum_b exp(beta <b, d>) for every document row (float64)."""
    out = np.empty(len(docs), dtype=np.float64)
    bank64 = np.asarray(bank, dtype=np.float64)
    for start in range(0, len(docs), CHUNK):
        sims = bank64 @ np.asarray(docs[start:start + CHUNK], dtype=np.float64).T
        out[start:start + CHUNK] = _logsumexp(beta * sims, axis=0)
    return out


def gallery_bank_log_z(docs: np.ndarray, beta: float) -> np.ndarray:
    """log sum_{g != d} exp(beta <g, d>) over the documents themselves (float64)."""
    n = len(docs)
    out = np.empty(n, dtype=np.float64)
    all64 = np.asarray(docs, dtype=np.float64)
    for start in range(0, n, CHUNK):
        sims = beta * (all64[start:start + CHUNK] @ all64.T)
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf
        out[start:start + CHUNK] = _logsumexp(sims, axis=1)
    return out


def log_z(method: str, docs: np.ndarray, bank: np.ndarray, beta: float) -> np.ndarray:
    """The per-document correction ``log Z(d)`` of ``method`` (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(method)
    out = query_bank_log_z(docs, bank, beta)
    if method == "dbnorm":
        if len(docs) < 2:
            raise InputError("--hubness dbnorm needs an index of two documents or more (the gallery bank is the other documents)")
        out += gallery_bank_log_z(docs, beta)
    return out


def query_scale(method: str, beta: float) -> float:
    """What the query is multiplied by in the augmented search: B (QB-Norm) or 2B (DBNorm)."""
    return (2.0 if method == "dbnorm" else 1.0) * beta


def direct_scores(method: str, queries: np.ndarray, docs: np.ndarray, logz: np.ndarray, beta: float) -> np.ndarray:
    """The normalised scores of every (query, document) by the formula itself (float64; for tests)."""
    sims = np.asarray(queries, dtype=np.float64) @ np.asarray(docs, dtype=np.float64).T
    return query_scale(method, beta) * sims - logz[None, :]


def unit_rows(matrix: np.ndarray, metric: str) -> np.ndarray:
    return l2_normalize(matrix) if metric == "cos" else np.ascontiguousarray(matrix, dtype=np.float32)


class HubnessSearch:
    """One exact inner-product search over ``[d, log Z(d)]`` with queries ``[c B q, -1]``."""

    def __init__(self, docs: np.ndarray, logz: np.ndarray, method: str, beta: float, metric: str):
        import faiss

        if metric not in ("ip", "cos"):
            raise InputError(f"--hubness applies to inner-product and cosine indexes; this one is {metric}")
        self.method, self.beta, self.metric = method, beta, metric
        docs = unit_rows(docs, metric)
        aug = np.empty((len(docs), docs.shape[1] + 1), dtype=np.float32)
        aug[:, :-1] = docs
        aug[:, -1] = logz
        self.index: Any = faiss.IndexFlatIP(aug.shape[1])
        self.index.add(aug)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels), unsorted ties: the caller orders them (ties by docid)."""
        q = unit_rows(queries, self.metric)
        aug = np.empty((len(q), q.shape[1] + 1), dtype=np.float32)
        aug[:, :-1] = q * np.float32(query_scale(self.method, self.beta))
        aug[:, -1] = -1.0
        return self.index.search(aug, min(k, self.index.ntotal))


def hubness_stats(labels: np.ndarray, n_docs: int, k: int | None = None) -> dict[str, float]:
    """Skewness of the k-occurrence distribution and the share of documents in no top-k list."""
    lab = labels if k is None else labels[:, :k]
    lab = lab[lab >= 0]
    counts = np.bincount(lab, minlength=n_docs).astype(np.float64)
    mu, sd = counts.mean(), counts.std()
    skew = float(((counts - mu) ** 3).mean() / sd**3) if sd > 0 else 0.0
    return {"skewness": skew, "never_retrieved": float((counts == 0).mean()), "max_occurrence": float(counts.max(initial=0))}

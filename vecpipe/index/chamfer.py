"""Exact Chamfer (late-interaction, MaxSim) rescoring of a run's candidates.

``Chamfer(Q, P) = sum over q in Q of max over p in P of <q, p>`` (0 for a query without vectors;
a document without vectors contributes no maximum: its score is 0 too).

The document token vectors are read as a stream, batch by batch, and only the candidates' rows are
scored and dropped: memory holds one batch of documents and the query token vectors of one chunk of
queries (chunks are cut by a budget of token vectors; with more than one chunk the document table
is read once per chunk, so it must be a regular file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpipe.errors import InputError

#: query token vectors held at once (the document table is read once per chunk of queries)
QUERY_TOKEN_BUDGET = 1 << 21


def chamfer(q: np.ndarray, p: np.ndarray) -> float:
    """Chamfer similarity of two sets of vectors (rows)."""
    if len(q) == 0 or len(p) == 0:
        return 0.0
    return float((q @ p.T).max(axis=1).sum())


def chamfer_scores(
    qids: pa.Array,
    docids: pa.Array,
    queries: tuple[list[str], np.ndarray, np.ndarray],
    open_docs: Callable[[], Iterator[tuple[pa.Array, np.ndarray, np.ndarray, dict[str, Any]]]],
    *,
    passes_allowed: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Chamfer score of every (qid, docid) pair of a run: (scores float32, found bool) per row.

    ``queries``: (ids, flat token vectors, offsets) of the query sets; ``open_docs()``: a fresh
    stream of ``(ids, flat, offsets, meta)`` batches of the document sets. A pair whose query or
    document has no vectors is not found (score 0).
    """
    q_ids, q_flat, q_off = queries
    q_pos = {q: i for i, q in enumerate(q_ids)}
    q_list, d_list = qids.to_pylist(), docids.to_pylist()
    n = len(q_list)
    scores = np.zeros(n, dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    q_index = np.array([q_pos.get(q, -1) for q in q_list], dtype=np.int64)
    # chunks of queries (by position among the run's queries) within the token budget
    used = np.unique(q_index[q_index >= 0])
    chunks: list[np.ndarray] = []
    start, tokens = 0, 0
    for i, qi in enumerate(used):
        t = int(q_off[qi + 1] - q_off[qi])
        if tokens and tokens + t > QUERY_TOKEN_BUDGET:
            chunks.append(used[start:i])
            start, tokens = i, 0
        tokens += t
    if start < len(used):
        chunks.append(used[start:])
    if len(chunks) > 1 and not passes_allowed:
        raise InputError("the run's queries hold more token vectors than fit at once; give the document vectors as a file, "
                         "not a stream, so that they can be read once per chunk of queries")
    for chunk in chunks:
        in_chunk = np.isin(q_index, chunk)
        rows_by_doc: dict[str, list[int]] = {}
        for row in np.flatnonzero(in_chunk):
            rows_by_doc.setdefault(d_list[row], []).append(int(row))
        for ids, flat, offsets, _meta in open_docs():
            for j, docid in enumerate(ids.to_pylist()):
                rows = rows_by_doc.get(docid)
                if rows is None:
                    continue
                p = flat[offsets[j]:offsets[j + 1]]
                found[rows] = True
                if len(p) == 0:
                    continue
                qs = q_index[rows]
                spans = [(int(q_off[qi]), int(q_off[qi + 1])) for qi in qs]
                stacked = np.concatenate([q_flat[a:b] for a, b in spans]) if spans else q_flat[:0]
                if len(stacked) == 0:
                    continue
                best = (stacked @ p.T).max(axis=1)
                bounds = np.cumsum([0] + [b - a for a, b in spans])
                sums = np.zeros(len(rows), dtype=np.float64)
                some = bounds[:-1] < bounds[1:]  # queries without vectors score 0
                sums[some] = np.add.reduceat(best, bounds[:-1][some])
                scores[rows] = sums
                if on_progress is not None:
                    on_progress(len(rows))
    found &= q_index >= 0
    return scores, found


def missing_pairs(qids: pa.Array, docids: pa.Array, found: np.ndarray) -> tuple[int, int]:
    """(queries, documents) of the run that have no token vectors."""
    mask = pa.array(~found)
    return (len(pc.unique(pc.filter(qids, mask))), len(pc.unique(pc.filter(docids, mask))))

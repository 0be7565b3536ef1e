"""Document vectors read back by id, and vector pseudo-relevance feedback (Rocchio) over them.

:class:`DocSource` gives the float vectors of indexed documents, either from the index itself (flat
float storage: Flat, HNSW..Flat, IVF..Flat, read without loss) or from a full-precision vectors file
(``--rescore``). :class:`Feedback` re-queries with ``A q + B mean(top-K document vectors)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpipe.errors import InputError

DEFAULT_ALPHA = 1.0
DEFAULT_BETA = 0.5
#: faiss index types whose stored vectors come back exactly.
EXACT_STORAGE = ("IndexFlat", "IndexFlatIP", "IndexFlatL2", "IndexHNSWFlat", "IndexIVFFlat", "IndexIDMap", "IndexIDMap2")


class DocSource:
    """Float vectors of the indexed documents, by label (position in the index) or by docid."""

    def __init__(self, loaded: Any, docs: Any = None, option: str = "--prf"):
        self.loaded = loaded
        self.docs = docs  # a vecpipe.index.rescore.DocVectors, or None: read from the index
        self._all: np.ndarray | None = None
        if docs is None:
            self._check_index(option)

    def _check_index(self, option: str) -> None:
        import faiss

        loaded = self.loaded
        kind = type(faiss.downcast_index(loaded.index)).__name__ if not loaded.binary else "binary"
        spann = loaded.meta.get("index_kind") == "spann"  # its in-memory graph holds the heads, not the documents
        if spann or loaded.binary or loaded.compression is not None or kind not in EXACT_STORAGE:
            raise InputError(f"{option}: {loaded.name} ({loaded.meta.get('spec')}) does not keep its vectors exactly; "
                             "give the full-precision document vectors with --rescore VECTORS")

    @property
    def name(self) -> str:
        return self.docs.name if self.docs is not None else self.loaded.name

    def all(self) -> np.ndarray:
        """Every indexed document's vector, in index order (float32)."""
        if self._all is not None:
            return self._all
        if self.docs is None:
            import faiss

            index = self.loaded.index
            ivf = faiss.try_extract_index_ivf(index)
            if ivf is not None:
                ivf.make_direct_map()
            self._all = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
        else:
            self._all = self.by_ids(self.loaded.ids)
        return self._all

    def by_ids(self, docids: pa.Array) -> np.ndarray:
        """The vectors of ``docids`` (unique ids of indexed documents), in that order."""
        if self.docs is None:
            labels = np.asarray(pc.index_in(docids, value_set=self.loaded.ids).fill_null(-1), dtype=np.int64)
            if (labels < 0).any():
                raise InputError(f"{self.loaded.name}: holds no document {docids[int(np.flatnonzero(labels < 0)[0])].as_py()!r}")
            return self.all()[labels]
        out: np.ndarray | None = None
        found = np.zeros(len(docids), dtype=bool)
        for pos, rows in self.docs.fetch(docids):
            if out is None:
                out = np.zeros((len(docids), rows.shape[1]), dtype=np.float32)
            out[pos] = rows
            found[pos] = True
        if not found.all():
            missing = docids[int(np.flatnonzero(~found)[0])].as_py()
            raise InputError(f"{self.docs.name}: lacks document {missing!r} of {self.loaded.name}; "
                             "give the vectors the index was built from")
        assert out is not None
        return out


class Feedback:
    """Rocchio re-querying: ``A q + B mean(vectors of the query's top-K results)``."""

    def __init__(self, source: DocSource, k: int, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                 metric: str = "ip"):
        self.source, self.k, self.alpha, self.beta, self.metric = source, k, alpha, beta, metric

    def expand(self, qids: pa.Array, queries: np.ndarray, first: pa.RecordBatch) -> np.ndarray:
        """New query vectors from the first-pass run batch of ``qids`` (queries without results keep theirs)."""
        if queries.dtype.kind != "f":
            raise InputError("--prf needs float query vectors (embed output), not query codes")
        top = first.filter(pc.less_equal(first.column("rank"), self.k))
        if top.num_rows == 0:
            return queries
        docids = top.column("docid")
        unique = pc.unique(docids)
        vectors = self.source.by_ids(unique)
        if self.metric == "cos":
            from vecpipe.metric import l2_normalize

            vectors = l2_normalize(vectors, copy=False)
        rows = vectors[np.asarray(pc.index_in(docids, value_set=unique), dtype=np.int64)]
        qpos = np.asarray(pc.index_in(top.column("qid"), value_set=qids), dtype=np.int64)
        if vectors.shape[1] != queries.shape[1]:
            raise InputError(f"{self.source.name}: document vectors have dimension {vectors.shape[1]} but the queries "
                             f"{queries.shape[1]}; give the vectors the index was built from")
        sums = np.zeros(queries.shape, dtype=np.float64)
        np.add.at(sums, qpos, rows)
        counts = np.bincount(qpos, minlength=len(queries)).astype(np.float64)
        base = np.asarray(queries, dtype=np.float64)
        if self.metric == "cos":
            norms = np.linalg.norm(base, axis=1, keepdims=True)
            base = np.divide(base, norms, out=np.zeros_like(base), where=norms > 0)
        has = counts > 0
        out = base.copy()
        out[has] = self.alpha * base[has] + self.beta * sums[has] / counts[has, None]
        return out.astype(np.float32)

"""Load a ``.vpi`` container and search it with query vectors, producing run batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import vpi
from vecpipe.index.build import apply_params
from vecpipe.index.metric import prepare, scores_from_distances

RUN_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string()), ("rank", pa.int32()), ("score", pa.float32())])


@dataclass
class LoadedIndex:
    index: Any
    ids: pa.Array
    meta: dict[str, Any]
    name: str

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    def __post_init__(self) -> None:
        self._scan = None
        # Position of each stored id in sorted order: ties are broken by docid, ascending.
        order = np.argsort(np.asarray(self.ids.to_numpy(zero_copy_only=False), dtype=object), kind="stable")
        self._id_rank = np.empty(len(order), dtype=np.int64)
        self._id_rank[order] = np.arange(len(order))

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        params = dict(self.meta.get("search_params", {}))
        if nprobe:
            params["nprobe"] = nprobe
        if ef_search:
            params["efSearch"] = ef_search
        apply_params(self.index, params)

    def check_queries(self, dim: int, meta: dict[str, Any], name: str) -> None:
        comp = self.compression or {}
        qdim = int((meta or {}).get("dim") or dim) if (meta or {}).get("compression") else dim
        if qdim != self.dim and qdim != comp.get("source_dim"):
            raise InputError(
                f"{name}: queries have dimension {qdim} but {self.name} holds {self.dim}-dimensional vectors; "
                "embed the queries with the model the index records"
            )
        qmodel, imodel = (meta or {}).get("model") or {}, self.meta.get("model") or {}
        if qmodel.get("sha256") and imodel.get("sha256") and qmodel["sha256"] != imodel["sha256"]:
            raise InputError(
                f"{name}: queries were embedded with {qmodel.get('name')} but {self.name} was built with "
                f"{imodel.get('name')}; embed the queries with the index's model"
            )

    @property
    def binary(self) -> bool:
        return bool(self.meta.get("binary"))

    @property
    def compression(self) -> dict[str, Any] | None:
        comp = self.meta.get("vectors")
        return comp if isinstance(comp, dict) else None

    def search(self, queries: np.ndarray, k: int, qmeta: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) with higher-is-better scores, ties ordered by docid; label -1 pads.

        Over compressed indexes, float queries are truncated/binarized as the index records; query
        codes written with ``--like`` are accepted too (``qmeta``: the queries' metadata).
        """
        if self.compression is not None or queries.dtype.kind != "f" or qmeta:
            from vecpipe.index.compressed import encode_queries

            queries = encode_queries(queries, self.meta, qmeta, self.name)
        k_eff = min(k, self.index.ntotal)
        if self.binary:
            from vecpipe.index.compressed import pad_codes

            q = pad_codes(queries, self.index.code_size)
            scan = self._hamming_scan(len(q))
            distances, labels = scan.search(q, k_eff) if scan else self.index.search(q, k_eff)
        else:
            distances, labels = self.index.search(prepare(queries, self.metric), k_eff)
        scores = scores_from_distances(distances, self.metric)
        return self.order(scores, labels)

    def _hamming_scan(self, n_queries: int):
        """The blocked Hamming scan (vecpipe.index.hamming) for a flat binary index, when it pays off."""
        import faiss

        from vecpipe.index import hamming

        if not isinstance(self.index, faiss.IndexBinaryFlat) or not hamming.worth_it(n_queries, self.index.ntotal):
            return None
        if self._scan is None:
            codes = faiss.vector_to_array(self.index.xb).reshape(self.index.ntotal, self.index.code_size)
            self._scan = hamming.HammingScan(codes, int(self.meta.get("dim") or self.index.d))
        return self._scan

    def order(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = labels >= 0
        id_rank = np.where(valid, self._id_rank[np.where(valid, labels, 0)], np.iinfo(np.int64).max)
        neg = np.where(valid, -scores, np.inf)
        order = np.lexsort((id_rank, neg), axis=1)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)

    def run_batch(self, qids: pa.Array, scores: np.ndarray, labels: np.ndarray) -> pa.RecordBatch:
        valid = labels >= 0
        counts = valid.sum(axis=1)
        q_index = np.repeat(np.arange(len(qids)), counts)
        ranks = (np.cumsum(valid, axis=1)[valid]).astype(np.int32)
        docids = self.ids.take(pa.array(labels[valid].astype(np.int64)))
        return pa.RecordBatch.from_arrays(
            [qids.take(pa.array(q_index)), docids, pa.array(ranks, pa.int32()), pa.array(scores[valid].astype(np.float32))],
            schema=RUN_SCHEMA,
        )


def load_index(path: str | Path, threads: int | None = None) -> LoadedIndex:
    import faiss

    container = vpi.read(path)
    try:
        if container.meta.get("binary"):
            index = faiss.deserialize_index_binary(container.index_bytes)
        else:
            index = faiss.deserialize_index(container.index_bytes)
    except RuntimeError:
        raise InputError(f"{path}: the faiss index inside cannot be read; rebuild it with vecpipe build-index") from None
    if index.ntotal != len(container.ids):
        raise InputError(f"{path}: index holds {index.ntotal} vectors but {len(container.ids)} ids; rebuild it")
    if threads:
        faiss.omp_set_num_threads(threads)
    loaded = LoadedIndex(index=index, ids=container.ids, meta=container.meta, name=str(path))
    loaded.set_params()
    return loaded

"""Load a ``.vpi`` container and search it with query vectors, producing run batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import arrowfn, metadata, vpi
from vecpipe.formats.runs import RUN_SCHEMA
from vecpipe.index.faiss_util import apply_params, read_index_view
from vecpipe.metric import prepare, scores_from_distances

if TYPE_CHECKING:
    from vecpipe.index.hamming import HammingScan


@dataclass
class LoadedIndex:
    index: Any
    ids: pa.Array
    meta: dict[str, Any]
    name: str
    keep: tuple[Any, ...] = ()  # memory the index's codes point into (a mapped file): alive as long as it
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    def __post_init__(self) -> None:
        self._scan: HammingScan | None = None
        self._gpu: Any = None  # vecpipe.index.gpu.Scan when searching on a GPU
        self._ranks: np.ndarray | None = None

    @property
    def _id_rank(self) -> np.ndarray:
        """Each stored id's position in sorted order (computed on first use)."""
        if self._ranks is None:
            self._ranks = id_ranks(self.ids)
        return self._ranks

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None, max_dist_ratio: float | None = None) -> None:
        """Search parameters over the recorded defaults (``max_dist_ratio``: SPANN indexes only)."""
        params = dict(self.meta.get("search_params") or {})
        if nprobe:
            params["nprobe"] = nprobe
        if ef_search:
            params["efSearch"] = ef_search
        apply_params(self.index, params)

    def check_queries(self, dim: int, meta: dict[str, Any], name: str, allow_mismatch: bool = False) -> None:
        """Refuse queries of another dimension, or (unless ``allow_mismatch``) of another model."""
        comp = self.compression or {}
        qdim = int((meta or {}).get("dim") or dim) if (meta or {}).get("compression") else dim
        if qdim != self.dim and qdim != comp.get("source_dim"):
            raise InputError(
                f"{name}: queries have dimension {qdim} but {self.name} holds {self.dim}-dimensional vectors; "
                "embed the queries with the model the index records"
            )
        metadata.check_same_model(meta or {}, self.meta, name, self.name, "embed the queries with the index's model",
                                  allow_mismatch)
        q_fde, i_fde = ((meta or {}).get("model") or {}).get("fde"), (self.meta.get("model") or {}).get("fde")
        if isinstance(q_fde, dict) and isinstance(i_fde, dict) and not allow_mismatch and (q_fde.get("role"), i_fde.get("role")) != ("query", "doc"):
            raise InputError(
                f"{name}: {q_fde.get('role')} encodings searched in {self.name}, an index of {i_fde.get('role')} encodings; "
                "encode the queries with vecpipe fde --role query and index the documents' (--role doc), or --allow-mismatch"
            )
        qsource = ((meta or {}).get("compression") or {}).get("source_dim") or qdim
        isource = comp.get("source_dim") or self.dim
        if qsource != isource and not allow_mismatch:
            raise InputError(
                f"{name}: queries were cut from {qsource}-dimensional vectors but {self.name} holds vectors cut from "
                f"{isource} dimensions (Matryoshka truncation differs); give the queries as embedded, or --allow-mismatch"
            )

    def use_device(self, device: str, note: Callable[[str], object] | None = None) -> str:
        """Scan on the GPU for ``cuda`` (or ``auto`` where CuPy finds one) when the index is flat;
        returns where the search runs. Other kinds stay on the CPU with a note."""
        if device == "cpu":
            return "cpu"
        from vecpipe.index import gpu

        if device == "cuda":
            xp = gpu.require_cupy()
        else:
            xp, _ = gpu.cupy_or_reason()
            if xp is None:
                return "cpu"
        corpus = gpu.corpus_of(self.index, self.metric)
        if corpus is None:
            if note:
                note(f"{self.name} ({self.meta.get('spec')}) is searched on the CPU: vecpipe scans flat float, fp16, SQ8 and "
                     "binary indexes on the GPU, and faiss's GPU build is not installed")
            return "cpu"
        self._gpu = gpu.Scan(corpus, xp)
        if device == "auto" and note:
            note("--device auto: searching on CUDA")
        return "cuda"

    def applies(self, param: str) -> bool:
        """Whether a search parameter (``nprobe``, ``efSearch``) means anything for this index."""
        return param in (self.meta.get("search_params") or {})

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
        if self._gpu is not None:
            if self.binary:
                from vecpipe.index.compressed import pad_codes

                q = pad_codes(queries, self.index.code_size)
            else:
                q = prepare(queries, self.metric)
            return self.order(*self._gpu.search(q, k_eff))
        if self.binary:
            from vecpipe.index.compressed import pad_codes

            q = pad_codes(queries, self.index.code_size)
            scan = self._hamming_scan(len(q))
            distances, labels = scan.search(q, k_eff) if scan else self.index.search(q, k_eff)
        else:
            distances, labels = self.index.search(prepare(queries, self.metric), k_eff)
        scores = scores_from_distances(distances, self.metric)
        return self.order(scores, labels)

    def _hamming_scan(self, n_queries: int) -> HammingScan | None:
        """The blocked Hamming scan (vecpipe.index.hamming) for a flat binary index, when it pays off."""
        import faiss

        from vecpipe.index import hamming

        if not isinstance(self.index, faiss.IndexBinaryFlat) or not hamming.worth_it(n_queries, self.index.ntotal):
            return None
        if self._scan is None:
            codes = faiss.vector_to_array(self.index.xb).reshape(self.index.ntotal, self.index.code_size)  # type: ignore[attr-defined]  # xb: not in faiss stub
            self._scan = hamming.HammingScan(codes, int(self.meta.get("dim") or self.index.d))
        return self._scan

    def order(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = labels >= 0
        id_rank = np.where(valid, self._id_rank[np.where(valid, labels, 0)], np.iinfo(np.int64).max)
        neg = np.where(valid, -scores, np.inf)
        order = np.lexsort((id_rank, neg), axis=1)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)

    def run_batch(self, qids: pa.Array, scores: np.ndarray, labels: np.ndarray) -> pa.RecordBatch:
        return run_batch(self.ids, qids, scores, labels)


def id_ranks(ids: pa.Array) -> np.ndarray:
    """Position of each stored id in sorted order: ties are broken by docid, ascending."""
    order = arrowfn.sort_indices(ids).to_numpy()  # Arrow's sort (stable, by UTF-8 bytes: code point order)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def run_batch(ids: pa.Array, qids: pa.Array, scores: np.ndarray, labels: np.ndarray) -> pa.RecordBatch:
    """Run rows (qid, docid, rank, score) of a query batch's (scores, labels); label -1 is no row."""
    valid = labels >= 0
    counts = valid.sum(axis=1)
    q_index = np.repeat(np.arange(len(qids)), counts)
    ranks = (np.cumsum(valid, axis=1)[valid]).astype(np.int32)
    docids = arrowfn.take(ids, pa.array(labels[valid].astype(np.int64)))
    return pa.RecordBatch.from_arrays(
        [arrowfn.take(qids, pa.array(q_index)), docids, pa.array(ranks, pa.int32()), pa.array(scores[valid].astype(np.float32))],
        schema=RUN_SCHEMA,
    )


def load_faiss(container: vpi.Container, name: str) -> LoadedIndex:
    """The index read without copying its codes: they stay views into the mapped container."""
    try:
        index, keep = read_index_view(container.index_bytes, bool(container.meta.get("binary")))
    except RuntimeError:
        raise InputError(f"{name}: the faiss index inside cannot be read; rebuild it with vecpipe build-index") from None
    if index.ntotal != len(container.ids):
        raise InputError(f"{name}: index holds {index.ntotal} vectors but {len(container.ids)} ids; rebuild it")
    return LoadedIndex(index=index, ids=container.ids, meta=container.meta, name=name, keep=(*keep, container.mapping))


def load_index(path: str | Path, threads: int | None = None, name: str | None = None) -> LoadedIndex:
    """Read a ``.vpi`` container and load the index inside with the loader of its kind."""
    from vecpipe.index.kinds import kind_of

    header = vpi.read_header(path, name) if Path(path).exists() else {}
    if (header.get("meta") or {}).get("index_kind") == "spann":
        from vecpipe.index import spann

        container = vpi.read(path, name=name, lazy=("index",))  # the posting lists stay on disk
        loaded = spann.load(container, name or str(path), path)
    else:
        container = vpi.read(path, name=name)
        loaded = kind_of(container.meta).load(container, name or str(path))
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)
    loaded.set_params()
    return loaded


def rebatch(batches: Iterator[tuple[pa.Array, np.ndarray]], size: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, matrix) batches re-cut to ``size`` rows (the last may be shorter)."""
    ids_buf: list[pa.Array] = []
    mats: list[np.ndarray] = []
    n = 0
    for ids, mat in batches:
        start = 0
        while start < len(ids):
            take = min(size - n, len(ids) - start)
            ids_buf.append(ids.slice(start, take))
            mats.append(mat[start : start + take])
            n += take
            start += take
            if n == size:
                yield pa.concat_arrays(ids_buf), np.concatenate(mats)
                ids_buf, mats, n = [], [], 0
    if n:
        yield pa.concat_arrays(ids_buf), np.concatenate(mats)


def search_run(index: LoadedIndex, queries: Iterator[tuple[pa.Array, np.ndarray]], k: int,
               batch_size: int = 1024, rescorer: Any = None, hubness: Any = None, feedback: Any = None,
               after: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None) -> Iterator[pa.RecordBatch]:
    """Run batches (qid, docid, rank, score), one per query batch, in query order.

    With a :class:`vecpipe.index.rescore.Rescorer`, k * multiplier candidates are fetched and
    rescored exactly with the full-precision vectors, and k kept. With a
    :class:`vecpipe.index.hubness.HubnessSearch`, the hubness-normalised scores rank instead. With a
    :class:`vecpipe.index.feedback.Feedback`, each query is searched twice: the second time expanded
    with its first results' vectors. ``after`` maps each batch before it is yielded (a cut).
    """
    if k < 1:
        raise InputError("-k must be at least 1")

    def one(qids: pa.Array, mat: np.ndarray) -> pa.RecordBatch:
        if hubness is not None:
            return index.run_batch(qids, *index.order(*hubness.search(mat, k)))
        if rescorer is None:
            return index.run_batch(qids, *index.search(mat, k))
        _, labels = index.search(mat, k * rescorer.multiplier)
        return rescorer.rescore(qids, mat, labels, index.ids, k)

    for qids, mat in rebatch(queries, batch_size):
        if feedback is not None:
            mat = feedback.expand(qids, mat, one(qids, mat))
        batch = one(qids, mat)
        yield after(batch) if after is not None else batch

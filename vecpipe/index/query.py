"""The search stage as a library function: queries (vectors or texts) in, a run out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import sniff
from vecpipe.formats.records import Fields, open_arrow_batches, read_records
from vecpipe.formats.vectors import has_vectors, vectors_from_arrow
from vecpipe.index.search import LoadedIndex
from vecpipe.pipeline.progress import Progress


def _rebatch(batches: Iterator[tuple[pa.Array, np.ndarray]], size: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
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


def query_vectors(queries: str | Path, index: LoadedIndex, encoder_factory: Callable[[dict[str, Any]], Any],
                  fields: Fields = Fields(), progress: Progress | None = None) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(qids, matrix) batches from a vectors input, or from text records embedded with the index's model."""
    progress = progress or Progress()
    inp = sniff.Input(queries)
    try:
        if inp.format == sniff.VPI:
            raise InputError(f"{inp.name}: is a .vpi index; give query vectors or query texts")
        opened = None
        if inp.format in (sniff.PARQUET, sniff.ARROW_FILE, sniff.ARROW_STREAM):
            opened = open_arrow_batches(inp, 4096)
            if has_vectors(opened[0]):
                checked = False
                for ids, mat, meta in vectors_from_arrow(inp.name, *opened):
                    if not checked:
                        index.check_queries(mat.shape[1], meta, inp.name)
                        checked = True
                    if mat.dtype.kind != "f" or isinstance(meta.get("compression"), dict):
                        from vecpipe.index.compressed import encode_queries

                        mat = encode_queries(mat, index.meta, meta, inp.name)
                    progress.advance(len(ids))
                    yield ids, mat
                return
        encoder = encoder_factory(index.meta.get("model") or {})
        index.check_queries(encoder.dim, {"model": encoder.info}, inp.name)
        from vecpipe.encode.job import embed_records

        for ids, mat in embed_records(encoder, read_records(inp, fields, 1024, opened), progress):
            yield ids, mat
    finally:
        inp.close()


def search_run(index: LoadedIndex, queries: Iterator[tuple[pa.Array, np.ndarray]], k: int,
               batch_size: int = 1024, rescorer=None) -> Iterator[pa.RecordBatch]:
    """Run batches (qid, docid, rank, score), one per query batch, in query order.

    With a :class:`vecpipe.index.rescore.Rescorer`, k * multiplier candidates are fetched and
    rescored exactly with the full-precision vectors, and k kept.
    """
    if k < 1:
        raise InputError("-k must be at least 1")
    for qids, mat in _rebatch(queries, batch_size):
        if rescorer is None:
            scores, labels = index.search(mat, k)
            yield index.run_batch(qids, scores, labels)
        else:
            _, labels = index.search(mat, k * rescorer.multiplier)
            yield rescorer.rescore(qids, mat, labels, index.ids, k)

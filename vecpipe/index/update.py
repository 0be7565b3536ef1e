"""``build-index NEW --update OLD.vpi``: an index that follows its corpus without starting over.

Rows are matched by id between the old index and the new vectors table:

* **exact kinds** (``Flat``, binary ``BFlat``): the codes are the vectors themselves, so the new index
  is the new table's rows, compared with the old ones only to count what was added, removed and
  changed. The result is the same bytes as a full rebuild.
* **trained kinds** (IVF of any coder, ``SQ``, ``PQ``): the old index's training (coarse centroids,
  codebooks, ranges) is kept. A row whose id and vector are unchanged keeps its stored code; only
  added and changed rows are encoded. A row's vector is compared through the fingerprint the index
  stores for each row (``rowhash``, 8 bytes a row, written by build-index for these kinds); an index
  built before fingerprints has every row encoded again, with its old training. The codes are then
  laid out in the new table's order, so the index equals one built over the new table with the old
  training.
* **other kinds** (HNSW, OPQ/PCA transforms, refinement): faiss cannot take rows out of them; they
  are rebuilt from the new table, which the run says on stderr.

Training goes stale as the corpus drifts. A trained index records ``train_error``: the mean squared
distance of its training rows to what the quantizer keeps of them (IVF-Flat: the nearest coarse
centroid; SQ/PQ and IVF over them: the decoded vector). An update measures the same on the rows it encodes; their
ratio is the *drift*, recorded with the counts and the share of the index encoded since training;
past :data:`DRIFT_LIMIT` with more than :data:`SHARE_LIMIT` of the rows (or past :data:`SEVERE_DRIFT`
with any share), the run advises a rebuild
(``bench/bench_update.py`` measures how recall follows drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import arrowfn as pc
from vecpipe.formats import metadata
from vecpipe.formats.vectors import Vectors
from vecpipe.index.faiss_util import flat_codes
from vecpipe.metric import prepare

#: Rows encoded by an update sitting this much farther from their quantizer than the training rows
#: (mean squared distance ratio): retraining is advised.
DRIFT_LIMIT = 1.2
#: ... and when they are more than this share of the index's rows,
SHARE_LIMIT = 0.05
#: or whatever their share when they fit this much worse.
SEVERE_DRIFT = 2.0
ERROR_SAMPLE = 10_000


def row_hashes(matrix: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each row's bytes: BLAKE2b with an 8-byte digest (two different rows
    share one with probability 2**-64), little-endian uint64."""
    import hashlib

    rows = np.ascontiguousarray(matrix)
    n = rows.shape[0]
    if n == 0:
        return np.zeros(0, np.uint64)
    view = rows.reshape(n, -1).view(np.uint8).data.cast("B")
    width = len(view) // n
    digest = hashlib.blake2b
    return np.frombuffer(b"".join([digest(view[i * width : (i + 1) * width], digest_size=8).digest() for i in range(n)]), "<u8").copy()


def is_exact(index: Any) -> bool:
    import faiss

    return isinstance(index, (faiss.IndexFlat, faiss.IndexBinaryFlat))


def is_incremental(index: Any) -> bool:
    """A trained kind whose rows an update can replace one by one (codes kept, others encoded)."""
    import faiss

    if isinstance(index, faiss.IndexIVF):
        return True
    return isinstance(index, (faiss.IndexScalarQuantizer, faiss.IndexPQ)) and not isinstance(index, faiss.IndexFlat)


def quantizer_error(index: Any, x: np.ndarray) -> float:
    """Mean squared distance of the (prepared) rows ``x`` to what the index's quantizer keeps of them."""
    import faiss

    if len(x) == 0:
        return 0.0
    x = np.ascontiguousarray(x, dtype=np.float32)
    if isinstance(index, faiss.IndexIVFFlat):  # codes are exact: what is lost is the coarse assignment
        _, assign = index.quantizer.search(x, 1)
        kept = index.quantizer.reconstruct_batch(assign.ravel())
    else:
        kept = index.sa_decode(index.sa_encode(x))
    return float(((x - kept) ** 2).sum(axis=1).mean())


def error_sample(n: int, seed: int) -> np.ndarray | None:
    if n <= ERROR_SAMPLE:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=ERROR_SAMPLE, replace=False))


def train_error(index: Any, prepared: np.ndarray, train_rows: np.ndarray | None, seed: int) -> float:
    """``train_error`` of a freshly trained index: over (a sample of) its training rows."""
    rows = prepared if train_rows is None else prepared[train_rows]
    sample = error_sample(len(rows), seed)
    return quantizer_error(index, rows if sample is None else rows[sample])


def stored_codes(index: Any) -> np.ndarray:
    """Every row's standalone code (``sa_encode``'s layout), in row (label) order."""
    import faiss

    n = int(index.ntotal)
    if isinstance(index, faiss.IndexIVF):
        ivf: Any = index  # faiss's stub lacks coarse_code_size and types invlists as optional
        lists = ivf.invlists
        size = int(ivf.code_size)
        coarse = int(ivf.coarse_code_size())
        out = np.zeros((n, coarse + size), np.uint8)
        for listno in range(int(index.nlist)):
            count = int(lists.list_size(listno))
            if not count:
                continue
            labels = np.array(faiss.rev_swig_ptr(lists.get_ids(listno), count), dtype=np.int64)
            codes = np.array(faiss.rev_swig_ptr(lists.get_codes(listno), count * size), dtype=np.uint8).reshape(count, size)
            if labels.min() < 0 or labels.max() >= n:
                raise InputError("the index's inverted lists hold labels outside its rows; rebuild it")
            out[labels, :coarse] = np.frombuffer(np.array([listno], "<u8").tobytes()[:coarse], np.uint8)
            out[labels, coarse:] = codes
        return out
    return flat_codes(index)


@dataclass
class UpdatePlan:
    """How the new table's rows relate to the old index's."""

    old_pos: np.ndarray  # per new row: its row in the old index, -1 when its id is new
    unchanged: np.ndarray  # per new row: id and vector as in the old index
    removed: int
    hashes: np.ndarray | None = None  # the new rows' fingerprints, when they were compared by them

    @property
    def added(self) -> int:
        return int((self.old_pos < 0).sum())

    @property
    def changed(self) -> int:
        return int(((self.old_pos >= 0) & ~self.unchanged).sum())

    def counts(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed,
                "unchanged": int(self.unchanged.sum())}


def match_ids(new_ids: pa.Array, old_ids: pa.Array) -> tuple[np.ndarray, int]:
    """(per new row its old row or -1, how many old ids are gone)."""
    pos = pc.fill_null(pc.index_in(new_ids, value_set=old_ids), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    kept = int((pos >= 0).sum())
    return pos, len(old_ids) - kept


def check_compatible(old_meta: dict[str, Any], vecs: Vectors, old_name: str, spec: str | None, metric: str | None) -> None:
    """The new table must be what the old index indexes: same model, same width and kind of values."""
    dim = int(vecs.matrix.shape[1]) * (8 if old_meta.get("binary") else 1)
    if old_meta.get("index_kind") == "bm25":
        raise UsageError(f"--update {old_name}: a BM25 index; rebuild it with --spec BM25 over the new records")
    comp = vecs.meta.get("compression") if isinstance(vecs.meta.get("compression"), dict) else None
    if old_meta.get("binary") and old_meta.get("auto") and not comp and vecs.matrix.dtype.kind == "f":
        raise UsageError(f"--update {old_name}: a --spec auto index of 1-bit codes it made from float vectors; "
                         "--update does not re-code float vectors: rebuild it with --spec auto")
    if int(old_meta.get("dim") or dim) != dim:
        raise InputError(f"{vecs.name}: {dim}-dimensional vectors, but {old_name} indexes {old_meta.get('dim')}-dimensional ones")
    if bool(old_meta.get("binary")) != bool(comp and comp.get("method") == "binary"):
        what = "1-bit codes" if old_meta.get("binary") else "float vectors"
        raise InputError(f"{vecs.name}: {old_name} indexes {what}; give --update the same kind of vectors it was built from")
    if comp and comp.get("method") not in (None, "float32") and comp != old_meta.get("vectors"):
        raise InputError(f"{vecs.name}: compressed with other parameters than the vectors {old_name} indexes "
                         "(method, thresholds or codebooks differ); compress the new table like the old one or rebuild without --update")
    if spec is not None and spec != old_meta.get("spec"):
        raise UsageError(f"--spec {spec}: --update keeps {old_name}'s spec {old_meta.get('spec')}; leave --spec out or rebuild without --update")
    if metric is not None and metric != old_meta.get("metric"):
        raise UsageError(f"--metric {metric}: --update keeps {old_name}'s metric {old_meta.get('metric')}; leave --metric out or rebuild without --update")
    metadata.check_same_model(vecs.meta, old_meta, vecs.name, old_name, "embed the corpus with the index's model or rebuild without --update")


def plan(old_index: Any, old_ids: pa.Array, old_hashes: np.ndarray | None, vecs: Vectors, metric: str) -> UpdatePlan | None:
    """Which new rows are unchanged. None when rows cannot be compared (no fingerprints, or a kind
    whose stored codes are not the vectors): then only ids are matched."""
    import faiss

    pos, removed = match_ids(vecs.ids, old_ids)
    matched = np.flatnonzero(pos >= 0)
    unchanged = np.zeros(len(pos), bool)
    if isinstance(old_index, faiss.IndexBinaryFlat):
        from vecpipe.index.compressed import pad_codes

        stored = flat_codes(old_index)
        mine = pad_codes(vecs.matrix, stored.shape[1]) if vecs.matrix.dtype == np.uint8 else None
    elif isinstance(old_index, faiss.IndexFlat) and vecs.matrix.dtype.kind == "f":
        stored, mine = stored_codes(old_index), None
    elif old_hashes is not None and len(old_hashes) == len(old_ids):
        mine = row_hashes(vecs.matrix)
        unchanged[matched] = old_hashes[pos[matched]] == mine[matched]
        return UpdatePlan(pos, unchanged, removed, mine)
    else:
        return None
    for start in range(0, len(matched), 65_536):
        part = matched[start : start + 65_536]
        rows = mine[part] if mine is not None else np.ascontiguousarray(prepare(vecs.matrix[part], metric), np.float32).view(np.uint8).reshape(len(part), -1)
        if rows.shape[1] == stored.shape[1]:
            unchanged[part] = (stored[pos[part]] == rows).all(axis=1)
    return UpdatePlan(pos, unchanged, removed)


def update_codes(old_index: Any, p: UpdatePlan, prepared: np.ndarray, threads: int | None = None,
                 on_progress: Callable[[str], None] | None = None) -> tuple[Any, np.ndarray]:
    """A copy of the trained ``old_index`` holding the new table's rows in order: stored codes for the
    unchanged rows, fresh codes for the others. Returns it and the rows it encoded."""
    import faiss

    old_codes = stored_codes(old_index)
    todo = np.flatnonzero(~p.unchanged)
    codes = np.empty((len(p.old_pos), old_codes.shape[1]), np.uint8)
    keep = np.flatnonzero(p.unchanged)
    codes[keep] = old_codes[p.old_pos[keep]]
    old_threads = faiss.omp_get_max_threads()
    try:
        if threads:
            faiss.omp_set_num_threads(threads)
        if len(todo):
            if on_progress:
                on_progress(f"encoding {len(todo)} added or changed rows with the index's training")
            codes[todo] = old_index.sa_encode(np.ascontiguousarray(prepared[todo]))
        fresh = faiss.deserialize_index(faiss.serialize_index(old_index))  # owned memory (the old may view a mapped file)
        fresh.reset()
        fresh.add_sa_codes(codes)
    finally:
        faiss.omp_set_num_threads(old_threads)
    return fresh, todo


def update_meta(old_meta: dict[str, Any], new_meta: dict[str, Any], counts: dict[str, int], encoded: int,
                drift: float | None) -> dict[str, Any]:
    """The updated index's metadata: the old index's recipe, the new table's model and count, and
    ``update``: this update's counts, the rows encoded since training, their share of the index, and
    the drift: the error ratio of all rows encoded since training (this update's rows weighted in
    with the earlier updates'); see :func:`retrain_advised`."""
    meta = dict(old_meta)
    for key in ("manifest", "created", "update"):
        meta.pop(key, None)
    meta["count"] = int(counts["added"] + counts.get("kept_ids", counts.get("changed", 0) + counts.get("unchanged", 0)))
    if new_meta.get("model") is not None:
        meta["model"] = new_meta["model"]
    before = old_meta.get("update") or {}
    previous = int(before.get("encoded_since_training", 0))
    record: dict[str, Any] = dict(counts)
    record["encoded_since_training"] = previous + encoded
    record["encoded_share"] = round(min(1.0, (previous + encoded) / max(1, meta["count"])), 4)
    if drift is not None:
        earlier = before.get("drift")
        if earlier is not None and previous:
            drift = (float(earlier) * previous + drift * encoded) / (previous + encoded)
        record["drift"] = round(drift, 4)
    meta["update"] = record
    return meta


def retrain_advised(record: dict[str, Any]) -> bool:
    """The rows encoded since training fit the quantizer worse than its training rows by more than
    :data:`DRIFT_LIMIT` and are more than :data:`SHARE_LIMIT` of the index, or fit it worse by more
    than :data:`SEVERE_DRIFT` however few they are (queries about the new rows lose their neighbours;
    bench/bench_update.py measures recall beside the drift)."""
    drift = float(record.get("drift") or 0)
    return drift > SEVERE_DRIFT or (drift > DRIFT_LIMIT and float(record.get("encoded_share") or 0) > SHARE_LIMIT)

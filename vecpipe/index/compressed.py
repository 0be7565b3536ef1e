"""faiss indexes over compressed vectors artifacts, built from the stored codes without retraining.

- 1-bit ``binary``: faiss binary indexes (``BFlat``, ``BHNSW32``, ``BIVF1024`` ...), Hamming distance;
  float queries are binarized with the thresholds the index records.
- ``int8``/``uint8``: ``IndexScalarQuantizer`` (QT_8bit) with the stored per-dimension ranges.
- ``fp16``: ``IndexScalarQuantizer`` (QT_fp16).
- ``pq``: ``IndexPQ`` with the stored codebooks and codes.
- ``residual`` (T bits): ``IndexPQ`` whose fixed centroids are the bit combinations, mean included:
  sub-quantizers over groups of 8/T dimensions with 256 centroids when T divides 8, else one
  dimension per sub-quantizer with 2^T centroids. A float query is scored asymmetrically against
  ``mu + sum_t alpha_t * b_t`` through faiss's look-up tables.

Float queries are searched as they are (asymmetric distances) by the float-code indexes.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from vecpipe.compress import codecs
from vecpipe.errors import InputError, UsageError
from vecpipe.formats.vectors import Vectors
from vecpipe.index.faiss_util import faiss_metric, train_and_add
from vecpipe.index.specs import check_spec, make_index
from vecpipe.metric import default_metric, prepare

if TYPE_CHECKING:
    import faiss

FLAT_SPECS = {"int8": ("Flat", "SQ8"), "uint8": ("Flat", "SQ8"), "fp16": ("Flat", "SQfp16"),
              "pq": ("Flat",), "residual": ("Flat",)}


def compression_of(vecs: Vectors) -> dict[str, Any] | None:
    comp = vecs.meta.get("compression")
    if isinstance(comp, dict) and comp.get("method") not in (None, "float32"):
        return comp
    return None


# Code sizes faiss has unrolled Hamming computers for; other sizes take a generic, ~2.5x slower loop.
FAST_CODE_SIZES = (4, 8, 16, 20, 32, 64)


def padded_width(width: int) -> int:
    """The code size a binary index stores: the next fast size (zero bits do not change distances)."""
    for size in FAST_CODE_SIZES:
        if width <= size:
            return size
    return (width + 7) // 8 * 8


def pad_codes(codes: np.ndarray, width: int) -> np.ndarray:
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.shape[1] >= width:
        return codes
    out = np.zeros((len(codes), width), dtype=np.uint8)
    out[:, : codes.shape[1]] = codes
    return out


def binary_spec(spec: str) -> str:
    return spec if spec.startswith("B") else "B" + spec


def build_compressed(vecs: Vectors, comp: dict[str, Any], spec: str, metric: str | None, train_size: int, seed: int,
                     on_progress: Any = None, threads: int | None = None,
                     deterministic: bool = False) -> tuple[Any, str, str, bool]:
    """(faiss index, spec, metric, binary) over the stored codes of a compressed artifact."""

    method = comp["method"]
    dim = int(cast(int, comp.get("dim") or vecs.meta.get("dim")))
    codes = np.ascontiguousarray(vecs.matrix)
    if method == "binary":
        metric = metric or "hamming"
        if metric != "hamming":
            raise UsageError(f"{vecs.name}: 1-bit vectors are searched with --metric hamming; binarize with --bits 2..8 for {metric} scoring")
        spec = binary_spec(spec)
        codes = pad_codes(codes, padded_width(codes.shape[1]))
        info = check_spec(spec, dim=codes.shape[1] * 8, n_vectors=len(codes), train_size=train_size, binary=True)
        if info.warning and on_progress:
            on_progress(info.warning)
        index = make_index(info)
        train_and_add(index, np.ascontiguousarray(codes, dtype=np.uint8), spec, train_size, seed, threads, on_progress,
                      vecs.name, unit="codes", deterministic=deterministic)
        return index, spec, metric, True

    metric = metric or default_metric(vecs.meta)
    if metric == "hamming":
        raise UsageError(f"{vecs.name}: --metric hamming needs 1-bit vectors (vecpipe binarize --bits 1)")
    builder = CODE_INDEXES.get(method)
    if builder is None:
        raise InputError(f"{vecs.name}: unknown compression {method!r}; recompress with vecpipe quantize or binarize")
    allowed = FLAT_SPECS[method]
    if spec not in allowed and not (method == "pq" and re.fullmatch(r"PQ\d+(x\d+)?", spec)):
        raise UsageError(f"--spec {spec!r}: {method} vectors are served by a flat scan over their codes; use --spec Flat")
    index, raw, spec = builder(codes, comp, dim, faiss_metric(metric))
    if raw.shape[1] != index.sa_code_size():
        raise InputError(f"{vecs.name}: codes are {raw.shape[1]} bytes wide but {method} needs {index.sa_code_size()}; the artifact is inconsistent, "
                         f"recompress it")
    index.add_sa_codes(np.ascontiguousarray(raw, dtype=np.uint8))
    return index, spec, metric, False


# Each builder: (codes, compression params, dim, faiss metric) -> (faiss index with its trained state
# set from the params, the codes as faiss stores them, the spec recorded in the index).


def _scalar_index(codes: np.ndarray, comp: dict[str, Any], dim: int, fm: int) -> tuple[Any, np.ndarray, str]:
    import faiss

    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, fm)
    trained = np.concatenate([np.asarray(comp["vmin"], np.float32), np.asarray(comp["vdiff"], np.float32)])
    faiss.copy_array_to_vector(trained, index.sq.trained)
    index.is_trained = True
    return index, codecs.scalar_codes_u8(codes, comp), "SQ8"


def _fp16_index(codes: np.ndarray, comp: dict[str, Any], dim: int, fm: int) -> tuple[Any, np.ndarray, str]:
    import faiss

    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, fm)
    index.is_trained = True
    return index, np.ascontiguousarray(codes, dtype="<f2").view(np.uint8).reshape(len(codes), -1), "SQfp16"


def _pq_index(codes: np.ndarray, comp: dict[str, Any], dim: int, fm: int) -> tuple[Any, np.ndarray, str]:
    import faiss

    index = faiss.IndexPQ(dim, int(comp["m"]), int(comp["nbits"]), fm)
    pq = codecs.pq_object(comp, dim)
    faiss.copy_array_to_vector(faiss.vector_to_array(pq.centroids), index.pq.centroids)
    index.is_trained = True
    return index, np.ascontiguousarray(codes, dtype=np.uint8), f"PQ{comp['m']}x{comp['nbits']}"


def _residual_index(codes: np.ndarray, comp: dict[str, Any], dim: int, fm: int) -> tuple[Any, np.ndarray, str]:
    index = residual_index(comp, dim, fm)
    raw = np.concatenate([
        index.pq.compute_codes(codecs.residual_decode(codes[s : s + 65536], comp, dim))
        for s in range(0, len(codes), 65536)
    ]) if len(codes) else np.zeros((0, index.pq.code_size), np.uint8)
    return index, raw, f"RB{comp['bits']}"


#: Indexes that serve a codec's codes as they are, without retraining (1-bit codes use faiss's
#: binary indexes, above).
CODE_INDEXES = {"int8": _scalar_index, "uint8": _scalar_index, "fp16": _fp16_index, "pq": _pq_index,
                "residual": _residual_index}


def residual_index(comp: dict[str, Any], dim: int, fmetric: int) -> faiss.IndexPQ:
    """IndexPQ whose centroids are mu + sum_t alpha_t * (±1) for each bit combination."""
    import faiss

    bits = int(comp["bits"])
    group = 8 // bits if 8 % bits == 0 and dim % (8 // bits) == 0 else 1
    m = dim // group
    nbits = bits * group
    index = faiss.IndexPQ(dim, m, nbits, fmetric)
    mu = np.asarray(comp["mean"], np.float32)
    alpha = np.asarray(comp["alpha"], np.float32)  # (bits, dim)
    # every combination of signs, (2^nbits, group * bits) in {-1, +1}: column g * bits + t is bit t of dim g
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=group * bits)), dtype=np.float32)
    signs = signs.reshape(len(signs), group, bits)
    cents = np.empty((m, len(signs), group), dtype=np.float32)
    for j in range(m):
        dims = slice(j * group, (j + 1) * group)
        # (K, group) = mu + sum_t alpha[t, dims] * sign[:, g, t]
        cents[j] = mu[dims] + np.einsum("kgt,tg->kg", signs, alpha[:, dims])
    faiss.copy_array_to_vector(cents.reshape(-1), index.pq.centroids)
    index.is_trained = True
    return index


# ------------------------------------------------------------------------------- query encoding


def encode_queries(queries: np.ndarray, meta: dict[str, Any], qmeta: dict[str, Any] | None, name: str,
                   allow_mismatch: bool = False) -> np.ndarray:
    """Queries as the index wants them: float32 (truncated as the index records), or binary codes.

    Float queries are truncated to the index's dimension (Matryoshka) and, for binary indexes,
    binarized with the index's recorded thresholds. Query codes (from quantize/binarize --like) are
    decoded with their own calibration, or passed through to a binary index.
    """
    comp = cast("dict[str, Any]", meta.get("vectors")) if isinstance(meta.get("vectors"), dict) else {}
    dim = int(meta["dim"])
    qcomp = (qmeta or {}).get("compression") if isinstance((qmeta or {}).get("compression"), dict) else None
    binary = meta.get("binary", False)
    if binary and qcomp is None and queries.dtype == np.uint8 and queries.shape[1] == (dim + 7) // 8:
        return np.ascontiguousarray(queries)  # already binarized with the index's thresholds
    if queries.dtype.kind != "f" or (qcomp and qcomp.get("method") not in ("fp16", "float32")):
        if not qcomp:
            raise InputError(f"{name}: query vectors are {queries.dtype} codes without a calibration; search with float query vectors")
        if binary:
            if qcomp.get("method") != "binary" or (_thresholds(qcomp) != _thresholds(comp) and not allow_mismatch):
                raise InputError(f"{name}: query codes were not binarized like the index; binarize the queries with --like the corpus artifact, or "
                                 f"give float queries (or --allow-mismatch)")
            return np.ascontiguousarray(queries, dtype=np.uint8)
        if qcomp.get("method") == "binary":
            raise InputError(f"{name}: 1-bit query codes cannot be scored against a {comp.get('method', 'float')} index; give float queries")
        queries = codecs.decode(queries, qcomp, int(qcomp.get("dim") or queries.shape[1]))
    q = np.asarray(queries, dtype=np.float32)
    if q.shape[1] != dim:
        if comp and comp.get("source_dim") == q.shape[1] and dim < q.shape[1]:
            q = codecs.truncate(q, dim, renormalize=True)
        else:
            raise InputError(f"{name}: queries have dimension {q.shape[1]} but the index holds {dim}-dimensional vectors; "
                             "embed the queries with the model the index records")
    if binary:
        return codecs.binary_encode(prepare(q, "cos" if comp.get("normalize") else "ip"), comp)
    return q


def _thresholds(comp: dict[str, Any] | None) -> Any:
    comp = comp or {}
    return (comp.get("threshold"), comp.get("mean"))

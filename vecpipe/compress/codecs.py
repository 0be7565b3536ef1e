"""Vector codecs: scalar (int8/uint8), fp16, product quantization, 1-bit sign and residual binarization.

Every codec is described by a plain dict (the ``compression`` entry of a vectors artifact's
``vecpipe`` metadata) and works on float32 matrices. Codes are laid out so that faiss can use them
as they are (see :mod:`vecpipe.index.compressed`):

- ``uint8``: faiss ``QT_8bit`` codes with per-dimension ranges: ``c = floor(255 * clip((x - vmin) / vdiff, 0, 1))``,
  decoded as ``vmin + (c + 0.5) / 255 * vdiff``. ``int8`` stores the same codes minus 128.
- ``fp16``: IEEE half floats (faiss ``QT_fp16``).
- ``pq``: faiss ``ProductQuantizer`` codes; the codebooks travel in the metadata (base64 float32 LE).
- ``binary`` (1 bit): bit ``j`` is 1 when ``x_j > threshold_j`` (threshold 0, or the corpus mean with
  ``--center``), packed with ``np.packbits`` (big-endian bit order within a byte: dimension 0 is the
  most significant bit of byte 0), padded with zero bits to whole bytes.
- ``residual`` (T = 2..8 bits): r0 = x - mu; for t = 1..T: b_t = sign(r_{t-1}) (+1 for >= 0),
  alpha_t = mean |r_{t-1}| per dimension over the corpus, r_t = r_{t-1} - alpha_t * b_t. The bit
  planes b_1..b_T (1 for +1) are concatenated plane after plane (bit ``t * dim + j``) and packed as
  above, ``ceil(dim * T / 8)`` bytes. The reconstruction is ``mu + sum_t alpha_t * b_t``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vecpipe.metric import l2_normalize
from vecpipe.native import captured_native_stderr

if TYPE_CHECKING:
    import faiss

SCALAR = ("int8", "uint8")


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float32)]


def _array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# ------------------------------------------------------------------------------------ truncation


def truncate(matrix: np.ndarray, dim: int, renormalize: bool = True) -> np.ndarray:
    """Matryoshka truncation to the first ``dim`` dimensions, L2-renormalised."""
    if renormalize:
        return l2_normalize(matrix[:, :dim])
    return np.ascontiguousarray(matrix[:, :dim], dtype=np.float32)


# ---------------------------------------------------------------------------------------- scalar


def scalar_train(matrix: np.ndarray, method: str) -> dict[str, Any]:
    vmin = matrix.min(axis=0).astype(np.float32)
    vmax = matrix.max(axis=0).astype(np.float32)
    vdiff = np.maximum(vmax - vmin, np.float32(1e-12))
    return {"method": method, "vmin": _floats(vmin), "vdiff": _floats(vdiff)}


def scalar_encode(matrix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    vmin, vdiff = _array(params["vmin"]), _array(params["vdiff"])
    x = (np.asarray(matrix, dtype=np.float32) - vmin) / vdiff
    np.clip(x, 0.0, 1.0, out=x)
    codes = np.floor(x * np.float32(255.0)).astype(np.uint8)
    if params["method"] == "int8":
        return (codes.astype(np.int16) - 128).astype(np.int8)
    return codes


def scalar_codes_u8(codes: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The faiss QT_8bit codes (uint8) of stored int8/uint8 codes."""
    if params["method"] == "int8":
        return (np.asarray(codes).astype(np.int16) + 128).astype(np.uint8)
    return np.ascontiguousarray(codes, dtype=np.uint8)


def scalar_decode(codes: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    vmin, vdiff = _array(params["vmin"]), _array(params["vdiff"])
    c = scalar_codes_u8(codes, params).astype(np.float32)
    return vmin + (c + np.float32(0.5)) / np.float32(255.0) * vdiff


# -------------------------------------------------------------------------------------------- PQ


def pq_train(matrix: np.ndarray, m: int, nbits: int, seed: int) -> dict[str, Any]:
    import faiss

    d = matrix.shape[1]
    pq = faiss.ProductQuantizer(d, m, nbits)
    pq.cp.seed = seed
    pq.cp.min_points_per_centroid = 1  # small corpora: train anyway, without faiss's warning
    with captured_native_stderr():  # nothing faiss prints reaches the user's stderr
        pq.train(np.ascontiguousarray(matrix, dtype=np.float32))
    cents = faiss.vector_to_array(pq.centroids).astype("<f4")
    raw = cents.tobytes()
    return {"method": "pq", "m": m, "nbits": nbits, "seed": seed,
            "centroids": base64.b64encode(raw).decode("ascii"), "centroids_sha256": hashlib.sha256(raw).hexdigest()}


def pq_object(params: dict[str, Any], dim: int) -> faiss.ProductQuantizer:
    import faiss

    pq = faiss.ProductQuantizer(dim, int(params["m"]), int(params["nbits"]))
    cents = np.frombuffer(base64.b64decode(params["centroids"]), dtype="<f4").astype(np.float32)
    if cents.size != pq.M * pq.ksub * pq.dsub:
        raise ValueError("PQ codebooks do not fit the dimension")
    faiss.copy_array_to_vector(cents, pq.centroids)
    return pq


def pq_encode(matrix: np.ndarray, params: dict[str, Any], dim: int) -> np.ndarray:
    pq = pq_object(params, dim)
    return pq.compute_codes(np.ascontiguousarray(matrix, dtype=np.float32))


def pq_decode(codes: np.ndarray, params: dict[str, Any], dim: int) -> np.ndarray:
    # faiss's stub gives ProductQuantizer the SWIG decode(code, x); Quantizer's is the Python wrapper it has
    pq: faiss.Quantizer = pq_object(params, dim)
    return pq.decode(np.ascontiguousarray(codes, dtype=np.uint8))


# ---------------------------------------------------------------------------------------- binary


def binary_train(matrix: np.ndarray, center: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"method": "binary", "bits": 1, "threshold": "mean" if center else "zero",
                              "bit_order": "big"}
    if center:
        params["mean"] = _floats(matrix.mean(axis=0, dtype=np.float64))
    return params


def binary_encode(matrix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    x = np.asarray(matrix, dtype=np.float32)
    thresh = _array(params["mean"]) if params.get("threshold") == "mean" else np.float32(0.0)
    return np.packbits(x > thresh, axis=1, bitorder="big")


def binary_unpack(codes: np.ndarray, dim: int) -> np.ndarray:
    """±1 float matrix of 1-bit codes."""
    bits = np.unpackbits(np.ascontiguousarray(codes, dtype=np.uint8), axis=1, count=dim, bitorder="big")
    return bits.astype(np.float32) * 2 - 1


def residual_train(matrix: np.ndarray, bits: int) -> dict[str, Any]:
    x = np.asarray(matrix, dtype=np.float32)
    mu = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    r = x - mu
    alphas = []
    for _ in range(bits):
        alpha = np.abs(r).mean(axis=0, dtype=np.float64).astype(np.float32)
        b = np.where(r >= 0, np.float32(1), np.float32(-1))
        r -= alpha * b
        alphas.append(_floats(alpha))
    return {"method": "residual", "bits": bits, "mean": _floats(mu), "alpha": alphas, "bit_order": "big",
            "layout": "planes"}


def residual_encode(matrix: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    x = np.asarray(matrix, dtype=np.float32)
    n, d = x.shape
    r = x - _array(params["mean"])
    planes = np.empty((n, len(params["alpha"]), d), dtype=bool)
    for t, alpha in enumerate(params["alpha"]):
        pos = r >= 0
        planes[:, t] = pos
        r -= _array(alpha) * np.where(pos, np.float32(1), np.float32(-1))
    return np.packbits(planes.reshape(n, -1), axis=1, bitorder="big")


def residual_decode(codes: np.ndarray, params: dict[str, Any], dim: int) -> np.ndarray:
    bits = len(params["alpha"])
    flat = np.unpackbits(np.ascontiguousarray(codes, dtype=np.uint8), axis=1, count=dim * bits, bitorder="big")
    planes = flat.reshape(len(codes), bits, dim).astype(np.float32) * 2 - 1
    out = np.broadcast_to(_array(params["mean"]), (len(codes), dim)).copy()
    for t, alpha in enumerate(params["alpha"]):
        out += _array(alpha) * planes[:, t]
    return out


# ------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Codec:
    """One compression method: how its codes are stored, made and read back.

    ``dtype``: the stored element type; ``width(params, dim)``: bytes (or elements) per vector;
    ``encode``/``decode`` between float32 rows and codes; ``binary``: 1-bit codes searched with
    Hamming distance.
    """

    method: str
    dtype: str
    width: Callable[[dict[str, Any], int], int]
    encode: Callable[[np.ndarray, dict[str, Any], int], np.ndarray]
    decode: Callable[[np.ndarray, dict[str, Any], int], np.ndarray]
    binary: bool = False


def _same_width(params: dict[str, Any], dim: int) -> int:
    return dim


#: Every method by name. A new codec is one entry here (plus, if an index serves its codes as they
#: are, one builder in :mod:`vecpipe.index.compressed`).
CODECS: dict[str, Codec] = {
    "int8": Codec("int8", "int8", _same_width, lambda m, p, d: scalar_encode(m, p), lambda c, p, d: scalar_decode(c, p)),
    "uint8": Codec("uint8", "uint8", _same_width, lambda m, p, d: scalar_encode(m, p), lambda c, p, d: scalar_decode(c, p)),
    "fp16": Codec("fp16", "float16", _same_width, lambda m, p, d: np.asarray(m, dtype=np.float16),
                  lambda c, p, d: np.asarray(c, dtype=np.float32)),
    "float32": Codec("float32", "float32", _same_width, lambda m, p, d: np.asarray(m, dtype=np.float32),
                     lambda c, p, d: np.asarray(c, dtype=np.float32)),
    "pq": Codec("pq", "uint8", lambda p, d: (int(p["m"]) * int(p["nbits"]) + 7) // 8, pq_encode, pq_decode),
    "binary": Codec("binary", "uint8", lambda p, d: (d + 7) // 8, lambda m, p, d: binary_encode(m, p),
                    lambda c, p, d: binary_unpack(c, d), binary=True),
    "residual": Codec("residual", "uint8", lambda p, d: (d * int(p["bits"]) + 7) // 8,
                      lambda m, p, d: residual_encode(m, p), residual_decode),
}
METHODS = tuple(CODECS)


def codec(params: dict[str, Any]) -> Codec:
    method = params.get("method")
    if method not in CODECS:
        raise ValueError(f"unknown compression method {method}")
    return CODECS[method]


def code_width(params: dict[str, Any], dim: int) -> int:
    return codec(params).width(params, dim)


def code_dtype(params: dict[str, Any]) -> str:
    return codec(params).dtype


def encode(matrix: np.ndarray, params: dict[str, Any], dim: int) -> np.ndarray:
    return codec(params).encode(matrix, params, dim)


def decode(codes: np.ndarray, params: dict[str, Any], dim: int) -> np.ndarray:
    """Float32 reconstruction of codes (for 1-bit codes: ±1 per dimension)."""
    return codec(params).decode(codes, params, dim)


def train_sample(n: int, train_size: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a seeded training sample of ``train_size`` rows (None: use all ``n``)."""
    if n <= train_size:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=train_size, replace=False))

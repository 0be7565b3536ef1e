"""Fixed-dimensional encodings of vector sets (MUVERA, Dhulipala et al., 2024, arXiv:2405.19504).

A set of token vectors becomes one vector whose inner product with another set's encoding
approximates their Chamfer similarity ``sum_q max_p <q, p>``, so that any single-vector index can
retrieve candidates for an exact Chamfer rerank. Per repetition ``r`` of ``reps``:

1. SimHash partition: ``ksim`` Gaussian hyperplanes ``g_1..g_ksim`` (seeded) give each vector the
   bits ``[<g_i, x> > 0]``, read as the bucket number ``k = sum_i bit_i 2^(i-1)`` of ``B = 2^ksim``.
2. Inner projection: ``psi(x) = S^T x / sqrt(dproj)`` with ``S`` a ``d x dproj`` matrix of random
   ``+-1`` (seeded); none when ``dproj`` equals ``d``.
3. Blocks: a query's block ``k`` is the *sum* of ``psi(q)`` over its vectors in bucket ``k``; a
   document's is their *mean*. A document bucket no vector falls in takes ``psi(p)`` of the
   document's vector whose bits are nearest to ``k`` in Hamming distance (the first such vector);
   query buckets are never filled.

The encoding concatenates the ``B`` blocks of every repetition (``reps * B * dproj`` values);
``final_dim`` optionally maps it by a count sketch (each coordinate added with a random sign into
one of ``final_dim`` seeded places). Every random draw comes from ``numpy.random.default_rng`` seeded
with ``(seed, repetition)`` (``(seed, FINAL_STREAM)`` for the count sketch): same parameters and
seed, same encodings, on any machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vecpipe.errors import InputError, UsageError

ROLES = ("query", "doc")
DEFAULTS = {"reps": 20, "ksim": 5, "dproj": 16, "seed": 0}
MAX_KSIM = 12
MAX_REPS = 4096
#: most values an encoding may have before the final projection
MAX_DIM = 1 << 22
#: the random stream of the final count sketch (repetitions use streams 0..reps-1)
FINAL_STREAM = 1 << 30
#: bump when the encoding of the same parameters changes
VERSION = 1


@dataclass(frozen=True)
class FdeParams:
    """The parameters an encoding depends on (queries and documents must share all of them)."""

    dim: int  # the token vectors' dimension d
    reps: int = DEFAULTS["reps"]
    ksim: int = DEFAULTS["ksim"]
    dproj: int = DEFAULTS["dproj"]
    final_dim: int | None = None
    seed: int = DEFAULTS["seed"]

    @property
    def buckets(self) -> int:
        return 1 << self.ksim

    @property
    def raw_dim(self) -> int:
        """Values of the encoding before the final projection: ``reps * 2^ksim * dproj``."""
        return self.reps * self.buckets * self.dproj

    @property
    def out_dim(self) -> int:
        return self.final_dim if self.final_dim is not None else self.raw_dim

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["version"] = VERSION
        return out


def check_options(reps: int, ksim: int, dproj: int, final_dim: int | None, seed: int) -> None:
    """Usage checks of the numbers alone (before any input is read)."""
    if not 1 <= reps <= MAX_REPS:
        raise UsageError(f"--reps {reps}: must be 1 to {MAX_REPS}")
    if not 0 <= ksim <= MAX_KSIM:
        raise UsageError(f"--ksim {ksim}: must be 0 to {MAX_KSIM} (2^ksim buckets per repetition)")
    if dproj < 1:
        raise UsageError(f"--dproj {dproj}: must be at least 1")
    if final_dim is not None and final_dim < 1:
        raise UsageError(f"--final-dim {final_dim}: must be at least 1")
    if not 0 <= seed < 2**63:
        raise UsageError(f"--seed {seed}: must be 0 to 2^63-1")
    raw = reps * (1 << ksim) * dproj
    if raw > MAX_DIM:
        raise UsageError(f"--reps {reps} --ksim {ksim} --dproj {dproj}: {raw} values per encoding, more than {MAX_DIM}; "
                         "use fewer repetitions, buckets or projected dimensions")
    if final_dim is not None and final_dim > raw:
        raise UsageError(f"--final-dim {final_dim}: more than the {raw} values the encoding has (reps x 2^ksim x dproj)")


def make_params(dim: int, reps: int, ksim: int, dproj: int, final_dim: int | None, seed: int, name: str) -> FdeParams:
    check_options(reps, ksim, dproj, final_dim, seed)
    if dproj > dim:
        raise InputError(f"{name}: --dproj {dproj} is more than the token vectors' dimension {dim}; use {dim} or less")
    return FdeParams(dim=dim, reps=reps, ksim=ksim, dproj=dproj, final_dim=final_dim, seed=seed)


def params_from_record(rec: dict[str, Any], name: str) -> FdeParams:
    """The parameters an encoding's metadata records (``--like``), checked."""
    try:
        params = FdeParams(dim=int(rec["dim"]), reps=int(rec["reps"]), ksim=int(rec["ksim"]), dproj=int(rec["dproj"]),
                           final_dim=None if rec.get("final_dim") is None else int(rec["final_dim"]), seed=int(rec["seed"]))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{name}: its fde metadata is incomplete; give encodings written by vecpipe fde") from None
    if rec.get("version") != VERSION:
        raise InputError(f"{name}: encodings of fde version {rec.get('version')}; this vecpipe writes version {VERSION}: "
                         "encode the documents again")
    return params


@dataclass
class Randomness:
    """The seeded random draws of one parameter set."""

    hyperplanes: list[np.ndarray]  # per repetition [d, ksim] float32 Gaussian
    projections: list[np.ndarray | None]  # per repetition [d, dproj] float32 of +-1/sqrt(dproj), None when dproj == d
    sketch_index: np.ndarray | None  # [raw_dim] int64 in [0, final_dim)
    sketch_sign: np.ndarray | None  # [raw_dim] float32 +-1


def randomness(p: FdeParams) -> Randomness:
    planes: list[np.ndarray] = []
    projs: list[np.ndarray | None] = []
    for r in range(p.reps):
        rng = np.random.default_rng([p.seed, r])
        planes.append(rng.standard_normal((p.dim, p.ksim)).astype(np.float32))
        if p.dproj == p.dim:
            projs.append(None)
        else:
            signs = rng.integers(0, 2, size=(p.dim, p.dproj)).astype(np.float32) * 2 - 1
            projs.append((signs / np.sqrt(np.float32(p.dproj))).astype(np.float32))
    index = sign = None
    if p.final_dim is not None:
        rng = np.random.default_rng([p.seed, FINAL_STREAM])
        index = rng.integers(0, p.final_dim, size=p.raw_dim).astype(np.int64)
        sign = (rng.integers(0, 2, size=p.raw_dim).astype(np.float32) * 2 - 1)
    return Randomness(planes, projs, index, sign)


_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << MAX_KSIM)], dtype=np.int64)


class FdeEncoder:
    """Encodes batches of vector sets (flat ``[T, d]`` token vectors + row offsets) for one role."""

    def __init__(self, params: FdeParams, role: str):
        if role not in ROLES:
            raise UsageError(f"--role {role}: expected query or doc")
        self.params, self.role = params, role
        self.rand = randomness(params)
        self._weights = (np.int64(1) << np.arange(params.ksim, dtype=np.int64))
        self._planes = np.ascontiguousarray(np.concatenate(self.rand.hyperplanes, axis=1))
        projs = self.rand.projections
        self._projs = None if projs[0] is None else np.ascontiguousarray(np.concatenate([q for q in projs if q is not None], axis=1))
        if params.final_dim is not None:
            assert self.rand.sketch_index is not None
            order = np.argsort(self.rand.sketch_index, kind="stable")
            self._order = order
            idx = self.rand.sketch_index[order]
            self._starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
            self._targets = idx[self._starts]

    def encode(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[n, out_dim]`` float32 encodings of the ``n`` sets ``flat[offsets[i]:offsets[i+1]]``."""
        p = self.params
        flat = np.ascontiguousarray(flat, dtype=np.float32)
        offsets = np.asarray(offsets, dtype=np.int64)
        n = len(offsets) - 1
        lengths = np.diff(offsets)
        row_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        B = p.buckets
        out = np.zeros((n, p.reps, B, p.dproj), dtype=np.float32)
        fill = self.role == "doc"
        nonempty = np.flatnonzero(lengths > 0)
        starts = offsets[:-1][nonempty] - offsets[0]
        # every repetition's hyperplanes and projection in one product each
        bits = (flat @ self._planes) > 0  # [T, reps * ksim]
        projected = flat @ self._projs if self._projs is not None else None  # [T, reps * dproj]
        for r in range(p.reps):
            codes = bits[:, r * p.ksim:(r + 1) * p.ksim].astype(np.int64) @ self._weights if p.ksim else np.zeros(len(flat), np.int64)
            x = projected[:, r * p.dproj:(r + 1) * p.dproj] if projected is not None else flat
            cell = row_of * B + codes
            block = np.zeros((n * B, p.dproj), dtype=np.float32)
            if len(cell):
                order = np.argsort(cell, kind="stable")
                sorted_cells = cell[order]
                first = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
                block[sorted_cells[first]] = np.add.reduceat(x[order], first, axis=0)
            if fill:
                counts = np.bincount(cell, minlength=n * B).astype(np.float32)
                block /= np.maximum(counts, 1)[:, None]
                if len(nonempty):
                    self._fill_empty(block, counts, codes, x, nonempty, starts)
            out[:, r] = block.reshape(n, B, p.dproj)
        enc = out.reshape(n, p.raw_dim)
        if p.final_dim is None:
            return enc
        return self._sketch(enc)

    def _fill_empty(self, block: np.ndarray, counts: np.ndarray, codes: np.ndarray, x: np.ndarray,
                    nonempty: np.ndarray, starts: np.ndarray) -> None:
        """Empty buckets of documents with vectors take the vector nearest in Hamming distance of bits."""
        B = self.params.buckets
        empty = counts.reshape(-1, B)[nonempty] == 0  # [rows with vectors, B]
        if not empty.any():
            return
        T = len(codes)
        ham = _POPCOUNT[codes[:, None] ^ np.arange(B, dtype=np.int64)[None, :]]  # [T, B]
        key = ham * T + np.arange(T, dtype=np.int64)[:, None]  # smallest distance, then first vector
        best = np.minimum.reduceat(key, starts, axis=0) % T  # [rows with vectors, B] token index
        rows, buckets = np.nonzero(empty)
        block[nonempty[rows] * B + buckets] = x[best[rows, buckets]]

    def _sketch(self, enc: np.ndarray) -> np.ndarray:
        assert self.rand.sketch_sign is not None and self.params.final_dim is not None
        signed = enc * self.rand.sketch_sign[None, :]
        sums = np.add.reduceat(signed[:, self._order], self._starts, axis=1)
        out = np.zeros((len(enc), self.params.final_dim), dtype=np.float32)
        out[:, self._targets] = sums
        return out

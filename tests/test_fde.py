"""MUVERA fixed-dimensional encodings (vecpipe.compress.fde) against a slow, direct transcription of
the paper's definitions (Dhulipala et al., 2024, section 2 / algorithm 1), and their properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vecpipe.compress.fde import FdeEncoder, FdeParams, randomness
from vecpipe.errors import UsageError


def slow_fde(sets: list[np.ndarray], p: FdeParams, role: str) -> np.ndarray:
    """F_q / F_doc of the paper, coordinate by coordinate, with the encoder's own random draws.

    phi_r(x) = the bucket whose bits are [<g_i, x> > 0], i = 1..ksim (bit i worth 2^(i-1)).
    psi_r(x) = (1 / sqrt(dproj)) S_r^T x, S_r in {-1, +1}^(d x dproj) (identity when dproj = d).
    F_q(Q)[r, k]   = sum over q in Q with phi_r(q) = k of psi_r(q).
    F_doc(P)[r, k] = (1 / |P_k|) sum over p in P_k of psi_r(p), P_k = {p : phi_r(p) = k}, when P_k is not
                     empty; else psi_r(p*) with p* the first p of least Hamming distance between the
                     bits of phi_r(p) and of k.
    Final projection (optional): out[j] = sum over i with h(i) = j of s(i) F[i].
    """
    rnd = randomness(p)
    B = 2 ** p.ksim
    out = []
    for P in sets:
        F = np.zeros((p.reps, B, p.dproj), dtype=np.float64)
        for r in range(p.reps):
            G = rnd.hyperplanes[r].astype(np.float64)

            def phi(x, G=G):
                return sum((1 << i) for i in range(p.ksim) if float(x @ G[:, i]) > 0)

            proj = rnd.projections[r]
            if proj is None:
                def psi(x):
                    return x.astype(np.float64)
            else:
                S = np.sign(proj).astype(np.float64)  # the +-1 matrix

                def psi(x, S=S):
                    return np.array([sum(S[t, j] * float(x[t]) for t in range(p.dim)) for j in range(p.dproj)]) / np.sqrt(p.dproj)

            buckets = [phi(x) for x in P]
            for k in range(B):
                members = [x for x, b in zip(P, buckets) if b == k]
                if role == "query":
                    for x in members:
                        F[r, k] += psi(x)
                elif members:
                    F[r, k] = sum(psi(x) for x in members) / len(members)
                elif len(P):
                    dist = [bin(b ^ k).count("1") for b in buckets]
                    F[r, k] = psi(P[dist.index(min(dist))])
        flat = F.reshape(-1)
        if p.final_dim is not None:
            final = np.zeros(p.final_dim)
            for i in range(len(flat)):
                final[rnd.sketch_index[i]] += rnd.sketch_sign[i] * flat[i]
            flat = final
        out.append(flat)
    return np.array(out)


def _sets(seed: int, dim: int, sizes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, dim)).astype(np.float32) for n in sizes]


def _encode(sets: list[np.ndarray], p: FdeParams, role: str) -> np.ndarray:
    offsets = np.r_[0, np.cumsum([len(s) for s in sets])]
    flat = np.concatenate(sets) if sum(len(s) for s in sets) else np.zeros((0, p.dim), np.float32)
    return FdeEncoder(p, role).encode(flat, offsets)


@pytest.mark.parametrize("params", [
    FdeParams(dim=6, reps=3, ksim=2, dproj=3, seed=7),
    FdeParams(dim=6, reps=2, ksim=3, dproj=6, seed=1),  # dproj = d: no projection; 8 buckets, most empty
    FdeParams(dim=5, reps=2, ksim=0, dproj=2, seed=3),  # one bucket: sums and means of all vectors
    FdeParams(dim=6, reps=2, ksim=2, dproj=4, final_dim=9, seed=11),  # count sketch
])
@pytest.mark.parametrize("role", ["query", "doc"])
def test_fast_encoder_matches_the_papers_formulas(params, role):
    sets = _sets(params.seed + 100, params.dim, [1, 2, 5, 7, 0, 3])
    fast = _encode(sets, params, role)
    slow = slow_fde(sets, params, role)
    assert fast.shape == (len(sets), params.out_dim) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert not fast[4].any()  # a set without vectors encodes as zeros, for either role


def test_document_buckets_are_filled_and_query_buckets_are_not():
    p = FdeParams(dim=6, reps=1, ksim=3, dproj=6, seed=0)
    one = _sets(5, 6, [1])
    q, d = _encode(one, p, "query").reshape(8, 6), _encode(one, p, "doc").reshape(8, 6)
    assert (np.abs(q).sum(axis=1) > 0).sum() == 1  # one vector: one query bucket holds it
    np.testing.assert_allclose(d, np.repeat(one[0], 8, axis=0), rtol=1e-6)  # every doc bucket is that vector


def test_one_bucket_without_projection_gives_the_mean_inner_product():
    # ksim 0, dproj = d: <F_q(Q), F_doc(P)> = sum_q <q, mean(P)> exactly, per repetition
    p = FdeParams(dim=4, reps=3, ksim=0, dproj=4)
    Q, P = _sets(2, 4, [3, 5])
    got = float(_encode([Q], p, "query")[0] @ _encode([P], p, "doc")[0])
    assert got == pytest.approx(3 * float(Q.sum(axis=0) @ P.mean(axis=0)), rel=1e-5)


def test_inner_products_track_chamfer_similarity():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16))

    def sample(n):
        x = centres[rng.integers(0, 40, n)] + 0.3 * rng.standard_normal((n, 16))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    Q, docs = [sample(6) for _ in range(6)], [sample(20) for _ in range(60)]
    p = FdeParams(dim=16, reps=20, ksim=3, dproj=16)
    fq, fd = _encode(Q, p, "query"), _encode(docs, p, "doc")
    approx = (fq @ fd.T).ravel()
    exact = np.array([(q @ d.T).max(axis=1).sum() for q, d in itertools.product(Q, docs)])
    assert np.corrcoef(approx, exact)[0, 1] > 0.8


def test_seeded_and_deterministic():
    sets = _sets(1, 8, [4, 6])
    a = _encode(sets, FdeParams(dim=8, reps=2, ksim=2, dproj=4, seed=5), "doc")
    b = _encode(sets, FdeParams(dim=8, reps=2, ksim=2, dproj=4, seed=5), "doc")
    c = _encode(sets, FdeParams(dim=8, reps=2, ksim=2, dproj=4, seed=6), "doc")
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    # encoding rows one at a time gives the same rows as a batch
    one = np.concatenate([_encode([s], FdeParams(dim=8, reps=2, ksim=2, dproj=4, seed=5), "doc") for s in sets])
    np.testing.assert_array_equal(one, a)


def test_option_ranges():
    from vecpipe.compress.fde import check_options

    for args in [(0, 5, 16, None, 0), (20, 13, 16, None, 0), (20, 5, 0, None, 0), (20, 5, 16, 0, 0),
                 (20, 5, 16, None, -1), (20, 5, 16, 10241, 0), (4096, 12, 1024, None, 0)]:
        with pytest.raises(UsageError):
            check_options(*args)
    check_options(20, 5, 16, 10240, 0)

"""The blocked Hamming scan returns exactly what faiss's flat binary scan returns."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered, write_vectors

pytest.importorskip("numba", reason="the blocked Hamming scan needs numba")

from vecpipe.index import hamming


def _faiss_knn(codes: np.ndarray, queries: np.ndarray, k: int):
    import faiss

    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)
    return index.search(queries, k)


def _true_distances(codes, queries, labels):
    bits = np.unpackbits(codes, axis=1)
    qbits = np.unpackbits(queries, axis=1)
    return np.array([[np.count_nonzero(bits[j] != qbits[i]) for j in row] for i, row in enumerate(labels)])


@pytest.mark.parametrize("n_bits, n_codes, n_queries, k", [
    (384, 5000, 21, 10), (64, 3000, 8, 1), (128, 2049, 3, 50), (512, 700, 17, 400), (96, 40, 9, 100),
])
def test_scan_matches_faiss(n_bits, n_codes, n_queries, k):
    rng = np.random.default_rng(n_bits + n_codes)
    base = rng.integers(0, 256, (50, n_bits // 8), dtype=np.uint8)
    codes = base[rng.integers(0, 50, n_codes)] ^ (rng.random((n_codes, n_bits // 8)) < 0.05).astype(np.uint8)
    queries = codes[rng.integers(0, n_codes, n_queries)] ^ (rng.random((n_queries, n_bits // 8)) < 0.05).astype(np.uint8)
    d, i = hamming.HammingScan(codes, n_bits).search(queries, k)
    fd, _fi = _faiss_knn(codes, queries, min(k, n_codes))
    assert d.shape == (n_queries, min(k, n_codes))
    np.testing.assert_array_equal(d, fd)  # same sorted distances
    np.testing.assert_array_equal(d, _true_distances(codes, queries, i))  # labels carry those distances
    assert all(len(set(row)) == len(row) for row in i)


def test_padding_bytes_do_not_change_distances():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (300, 48), dtype=np.uint8)
    padded = np.concatenate([codes, np.zeros((300, 16), np.uint8)], axis=1)
    a = hamming.HammingScan(codes, 384).search(codes[:5], 7)
    b = hamming.HammingScan(padded, 384).search(padded[:5], 7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_search_uses_the_scan_and_agrees_with_faiss(cli, tmp_path, monkeypatch):
    docs = clustered(3000, 64, seed=5)
    d = write_vectors(tmp_path / "d.parquet", docs)
    q = write_vectors(tmp_path / "q.parquet", docs[:40], prefix="q")
    assert cli("binarize", d, "--bits", 1, "-o", tmp_path / "b.parquet", "-q").exit_code == 0
    assert cli("build-index", tmp_path / "b.parquet", "--spec", "BFlat", "-o", tmp_path / "b.vpi", "-q").exit_code == 0
    from vecpipe.index import load_index

    loaded = load_index(tmp_path / "b.vpi")
    monkeypatch.setattr(hamming, "MIN_PAIRS", 0)
    assert loaded._hamming_scan(40) is not None
    scan_scores, _ = loaded.search(docs[:40], 25)
    monkeypatch.setenv("VECPIPE_HAMMING", "faiss")
    assert loaded._hamming_scan(40) is None
    faiss_scores, _ = loaded.search(docs[:40], 25)
    np.testing.assert_array_equal(scan_scores, faiss_scores)
    monkeypatch.delenv("VECPIPE_HAMMING")
    res = cli("search", q, "--index", tmp_path / "b.vpi", "-k", 5, "--format", "trec", "-q")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 200


def test_small_searches_use_faiss():
    assert not hamming.worth_it(10, 1000)
    assert hamming.worth_it(1000, 1_000_000)

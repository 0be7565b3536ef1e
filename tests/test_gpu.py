"""The GPU paths, tested where there is no GPU.

* The exact scan (:mod:`vecpipe.index.gpu`) runs its own code with NumPy as the array module: the
  threshold top-k selection, its whole-row fallbacks, corpus blocks streamed or resident, SQ8 / fp16
  decoding and 1-bit codes as +-1 products, against faiss's CPU results.
* ``search`` / ``rerank --device cuda`` run end to end with NumPy standing in for CuPy, and must give
  the CPU's run; without CuPy, ``--device cuda`` is one line and exit status 1.
* The GPU form of a model (:mod:`vecpipe.encode.gpu_graph`) is built, checked and cached on the CPU:
  dequantized, attention fused into MultiHeadAttention (the default model's six blocks), pooling in the
  graph, fp16 weights; the fp32 form must reproduce the model's pooled vectors.

Tests that need a GPU itself live in bench/bench_gpu.py (run on the lent machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import clustered

from vecpipe.index import gpu


def _reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("k", [1, 10, 100])
def test_topk_rows_is_exact_with_ties_lowest_column_first(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 40, size=(30, 20_000)).astype(np.float32)  # many ties, as Hamming distances
    vals, cols = gpu.topk_rows(np, scores, k)
    ref_v, ref_c = _reference(scores, k)
    np.testing.assert_array_equal(vals, ref_v)
    np.testing.assert_array_equal(cols, ref_c)


def test_topk_rows_falls_back_to_whole_rows():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((8, 50_000)).astype(np.float32)
    scores[3] = 1.0  # every score equal: the threshold catches the whole row (over the cap)
    scores[5, ::7] = 5.0  # a spike the strided sample sees often: more than CAP candidates
    for cap in (gpu.CAP, 64):
        vals, cols = gpu.topk_rows(np, scores, 50, cap=cap)
        ref_v, ref_c = _reference(scores, 50)
        np.testing.assert_array_equal(vals, ref_v)
        np.testing.assert_array_equal(cols, ref_c)


def test_candidate_sort_keys_order_signed_scores_and_keep_their_values():
    """The one-sort candidate order (score bits and column in a 64-bit key) on negative scores
    (-hamming, -l2), signed zeros, infinities and ties."""
    rng = np.random.default_rng(5)
    scores = np.round(rng.standard_normal((6, 5_000)), 2).astype(np.float32) * 10
    scores[0, :50] = -0.0
    scores[1, 10] = np.inf
    scores[2, 20] = -np.inf
    scores[3] = -np.abs(scores[3])  # all negative, as -hamming
    ref_v, ref_c = _reference(scores + np.float32(0), 40)
    for collect in (gpu.numpy_collect, False):
        vals, cols = gpu.topk_rows(np, scores, 40, collect=collect)
        np.testing.assert_array_equal(vals, ref_v)
        np.testing.assert_array_equal(cols, ref_c)
    perm = rng.permutation(5_000)
    vals, cols = gpu._sort_candidates(np, scores[:, perm], np.broadcast_to(perm, scores.shape).astype(np.int64), 40)
    np.testing.assert_array_equal(vals, ref_v)
    np.testing.assert_array_equal(cols, ref_c)


def test_topk_rows_small_and_empty():
    scores = np.array([[0.5, 0.1, 0.9]], np.float32)
    vals, cols = gpu.topk_rows(np, scores, 10)
    assert cols.tolist() == [[2, 0, 1]] and vals.shape == (1, 3)
    assert gpu.topk_rows(np, np.zeros((0, 5), np.float32), 3)[0].shape == (0, 3)


def _indexes(x: np.ndarray):
    d = x.shape[1]
    flat_ip, flat_l2 = faiss.IndexFlatIP(d), faiss.IndexFlatL2(d)
    sq8 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    fp16 = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    for index in (flat_ip, flat_l2, sq8, fp16):
        index.train(x)
        index.add(x)
    return {"ip": flat_ip, "l2": flat_l2, "sq8": sq8, "fp16": fp16}


@pytest.mark.parametrize("streamed", [False, True])
def test_scan_equals_faiss(streamed):
    x = clustered(30_000, 48, seed=3)
    q = clustered(40, 48, seed=4)
    kw = {"memory": 1 << 20, "block_rows": 7_000} if streamed else {}
    for name, index in _indexes(x).items():
        metric = "l2" if name == "l2" else "ip"
        scan = gpu.Scan(gpu.corpus_of(index, metric), xp=np, **kw)
        assert scan.resident is not streamed
        dist, labels = index.search(q, 20)
        scores, rows = scan.search(q, 20)
        expected = -dist if metric == "l2" else dist
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
        assert (rows == labels).mean() > 0.99, name  # the same rows, up to near-ties of float rounding


def test_binary_scan_equals_faiss_exactly():
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, size=(25_000, 48), dtype=np.uint8)
    index = faiss.IndexBinaryFlat(384)
    index.add(codes)
    q = codes[:30] ^ rng.integers(0, 256, size=(30, 48), dtype=np.uint8) & 0x11
    dist, labels = index.search(q, 64)
    scores, rows = gpu.Scan(gpu.corpus_of(index, "hamming"), xp=np, block_rows=6_000).search(q, 64)
    np.testing.assert_array_equal(-scores, dist)
    np.testing.assert_array_equal(rows, labels)  # among equal distances the lower row, as faiss keeps


@pytest.mark.parametrize("bits,streamed", [(384, False), (384, True), (100, False), (1024, True)])
def test_fused_hamming_scan_equals_faiss_exactly(bits, streamed):
    """The two-pass histogram scan (NumPy stand-ins for its CUDA kernels, candidates shuffled as atomics
    leave them): the same distances and rows as faiss, ties in row order, code sizes not a multiple
    of 8 bytes, corpora streamed in blocks."""
    rng = np.random.default_rng(bits)
    nbytes = bits // 8 + (1 if bits % 8 else 0)
    base = rng.integers(0, 256, size=(40, nbytes), dtype=np.uint8)
    codes = base[rng.integers(0, 40, 6_000)] ^ (rng.integers(0, 256, size=(6_000, nbytes), dtype=np.uint8) & 0x21)
    codes[100:400] = codes[50]  # a block of exact duplicates: ties at every distance
    index = faiss.IndexBinaryFlat(nbytes * 8)
    index.add(codes)
    q = np.vstack([codes[50:51], codes[:20] ^ (rng.integers(0, 256, size=(20, nbytes), dtype=np.uint8) & 0x03)])
    dist, labels = index.search(q, 50)
    kw = {"memory": 1 << 16, "block_rows": 1_500} if streamed else {}
    scan = gpu.Scan(gpu.corpus_of(index, "hamming"), xp=np, fused=True, **kw)
    assert scan.fused and scan.resident is not streamed
    scores, rows = scan.search(q, 50)
    np.testing.assert_array_equal(-scores, dist)
    np.testing.assert_array_equal(rows, labels)


def test_fused_hamming_topk_gives_way_when_ties_overflow():
    codes = np.zeros((3_000, 8), np.uint8)  # every code equal: 3,000 ties at distance 0
    q_words, d_words = gpu.as_words(np, codes[:4]), gpu.as_words(np, codes)
    assert gpu.hamming_topk(np, q_words, d_words, 10, 64, max_ties=1_000) is None
    vals, cols = gpu.hamming_topk(np, q_words, d_words, 10, 64)
    assert (cols == np.arange(10)).all() and (vals == 0).all()
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    scores, rows = gpu.Scan(gpu.corpus_of(index, "hamming"), xp=np, fused=True, memory=1 << 12).search(codes[:4], 10)
    assert (rows == np.arange(10)).all() and (scores == 0).all()  # through the matrix-product path


def test_scan_pads_when_k_exceeds_the_corpus():
    x = clustered(5, 8)
    index = faiss.IndexFlatIP(8)
    index.add(x)
    scores, rows = gpu.Scan(gpu.corpus_of(index, "ip"), xp=np).search(x[:2], 8)
    assert rows.shape == (2, 8) and (rows[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


def test_other_index_kinds_have_no_gpu_scan():
    x = clustered(2_000, 16)
    hnsw = faiss.IndexHNSWFlat(16, 8)
    hnsw.add(x)
    assert gpu.corpus_of(hnsw, "ip") is None
    pq_index = faiss.IndexPQ(16, 4, 8)
    pq_index.train(x)
    assert gpu.corpus_of(pq_index, "ip") is None


# -- the commands, with NumPy standing in for CuPy -----------------------------------------------------


@pytest.fixture
def numpy_gpu(monkeypatch):
    monkeypatch.setattr(gpu, "cupy_or_reason", lambda: (np, None))


def _ranks(path: Path):
    return pq.read_table(path).select(["qid", "docid", "rank"])


def test_search_and_rerank_on_the_gpu_path_give_the_cpu_run(cli, docs_queries, tmp_path, numpy_gpu):
    d_path, q_path, *_ = docs_queries
    for extra, name in (([], "flat"), (["--spec", "SQ8"], "sq8")):
        assert cli("build-index", d_path, "-o", tmp_path / f"{name}.vpi", *extra, "-q").exit_code == 0
        runs = {}
        for device in ("cuda", "cpu"):
            res = cli("search", q_path, "--index", tmp_path / f"{name}.vpi", "-k", 10, "--device", device,
                      "-o", tmp_path / f"{name}.{device}.parquet", "-q")
            assert res.exit_code == 0, res.stderr
            runs[device] = _ranks(tmp_path / f"{name}.{device}.parquet")
        assert runs["cuda"].equals(runs["cpu"]), name
    assert cli("binarize", d_path, "--bits", "1", "-o", tmp_path / "b.parquet", "-q").exit_code == 0
    assert cli("build-index", tmp_path / "b.parquet", "-o", tmp_path / "b.vpi", "-q").exit_code == 0
    for device in ("cuda", "cpu"):
        res = cli("search", q_path, "--index", tmp_path / "b.vpi", "-k", 10, "--device", device, "--rescore", d_path,
                  "-o", tmp_path / f"b.{device}.parquet", "-q")
        assert res.exit_code == 0, res.stderr
        res = cli("rerank", tmp_path / "flat.cpu.parquet", "--vectors", d_path, "--queries", q_path, "--device", device,
                  "-o", tmp_path / f"r.{device}.parquet", "-q")
        assert res.exit_code == 0, res.stderr
    assert _ranks(tmp_path / "b.cuda.parquet").equals(_ranks(tmp_path / "b.cpu.parquet"))
    assert _ranks(tmp_path / "r.cuda.parquet").equals(_ranks(tmp_path / "r.cpu.parquet"))


def test_search_notes_indexes_that_stay_on_the_cpu(cli, docs_queries, tmp_path, numpy_gpu):
    d_path, q_path, *_ = docs_queries
    cli("build-index", d_path, "--spec", "HNSW8", "-o", tmp_path / "h.vpi", "-q")
    res = cli("search", q_path, "--index", tmp_path / "h.vpi", "--device", "cuda", "-o", tmp_path / "run.parquet")
    assert res.exit_code == 0, res.stderr
    assert "searched on the CPU" in res.stderr and "HNSW8" in res.stderr
    cli("build-index", d_path, "-o", tmp_path / "f.vpi", "-q")
    res = cli("search", q_path, "--index", tmp_path / "f.vpi", "-o", tmp_path / "auto.parquet")
    assert res.exit_code == 0 and "--device auto: searching on CUDA" in res.stderr


def test_device_cuda_without_cupy_is_one_line(cli, docs_queries, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "cupy_or_reason", lambda: (None, "GPU search needs CuPy: pip install 'vecpipe[gpu]'"))
    d_path, q_path, *_ = docs_queries
    cli("build-index", d_path, "-o", tmp_path / "f.vpi", "-q")
    res = cli("search", q_path, "--index", tmp_path / "f.vpi", "--device", "cuda", "-o", tmp_path / "run.parquet")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "vecpipe[gpu]" in res.stderr
    assert not (tmp_path / "run.parquet").exists()
    # auto falls back to the CPU quietly
    res = cli("search", q_path, "--index", tmp_path / "f.vpi", "-o", tmp_path / "run.parquet", "-q")
    assert res.exit_code == 0 and res.stderr == ""


def test_real_cupy_reason_names_the_extra():
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert "vecpipe[gpu]" in (gpu.cupy_or_reason()[1] or "")
    else:  # pragma: no cover - a machine with CuPy
        pytest.skip("CuPy is installed here")


# -- the GPU form of a model --------------------------------------------------------------------------


onnx = pytest.importorskip("onnx")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _pooled_reference(spec, ids, mask, pooling):
    from vecpipe.encode.onnx import pool
    from vecpipe.encode.runtime import onnxruntime

    sess = onnxruntime().InferenceSession(str(spec.onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feed = {n: ids if n == "input_ids" else mask if n == "attention_mask" else np.zeros_like(ids) for n in names}
    return pool(sess.run(None, feed)[0], mask, pooling)


def _run_graph(data: bytes, ids, mask):
    from vecpipe.encode.runtime import onnxruntime

    sess = onnxruntime().InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    feed = {n: ids if n == "input_ids" else mask if n == "attention_mask" else np.zeros_like(ids) for n in names}
    assert [o.name for o in sess.get_outputs()] == ["sentence_embedding"]
    return sess.run(None, feed)[0]


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 5000, size=(4, 24)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    mask[3, 3:] = 0
    return ids, mask


def _cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_default_model_gpu_form_fuses_attention_and_reproduces_the_model(cache):
    from vecpipe.encode.gpu_graph import build_graph
    from vecpipe.encode.model import resolve_model

    spec = resolve_model(None)
    data = build_graph(spec, "fp32", "mean")
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MultiHeadAttention") == 6  # every block of all-MiniLM-L6-v2
    assert "IsNaN" not in ops and "Softmax" not in ops
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)  # dequantized once
    ids, mask = _batch()
    got = _run_graph(data, ids, mask)
    want = _pooled_reference(spec, ids, mask, "mean")
    assert _cos(got, want).min() > 0.99999
    fp16 = onnx.load_from_string(build_graph(spec, "fp16", "mean"))
    big = [t for t in fp16.graph.initializer if len(t.dims) == 2 and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_in_the_graph_equals_numpy_pooling(tmp_path, pooling, cache):
    from tinymodel import make_tiny_model

    from vecpipe.encode.gpu_graph import build_graph
    from vecpipe.encode.model import resolve_model

    spec = resolve_model(str(make_tiny_model(tmp_path / "m", heads=2, layers=2)))
    ids, mask = _batch(1)
    ids = ids % 100
    got = _run_graph(build_graph(spec, "fp32", pooling), ids, mask)
    np.testing.assert_allclose(got, _pooled_reference(spec, ids, mask, pooling), rtol=1e-4, atol=1e-5)


def test_gpu_graph_is_cached_checked_and_rebuilt(tmp_path, cache, monkeypatch):
    from tinymodel import make_tiny_model

    from vecpipe.encode import gpu_graph
    from vecpipe.encode.model import resolve_model

    spec = resolve_model(str(make_tiny_model(tmp_path / "m")))
    notes: list[str] = []
    path = gpu_graph.cached_graph(spec, "fp32", "mean", note=notes.append)
    assert path.parent == cache / "graphs" and spec.sha256[:24] in path.name
    assert len(notes) == 1 and "building the fp32 GPU form" in notes[0]
    mtime = path.stat().st_mtime_ns
    assert gpu_graph.cached_graph(spec, "fp32", "mean", note=notes.append) == path
    assert path.stat().st_mtime_ns == mtime and len(notes) == 1  # reused, silently
    path.write_bytes(path.read_bytes()[:100])  # torn
    assert gpu_graph.cached_graph(spec, "fp32", "mean", note=notes.append) == path
    assert "damaged" in notes[-1] and len(path.read_bytes()) > 100
    assert not [p for p in path.parent.iterdir() if "tmp" in p.name]
    other = gpu_graph.cached_graph(spec, "fp16", "mean")
    assert other != path  # one file per precision (and pooling, and model)
    monkeypatch.setenv("VECPIPE_GPU_ATTENTION", "unfused")
    assert gpu_graph.graph_path(spec, "fp32", "mean") != path


def test_unfusable_fusion_is_dropped(tmp_path, cache, monkeypatch):
    """A fusion that does not reproduce the model is not shipped: the unfused graph is."""
    from vecpipe.encode import gpu_graph
    from vecpipe.encode.model import resolve_model

    monkeypatch.setattr(gpu_graph, "_same_outputs", lambda a, b: False)
    data = gpu_graph.build_graph(resolve_model(None), "fp32", "mean")
    assert "MultiHeadAttention" not in [n.op_type for n in onnx.load_from_string(data).graph.node]


def test_precision_fp16_on_the_cpu_is_a_usage_error(cli, tmp_path, tiny_model_dir):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "hello"}\n')
    res = cli("embed", corpus, "--model", tiny_model_dir, "--device", "cpu", "--precision", "fp16", "-o", tmp_path / "v.parquet")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "GPU only" in res.stderr
    assert not (tmp_path / "v.parquet").exists()
    res = cli("embed", corpus, "--model", tiny_model_dir, "--device", "cpu", "--precision", "fp32", "-o", tmp_path / "v.parquet", "-q")
    assert res.exit_code == 0, res.stderr  # fp32 is what the CPU runs


def test_cpu_batching_defaults_are_unchanged(tiny_model_dir):
    from vecpipe.encode import load_encoder
    from vecpipe.encode.onnx import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_WINDOW

    enc = load_encoder(str(tiny_model_dir), device="cpu")
    assert (enc.batch_size, enc.max_batch_tokens, enc.window) == (DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_WINDOW)
    assert enc.device == "cpu" and enc.precision == "int8" and enc.info["precision"] == "int8"  # the CPU's default form


def test_inspect_system_reports_cupy(cli):
    res = cli("inspect", "--system")
    assert res.exit_code == 0 and "cupy:" in res.stdout and "onnx:" in res.stdout


@pytest.mark.parametrize("k", [1, 10, 100])
def test_topk_through_the_collect_pass_equals_whole_sorts(k):
    """What surrounds the CUDA collect kernel: unordered candidates, sorted back to score then column;
    rows the threshold under- or over-fills sorted whole."""
    rng = np.random.default_rng(10 + k)
    scores = rng.integers(0, 50, size=(12, 30_000)).astype(np.float32)
    scores[2] = 3.0  # all equal: over any cap
    scores[7, :5] = 1e6  # a few far above the rest
    ref_v, ref_c = _reference(scores, k)
    for cap in (gpu.CAP, 200):
        vals, cols = gpu.topk_rows(np, scores, k, cap=cap, collect=gpu.numpy_collect)
        np.testing.assert_array_equal(vals, ref_v)
        np.testing.assert_array_equal(cols, ref_c)
    vals, cols = gpu.topk_rows(np, scores, k, collect=False)  # the mask pass
    np.testing.assert_array_equal(cols, ref_c)


def test_background_writer_keeps_order_and_raises_the_first_error():
    from vecpipe.pipeline.background import Background

    done: list[int] = []
    with Background() as writer:
        for i in range(50):
            writer.submit(lambda i=i: done.append(i))
    assert done == list(range(50))

    def boom() -> None:
        raise OSError(28, "No space left on device")

    writer = Background()
    writer.submit(boom)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):
            writer.submit(lambda: done.append(-1))
        writer.close()
    assert -1 not in done  # nothing runs after the first error


def test_long_texts_are_tokenized_from_a_prefix_with_the_same_ids():
    from vecpipe.encode import load_encoder

    enc = load_encoder(device="cpu", max_length=16)
    assert enc._cut_chars == 6 * 16
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    texts = [" ".join(words * 40), "x" * 500, " ".join(["a"] * 200), "   " + "word " * 10, "short text", "é" * 90 + " tail"]
    cut = enc._encode(texts)
    whole = enc._tokenizer.encode_batch(texts)
    assert [e.ids for e in cut] == [e.ids for e in whole]


def test_two_prepare_threads_keep_input_order(tiny_model_dir):
    """On a GPU two windows are tokenized at once; the vectors still come back in input order."""
    from vecpipe.encode import load_encoder

    texts = [f"text number {i} " + "word " * (i % 37) for i in range(700)]
    enc = load_encoder(str(tiny_model_dir), device="cpu", window=64)
    one = np.concatenate(list(enc.encode_batches([texts[i : i + 50] for i in range(0, 700, 50)])))
    enc.prepare_threads = 2
    two = np.concatenate(list(enc.encode_batches([texts[i : i + 50] for i in range(0, 700, 50)])))
    np.testing.assert_array_equal(one, two)


def test_two_runners_keep_input_order_and_progress(tiny_model_dir, monkeypatch):
    """On a GPU two threads run batches at once, the next window queued before the last is
    collected; vectors, their order and the progress counts are those of one runner, and a failing
    batch stops the run with the model's one-line error."""
    from vecpipe.encode import load_encoder
    from vecpipe.errors import ModelError

    texts = [f"text number {i} " + "word " * (i % 37) for i in range(700)]
    lists = [texts[i : i + 50] for i in range(0, 700, 50)]
    enc = load_encoder(str(tiny_model_dir), device="cpu", window=64, batch_size=8)
    assert enc.runners == 1
    seen: list[tuple[int, int]] = []
    one = list(enc.encode_batches(lists, on_progress=lambda n, t: seen.append((n, t))))
    enc.runners = 2
    seen2: list[tuple[int, int]] = []
    two = list(enc.encode_batches(lists, on_progress=lambda n, t: seen2.append((n, t))))
    assert [len(x) for x in two] == [len(x) for x in one] == [50] * 14
    np.testing.assert_array_equal(np.concatenate(one), np.concatenate(two))
    assert seen2 == seen and seen[-1][0] == 700
    calls = [0]
    real = enc._run

    def flaky(feed):
        calls[0] += 1
        if calls[0] == 30:
            raise ModelError("model.onnx: inference failed: out of memory")
        return real(feed)

    monkeypatch.setattr(enc, "_run", flaky)
    with pytest.raises(ModelError, match="out of memory"):
        list(enc.encode_batches(lists))
    monkeypatch.setenv("VECPIPE_ENCODE_RUNNERS", "3")
    assert load_encoder(str(tiny_model_dir), device="cpu").runners == 3


def test_batch_widths_padded_to_a_multiple(tiny_model_dir, monkeypatch):
    """On a GPU batch widths are padded up to a multiple of 32 tokens (never past the maximum
    length): fewer shapes for onnxruntime, the same vectors."""
    from vecpipe.encode import load_encoder

    texts = [f"text number {i} " + "word " * (i % 45) for i in range(300)]
    enc = load_encoder(str(tiny_model_dir), device="cpu", max_length=40, batch_size=16)
    assert enc.width_multiple == 1
    plain = np.concatenate(list(enc.encode_batches([texts])))
    widths = {b.mask.shape[1] for b in enc._prepare([300], texts).batches}
    assert any(w % 32 for w in widths)
    enc.width_multiple = 32
    padded_window = enc._prepare([300], texts)
    widths = {b.mask.shape[1] for b in padded_window.batches}
    assert widths <= {32, 40}, widths  # 40: the maximum length, not rounded past it
    assert all(b.mask[:, : max(1, int(b.mask.sum(1).max()))].any() for b in padded_window.batches)
    padded = np.concatenate(list(enc.encode_batches([texts])))
    np.testing.assert_allclose(plain, padded, atol=1e-5)
    monkeypatch.setenv("VECPIPE_ENCODE_WIDTH_MULTIPLE", "8")
    assert load_encoder(str(tiny_model_dir), device="cpu").width_multiple == 8


def test_window_and_prepare_threads_from_the_environment(cli, tmp_path, tiny_model_dir, monkeypatch):
    from vecpipe.encode import load_encoder
    from vecpipe.errors import UsageError

    monkeypatch.setenv("VECPIPE_ENCODE_WINDOW", "96")
    monkeypatch.setenv("VECPIPE_ENCODE_PREPARE_THREADS", "3")
    enc = load_encoder(str(tiny_model_dir), device="cpu")
    assert (enc.window, enc.prepare_threads) == (96, 3)
    texts = [f"text number {i} " + "word " * (i % 37) for i in range(500)]
    tuned = np.concatenate(list(enc.encode_batches([texts[i : i + 50] for i in range(0, 500, 50)])))
    monkeypatch.delenv("VECPIPE_ENCODE_WINDOW")
    monkeypatch.delenv("VECPIPE_ENCODE_PREPARE_THREADS")
    plain = load_encoder(str(tiny_model_dir), device="cpu")
    np.testing.assert_allclose(tuned, np.concatenate(list(plain.encode_batches([texts]))), atol=1e-6)
    monkeypatch.setenv("VECPIPE_ENCODE_WINDOW", "many")
    with pytest.raises(UsageError, match="VECPIPE_ENCODE_WINDOW=many"):
        load_encoder(str(tiny_model_dir), device="cpu")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "d1", "text": "one"}\n')
    res = cli("embed", str(corpus), "--model", str(tiny_model_dir), "-o", str(tmp_path / "v.parquet"))
    assert res.exit_code != 0 and "VECPIPE_ENCODE_WINDOW=many" in res.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "v.parquet").exists()


def test_int8_cpu_form_is_built_cached_and_close_to_the_model(cli, tmp_path, tiny_model_dir, cache):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(f'{{"_id": "d{i}", "text": "text number {i} about {i % 5} things"}}\n' for i in range(40)))
    res = cli("embed", corpus, "--model", tiny_model_dir, "--device", "cpu", "--precision", "int8", "-o", tmp_path / "i8.parquet")
    assert res.exit_code == 0, res.stderr
    assert "building the int8" in res.stderr and list((cache / "graphs").glob("*-int8-mean-*.onnx"))
    assert (cache / "embeddings").exists()  # per-row activation scales: cacheable like any other vector
    res = cli("embed", corpus, "--model", tiny_model_dir, "--device", "cpu", "-o", tmp_path / "f.parquet", "-q")
    a = np.stack(pq.read_table(tmp_path / "i8.parquet").column("embedding").to_numpy(zero_copy_only=False))
    b = np.stack(pq.read_table(tmp_path / "f.parquet").column("embedding").to_numpy(zero_copy_only=False))
    assert _cos(a, b).min() > 0.98
    meta = json.loads(pq.read_schema(tmp_path / "i8.parquet").metadata[b"vecpipe"])
    assert meta["model"]["precision"] == "int8" and meta["model"]["device"] == "cpu"
    model = onnx.load(str(next((cache / "graphs").glob("*-int8-mean-*.onnx"))))
    assert "MatMulInteger" in {n.op_type for n in model.graph.node}
    res = cli("embed", corpus, "--model", tiny_model_dir, "--device", "cpu", "--precision", "int8", "-o", tmp_path / "again.parquet")
    assert res.exit_code == 0 and "building" not in res.stderr  # cached

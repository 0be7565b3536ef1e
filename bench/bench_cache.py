"""Nightly reruns with the embedding cache (issue 18), on a BEIR corpus, printed as a table.

    python bench/bench_cache.py ../shared/datasets/scifact [--change 0.01] [--reps N]

1. a full embed of the corpus into an empty cache (whole command);
2. the corpus with --change of its records edited, as many added and as many removed (seeded);
3. that corpus embedded with the cache, and again with --no-cache (a clean run);
4. the time to read the input and hash its texts (in-process), the bound of issue 18 being
   cached <= 5% of the full embed + that time; and how the cached output compares with the clean one.

--reps N repeats the corpus N times with new ids first (SciFact x 39 = 202,137 passages).
--chunks WORDS:STRIDE first cuts each record (title and text) into overlapping windows of WORDS words,
one every STRIDE words, as retrieval-augmented generation pipelines chunk documents: SciFact at 28:5
is 200,538 distinct passages of about 40 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_dataset, vp

ROOT = Path(__file__).resolve().parents[1]



def chunked(recs: list[dict], size: int, stride: int) -> list[dict]:
    """Each record's words (title first) in windows of `size`, one every `stride` (the last one
    ending at the record's end), as passages with their own ids and no title."""
    out = []
    for r in recs:
        words = (r.get("title", "") + " " + r.get("text", "")).split()
        starts = list(range(0, max(1, len(words) - size + 1), stride))
        if starts[-1] + size < len(words):
            starts.append(len(words) - size)
        out.extend({"_id": f"{r['_id']}-{k}", "title": "", "text": " ".join(words[s:s + size])} for k, s in enumerate(starts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--change", type=float, default=0.01)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--chunks", default="", metavar="WORDS:STRIDE")
    args = ap.parse_args()
    require_dataset(args.data, ("corpus.jsonl",))
    recs = [json.loads(line) for line in open(args.data / "corpus.jsonl") if line.strip()]
    if args.chunks:
        recs = chunked(recs, *(int(x) for x in args.chunks.split(":")))
    if args.reps > 1:
        recs = [dict(r, _id=f"{r['_id']}-{k}") for k in range(args.reps) for r in recs]
    rng = random.Random(0)
    n = len(recs)
    m = max(1, round(n * args.change))
    picked = rng.sample(range(n), 2 * m)
    edited, removed = set(picked[:m]), set(picked[m:])
    new = []
    for i, r in enumerate(recs):
        if i in removed:
            continue
        new.append(dict(r, text=r.get("text", "") + " (revised)") if i in edited else r)
    for j in range(m):
        donor = recs[rng.randrange(n)]
        new.append({"_id": f"added-{j}", "title": donor.get("title", ""), "text": "Addendum. " + donor.get("text", "")})
    with tempfile.TemporaryDirectory(prefix="vecpipe-cache-bench-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, VECPIPE_CACHE_DIR=str(work / "cache"), PYTHONPATH=str(ROOT))
        env.pop("VECPIPE_EMBED_CACHE", None)  # _common turns it off for the other benchmarks
        old_path, new_path = work / "old.jsonl", work / "new.jsonl"
        old_path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        new_path.write_text("".join(json.dumps(r) + "\n" for r in new))
        t_full, _, _ = vp("embed", str(old_path), "-o", str(work / "old.parquet"), "-q", env=env)
        t_cached, _, err = vp("embed", str(new_path), "-o", str(work / "cached.parquet"), env=env)
        note = next((line for line in err.splitlines() if "cache:" in line), "")
        t_clean, _, _ = vp("embed", str(new_path), "--no-cache", "-o", str(work / "clean.parquet"), "-q", env=env)
        sys.path.insert(0, str(ROOT))
        from vecpipe.encode.cache import text_key
        from vecpipe.formats.records import read_records

        t = time.perf_counter()
        for batch in read_records(str(new_path), batch_size=4096):
            for text in batch.column(1).to_pylist():
                text_key(text)
        t_read = time.perf_counter() - t
        import pyarrow.parquet as pq

        a, b = pq.read_table(work / "cached.parquet"), pq.read_table(work / "clean.parquet")
        same_bytes = (work / "cached.parquet").read_bytes() == (work / "clean.parquet").read_bytes()
        va = np.stack(a.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float64)
        vb = np.stack(b.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float64)
        cos = (va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
    bound = 0.05 * t_full + t_read
    shape = (f" in {args.chunks} chunks" if args.chunks else "") + (f" x {args.reps}" if args.reps > 1 else "")
    print(f"\n{args.data.name}{shape}: {n:,} records; {m} edited, {m} added, {m} removed\n")
    print("| run | wall s | notes |\n|---|---|---|")
    print(f"| full embed, empty cache | {t_full:.2f} | |")
    print(f"| embed of the changed corpus with the cache | {t_cached:.2f} | {note.replace('vecpipe: ', '')}; "
          f"{100 * t_cached / t_full:.1f}% of the full embed |")
    print(f"| the same with --no-cache (clean run) | {t_clean:.2f} | |")
    print(f"| reading the input and hashing its texts (in-process) | {t_read:.2f} | |")
    print(f"| bound: 5% of the full embed + reading and hashing | {bound:.2f} | {'met' if t_cached <= bound else 'NOT met'} |")
    print(f"\ncached output against the clean run: ids equal {a.column('id').equals(b.column('id'))}, "
          f"bytes equal {same_bytes}, per-row cosine min {cos.min():.9f}, rows differing {(cos < 1 - 1e-12).sum()}")


if __name__ == "__main__":
    main()

"""The whole pipeline on a BEIR-layout dataset, one stage per row: wall time, rates, peak memory, quality.

    python bench/bench_pipeline.py ../shared/datasets/scifact [--work DIR] [--specs Flat HNSW32]
                                   [--compare-st] [--limit N]

Each stage runs as its own ``vecpipe`` process so its peak resident memory is its own (wait4's
rusage). Tokens are the non-padding tokens the model sees (after truncation at its max length).
With ``--compare-st``, and where sentence-transformers is importable (in this interpreter or the one
``--st-python`` names: keep PyTorch out of vecpipe's own environment), the same corpus is embedded
with it too, in the same run (same model all-MiniLM-L6-v2, fp32 PyTorch on the CPU, max length 256,
batch size 32), and the throughput ratio is printed. The last row evaluates a synthetic
1,000,000-row run through ``vecpipe eval`` (see bench_eval.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import require_dataset

ROOT = Path(__file__).resolve().parents[1]


def run_stage(args: list[str], stdin_path: Path | None = None, stdout_path: Path | None = None) -> tuple[float, float]:
    """Run ``vecpipe ARGS``; return (wall seconds, peak RSS MB)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vecpipe", *args, "-q"], stdin=stdin, stdout=stdout, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for fh in (stdin, stdout):
        if hasattr(fh, "close"):
            fh.close()
    if proc.returncode != 0:
        raise SystemExit(f"stage failed ({proc.returncode}): vecpipe {' '.join(args)}")
    return wall, usage.ru_maxrss / 1024


def count_tokens(path: Path, title: bool = True) -> tuple[int, int]:
    """(records, non-padding tokens at max length 256) with the default model's tokenizer."""
    from tokenizers import Tokenizer

    from vecpipe.formats.records import read_records

    tok = Tokenizer.from_file(str(ROOT / "vecpipe" / "encode" / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    n = tokens = 0
    for batch in read_records(path):
        texts = batch.column("text").to_pylist()
        n += len(texts)
        tokens += sum(len(e.ids) for e in tok.encode_batch(texts))
    return n, tokens


def evaluate(run: Path, qrels: Path) -> dict[str, float]:
    from vecpipe.evaluate import evaluate as ev
    from vecpipe.formats.qrels import read_qrels
    from vecpipe.formats.runs import read_run

    return ev(read_run(run), read_qrels(qrels), ["nDCG@10", "R@100"]).aggregate


def limited(src: Path, dst: Path, limit: int | None) -> Path:
    if not limit:
        return src
    with open(src) as fin, open(dst, "w") as fout:
        for i, line in enumerate(fin):
            if i >= limit:
                break
            fout.write(line)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--work", type=Path, default=None, help="where artifacts go (default: a temporary directory)")
    ap.add_argument("--specs", nargs="+", default=["Flat", "HNSW32"])
    ap.add_argument("--limit", type=int, default=None, help="embed only the first N corpus records")
    ap.add_argument("--compare-st", action="store_true", help="also embed with sentence-transformers (if installed)")
    ap.add_argument("--precision", default=None, choices=["int8"], help="embed with the int8 CPU form of the model (built first, untimed)")
    ap.add_argument("--st-python", default=sys.executable, help="interpreter that has sentence-transformers")
    ap.add_argument("--st-model", default=None, help="local sentence-transformers all-MiniLM-L6-v2 directory")
    args = ap.parse_args()
    require_dataset(args.dataset)

    work = args.work or Path(tempfile.mkdtemp(prefix="vecpipe-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = limited(args.dataset / "corpus.jsonl", work / "corpus.limited.jsonl", args.limit)
    queries, qrels = args.dataset / "queries.jsonl", args.dataset / "qrels" / "test.tsv"
    n_docs, n_tokens = count_tokens(corpus)
    n_queries, q_tokens = count_tokens(queries)

    rows = []
    form = ["--precision", args.precision] if args.precision else []
    if form:  # build and cache the prepared form before the timed runs
        (work / "warm.jsonl").write_text('{"_id": "w", "text": "warm up"}\n')
        run_stage(["embed", str(work / "warm.jsonl"), *form, "-o", str(work / "warm.parquet")])
    wall, rss = run_stage(["embed", str(corpus), *form, "-o", str(work / "docs.vec.parquet")])
    rows.append(("embed corpus", wall, n_docs / wall, n_tokens / wall, rss, None))
    embed_rate = n_docs / wall
    wall, rss = run_stage(["embed", str(queries), *form, "-o", str(work / "queries.vec.parquet")])
    rows.append(("embed queries", wall, n_queries / wall, q_tokens / wall, rss, None))
    for spec in args.specs:
        name = spec.replace(",", "_")
        index = work / f"docs.{name}.vpi"
        wall, rss = run_stage(["build-index", str(work / "docs.vec.parquet"), "--spec", spec, "-o", str(index)])
        rows.append((f"build-index {spec}", wall, n_docs / wall, None, rss, None))
        run = work / f"run.{name}.arrow"
        wall, rss = run_stage(["search", str(work / "queries.vec.parquet"), "--index", str(index), "-k", "100", "-o", str(run)])
        metrics = evaluate(run, qrels)
        rows.append((f"search {spec} k=100", wall, n_queries / wall, None, rss, metrics))
        wall, rss = run_stage(["eval", str(run), "--qrels", str(qrels), "--format", "json"], stdout_path=work / f"metrics.{name}.json")
        rows.append((f"eval {spec}", wall, None, None, rss, None))

    rows.append(eval_million(work))

    st_rate, st_note = (None, "not asked for (--compare-st)")
    if args.compare_st:
        st_rate, st_note = sentence_transformers_rate(args.st_python, args.dataset, args.limit, args.st_model)
        if st_rate is not None:
            rows.append(("sentence-transformers", n_docs / st_rate, st_rate, n_tokens / (n_docs / st_rate), None, None))

    print(f"\nvecpipe pipeline on {args.dataset} ({n_docs} docs, {n_tokens} tokens, {n_queries} queries, {os.cpu_count()} cores)\n")
    header = f"{'stage':<24} {'wall s':>8} {'items/s':>9} {'tokens/s':>9} {'peak MB':>8} {'nDCG@10':>8} {'R@100':>7}"
    print(header)
    print("-" * len(header))
    for stage, wall, rate, tok, rss, m in rows:
        print(f"{stage:<24} {wall:8.2f} {_f(rate, 9, 1)} {_f(tok, 9, 0)} {_f(rss, 8, 0)} "
              f"{_f(m and m['nDCG@10'], 8, 4)} {_f(m and m['R@100'], 7, 4)}")
    if st_rate is not None:
        print(f"\nembed throughput: vecpipe {embed_rate:.2f} docs/s, sentence-transformers {st_rate:.2f} docs/s "
              f"({st_note}): ratio {embed_rate / st_rate:.2f}x")
    else:
        print(f"\nsentence-transformers comparison: n/a ({st_note})")
    (work / "bench.json").write_text(json.dumps(
        [dict(zip(("stage", "wall_s", "rate", "tokens_s", "peak_mb", "metrics"), r)) for r in rows], indent=2))


def eval_million(work: Path):
    """vecpipe eval over a synthetic 1,000,000-row run (10,000 queries x 100) read from an Arrow file."""
    import pyarrow.ipc as ipc

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_eval import build  # type: ignore[import-not-found]

    from vecpipe.formats.runs import RUN_SCHEMA

    run, qrels = build(10_000, 100, 0, None)
    with ipc.new_file(work / "run-1m.arrow", RUN_SCHEMA) as w:
        w.write_table(run.cast(RUN_SCHEMA))
    with open(work / "qrels-1m.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q, d, r in zip(*(qrels.column(c).to_pylist() for c in ("qid", "docid", "rel"))):
            fh.write(f"{q}\t{d}\t{r}\n")
    wall, rss = run_stage(["eval", str(work / "run-1m.arrow"), "--qrels", str(work / "qrels-1m.tsv"),
                           "-m", "nDCG@10", "-m", "R@100", "-m", "RR@10", "-m", "AP", "--force", "-o", str(work / "m-1m.tsv")])
    return ("eval 1M-row run", wall, run.num_rows / wall, None, rss, None)


def sentence_transformers_rate(python: str, dataset: Path, limit: int | None, st_model: str | None) -> tuple[float | None, str]:
    """docs/s of sentence-transformers over the same corpus, measured by bench_embed.bench_st in ``python``."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
        "from bench_embed import bench_st, read_corpus;"
        "texts = read_corpus(Path(sys.argv[2]), int(sys.argv[3]) or None);"
        "r, _, note = bench_st(texts, 32, sys.argv[4] or None);"
        "print(json.dumps({'rate': len(texts) / r['wall_s'] if r else None, 'note': note}))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([python, "-c", code, str(ROOT / "bench"), str(dataset), str(limit or 0), st_model or ""],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return None, (res.stderr.strip().splitlines() or ["failed"])[-1]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["rate"], out["note"]


def _f(value, width: int, digits: int) -> str:
    return f"{value:{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'':>{width}}"


if __name__ == "__main__":
    main()

"""Inputs, shared artifacts and independent reference computations for the hostile suite.

Synthetic inputs are written here with pyarrow directly (never through the vecpipe under test);
shared artifacts that only vecpipe can make (indexes, codes, shards) are built once per session by
the vecpipe under test, on plain regular files, and serve as references for "same result as the
regular file" checks. The happy-path cases check those references independently (numpy,
onnxruntime, pytrec_eval).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hostile_harness import TESTS, Shared, fail, vecpipe_root
from pyarrow import ipc

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def _tests_conftest():
    """tests/conftest.py, loaded under its own name (``conftest`` is taken by pytest's registry)."""
    name = "vecpipe_tests_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


clustered = _tests_conftest().clustered

# ------------------------------------------------------------------------------------ synthetic data

DIM = 32
N_DOCS = 300
N_Q = 20
K = 10
MEASURES = ["nDCG@10", "AP", "RR@10", "R@100", "P@5"]
MEASURE_ARGS = [a for m in MEASURES for a in ("-m", m)]

DOCS = clustered(N_DOCS, DIM, seed=1)
DOC_IDS = [f"d{i}" for i in range(N_DOCS)]
_rng = np.random.default_rng(2)
PICKS = _rng.choice(N_DOCS, N_Q, replace=False)
_q = DOCS[PICKS] + 0.02 * _rng.standard_normal((N_Q, DIM)).astype(np.float32)
QUERIES = (_q / np.linalg.norm(_q, axis=1, keepdims=True)).astype(np.float32)
QIDS = [f"q{i}" for i in range(N_Q)]
DOCS2 = clustered(N_DOCS, DIM, seed=7) * 0.5 + 0.3  # another corpus (other calibration)
DOCS2 = (DOCS2 / np.linalg.norm(DOCS2, axis=1, keepdims=True)).astype(np.float32)

SHA_A = "a" * 64
SHA_B = "b" * 64


def model_meta(sha: str = SHA_A, pooling: str = "mean", normalize: bool = True, name: str | None = None) -> dict:
    return {"name": name or f"synth-{sha[0]}", "sha256": sha, "pooling": pooling, "normalize": normalize,
            "dim": DIM, "max_length": 128, "prefix": ""}


def _version() -> str:
    try:
        text = (vecpipe_root() / "vecpipe" / "__init__.py").read_text()
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
        return m.group(1) if m else "0"
    except OSError:
        return "0"


def vec_meta(dim: int = DIM, sha: str = SHA_A, pooling: str = "mean", normalized: bool = True,
             metric: str | None = None, **extra) -> dict:
    meta = {"kind": "vectors", "vecpipe_version": _version(), "dim": dim, "dtype": "float32",
            "metric": metric or ("cos" if normalized else "ip"), "normalized": normalized,
            "model": model_meta(sha, pooling, normalized)}
    meta["model"]["dim"] = dim
    meta.update(extra)
    return meta


def vectors_table(ids, matrix: np.ndarray | None = None, meta: dict | None = None, *, emb: pa.Array | None = None,
                  id_array: pa.Array | None = None) -> pa.Table:
    """A vectors table (``id``, ``embedding: fixed_size_list<float32>``) with ``vecpipe`` metadata."""
    if emb is None:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])
    if id_array is None:
        id_array = pa.array(list(ids), pa.string())
    table = pa.Table.from_arrays([id_array, emb], names=["id", "embedding"])
    if meta is not None:
        table = table.replace_schema_metadata({b"vecpipe": json.dumps(meta, sort_keys=True).encode()})
    return table


def write_table_file(path: Path, table: pa.Table) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith((".parquet", ".parquet.in")):
        pq.write_table(table, path)
    elif name.endswith(".arrows"):
        with ipc.new_stream(str(path), table.schema) as w:
            w.write_table(table)
    else:  # .arrow: IPC file
        with ipc.new_file(str(path), table.schema) as w:
            w.write_table(table)
    return path


def write_vectors(path: Path, ids, matrix: np.ndarray, meta: dict | None = None) -> Path:
    return write_table_file(path, vectors_table(ids, matrix, meta if meta is not None else vec_meta(matrix.shape[1])))


def table_bytes(table: pa.Table, fmt: str = "parquet") -> bytes:
    sink = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, sink)
    elif fmt == "arrows":
        with ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
    else:
        with ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
    return sink.getvalue()


def poisoned_table(ids, matrix: np.ndarray, row: int, kind: str, meta: dict | None = None) -> pa.Table:
    """``matrix`` with row ``row`` made hostile: nan, inf, -inf, null-list or null-element."""
    m = np.array(matrix, dtype=np.float32)
    meta = meta if meta is not None else vec_meta(m.shape[1])
    if kind in ("nan", "inf", "-inf", "big", "-big"):
        m[row, 3] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "big": 1e6, "-big": -1e6}[kind]
        return vectors_table(ids, m, meta)
    n, d = m.shape
    values = pa.array(m.reshape(-1), pa.float32())
    if kind == "null-element":
        mask = np.zeros(n * d, dtype=bool)
        mask[row * d + 3] = True
        values = pa.array(m.reshape(-1), pa.float32(), mask=mask)
        emb = pa.FixedSizeListArray.from_arrays(values, d)
    elif kind == "null-list":
        mask = np.zeros(n, dtype=bool)
        mask[row] = True
        emb = pa.FixedSizeListArray.from_arrays(values, d, mask=pa.array(mask))
    else:
        raise ValueError(kind)
    return vectors_table(ids, emb=emb, meta=meta)


# ------------------------------------------------------------------------------------ runs and qrels

RUN_SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string()), ("rank", pa.int32()), ("score", pa.float32())])


def exact_scores(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    dn = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    return (qn.astype(np.float64) @ dn.astype(np.float64).T)


def topk_rows(qids, scores: np.ndarray, doc_ids, k: int) -> list[tuple[str, str, int, float]]:
    rows = []
    for qi, qid in enumerate(qids):
        order = sorted(range(len(doc_ids)), key=lambda j: (-scores[qi, j], doc_ids[j]))[:k]
        for r, j in enumerate(order, 1):
            rows.append((qid, doc_ids[j], r, float(np.float32(scores[qi, j]))))
    return rows


def run_table(rows: Iterable[tuple]) -> pa.Table:
    rows = list(rows)
    return pa.table({
        "qid": pa.array([r[0] for r in rows], pa.string()),
        "docid": pa.array([r[1] for r in rows], pa.string()),
        "rank": pa.array([r[2] for r in rows], pa.int32()),
        "score": pa.array([r[3] for r in rows], pa.float32()),
    }, schema=RUN_SCHEMA)


def score_text(s: float) -> str:
    """The shortest text that reads back as the same float32 (so ties and order survive any parser)."""
    return np.format_float_positional(np.float32(s), unique=True, trim="-")


def trec_text(rows: Iterable[tuple]) -> str:
    return "".join(f"{q} Q0 {d} {r} {score_text(s)} hostile\n" for q, d, r, s in rows)


RUN_ROWS = topk_rows(QIDS, exact_scores(QUERIES, DOCS), DOC_IDS, K)


def _qrels_rows() -> list[tuple[str, str, int]]:
    rng = np.random.default_rng(5)
    rows = []
    for i, qid in enumerate(QIDS):
        rows.append((qid, DOC_IDS[PICKS[i]], 2))
        for j in rng.choice(N_DOCS, 2, replace=False):
            if j != PICKS[i]:
                rows.append((qid, DOC_IDS[j], 1))
    rows.append(("q20", "d1", 1))  # queries the run lacks: they score 0
    rows.append(("q21", "d2", 1))
    return rows


QRELS_ROWS = _qrels_rows()


def beir_tsv(rows, header: bool = True) -> str:
    head = "query-id\tcorpus-id\tscore\n" if header else ""
    return head + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in rows)


# ------------------------------------------------------------------------------------ independent references


def atol(text: str) -> int:
    """C's atol, as trec_eval reads a relevance: leading whitespace, a sign, ASCII digits."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)", text)
    digits = m.group(2)
    if not digits:
        return 0
    value = int(digits)
    return -value if m.group(1) == "-" else value


def _trec_sorted(docs: dict[str, float]) -> list[tuple[str, float]]:
    items = sorted(docs.items(), key=lambda kv: kv[0].encode(), reverse=True)  # docid descending
    return sorted(items, key=lambda kv: -kv[1])  # then score descending (stable)


def trec_eval_means(run_rows, qrels_rows, measures=MEASURES) -> dict[str, float]:
    """Means over the qrels queries (missing ones score 0) of ir_measures-named measures, by pytrec_eval."""
    import pytrec_eval

    qrels: dict[str, dict[str, int]] = {}
    for q, d, r in qrels_rows:
        qrels.setdefault(q, {})[d] = int(r)
    run: dict[str, dict[str, float]] = {}
    for row in run_rows:
        q, d, s = row[0], row[1], row[-1]
        run.setdefault(q, {})[d] = float(s)
    names = {"nDCG@10": "ndcg_cut_10", "AP": "map", "R@100": "recall_100", "P@5": "P_5", "P@10": "P_10",
             "RR@10": "recip_rank"}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map", "recall.100", "P.5", "P.10"}).evaluate(run)
    top10 = {q: dict(_trec_sorted(docs)[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {}
    for m in measures:
        src = rr if m == "RR@10" else full
        vals = [src.get(q, {}).get(names[m], 0.0) for q in qrels]
        out[m] = float(np.mean(vals)) if vals else 0.0
    return out


def parse_eval_tsv(text: str) -> dict[str, float]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].split("\t")[:2] != ["measure", "value"]:
        fail(f"eval output is not 'measure<TAB>value' TSV: {text[:120]!r}")
    out = {}
    for ln in lines[1:]:
        name, value = ln.split("\t")
        out[name] = float(value)
    return out


def check_eval_text(text: str, run_rows, qrels_rows, measures=MEASURES) -> None:
    got = parse_eval_tsv(text)
    want = trec_eval_means(run_rows, qrels_rows, measures)
    for m in measures:
        if m not in got:
            fail(f"eval output lacks {m}")
        if not math.isclose(got[m], want[m], abs_tol=6e-5):
            fail(f"{m} = {got[m]:.4f}, trec_eval (pytrec_eval) gives {want[m]:.4f}")


def read_any_table(src: bytes | Path | str) -> pa.Table:
    data = Path(src).read_bytes() if not isinstance(src, bytes) else src
    if data[:4] == b"PAR1":
        return pq.read_table(pa.BufferReader(data))
    if data[:6] == b"ARROW1":
        return ipc.open_file(pa.BufferReader(data)).read_all()
    return ipc.open_stream(pa.BufferReader(data)).read_all()


def emb_matrix(table: pa.Table) -> np.ndarray:
    col = table.column("embedding").combine_chunks()
    n = len(col)
    values = col.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, -1) if n else values.reshape(0, 0)


def same_vectors(got: pa.Table, want: pa.Table, what: str = "output") -> None:
    if got.column("id").to_pylist() != want.column("id").to_pylist():
        fail(f"{what}: ids differ from the reference ({got.num_rows} vs {want.num_rows} rows)")
    a, b = emb_matrix(got), emb_matrix(want)
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b):
        fail(f"{what}: vectors differ from the reference ({a.dtype}{a.shape} vs {b.dtype}{b.shape})")


def same_run(got: pa.Table, want: pa.Table, what: str = "run") -> None:
    for col in ("qid", "docid", "rank"):
        if got.column(col).to_pylist() != want.column(col).to_pylist():
            fail(f"{what}: column {col} differs from the reference run")
    a = got.column("score").to_numpy().astype(np.float64)
    b = want.column("score").to_numpy().astype(np.float64)
    if not np.allclose(a, b, rtol=0, atol=1e-6):
        fail(f"{what}: scores differ from the reference run")


def parse_trec(text: str) -> list[tuple[str, str, int, float]]:
    rows = []
    for ln in text.splitlines():
        if not ln.strip():
            continue
        parts = ln.split()
        if len(parts) != 6 or parts[1] != "Q0":
            fail(f"not a TREC run line: {ln[:80]!r}")
        rows.append((parts[0], parts[2], int(parts[3]), float(parts[4])))
    return rows


def check_topk(rows, qids, queries: np.ndarray, doc_ids, docs: np.ndarray, k: int, what: str = "run",
               tol: float = 2e-5) -> None:
    """Each query's results are its exact top k (up to ties) and carry their exact scores."""
    scores = exact_scores(queries, docs)
    pos = {d: j for j, d in enumerate(doc_ids)}
    by_q: dict[str, list] = {}
    for q, d, r, s in rows:
        by_q.setdefault(q, []).append((r, d, s))
    if list(by_q) != list(qids):
        fail(f"{what}: queries {list(by_q)[:5]}... are not the input's {list(qids)[:5]}... in order")
    for qi, q in enumerate(qids):
        got = sorted(by_q[q])
        if [r for r, _, _ in got] != list(range(1, min(k, len(doc_ids)) + 1)):
            fail(f"{what}: query {q} has ranks {[r for r, _, _ in got][:12]}, expected 1..{k}")
        best = np.sort(scores[qi])[::-1][:k]
        for (r, d, s), want in zip(got, best):
            if d not in pos:
                fail(f"{what}: query {q} returns unknown doc {d!r}")
            true = scores[qi, pos[d]]
            if abs(true - s) > tol:
                fail(f"{what}: query {q} rank {r} doc {d} has score {s:.6f}, exact {true:.6f}")
            if abs(true - want) > tol:
                fail(f"{what}: query {q} rank {r} is {d} ({true:.6f}); the exact rank-{r} score is {want:.6f}")


def embed_reference(model_dir: Path, texts: list[str]) -> np.ndarray:
    """The tiny model's mean-pooled, L2-normalised embeddings, computed with onnxruntime directly."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for t in texts:
        e = tok.encode(t)
        feed = {"input_ids": np.array([e.ids], np.int64), "attention_mask": np.array([e.attention_mask], np.int64),
                "token_type_ids": np.array([e.type_ids], np.int64)}
        h = sess.run(None, feed)[0][0]
        v = h.mean(0)
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32)


# ------------------------------------------------------------------------------------ corpora

def corpus_records(n: int = 40) -> list[dict]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    return [{"_id": f"t{i}", "text": " ".join(words[(i + j) % len(words)] for j in range(1 + i % 9))}
            for i in range(n)]


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


BIG_N = 4500  # more than two blocks of 2048: shard 0 holds blocks 0 and 2, shard 1 block 1


def big_records() -> list[dict]:
    return [{"_id": f"b{i}", "text": f"w{i % 97}"} for i in range(BIG_N)]


# ------------------------------------------------------------------------------------ shared builders

R = Shared.register


@R("tiny-model")
def _model(sh: Shared, path: Path):
    from tinymodel import make_tiny_model

    tok = vecpipe_root() / "vecpipe" / "encode" / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"
    make_tiny_model(path, pooling="mean", max_seq_length=128, vocab_from=tok if tok.exists() else None)


@R("docs.parquet")
def _docs(sh, path):
    write_vectors(path, DOC_IDS, DOCS)


@R("docs.arrow")
def _docs_arrow(sh, path):
    write_vectors(path, DOC_IDS, DOCS)


@R("queries.parquet")
def _queries(sh, path):
    write_vectors(path, QIDS, QUERIES)


@R("d200.parquet")
def _d200(sh, path):
    write_vectors(path, DOC_IDS[:200], DOCS[:200])


@R("d100.parquet")
def _d100(sh, path):
    write_vectors(path, DOC_IDS[:100], DOCS[:100])


BIG_DOCS = 20000


@R("big.parquet")
def _big(sh, path):
    write_vectors(path, [f"g{i}" for i in range(BIG_DOCS)], clustered(BIG_DOCS, DIM, seed=3))


@R("docs2.parquet")
def _docs2(sh, path):
    write_vectors(path, [f"e{i}" for i in range(N_DOCS)], DOCS2)


@R("corpus.jsonl")
def _corpus(sh, path):
    path.write_text(jsonl(corpus_records()))


@R("corpus.jsonl.gz")
def _corpus_gz(sh, path):
    path.write_bytes(gzip.compress(sh.get("corpus.jsonl").read_bytes(), mtime=0))


@R("corpus.jsonl.zst")
def _corpus_zst(sh, path):
    import zstandard

    path.write_bytes(zstandard.ZstdCompressor().compress(sh.get("corpus.jsonl").read_bytes()))


@R("big.jsonl")
def _big_jsonl(sh, path):
    path.write_text(jsonl(big_records()))


@R("run.parquet")
def _run(sh, path):
    pq.write_table(run_table(RUN_ROWS), path)


#: A second run of the same queries for fuse: the exact top K under L2 instead of inner product.
RUN2_ROWS = topk_rows(QIDS, -((QUERIES[:, None, :] - DOCS[None, :, :]) ** 2).sum(-1), DOC_IDS, K)


@R("run2.parquet")
def _run2(sh, path):
    pq.write_table(run_table(RUN2_ROWS), path)


@R("run.trec")
def _run_trec(sh, path):
    path.write_text(trec_text(RUN_ROWS))


@R("bigrun.parquet")
def _bigrun(sh, path):
    rows = topk_rows(DOC_IDS, exact_scores(DOCS, DOCS), DOC_IDS, 100)
    pq.write_table(run_table(rows), path)


@R("qrels.tsv")
def _qrels(sh, path):
    path.write_text(beir_tsv(QRELS_ROWS))


@R("qrels.tsv.gz")
def _qrels_gz(sh, path):
    path.write_bytes(gzip.compress(sh.get("qrels.tsv").read_bytes(), mtime=0))


@R("run.trec.gz")
def _run_gz(sh, path):
    path.write_bytes(gzip.compress(sh.get("run.trec").read_bytes(), mtime=0))


@R("docs.parquet.gz")
def _docs_gz(sh, path):
    path.write_bytes(gzip.compress(sh.get("docs.parquet").read_bytes(), mtime=0))


@R("garbage.gz")
def _garbage_gz(sh, path):
    rng = np.random.default_rng(9)
    path.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), mtime=0))


def _vp_build(sh: Shared, path: Path, *args: str) -> None:
    sh.vp([*args, "-o", path.name], cwd=sh.dir)


@R("flat.vpi")
def _flat(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "build-index", "docs.parquet", "--spec", "Flat")


@R("hnsw.vpi")
def _hnsw(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "build-index", "docs.parquet", "--spec", "HNSW16")


@R("ivf.vpi")
def _ivf(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "build-index", "docs.parquet", "--spec", "IVF4,Flat")


@R("b1.parquet")
def _b1(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "binarize", "docs.parquet", "--bits", "1")


@R("b1.vpi")
def _b1_vpi(sh, path):
    sh.get("b1.parquet")
    _vp_build(sh, path, "build-index", "b1.parquet", "--spec", "BFlat")


@R("b1c.parquet")
def _b1c(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "binarize", "docs.parquet", "--bits", "1", "--center")


@R("b1c.vpi")
def _b1c_vpi(sh, path):
    sh.get("b1c.parquet")
    _vp_build(sh, path, "build-index", "b1c.parquet", "--spec", "BFlat")


@R("b1c-other.parquet")
def _b1c_other(sh, path):
    sh.get("docs2.parquet")
    _vp_build(sh, path, "binarize", "docs2.parquet", "--bits", "1", "--center")


@R("b200.parquet")
def _b200(sh, path):
    sh.get("d200.parquet")
    _vp_build(sh, path, "binarize", "d200.parquet", "--bits", "1")


@R("i8.parquet")
def _i8(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "quantize", "docs.parquet", "--to", "int8")


# The shards of a 5,000-record embed (blocks of 2,048): files, and Arrow streams written to stdout.
def _embed_big_args(sh: Shared, shard: str) -> list[str]:
    sh.get("big.jsonl")
    return ["embed", "big.jsonl", "--model", str(sh.get("tiny-model")), "--shard", shard, "-q"]


@R("s0.parquet")
def _s0(sh, path):
    sh.vp(_embed_big_args(sh, "0/2") + ["-o", path.name], cwd=sh.dir)


@R("s1.parquet")
def _s1(sh, path):
    sh.vp(_embed_big_args(sh, "1/2") + ["-o", path.name], cwd=sh.dir)


@R("s0.arrows")
def _s0_stream(sh, path):
    path.write_bytes(sh.vp(_embed_big_args(sh, "0/2"), cwd=sh.dir).stdout)


@R("s1.arrows")
def _s1_stream(sh, path):
    path.write_bytes(sh.vp(_embed_big_args(sh, "1/2"), cwd=sh.dir).stdout)


# References: the same commands on plain regular files.
@R("ref-embed.parquet")
def _ref_embed(sh, path):
    sh.get("corpus.jsonl")
    _vp_build(sh, path, "embed", "corpus.jsonl", "--model", str(sh.get("tiny-model")))


@R("ref-quantize.parquet")
def _ref_q(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "quantize", "docs.parquet", "--to", "int8")


@R("ref-binarize.parquet")
def _ref_b(sh, path):
    sh.get("docs.parquet")
    _vp_build(sh, path, "binarize", "docs.parquet", "--bits", "1")


@R("ref-search.trec")
def _ref_search_trec(sh, path):
    sh.get("queries.parquet"), sh.get("flat.vpi")
    _vp_build(sh, path, "search", "queries.parquet", "--index", "flat.vpi", "-k", str(K))


@R("ref-search.parquet")
def _ref_search_pq(sh, path):
    sh.get("queries.parquet"), sh.get("flat.vpi")
    _vp_build(sh, path, "search", "queries.parquet", "--index", "flat.vpi", "-k", str(K))


@R("ref-rescore.parquet")
def _ref_rescore(sh, path):
    sh.get("queries.parquet"), sh.get("b1.vpi"), sh.get("docs.parquet")
    _vp_build(sh, path, "search", "queries.parquet", "--index", "b1.vpi", "--rescore", "docs.parquet", "-k", str(K))


@R("ref-rerank.parquet")
def _ref_rerank(sh, path):
    sh.get("run.parquet"), sh.get("docs.parquet"), sh.get("queries.parquet")
    _vp_build(sh, path, "rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k", "5")


@R("ref-rerank.trec")
def _ref_rerank_trec(sh, path):
    sh.get("run.parquet"), sh.get("docs.parquet"), sh.get("queries.parquet")
    _vp_build(sh, path, "rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k", "5")


@R("ref-fuse.parquet")
def _ref_fuse(sh, path):
    sh.get("run.parquet"), sh.get("run2.parquet")
    _vp_build(sh, path, "fuse", "run.parquet", "run2.parquet")


@R("ref-compare.tsv")
def _ref_compare(sh, path):
    sh.get("run.parquet"), sh.get("run2.parquet"), sh.get("qrels.tsv")
    _vp_build(sh, path, "compare", "run.parquet", "run2.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS)


@R("ref-eval.tsv")
def _ref_eval(sh, path):
    sh.get("run.parquet"), sh.get("qrels.tsv")
    _vp_build(sh, path, "eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS)


@R("ref-eval-pq.tsv")
def _ref_eval_pq(sh, path):
    sh.get("run.parquet"), sh.get("qrels.tsv")
    _vp_build(sh, path, "eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS, "--per-query")


@R("ref-q-like.parquet")
def _ref_q_like(sh, path):
    sh.get("queries.parquet"), sh.get("i8.parquet")
    _vp_build(sh, path, "quantize", "queries.parquet", "--like", "i8.parquet")


@R("ref-b-like.parquet")
def _ref_b_like(sh, path):
    sh.get("queries.parquet"), sh.get("b1c.parquet")
    _vp_build(sh, path, "binarize", "queries.parquet", "--like", "b1c.parquet")


@R("ref-inspect.json")
def _ref_inspect(sh, path):
    sh.get("docs.parquet")
    path.write_bytes(sh.vp(["inspect", "docs.parquet", "--format", "json"], cwd=sh.dir).stdout)


@R("ref-inspect-trec.json")
def _ref_inspect_trec(sh, path):
    sh.get("run.trec")
    path.write_bytes(sh.vp(["inspect", "run.trec", "--format", "json"], cwd=sh.dir).stdout)


# Indexes over documents whose ids hold whitespace (TREC text cannot carry them).
WEIRD = {"space": "doc 5", "tab": "doc\t5", "newline": "doc\n5"}


def weird_doc_ids(kind: str) -> list[str]:
    ids = list(DOC_IDS)
    ids[5] = WEIRD[kind]
    return ids


for _kind in WEIRD:
    def _mk(kind):
        @R(f"w{kind}.parquet")
        def _w(sh, path):
            write_vectors(path, weird_doc_ids(kind), DOCS)

        @R(f"w{kind}.vpi")
        def _wv(sh, path):
            sh.get(f"w{kind}.parquet")
            _vp_build(sh, path, "build-index", f"w{kind}.parquet", "--spec", "Flat")

    _mk(_kind)


@R("wall.parquet")
def _wall(sh, path):
    ids = list(DOC_IDS)
    ids[5], ids[6], ids[7] = WEIRD["space"], WEIRD["tab"], WEIRD["newline"]
    write_vectors(path, ids, DOCS)


@R("wall.vpi")
def _wall_vpi(sh, path):
    sh.get("wall.parquet")
    _vp_build(sh, path, "build-index", "wall.parquet", "--spec", "Flat")

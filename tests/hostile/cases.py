"""The hostile-input cases (issue 16, "Nothing silently wrong"), as data.

``CASES`` is the list; each ``Case`` has an id like ``class3-build-index-nan``, the class (1-10),
the subcommand, a setup that builds the inputs and returns the invocation, and the expectation:
``Refuse(code)``, ``Ok(check)`` or ``Either(check)``. See README.md for the contract.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hostile_fixtures import (
    BIG_N,
    DIM,
    DOC_IDS,
    DOCS,
    MEASURE_ARGS,
    MEASURES,
    QIDS,
    QRELS_ROWS,
    QUERIES,
    RUN2_ROWS,
    RUN_ROWS,
    SHA_B,
    WEIRD,
    K,
    atol,
    beir_tsv,
    check_eval_text,
    check_topk,
    corpus_records,
    emb_matrix,
    embed_reference,
    exact_scores,
    parse_eval_tsv,
    parse_trec,
    poisoned_table,
    read_any_table,
    run_table,
    same_run,
    same_vectors,
    trec_text,
    vec_meta,
    vectors_table,
    write_table_file,
    write_vectors,
)
from hostile_harness import (
    Case,
    Ctx,
    Either,
    Inv,
    Ok,
    Refuse,
    Result,
    _state,
    fail,
    need_non_root,
    need_root,
    sidecar_of,
)

from vecpipe.formats import vpi

CASES: list[Case] = []
WRITERS = ("embed", "quantize", "binarize", "build-index", "build-index-update", "search", "rerank", "eval", "merge", "fuse", "compare")


def add(id: str, cls: int, cmd: str, setup, expect, skip=None, note: str = "") -> None:
    assert not any(c.id == id for c in CASES), id
    CASES.append(Case(id, cls, cmd, setup, expect, skip, note))


def q(*args: str) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def cp(ctx: Ctx, *names: str) -> None:
    for n in names:
        ctx.copy(n)


def ok_all(*checks) -> Ok:
    def check(res, ctx):
        for c in checks:
            c(res, ctx)
    return Ok(check)


def stderr_empty(res: Result, ctx: Ctx) -> None:
    if res.stderr:
        fail(f"stderr not empty: {res.err.strip()[:160]!r}")


def no_up_to_date(res: Result, ctx: Ctx) -> None:
    if "up to date" in res.err:
        fail("reported 'up to date' for an output that no longer matches its manifest")


# ====================================================================================== writers
# One happy-path command per subcommand that writes, with its output path left open.


@dataclass
class Writer:
    cmd: str
    ext: str
    inputs: tuple[str, ...]
    args: Callable[[Ctx], list[str]]  # argv without -o
    kind: str  # table | text | vpi
    ref: str  # shared reference artifact (the same command on regular files)
    sanity: Callable[[bytes, Ctx], None]  # independent check of the output bytes


def _sanity_embed(data: bytes, ctx: Ctx) -> None:
    t = read_any_table(data)
    recs = corpus_records()
    if t.column("id").to_pylist() != [r["_id"] for r in recs]:
        fail("embed: ids are not the input's, in input order")
    got = emb_matrix(t).astype(np.float32)
    want = embed_reference(Path(ctx.model), [r["text"] for r in recs])
    if got.shape != want.shape:
        fail("embed: vectors have another shape than onnxruntime + mean pooling + L2 normalisation")
    precision = (json.loads((t.schema.metadata or {}).get(b"vecpipe", b"{}")).get("model") or {}).get("precision")
    if precision == "int8":  # the CPU's default form: integer MatMuls, within rounding of the model
        if not np.all(np.sum(got * want, axis=1) > 0.999):
            fail("embed: int8 vectors stray from onnxruntime + mean pooling + L2 normalisation (cosine <= 0.999)")
    elif not np.allclose(got, want, atol=2e-5):
        fail("embed: vectors differ from onnxruntime + mean pooling + L2 normalisation")


def _sanity_quantize(data: bytes, ctx: Ctx) -> None:
    t = read_any_table(data)
    if t.column("id").to_pylist() != DOC_IDS:
        fail("quantize: ids differ from the input's")
    codes = emb_matrix(t)
    if codes.dtype != np.int8 or codes.shape != DOCS.shape:
        fail(f"quantize: codes are {codes.dtype}{codes.shape}, expected int8{DOCS.shape}")
    for j in range(DIM):
        if np.corrcoef(codes[:, j].astype(float), DOCS[:, j])[0, 1] < 0.99:
            fail(f"quantize: dimension {j} codes do not follow the values")


def _sanity_binarize(data: bytes, ctx: Ctx) -> None:
    t = read_any_table(data)
    if t.column("id").to_pylist() != DOC_IDS:
        fail("binarize: ids differ from the input's")
    want = np.packbits(DOCS > 0, axis=1, bitorder="big")
    if not np.array_equal(emb_matrix(t), want):
        fail("binarize: codes differ from numpy.packbits(x > 0)")


def _search_with(ctx: Ctx, index: Path, k: int = K) -> list:
    out = ctx.dir / "_check-run.trec"
    proc = ctx.vp("search", str(ctx.shared.get("queries.parquet")), "--index", str(index), "-k", str(k), "-o",
                  str(out), "-q", "--force", check=False)
    if proc.returncode != 0:
        fail(f"the index does not search: {proc.err.strip()[:160]}")
    return parse_trec(out.read_text())


def _sanity_index(data: bytes, ctx: Ctx) -> None:
    p = ctx.dir / "_check.vpi"
    p.write_bytes(data)
    check_topk(_search_with(ctx, p), QIDS, QUERIES, DOC_IDS, DOCS, K, "search of the built index")


def _sanity_search(data: bytes, ctx: Ctx) -> None:
    check_topk(parse_trec(data.decode()), QIDS, QUERIES, DOC_IDS, DOCS, K, "search")


def _sanity_rerank(data: bytes, ctx: Ctx) -> None:
    t = read_any_table(data)
    rows = list(zip(*(t.column(c).to_pylist() for c in ("qid", "docid", "rank", "score"))))
    check_topk(rows, QIDS, QUERIES, DOC_IDS, DOCS, 5, "rerank")


def _sanity_fuse(data: bytes, ctx: Ctx) -> None:
    """Reciprocal rank fusion (k 60) of the two runs, computed here, ties by docid."""
    fused: dict[tuple[str, str], float] = {}
    for rows in (RUN_ROWS, RUN2_ROWS):
        for qid, docid, rank, _score in rows:
            fused[(qid, docid)] = fused.get((qid, docid), 0.0) + 1.0 / (60 + rank)
    t = read_any_table(data)
    got = list(zip(*(t.column(c).to_pylist() for c in ("qid", "docid", "rank", "score"))))
    want = []
    for qid in QIDS:
        docs = sorted(((-s, d) for (q, d), s in fused.items() if q == qid))
        want += [(qid, d, r + 1, -s) for r, (s, d) in enumerate(docs[:100])]
    if [g[:3] for g in got] != [w[:3] for w in want] or not np.allclose([g[3] for g in got], [w[3] for w in want], rtol=1e-5):
        fail("fuse: the run is not the reciprocal rank fusion of the inputs")


def _sanity_compare(data: bytes, ctx: Ctx) -> None:
    """Each run's value of each measure in the comparison is the one eval gives that run."""
    lines = [line.split("\t") for line in data.decode().splitlines()]
    if not lines or lines[0][:3] != ["run", "measure", "value"]:
        fail("compare: not the TSV layout (run, measure, value, ...)")
    got = {(r[0], r[1]): float(r[2]) for r in lines[1:]}
    from vecpipe.evaluate import evaluate
    from vecpipe.formats.qrels import read_qrels

    qrels = read_qrels(str(ctx.shared.get("qrels.tsv")))
    for name, rows in (("run.parquet", RUN_ROWS), ("run2.parquet", RUN2_ROWS)):
        result = evaluate(run_table(rows), qrels, MEASURES)
        for m, v in result.aggregate.items():
            if abs(got.get((name, m), float("nan")) - v) > 1e-6:
                fail(f"compare: {name} {m} is {got.get((name, m))}, eval gives {v:.6f}")


def _sanity_eval(data: bytes, ctx: Ctx) -> None:
    check_eval_text(data.decode(), RUN_ROWS, QRELS_ROWS)


def merge_expected(ctx: Ctx) -> tuple[list[str], np.ndarray]:
    parts = [read_any_table(ctx.shared.get(n)) for n in ("s0.parquet", "s1.parquet")]
    rows = {}
    for t in parts:
        for i, v in zip(t.column("id").to_pylist(), emb_matrix(t)):
            rows[i] = v
    ids = [f"b{i}" for i in range(BIG_N)]
    if set(rows) != set(ids):
        fail("the shards do not hold the corpus ids")
    return ids, np.stack([rows[i] for i in ids])


def _sanity_merge(data: bytes, ctx: Ctx) -> None:
    t = read_any_table(data)
    ids, mat = merge_expected(ctx)
    if t.column("id").to_pylist() != ids:
        fail("merge: rows are not in input order (or rows are missing)")
    if not np.array_equal(emb_matrix(t), mat):
        fail("merge: vectors differ from the shards' rows")


W = {
    "embed": Writer("embed", ".parquet", ("corpus.jsonl",),
                    lambda ctx: ["embed", "corpus.jsonl", "--model", ctx.model], "table", "ref-embed.parquet",
                    _sanity_embed),
    "quantize": Writer("quantize", ".parquet", ("docs.parquet",),
                       lambda ctx: ["quantize", "docs.parquet", "--to", "int8"], "table", "ref-quantize.parquet",
                       _sanity_quantize),
    "binarize": Writer("binarize", ".parquet", ("docs.parquet",),
                       lambda ctx: ["binarize", "docs.parquet", "--bits", "1"], "table", "ref-binarize.parquet",
                       _sanity_binarize),
    "build-index": Writer("build-index", ".vpi", ("docs.parquet",),
                          lambda ctx: ["build-index", "docs.parquet", "--spec", "Flat"], "vpi", "flat.vpi",
                          _sanity_index),
    # --update of the reference Flat index from the same table: the same index as a rebuild
    "build-index-update": Writer("build-index", ".vpi", ("docs.parquet", "flat.vpi"),
                                 lambda ctx: ["build-index", "docs.parquet", "--update", "flat.vpi"], "vpi", "flat.vpi",
                                 _sanity_index),
    "search": Writer("search", ".trec", ("queries.parquet", "flat.vpi"),
                     lambda ctx: ["search", "queries.parquet", "--index", "flat.vpi", "-k", str(K)], "text",
                     "ref-search.trec", _sanity_search),
    "rerank": Writer("rerank", ".parquet", ("run.parquet", "docs.parquet", "queries.parquet"),
                     lambda ctx: ["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries",
                                  "queries.parquet", "-k", "5"], "table", "ref-rerank.parquet", _sanity_rerank),
    "eval": Writer("eval", ".tsv", ("run.parquet", "qrels.tsv"),
                   lambda ctx: ["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS], "text",
                   "ref-eval.tsv", _sanity_eval),
    "merge": Writer("merge", ".parquet", ("s0.parquet", "s1.parquet"),
                    lambda ctx: ["merge", "s0.parquet", "s1.parquet"], "table", "", _sanity_merge),
    "compare": Writer("compare", ".tsv", ("run.parquet", "run2.parquet", "qrels.tsv"),
                      lambda ctx: ["compare", "run.parquet", "run2.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS], "text",
                      "ref-compare.tsv", _sanity_compare),
    "fuse": Writer("fuse", ".parquet", ("run.parquet", "run2.parquet"),
                   lambda ctx: ["fuse", "run.parquet", "run2.parquet"], "table", "ref-fuse.parquet", _sanity_fuse),
}


def same_index(ctx: Ctx, data: bytes, what: str = "index") -> None:
    """Byte-identical to the reference Flat index, or at least searching to the same run."""
    if data == ctx.shared.get("flat.vpi").read_bytes():
        return
    p = ctx.dir / "_check.vpi"
    p.write_bytes(data)
    rows = _search_with(ctx, p)
    if rows != parse_trec(ctx.shared.get("ref-search.trec").read_text()):
        fail(f"{what}: searching it gives another run than the reference index")


def equals_ref(ctx: Ctx, w: Writer, data: bytes, what: str = "output") -> None:
    if w.cmd == "merge":
        return _sanity_merge(data, ctx)
    ref = ctx.shared.get(w.ref).read_bytes()
    if w.kind == "text":
        if data != ref:
            fail(f"{what}: {len(data)} bytes differ from the reference run's {len(ref)}")
    elif w.kind == "vpi":
        same_index(ctx, data, what)
    else:
        got, want = read_any_table(data), read_any_table(ref)
        if "embedding" in want.column_names:
            same_vectors(got, want, what)
        else:
            same_run(got, want, what)


def writer_setup(w: Writer, target: str, pre: Callable[[Ctx], None] | None = None, **inv) -> Callable[[Ctx], Inv]:
    def setup(ctx: Ctx) -> Inv:
        cp(ctx, *w.inputs)
        if pre:
            pre(ctx)
        return Inv(argv=[*w.args(ctx), "-o", target], **inv)
    return setup


# ====================================================================================== class 1


OLD = b"old output, must survive a refusal\n"


def _class1():
    for name in WRITERS:
        w = W[name]
        out = "out" + w.ext

        def check_new(res, ctx, w=w, out=out):
            w.sanity(ctx.read(out), ctx)

        add(f"class1-{name}-new-path", 1, w.cmd, writer_setup(w, out, out=[out]), Ok(check_new))

        def pre_regular(ctx, out=out):
            ctx.write(out, OLD)

        def check_regular(res, ctx, w=w, out=out):
            if not ctx.path(out).is_file() or ctx.path(out).is_symlink():
                fail("the output is not a regular file any more")
            equals_ref(ctx, w, ctx.read(out))

        add(f"class1-{name}-existing-file", 1, w.cmd, writer_setup(w, out, pre_regular, out=[out]), Ok(check_regular))

        target = "real/target" + w.ext

        def pre_link(ctx, out=out, target=target):
            ctx.write(target, OLD)
            os.symlink(target, ctx.path(out))

        def check_link(res, ctx, w=w, out=out, target=target):
            p = ctx.path(out)
            if not p.is_symlink() or os.readlink(p) != target:
                fail(f"the symlink was replaced: {out} is now {_state(p)[0]}")
            if not ctx.path(target).is_file():
                fail("the symlink's target is gone")
            equals_ref(ctx, w, ctx.read(target), "the symlink's target")

        add(f"class1-{name}-symlink", 1, w.cmd, writer_setup(w, out, pre_link, out=[out]), Ok(check_link))

        def pre_dev(ctx, out=out):
            os.mknod(ctx.path(out), stat.S_IFCHR | 0o666, os.makedev(1, 3))

        def check_dev(res, ctx, out=out):
            st = os.lstat(ctx.path(out))
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                fail(f"the character device {out} was replaced by {_state(ctx.path(out))[0]}")
            if os.path.lexists(sidecar_of(ctx.path(out))):
                fail("a sidecar was created beside a device")

        add(f"class1-{name}-chardev", 1, w.cmd, writer_setup(w, out, pre_dev, out=[out]), Ok(check_dev), skip=need_root)

        def pre_fifo(ctx, out=out):
            os.mkfifo(ctx.path(out))

        def check_fifo(res, ctx, w=w, out=out):
            if not stat.S_ISFIFO(os.lstat(ctx.path(out)).st_mode):
                fail(f"the FIFO {out} was replaced by {_state(ctx.path(out))[0]}")
            if os.path.lexists(sidecar_of(ctx.path(out))):
                fail("a sidecar was created beside a FIFO")
            data = res.fifo_data[out]
            if not data:
                fail("nothing arrived in the FIFO")
            equals_ref(ctx, w, data, "the bytes read from the FIFO")

        add(f"class1-{name}-fifo", 1, w.cmd, writer_setup(w, out, pre_fifo, out=[out], fifo_out=[out]), Ok(check_fifo))

        def pre_dir(ctx, out=out):
            ctx.write(f"{out}/keep.txt", "a directory named like the output\n")

        add(f"class1-{name}-dir-as-output", 1, w.cmd, writer_setup(w, out, pre_dir, out=[out], mention=[out]), Refuse(1))

        missing = "nodir/" + out
        add(f"class1-{name}-missing-parent", 1, w.cmd,
            writer_setup(w, missing, out=[missing, "nodir"], mention=[missing]), Refuse(1))

        under_file = "afile/" + out

        def pre_file_parent(ctx):
            ctx.write("afile", "a regular file where a directory is expected\n")

        add(f"class1-{name}-file-as-parent", 1, w.cmd,
            writer_setup(w, under_file, pre_file_parent, out=[under_file], mention=[under_file]), Refuse(1))

    for name in ("build-index", "eval"):
        w = W[name]
        ro = "ro/out" + w.ext

        def pre_ro(ctx):
            ctx.path("ro").mkdir()
            ctx.path("ro").chmod(0o555)

        add(f"class1-{name}-unwritable-dir", 1, w.cmd, writer_setup(w, ro, pre_ro, out=[ro], mention=[ro]), Refuse(1),
            skip=need_non_root)


_class1()

# ====================================================================================== class 2


def _other_same_size(data: bytes) -> bytes:
    """Other bytes of the same size: the lines in reverse order (or the bytes reversed)."""
    lines = data.splitlines(keepends=True)
    flipped = b"".join(reversed(lines))
    return flipped if flipped != data else data[::-1]


STALE = {  # writer, output name
    "search": ("search", "run.trec"),
    "eval": ("eval", "m.tsv"),
    "rerank": ("rerank", "x.trec"),
}


def _class2():
    for name, (wname, out) in STALE.items():
        w = W[wname]
        ref = {"search": "ref-search.trec", "eval": "ref-eval.tsv", "rerank": "ref-rerank.trec"}[name]

        def setup_stale(ctx, w=w, out=out):
            cp(ctx, *w.inputs)
            argv = [*w.args(ctx), "-o", out]
            ctx.vp(*argv)
            data = ctx.read(out)
            ctx.write(out, _other_same_size(data))
            return Inv(argv=argv, out=[out])

        def check_stale(res, ctx, out=out, ref=ref):
            no_up_to_date(res, ctx)
            if ctx.read(out) != ctx.shared.get(ref).read_bytes():
                fail(f"{out} was not rewritten: it still holds the replaced bytes")

        add(f"class2-{name}-replaced-same-size", 2, name, setup_stale, Ok(check_stale))

    # An input edited in place to other bytes of the same size, mtime restored.
    def setup_input_edit(ctx):
        rows = list(RUN_ROWS)
        ctx.write("run.trec", trec_text(rows))
        ctx.copy("qrels.tsv")
        argv = ["eval", "run.trec", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"]
        ctx.vp(*argv)
        st = os.stat(ctx.path("run.trec"))
        # Two of q0's lines trade their score strings (same length, so the file keeps its size).
        lines = ctx.read("run.trec").decode().splitlines(keepends=True)
        cols = [ln.split(" ") for ln in lines[:K]]
        i = 0  # q0's top document (relevant): it drops to rank j
        j = next(j for j in range(K - 1, 0, -1) if len(cols[0][4]) == len(cols[j][4]) and cols[0][4] != cols[j][4])
        cols[i][4], cols[j][4] = cols[j][4], cols[i][4]
        lines[i], lines[j] = " ".join(cols[i]), " ".join(cols[j])
        ctx.write("run.trec", "".join(lines))
        os.utime(ctx.path("run.trec"), ns=(st.st_atime_ns, st.st_mtime_ns))
        return Inv(argv=argv, out=["m.tsv"])

    def check_input_edit(res, ctx):
        no_up_to_date(res, ctx)
        check_eval_text(ctx.read("m.tsv").decode(), parse_trec(ctx.read("run.trec").decode()), QRELS_ROWS)

    add("class2-eval-input-edited-same-size", 2, "eval", setup_input_edit, Ok(check_input_edit))

    # Unchanged reruns are up to date and leave the bytes alone.
    for name, out in (("search", "run.trec"), ("eval", "m.tsv"), ("rerank", "x.trec"), ("build-index", "out.vpi"),
                      ("embed", "out.parquet"), ("quantize", "out.parquet")):
        w = W[name]

        def setup_rerun(ctx, w=w, out=out):
            cp(ctx, *w.inputs)
            argv = [*w.args(ctx), "-o", out]
            ctx.vp(*argv)
            return Inv(argv=argv, out=[out], data={"before": ctx.read(out)})

        def check_rerun(res, ctx, out=out):
            if "up to date:" not in res.err:
                fail("an unchanged rerun did not report 'up to date:'")
            if ctx.read(out) != res.inv.data["before"]:
                fail("an up-to-date rerun changed the output bytes")

        add(f"class2-{name}-unchanged-rerun", 2, name, setup_rerun, Ok(check_rerun))

    # Two identical writers at once.
    for name, out in (("search", "run.trec"), ("eval", "m.tsv"), ("build-index", "out.vpi"), ("quantize", "out.parquet")):
        w = W[name]

        def check_concurrent(res, ctx, w=w, out=out):
            equals_ref(ctx, w, ctx.read(out), "the output of two concurrent writers")

        add(f"class2-{name}-two-concurrent-writers", 2, name, writer_setup(w, out, out=[out], copies=2),
            Ok(check_concurrent))

    # embed: four writers (its checkpoint directory is shared by the writers of one output).
    add("class2-embed-concurrent-writers", 2, "embed", writer_setup(W["embed"], "out.parquet", out=["out.parquet"],
                                                                   copies=4),
        Ok(lambda res, ctx: equals_ref(ctx, W["embed"], ctx.read("out.parquet"), "the output of concurrent writers")))

    # merge: incomplete shards.
    def stream_shards(ctx):
        ctx.copy("s0.arrows")
        ctx.copy("s1.arrows")

    def setup_merge_streams(ctx):
        stream_shards(ctx)
        return Inv(argv=["merge", "s0.arrows", "s1.arrows", "-o", "out.parquet"], out=["out.parquet"])

    add("class2-merge-stdout-shards-complete", 2, "merge", setup_merge_streams,
        Ok(lambda res, ctx: _sanity_merge(ctx.read("out.parquet"), ctx)))

    def rewrite_stream(ctx, name: str, keep: Callable[[list], list]):
        from pyarrow import ipc

        with ipc.open_stream(pa.BufferReader(ctx.read(name))) as r:
            schema, batches = r.schema, list(r)
        batches = keep(batches)
        with ipc.new_stream(str(ctx.path(name)), schema) as wr:
            for b in batches:
                wr.write_batch(b)

    def setup_truncated(ctx):
        stream_shards(ctx)
        rewrite_stream(ctx, "s0.arrows", lambda bs: bs[:1])  # cut after the first block
        return Inv(argv=["merge", "s0.arrows", "s1.arrows", "-o", "out.parquet"], out=["out.parquet"],
                   mention=["s0.arrows"])

    add("class2-merge-truncated-stdout-shard", 2, "merge", setup_truncated, Refuse(1))

    def setup_rows_tail(ctx):
        stream_shards(ctx)
        rewrite_stream(ctx, "s0.arrows", lambda bs: bs[:-1] + [bs[-1].slice(0, bs[-1].num_rows - 10)])
        return Inv(argv=["merge", "s0.arrows", "s1.arrows", "-o", "out.parquet"], out=["out.parquet"],
                   mention=["s0.arrows"])

    add("class2-merge-shard-rows-removed-at-end", 2, "merge", setup_rows_tail, Refuse(1))

    def setup_rows_mid(ctx):
        stream_shards(ctx)
        rewrite_stream(ctx, "s1.arrows", lambda bs: [bs[0].slice(0, bs[0].num_rows - 10)] + bs[1:])
        return Inv(argv=["merge", "s0.arrows", "s1.arrows", "-o", "out.parquet"], out=["out.parquet"],
                   mention=["s1.arrows"])

    add("class2-merge-shard-rows-removed-in-block", 2, "merge", setup_rows_mid, Refuse(1))

    def setup_missing_shard(ctx):
        ctx.copy("s0.parquet")
        return Inv(argv=["merge", "s0.parquet", "-o", "out.parquet"], out=["out.parquet"])

    add("class2-merge-missing-shard", 2, "merge", setup_missing_shard, Refuse(1))

    # An index that rescores from the float vectors it records (build-index --spec auto): those
    # vectors gone, or changed since the build (same name), are refused; in place, they are used.
    def rescoring_index(ctx):
        from vecpipe.formats import vpi
        from vecpipe.index.rescore import source_record
        from vecpipe.pipeline.manifest import fingerprint

        cp(ctx, "queries.parquet", "docs.parquet")
        built = vpi.read(ctx.shared.get("b1.vpi"))
        meta = {**built.meta, "rescore": source_record("docs.parquet", fingerprint(ctx.path("docs.parquet")), 4, "cos")}
        vpi.write(ctx.path("b1r.vpi"), meta, built.ids, built.index_bytes, extra=built.extra)
        return Inv(argv=["search", "queries.parquet", "--index", "b1r.vpi", "-k", str(K), "-o", "run.parquet"],
                   out=["run.parquet"])

    def setup_source_gone(ctx):
        inv = rescoring_index(ctx)
        os.unlink(ctx.path("docs.parquet"))
        inv.mention = ["docs.parquet", "gone"]
        return inv

    def setup_source_changed(ctx):
        inv = rescoring_index(ctx)
        write_vectors(ctx.path("docs.parquet"), DOC_IDS, DOCS[::-1].copy(), vec_meta())
        inv.mention = ["docs.parquet", "changed"]
        return inv

    def same_as_rescore(res, ctx):  # as search --rescore docs.parquet
        same_run(read_any_table(ctx.read("run.parquet")), read_any_table(ctx.shared.get("ref-rescore.parquet")), "run.parquet")

    add("class2-search-recorded-rescore-source", 2, "search", rescoring_index, Ok(same_as_rescore))
    add("class2-search-recorded-rescore-source-gone", 2, "search", setup_source_gone, Refuse(1))
    add("class2-search-recorded-rescore-source-changed", 2, "search", setup_source_changed, Refuse(1))


_class2()

# ====================================================================================== class 3

POISON_ALL = ("nan", "inf", "-inf", "null-list", "null-element")
POISON_SOME = ("nan", "inf", "null-list")


def _top_doc(qi: int) -> int:
    return int(np.argmax(exact_scores(QUERIES[qi:qi + 1], DOCS)[0]))


def _hamming_top(qi: int) -> int:
    codes = DOCS > 0
    qc = QUERIES[qi] > 0
    return int(np.argmin((codes != qc).sum(axis=1)))


def _poison_targets():
    """cmd, slug, file role, poisoned row, argv builder, id named."""
    rr = _top_doc(0)
    hb = _hamming_top(0)
    return [
        ("build-index", "build-index", "docs", 7,
         lambda f: ["build-index", f, "--spec", "Flat", "-o", "out.vpi"], ["out.vpi"], ()),
        ("search", "search-queries", "queries", 3,
         lambda f: ["search", f, "--index", "flat.vpi", "-k", "5", "-o", "run.parquet"], ["run.parquet"], ("flat.vpi",)),
        ("search", "search-rescore", "docs", hb,
         lambda f: ["search", "queries.parquet", "--index", "b1.vpi", "--rescore", f, "-k", "5", "-o", "run.parquet"],
         ["run.parquet"], ("queries.parquet", "b1.vpi")),
        ("rerank", "rerank-vectors", "docs", rr,
         lambda f: ["rerank", "run.parquet", "--vectors", f, "--queries", "queries.parquet", "-k", "5", "-o",
                    "out.parquet"], ["out.parquet"], ("run.parquet", "queries.parquet")),
        ("rerank", "rerank-queries", "queries", 3,
         lambda f: ["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", f, "-k", "5", "-o",
                    "out.parquet"], ["out.parquet"], ("run.parquet", "docs.parquet")),
        ("quantize", "quantize", "docs", 7,
         lambda f: ["quantize", f, "--to", "int8", "-o", "out.parquet"], ["out.parquet"], ()),
        ("binarize", "binarize", "docs", 7,
         lambda f: ["binarize", f, "--bits", "1", "-o", "out.parquet"], ["out.parquet"], ()),
    ]


def _role(role: str):
    return (DOC_IDS, DOCS) if role == "docs" else (QIDS, QUERIES)


def _class3():
    for cmd, slug, role, row, argv, outs, inputs in _poison_targets():
        kinds = POISON_SOME if slug in ("search-rescore", "rerank-vectors", "rerank-queries") else POISON_ALL
        for kind in kinds:
            def setup(ctx, role=role, row=row, argv=argv, outs=outs, inputs=inputs, kind=kind):
                cp(ctx, *inputs)
                ids, mat = _role(role)
                write_table_file(ctx.path("bad.parquet"), poisoned_table(ids, mat, row, kind))
                return Inv(argv=argv("bad.parquet"), out=outs, mention_id=[ids[row]])

            add(f"class3-{slug}-{kind}", 3, cmd, setup, Refuse(1))

    def setup_arrow_nan(ctx):
        cp(ctx, "run.parquet", "queries.parquet")
        row = _top_doc(0)
        write_table_file(ctx.path("bad.arrow"), poisoned_table(DOC_IDS, DOCS, row, "nan"))
        return Inv(argv=["rerank", "run.parquet", "--vectors", "bad.arrow", "--queries", "queries.parquet", "-k", "5",
                         "-o", "out.parquet"], out=["out.parquet"], mention_id=[DOC_IDS[row]])

    add("class3-rerank-vectors-nan-arrow-file", 3, "rerank", setup_arrow_nan, Refuse(1))

    # Vectors of dimension 0.
    def dim0_table(n: int, prefix: str, fixed: bool) -> pa.Table:
        if fixed:
            emb = pa.array([[]] * n, pa.list_(pa.float32(), 0))
        else:
            emb = pa.array([[]] * n, pa.list_(pa.float32()))
        return vectors_table([f"{prefix}{i}" for i in range(n)], emb=emb, meta=vec_meta(dim=0))

    dim0 = [
        ("build-index", "build-index-fixed-size-0", True, lambda f: ["build-index", f, "--spec", "Flat", "-o", "out.vpi"],
         ["out.vpi"], ()),
        ("build-index", "build-index-empty-lists", False,
         lambda f: ["build-index", f, "--spec", "Flat", "-o", "out.vpi"], ["out.vpi"], ()),
        ("quantize", "quantize-fixed-size-0", True, lambda f: ["quantize", f, "--to", "int8", "-o", "out.parquet"],
         ["out.parquet"], ()),
        ("binarize", "binarize-empty-lists", False, lambda f: ["binarize", f, "--bits", "1", "-o", "out.parquet"],
         ["out.parquet"], ()),
        ("search", "search-queries-fixed-size-0", True,
         lambda f: ["search", f, "--index", "flat.vpi", "-k", "5", "-o", "run.parquet"], ["run.parquet"], ("flat.vpi",)),
    ]
    for cmd, slug, fixed, argv, outs, inputs in dim0:
        def setup(ctx, fixed=fixed, argv=argv, outs=outs, inputs=inputs):
            cp(ctx, *inputs)
            name = "bad.arrow" if fixed else "bad.parquet"
            write_table_file(ctx.path(name), dim0_table(20, "d", fixed))
            return Inv(argv=argv(name), out=outs)

        add(f"class3-{slug}-dim-0", 3, cmd, setup, Refuse(1))

    # Null and empty ids.
    def ids_with(ids, row, value):
        arr = list(ids)
        arr[row] = value
        return pa.array(arr, pa.string())

    bad_ids = [
        ("build-index", "build-index", "docs", lambda f: ["build-index", f, "--spec", "Flat", "-o", "out.vpi"],
         ["out.vpi"], ()),
        ("quantize", "quantize", "docs", lambda f: ["quantize", f, "--to", "int8", "-o", "out.parquet"],
         ["out.parquet"], ()),
        ("binarize", "binarize", "docs", lambda f: ["binarize", f, "--bits", "1", "-o", "out.parquet"],
         ["out.parquet"], ()),
        ("search", "search-queries", "queries",
         lambda f: ["search", f, "--index", "flat.vpi", "-k", "5", "-o", "run.parquet"], ["run.parquet"], ("flat.vpi",)),
        ("rerank", "rerank-queries", "queries",
         lambda f: ["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", f, "-k", "5", "-o",
                    "out.parquet"], ["out.parquet"], ("run.parquet", "docs.parquet")),
    ]
    for cmd, slug, role, argv, outs, inputs in bad_ids:
        for what, value in (("null-id", None), ("empty-id", "")):
            if what == "empty-id" and slug in ("binarize", "rerank-queries"):
                continue

            def setup(ctx, role=role, argv=argv, outs=outs, inputs=inputs, value=value):
                cp(ctx, *inputs)
                ids, mat = _role(role)
                row = 7 if role == "docs" else 3
                t = vectors_table(None, mat, vec_meta(), id_array=ids_with(ids, row, value))
                write_table_file(ctx.path("bad.parquet"), t)
                return Inv(argv=argv("bad.parquet"), out=outs)

            add(f"class3-{slug}-{what}", 3, cmd, setup, Refuse(1))

    # fp16 beyond its range.
    for kind in ("big", "-big"):
        def setup(ctx, kind=kind):
            meta = vec_meta(normalized=False)
            write_table_file(ctx.path("big.parquet"), poisoned_table(DOC_IDS, DOCS, 7, kind, meta))
            return Inv(argv=["quantize", "big.parquet", "--to", "fp16", "-o", "out.parquet"], out=["out.parquet"],
                       mention_id=["d7"])

        add(f"class3-quantize-fp16-overflow{'-negative' if kind[0] == '-' else ''}", 3, "quantize", setup, Refuse(1))


_class3()

# ====================================================================================== class 4


def _mismatch(id_: str, cmd: str, setup_fn, check_fn, mention: list[str] | None = None):
    """A pair: the combination is refused (exit 1); with --allow-mismatch it runs (exit 0) correctly."""
    def refused(ctx):
        inv = setup_fn(ctx)
        inv.mention = list(mention or [])
        return inv

    def allowed(ctx):
        inv = setup_fn(ctx)
        inv.argv = [*inv.argv, "--allow-mismatch"]
        return inv

    add(f"class4-{id_}", 4, cmd, refused, Refuse(1))
    add(f"class4-{id_}-allow-mismatch", 4, cmd, allowed, Ok(check_fn))


def _qfile(ctx: Ctx, name: str, meta: dict, ids=None, mat=None) -> str:
    write_vectors(ctx.path(name), ids or QIDS, QUERIES if mat is None else mat, meta)
    return name


def _run_equals(ref: str, out: str = "run.parquet"):
    def check(res, ctx):
        same_run(read_any_table(ctx.read(out)), read_any_table(ctx.shared.get(ref)), f"{out}")
    return check


def _vectors_equal(ref: str, out: str = "out.parquet"):
    def check(res, ctx):
        same_vectors(read_any_table(ctx.read(out)), read_any_table(ctx.shared.get(ref)), out)
    return check


def _class4():
    search_q = lambda f: ["search", f, "--index", "flat.vpi", "-k", str(K), "-o", "run.parquet"]
    for slug, meta in (
        ("search-queries-other-model", vec_meta(sha=SHA_B)),
        ("search-queries-other-pooling", vec_meta(pooling="cls")),
        ("search-queries-not-normalized", vec_meta(normalized=False)),
        ("search-queries-truncated", vec_meta(compression={"method": "float32", "source_dim": 64, "dim": DIM,
                                                           "normalize": True})),
    ):
        def setup(ctx, meta=meta):
            cp(ctx, "flat.vpi")
            return Inv(argv=search_q(_qfile(ctx, "qx.parquet", meta)), out=["run.parquet"])

        _mismatch(slug, "search", setup, _run_equals("ref-search.parquet"), ["qx.parquet"])

    def setup_rescore(ctx):
        cp(ctx, "queries.parquet", "b1.vpi")
        write_vectors(ctx.path("other.parquet"), DOC_IDS, DOCS, vec_meta(sha=SHA_B))
        return Inv(argv=["search", "queries.parquet", "--index", "b1.vpi", "--rescore", "other.parquet", "-k", str(K),
                         "-o", "run.parquet"], out=["run.parquet"])

    _mismatch("search-rescore-other-model", "search", setup_rescore, _run_equals("ref-rescore.parquet"),
              ["other.parquet"])

    rerank = lambda v, qf: ["rerank", "run.parquet", "--vectors", v, "--queries", qf, "-k", "5", "-o",
                            "out.parquet"]

    def setup_rerank_q(ctx):
        cp(ctx, "run.parquet", "docs.parquet")
        return Inv(argv=rerank("docs.parquet", _qfile(ctx, "qx.parquet", vec_meta(sha=SHA_B))), out=["out.parquet"])

    _mismatch("rerank-queries-other-model", "rerank", setup_rerank_q, _run_equals("ref-rerank.parquet", "out.parquet"))

    def setup_rerank_v(ctx):
        cp(ctx, "run.parquet", "queries.parquet")
        write_vectors(ctx.path("dx.parquet"), DOC_IDS, DOCS, vec_meta(pooling="cls"))
        return Inv(argv=rerank("dx.parquet", "queries.parquet"), out=["out.parquet"])

    _mismatch("rerank-vectors-other-pooling", "rerank", setup_rerank_v,
              _run_equals("ref-rerank.parquet", "out.parquet"))

    def setup_q_like(ctx):
        cp(ctx, "i8.parquet")
        return Inv(argv=["quantize", _qfile(ctx, "qx.parquet", vec_meta(sha=SHA_B)), "--like", "i8.parquet", "-o",
                         "out.parquet"], out=["out.parquet"])

    _mismatch("quantize-like-other-model", "quantize", setup_q_like, _vectors_equal("ref-q-like.parquet"))

    def setup_b_like(ctx):
        cp(ctx, "b1c.parquet")
        return Inv(argv=["binarize", _qfile(ctx, "qx.parquet", vec_meta(sha=SHA_B)), "--like", "b1c.parquet", "-o",
                         "out.parquet"], out=["out.parquet"])

    _mismatch("binarize-like-other-model", "binarize", setup_b_like, _vectors_equal("ref-b-like.parquet"))

    def setup_calibration(ctx):
        cp(ctx, "queries.parquet", "b1c-other.parquet", "b1c.vpi")
        ctx.vp("binarize", "queries.parquet", "--like", "b1c-other.parquet", "-o", "qcodes.parquet")
        return Inv(argv=["search", "qcodes.parquet", "--index", "b1c.vpi", "-k", str(K), "-o", "run.parquet"],
                   out=["run.parquet"])

    def check_hamming(res, ctx):
        qc = emb_matrix(read_any_table(ctx.read("qcodes.parquet")))
        dc = emb_matrix(read_any_table(ctx.shared.get("b1c.parquet")))
        qb = np.unpackbits(qc, axis=1)
        db = np.unpackbits(dc, axis=1)
        dist = (qb[:, None, :] != db[None, :, :]).sum(axis=2)
        t = read_any_table(ctx.read("run.parquet"))
        pos = {d: j for j, d in enumerate(DOC_IDS)}
        by_q: dict = {}
        for qid, d in zip(t.column("qid").to_pylist(), t.column("docid").to_pylist()):
            by_q.setdefault(qid, []).append(pos[d])
        if list(by_q) != QIDS:
            fail("the run's queries are not the input's")
        for i, qid in enumerate(QIDS):
            got = sorted(dist[i, by_q[qid]].tolist())
            want = sorted(dist[i].tolist())[:K]
            if got != want:
                fail(f"query {qid}: Hamming distances {got} are not the {K} smallest {want}")

    _mismatch("search-binary-queries-other-calibration", "search", setup_calibration, check_hamming, ["qcodes.parquet"])


_class4()

# ====================================================================================== class 5


def _class5():
    def with_dup(ids, mat, row, other):
        """One more row carrying the id of ``row`` with the vector of ``other`` (no id goes missing)."""
        return list(ids) + [ids[row]], np.vstack([mat, mat[other:other + 1]])

    def setup_search(ctx):
        cp(ctx, "flat.vpi")
        write_vectors(ctx.path("dq.parquet"), *with_dup(QIDS, QUERIES, 3, 9))
        return Inv(argv=["search", "dq.parquet", "--index", "flat.vpi", "-k", "5", "-o", "run.parquet"],
                   out=["run.parquet"], mention_id=["q3"])

    add("class5-search-duplicate-query-id", 5, "search", setup_search, Refuse(1))

    def setup_build(ctx):
        write_vectors(ctx.path("dd.parquet"), *with_dup(DOC_IDS, DOCS, 7, 150))
        return Inv(argv=["build-index", "dd.parquet", "--spec", "Flat", "-o", "out.vpi"], out=["out.vpi"],
                   mention_id=["d7"])

    add("class5-build-index-duplicate-doc-id", 5, "build-index", setup_build, Refuse(1))

    def setup_rerank_q(ctx):
        cp(ctx, "run.parquet", "docs.parquet")
        write_vectors(ctx.path("dq.parquet"), *with_dup(QIDS, QUERIES, 3, 9))
        return Inv(argv=["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", "dq.parquet", "-k", "5",
                         "-o", "out.parquet"], out=["out.parquet"], mention_id=["q3"])

    add("class5-rerank-duplicate-query-id", 5, "rerank", setup_rerank_q, Refuse(1))

    def setup_rerank_v(ctx):
        cp(ctx, "run.parquet", "queries.parquet")
        top = _top_doc(0)  # a candidate of the run: its id appears twice, on two vectors
        write_vectors(ctx.path("dd.parquet"), *with_dup(DOC_IDS, DOCS, top, (top + 100) % len(DOC_IDS)))
        return Inv(argv=["rerank", "run.parquet", "--vectors", "dd.parquet", "--queries", "queries.parquet", "-k", "5",
                         "-o", "out.parquet"], out=["out.parquet"], mention_id=[DOC_IDS[top]])

    add("class5-rerank-duplicate-doc-id", 5, "rerank", setup_rerank_v, Refuse(1))

    dup_row = RUN_ROWS[2]
    dup_rows = RUN_ROWS[:5] + [(dup_row[0], dup_row[1], 6, dup_row[3] - 0.5)] + RUN_ROWS[5:]

    def setup_rerank_run(ctx):
        cp(ctx, "docs.parquet", "queries.parquet")
        pq.write_table(run_table(dup_rows), ctx.path("dup.parquet"))
        return Inv(argv=["rerank", "dup.parquet", "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k",
                         "5", "-o", "out.parquet"], out=["out.parquet"], mention_id=[dup_row[1]])

    add("class5-rerank-duplicate-run-pair", 5, "rerank", setup_rerank_run, Refuse(1))

    def setup_eval_trec(ctx):
        cp(ctx, "qrels.tsv")
        ctx.write("dup.trec", trec_text(dup_rows))
        return Inv(argv=["eval", "dup.trec", "--qrels", "qrels.tsv", "-o", "m.tsv"], out=["m.tsv"],
                   mention_id=[dup_row[1]])

    add("class5-eval-duplicate-run-pair-trec", 5, "eval", setup_eval_trec, Refuse(1))

    def setup_eval_pq(ctx):
        cp(ctx, "qrels.tsv")
        pq.write_table(run_table(dup_rows), ctx.path("dup.parquet"))
        return Inv(argv=["eval", "dup.parquet", "--qrels", "qrels.tsv", "-o", "m.tsv"], out=["m.tsv"],
                   mention_id=[dup_row[1]])

    add("class5-eval-duplicate-run-pair-parquet", 5, "eval", setup_eval_pq, Refuse(1))

    def setup_eval_qrels(ctx):
        cp(ctx, "run.parquet")
        rows = QRELS_ROWS + [(QRELS_ROWS[0][0], QRELS_ROWS[0][1], 0)]
        ctx.write("dq.tsv", beir_tsv(rows))
        return Inv(argv=["eval", "run.parquet", "--qrels", "dq.tsv", "-o", "m.tsv"], out=["m.tsv"],
                   mention_id=[QRELS_ROWS[0][1]])

    add("class5-eval-duplicate-qrels-pair", 5, "eval", setup_eval_qrels, Refuse(1))

    def setup_merge(ctx):
        from pyarrow import ipc

        ctx.copy("s0.arrows")
        ctx.copy("s1.arrows")
        with ipc.open_stream(pa.BufferReader(ctx.read("s1.arrows"))) as r:
            schema, batches = r.schema, list(r)
        b = batches[0]
        ids = b.column(0).to_pylist()
        ids[5] = "b3"  # an id of shard 0's first block
        b = pa.RecordBatch.from_arrays([pa.array(ids, b.schema.field(0).type), b.column(1)], schema=b.schema)
        with ipc.new_stream(str(ctx.path("s1.arrows")), schema) as wr:
            for x in [b] + batches[1:]:
                wr.write_batch(x)
        return Inv(argv=["merge", "s0.arrows", "s1.arrows", "-o", "out.parquet"], out=["out.parquet"],
                   mention_id=["b3"])

    add("class5-merge-same-id-in-two-shards", 5, "merge", setup_merge, Refuse(1))

    def setup_embed(ctx):
        recs = corpus_records()
        recs[20]["_id"] = "t5"
        ctx.write("dup.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
        return Inv(argv=["embed", "dup.jsonl", "--model", ctx.model, "-o", "out.parquet"], out=["out.parquet"],
                   mention_id=["t5"])

    add("class5-embed-duplicate-id", 5, "embed", setup_embed, Refuse(1))


_class5()

# ====================================================================================== class 6

BAD_SPECS = {
    "HNSW1": "hnsw1", "HNSW0": "hnsw0", "HNSW-3": "hnsw-negative", "IVF0,Flat": "ivf0",
    "IVF100000,Flat": "ivf-more-lists-than-vectors", "PQ7": "pq7-not-dividing-32", "PQ4x99": "pq4x99",
    "IVF8,PQ4x99": "ivf8-pq4x99", "OPQ7,IVF8,PQ7": "opq7-ivf8-pq7", "SQ3": "sq3", "HSNW32": "typo-hsnw32",
    "": "empty", "Flat,Flat": "flat-flat",
}
BAD_BINARY_SPECS = {"BHNSW1": "binary-bhnsw1", "BIVF0": "binary-bivf0"}


def _class6():
    for spec, slug in BAD_SPECS.items():
        def setup(ctx, spec=spec):
            cp(ctx, "d200.parquet")
            return Inv(argv=["build-index", "d200.parquet", "--spec", spec, "-o", "out.vpi"], out=["out.vpi"])

        add(f"class6-build-index-spec-{slug}", 6, "build-index", setup, Refuse(2))
    for spec, slug in BAD_BINARY_SPECS.items():
        def setup(ctx, spec=spec):
            cp(ctx, "b200.parquet")
            return Inv(argv=["build-index", "b200.parquet", "--spec", spec, "-o", "out.vpi"], out=["out.vpi"])

        add(f"class6-build-index-spec-{slug}", 6, "build-index", setup, Refuse(2))

    numeric = [
        ("search", "search-nprobe-beyond-uint32", ("ivf.vpi",), ["--nprobe", "4294967297"], "ivf.vpi"),
        ("search", "search-ef-search-beyond-int", ("hnsw.vpi",), ["--ef-search", "99999999999"], "hnsw.vpi"),
        ("search", "search-k-beyond-int", ("flat.vpi",), ["-k", "3000000000"], "flat.vpi"),
        ("search", "search-batch-size-0", ("flat.vpi",), ["--batch-size", "0"], "flat.vpi"),
    ]
    for cmd, slug, inputs, opts, index in numeric:
        def setup(ctx, inputs=inputs, opts=opts, index=index):
            cp(ctx, "queries.parquet", *inputs)
            return Inv(argv=["search", "queries.parquet", "--index", index, *opts, "-o", "run.parquet"],
                       out=["run.parquet"])

        add(f"class6-{slug}", 6, cmd, setup, Refuse(2))
    for slug, opts in (("build-index-nprobe-beyond-int", ["--nprobe", "2147483648"]),
                       ("build-index-train-size-0", ["--train-size", "0"])):
        def setup(ctx, opts=opts):
            cp(ctx, "docs.parquet")
            return Inv(argv=["build-index", "docs.parquet", "--spec", "IVF4,Flat", *opts, "-o", "out.vpi"],
                       out=["out.vpi"])

        add(f"class6-{slug}", 6, "build-index", setup, Refuse(2))

    # Valid specs stay valid, and the indexes they build find the neighbours.
    for spec, slug, min_recall in (("Flat", "flat", None), ("HNSW16", "hnsw16", 0.9), ("IVF4,Flat", "ivf4-flat", 0.9),
                                   ("SQ8", "sq8", 0.8), ("PQ4", "pq4", 0.4)):
        def setup(ctx, spec=spec):
            cp(ctx, "docs.parquet")
            return Inv(argv=["build-index", "docs.parquet", "--spec", spec, "-o", "out.vpi"], out=["out.vpi"])

        def check(res, ctx, min_recall=min_recall):
            rows = _search_with(ctx, ctx.path("out.vpi"))
            if min_recall is None:
                return check_topk(rows, QIDS, QUERIES, DOC_IDS, DOCS, K)
            exact = {(q, d) for q, d, _, _ in RUN_ROWS}
            got = {(q, d) for q, d, _, _ in rows}
            if len(rows) != len(QIDS) * K:
                fail(f"{len(rows)} results, expected {len(QIDS) * K}")
            recall = len(exact & got) / len(exact)
            if recall < min_recall:
                fail(f"recall@{K} against exact search is {recall:.2f} < {min_recall}")

        add(f"class6-build-index-valid-spec-{slug}", 6, "build-index", setup, Ok(check))


_class6()

# ====================================================================================== class 7


def _weird_queries(kind: str) -> list[str]:
    ids = list(QIDS)
    ids[0] = {"space": "q 0", "tab": "q\t0", "newline": "q\n0"}[kind]
    return ids


def _class7():
    for kind, how in (("space", "format-trec-stdout"), ("tab", "o-trec"), ("newline", "o-trec")):
        def setup(ctx, kind=kind, how=how):
            cp(ctx, "flat.vpi")
            ids = _weird_queries(kind)
            write_vectors(ctx.path("wq.parquet"), ids, QUERIES)
            tail = ["--format", "trec"] if how == "format-trec-stdout" else ["-o", "run.trec"]
            return Inv(argv=["search", "wq.parquet", "--index", "flat.vpi", "-k", "5", *tail], out=["run.trec"],
                       mention_id=[ids[0]])

        add(f"class7-search-query-id-with-{kind}-{how}", 7, "search", setup, Refuse(1))

    for kind, how in (("space", "o-trec"), ("tab", "o-trec"), ("newline", "format-trec-stdout")):
        def setup(ctx, kind=kind, how=how):
            ctx.copy(f"w{kind}.vpi", "w.vpi")
            q = DOCS[5:6]  # the query is the weird document itself
            write_vectors(ctx.path("q.parquet"), ["qa"], q)
            tail = ["--format", "trec"] if how == "format-trec-stdout" else ["-o", "run.trec"]
            return Inv(argv=["search", "q.parquet", "--index", "w.vpi", "-k", "3", *tail], out=["run.trec"],
                       mention_id=[WEIRD[kind]])

        add(f"class7-search-doc-id-with-{kind}-{how}", 7, "search", setup, Refuse(1))

    def rerank_weird(ctx, qkind: str | None, dkind: str | None):
        qids = _weird_queries(qkind) if qkind else list(QIDS)
        dids = list(DOC_IDS)
        if dkind:
            dids[_top_doc(0)] = WEIRD[dkind]
        rows = [(qids[QIDS.index(q)], dids[DOC_IDS.index(d)], r, s) for q, d, r, s in RUN_ROWS]
        pq.write_table(run_table(rows), ctx.path("wrun.parquet"))
        write_vectors(ctx.path("wq.parquet"), qids, QUERIES)
        write_vectors(ctx.path("wd.parquet"), dids, DOCS)
        return qids, dids

    def setup_rr_q(ctx):
        qids, _ = rerank_weird(ctx, "space", None)
        return Inv(argv=["rerank", "wrun.parquet", "--vectors", "wd.parquet", "--queries", "wq.parquet", "-k", "5",
                         "-o", "x.trec"], out=["x.trec"], mention_id=[qids[0]])

    add("class7-rerank-query-id-with-space-o-trec", 7, "rerank", setup_rr_q, Refuse(1))

    def setup_rr_d(ctx):
        rerank_weird(ctx, None, "tab")
        return Inv(argv=["rerank", "wrun.parquet", "--vectors", "wd.parquet", "--queries", "wq.parquet", "-k", "5",
                         "--format", "trec"], mention_id=[WEIRD["tab"]])

    add("class7-rerank-doc-id-with-tab-format-trec-stdout", 7, "rerank", setup_rr_d, Refuse(1))

    # The same ids survive Arrow/Parquet output exactly.
    def setup_search_pq(ctx):
        cp(ctx, "wall.vpi")
        ids = list(QIDS)
        ids[0], ids[1], ids[2] = "q 0", "q\t1", "q\n2"
        mat = QUERIES.copy()
        mat[3], mat[4], mat[5] = DOCS[5], DOCS[6], DOCS[7]
        write_vectors(ctx.path("wq.parquet"), ids, mat)
        return Inv(argv=["search", "wq.parquet", "--index", "wall.vpi", "-k", "3", "-o", "run.parquet"],
                   out=["run.parquet"], data={"qids": ids, "mat": mat})

    def check_search_pq(res, ctx):
        t = read_any_table(ctx.read("run.parquet"))
        dids = list(DOC_IDS)
        dids[5], dids[6], dids[7] = WEIRD["space"], WEIRD["tab"], WEIRD["newline"]
        rows = list(zip(*(t.column(c).to_pylist() for c in ("qid", "docid", "rank", "score"))))
        check_topk(rows, res.inv.data["qids"], res.inv.data["mat"], dids, DOCS, 3, "run.parquet")

    add("class7-search-whitespace-ids-parquet-kept", 7, "search", setup_search_pq, Ok(check_search_pq))

    def setup_rr_pq(ctx):
        qids, dids = rerank_weird(ctx, "tab", "newline")
        return Inv(argv=["rerank", "wrun.parquet", "--vectors", "wd.parquet", "--queries", "wq.parquet", "-k", "5",
                         "-o", "x.parquet"], out=["x.parquet"], data={"qids": qids, "dids": dids})

    def check_rr_pq(res, ctx):
        t = read_any_table(ctx.read("x.parquet"))
        rows = list(zip(*(t.column(c).to_pylist() for c in ("qid", "docid", "rank", "score"))))
        check_topk(rows, res.inv.data["qids"], QUERIES, res.inv.data["dids"], DOCS, 5, "x.parquet")

    add("class7-rerank-whitespace-ids-parquet-kept", 7, "rerank", setup_rr_pq, Ok(check_rr_pq))


_class7()

# ====================================================================================== build-index --update


def _update_cases():
    """build-index NEW --update OLD.vpi over hostile inputs: the refusals of a rebuild, plus an old
    index of another model, a spec or training option it cannot keep, and an old index edited since."""

    def setup_other_model(ctx):
        cp(ctx, "flat.vpi")
        write_vectors(ctx.path("new.parquet"), DOC_IDS, DOCS, vec_meta(DIM, sha=SHA_B))
        return Inv(argv=["build-index", "new.parquet", "--update", "flat.vpi", "-o", "out.vpi"], out=["out.vpi"],
                   mention=["new.parquet"])

    add("class3-build-index-update-other-model", 3, "build-index", setup_other_model, Refuse(1))

    def setup_nan(ctx):
        cp(ctx, "flat.vpi")
        bad = DOCS.copy()
        bad[3, 2] = np.nan
        write_vectors(ctx.path("new.parquet"), DOC_IDS, bad)
        return Inv(argv=["build-index", "new.parquet", "--update", "flat.vpi", "-o", "out.vpi"], out=["out.vpi"],
                   mention=["new.parquet"])

    add("class3-build-index-update-nan", 3, "build-index", setup_nan, Refuse(1))

    for slug, extra in (("spec", ["--spec", "HNSW8"]), ("nprobe", ["--nprobe", "4"]), ("seed", ["--seed", "3"])):
        def setup_keep(ctx, extra=extra):
            cp(ctx, "docs.parquet", "flat.vpi")
            return Inv(argv=["build-index", "docs.parquet", "--update", "flat.vpi", *extra, "-o", "out.vpi"], out=["out.vpi"])

        add(f"class4-build-index-update-{slug}-kept-from-old", 4, "build-index", setup_keep, Refuse(2))

    def setup_not_index(ctx):
        cp(ctx, "docs.parquet")
        return Inv(argv=["build-index", "docs.parquet", "--update", "docs.parquet", "-o", "out.vpi"], out=["out.vpi"],
                   mention=["docs.parquet"])

    add("class4-build-index-update-not-an-index", 4, "build-index", setup_not_index, Refuse(1))

    # The old index replaced by another (same size) between two runs: the rerun is not up to date.
    def setup_old_edited(ctx):
        cp(ctx, "docs.parquet", "flat.vpi")
        argv = ["build-index", "docs.parquet", "--update", "flat.vpi", "-o", "out.vpi"]
        ctx.vp(*argv)
        half = DOCS.copy()
        half[: len(half) // 2] *= -1
        write_vectors(ctx.path("other.parquet"), DOC_IDS, half)
        ctx.vp("build-index", "other.parquet", "-o", "flat2.vpi")
        st = os.stat(ctx.path("flat.vpi"))
        if os.path.getsize(ctx.path("flat2.vpi")) == st.st_size:
            ctx.write("flat.vpi", ctx.read("flat2.vpi"))
            os.utime(ctx.path("flat.vpi"), ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            ctx.write("flat.vpi", ctx.read("flat2.vpi"))
        return Inv(argv=argv, out=["out.vpi"])

    def check_old_edited(res, ctx):
        no_up_to_date(res, ctx)
        err = res.stderr.decode() if isinstance(res.stderr, bytes) else res.stderr
        if "150 changed" not in err:
            fail("the update did not compare the rows again")
        same_index(ctx, ctx.read("out.vpi"), "the updated index")

    add("class2-build-index-update-old-index-edited", 2, "build-index", setup_old_edited, Ok(check_old_edited))


_update_cases()

# ====================================================================================== class 8


@dataclass
class Reader:
    cmd: str
    source: str  # shared artifact fed through the stream
    inputs: tuple[str, ...]
    argv: Callable[[Ctx, str], list[str]]  # given the input path
    out: str | None
    check: Callable[[Result, Ctx], None]


def _inspect_same(res, ctx, ref="ref-inspect.json"):
    got = json.loads(res.stdout)
    want = json.loads(ctx.shared.get(ref).read_bytes())
    for key in ("format", "kind", "rows", "schema", "vecpipe"):
        if got.get(key) != want.get(key):
            fail(f"inspect: {key} is {str(got.get(key))[:60]}, on the regular file {str(want.get(key))[:60]}")


def _text_equals(out: str, ref: str):
    def check(res, ctx):
        if ctx.read(out) != ctx.shared.get(ref).read_bytes():
            fail(f"{out} differs from the same command on the regular file")
    return check


READERS = {
    "embed": Reader("embed", "corpus.jsonl", (), lambda ctx, f: ["embed", f, "--model", ctx.model, "-o", "out.parquet"],
                    "out.parquet", lambda res, ctx: equals_ref(ctx, W["embed"], ctx.read("out.parquet"))),
    "build-index": Reader("build-index", "docs.parquet", (),
                          lambda ctx, f: ["build-index", f, "--spec", "Flat", "-o", "out.vpi"], "out.vpi",
                          lambda res, ctx: same_index(ctx, ctx.read("out.vpi"))),
    "search": Reader("search", "queries.parquet", ("flat.vpi",),
                     lambda ctx, f: ["search", f, "--index", "flat.vpi", "-k", str(K), "-o", "run.trec"], "run.trec",
                     _text_equals("run.trec", "ref-search.trec")),
    "eval-run": Reader("eval", "run.parquet", ("qrels.tsv",),
                       lambda ctx, f: ["eval", f, "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], "m.tsv",
                       _text_equals("m.tsv", "ref-eval.tsv")),
    "eval-qrels": Reader("eval", "qrels.tsv", ("run.parquet",),
                         lambda ctx, f: ["eval", "run.parquet", "--qrels", f, *MEASURE_ARGS, "-o", "m.tsv"], "m.tsv",
                         _text_equals("m.tsv", "ref-eval.tsv")),
    "rerank": Reader("rerank", "run.parquet", ("docs.parquet", "queries.parquet"),
                     lambda ctx, f: ["rerank", f, "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k", "5",
                                     "-o", "out.parquet"], "out.parquet",
                     lambda res, ctx: equals_ref(ctx, W["rerank"], ctx.read("out.parquet"))),
    "quantize": Reader("quantize", "docs.parquet", (), lambda ctx, f: ["quantize", f, "--to", "int8", "-o", "out.parquet"],
                       "out.parquet", lambda res, ctx: equals_ref(ctx, W["quantize"], ctx.read("out.parquet"))),
    "binarize": Reader("binarize", "docs.parquet", (), lambda ctx, f: ["binarize", f, "--bits", "1", "-o", "out.parquet"],
                       "out.parquet", lambda res, ctx: equals_ref(ctx, W["binarize"], ctx.read("out.parquet"))),
    "inspect": Reader("inspect", "docs.parquet", (), lambda ctx, f: ["inspect", f, "--format", "json"], None,
                      _inspect_same),
}


def _class8():
    for slug, r in READERS.items():
        def setup_fifo(ctx, r=r):
            cp(ctx, *r.inputs)
            os.mkfifo(ctx.path("in.fifo"))
            data = ctx.shared.get(r.source).read_bytes()
            return Inv(argv=r.argv(ctx, "in.fifo"), fifo_in={"in.fifo": data}, out=[r.out] if r.out else [])

        add(f"class8-{slug}-fifo-input", 8, r.cmd, setup_fifo, Ok(r.check))

        def setup_procsub(ctx, r=r):
            cp(ctx, *r.inputs)
            src = str(ctx.shared.get(r.source))
            argv = r.argv(ctx, "@@IN@@")
            parts = [f"<(cat {shlex.quote(src)})" if a == "@@IN@@" else shlex.quote(a) for a in argv]
            return Inv(shell="exec vecpipe " + " ".join(parts), out=[r.out] if r.out else [])

        add(f"class8-{slug}-process-substitution", 8, r.cmd, setup_procsub, Ok(r.check))

    def setup_inspect_regular(ctx):
        ctx.copy("docs.parquet")
        return Inv(argv=["inspect", "docs.parquet", "--format", "json"])

    def check_inspect(res, ctx):
        info = json.loads(res.stdout)
        if info.get("rows") != len(DOC_IDS) or info.get("kind") != "vectors":
            fail(f"inspect: rows {info.get('rows')} kind {info.get('kind')}, expected {len(DOC_IDS)} vectors")
        if (info.get("vecpipe") or {}).get("model", {}).get("sha256") != "a" * 64:
            fail("inspect: the vecpipe metadata is not the file's")

    add("class8-inspect-regular-file", 8, "inspect", setup_inspect_regular, Ok(check_inspect))

    # A closed stdin with input '-'.
    closed = {
        "embed": (lambda ctx: ["embed", "-", "--model", ctx.model, "-o", "out.parquet"], (), ["out.parquet"]),
        "build-index": (lambda ctx: ["build-index", "-", "--spec", "Flat", "-o", "out.vpi"], (), ["out.vpi"]),
        "search": (lambda ctx: ["search", "-", "--index", "flat.vpi", "-k", "5", "-o", "run.parquet"], ("flat.vpi",),
                   ["run.parquet"]),
        "eval": (lambda ctx: ["eval", "-", "--qrels", "qrels.tsv", "-o", "m.tsv"], ("qrels.tsv",), ["m.tsv"]),
        "rerank": (lambda ctx: ["rerank", "-", "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k", "5",
                                "-o", "out.parquet"], ("docs.parquet", "queries.parquet"), ["out.parquet"]),
        "quantize": (lambda ctx: ["quantize", "-", "--to", "int8", "-o", "out.parquet"], (), ["out.parquet"]),
        "binarize": (lambda ctx: ["binarize", "-", "--bits", "1", "-o", "out.parquet"], (), ["out.parquet"]),
        "inspect": (lambda ctx: ["inspect", "-"], (), []),
    }
    for cmd, (argv, inputs, outs) in closed.items():
        def setup(ctx, argv=argv, inputs=inputs, outs=outs):
            cp(ctx, *inputs)
            return Inv(shell=f"exec vecpipe {q(*argv(ctx))} <&-", out=outs)

        add(f"class8-{cmd}-closed-stdin", 8, cmd, setup, Refuse(1))

    # Compressed inputs.
    for name, src in (("gzip", "corpus.jsonl.gz"), ("zstd", "corpus.jsonl.zst")):
        def setup(ctx, src=src):
            ctx.copy(src)
            return Inv(argv=["embed", src, "--model", ctx.model, "-o", "out.parquet"], out=["out.parquet"])

        add(f"class8-embed-{name}-jsonl", 8, "embed", setup,
            Ok(lambda res, ctx: equals_ref(ctx, W["embed"], ctx.read("out.parquet"))))

    def setup_gz_qrels(ctx):
        cp(ctx, "run.parquet", "qrels.tsv.gz")
        return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv.gz", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

    add("class8-eval-gzip-qrels", 8, "eval", setup_gz_qrels, Ok(_text_equals("m.tsv", "ref-eval.tsv")))

    def setup_gz_run(ctx):
        cp(ctx, "run.trec.gz", "qrels.tsv")
        return Inv(argv=["eval", "run.trec.gz", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

    def check_gz_run(res, ctx):
        rows = parse_trec(gzip.decompress(ctx.read("run.trec.gz")).decode())
        check_eval_text(ctx.read("m.tsv").decode(), rows, QRELS_ROWS)

    add("class8-eval-gzip-trec-run", 8, "eval", setup_gz_run, Ok(check_gz_run))

    def setup_gz_parquet(ctx):
        cp(ctx, "docs.parquet.gz")
        return Inv(argv=["build-index", "docs.parquet.gz", "--spec", "Flat", "-o", "out.vpi"], out=["out.vpi"])

    add("class8-build-index-gzip-parquet", 8, "build-index", setup_gz_parquet,
        Ok(lambda res, ctx: same_index(ctx, ctx.read("out.vpi"))))

    for cmd, argv, outs in (
        ("build-index", lambda ctx: ["build-index", "garbage.gz", "--spec", "Flat", "-o", "out.vpi"], ["out.vpi"]),
        ("embed", lambda ctx: ["embed", "garbage.gz", "--model", ctx.model, "-o", "out.parquet"], ["out.parquet"]),
        ("eval", lambda ctx: ["eval", "run.parquet", "--qrels", "garbage.gz", "-o", "m.tsv"], ["m.tsv"]),
    ):
        def setup(ctx, argv=argv, outs=outs):
            cp(ctx, "garbage.gz", "run.parquet")
            return Inv(argv=argv(ctx), out=outs, mention=["garbage.gz"])

        add(f"class8-{cmd}-gzip-of-unsupported-content", 8, cmd, setup, Refuse(1))


_class8()

# ====================================================================================== class 9

# Relevance strings: either trec_eval's reading (atol) or a refusal; never another number.
REL_STRINGS = {
    "plus-sign": "+1", "minus-sign": "-1", "leading-zero": "01", "leading-zeros": "007", "one-point-zero": "1.0",
    "two-point-five": "2.5", "empty": "", "abc": "abc", "leading-space": " 1", "exponent": "1e3", "hex": "0x1",
    "arabic-indic-digit": "\u0663", "fullwidth-digit": "\uff11", "underscore-thousands": "1_000",
}
REL_ROW = 0  # QRELS_ROWS[0]: q0's top document


def _qrels_with_rel(rel_text: str) -> tuple[str, list]:
    rows = list(QRELS_ROWS)
    q0, d0, _ = rows[REL_ROW]
    text = "query-id\tcorpus-id\tscore\n" + f"{q0}\t{d0}\t{rel_text}\n" + "".join(
        f"{q}\t{d}\t{r}\n" for q, d, r in rows[REL_ROW + 1:])
    ref_rows = [(q0, d0, atol(rel_text))] + rows[REL_ROW + 1:]
    return text, ref_rows


def _eval_check(run_rows, qrels_rows, out="m.tsv"):
    def check(res, ctx):
        check_eval_text(ctx.read(out).decode(), run_rows, qrels_rows)
    return check


def _class9():
    for slug, value in (("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf"))):
        def setup(ctx, value=value):
            cp(ctx, "run.parquet")
            rels = [float(r) for _, _, r in QRELS_ROWS]
            rels[4] = value
            pq.write_table(pa.table({"qid": [r[0] for r in QRELS_ROWS], "docid": [r[1] for r in QRELS_ROWS],
                                     "rel": pa.array(rels, pa.float64())}), ctx.path("qrels.parquet"))
            return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.parquet", "-o", "m.tsv"], out=["m.tsv"])

        add(f"class9-eval-parquet-qrels-rel-{slug.replace('-', 'minus-')}", 9, "eval", setup, Refuse(1))

    spaced = lambda d: f"doc {d[1:]}"
    sp_run = [(q, spaced(d), r, s) for q, d, r, s in RUN_ROWS]
    sp_qrels = [(q, spaced(d), r) for q, d, r in QRELS_ROWS]
    for header in (False, True):
        def setup(ctx, header=header):
            pq.write_table(run_table(sp_run), ctx.path("run.parquet"))
            ctx.write("qrels.tsv", beir_tsv(sp_qrels, header=header))
            return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

        add(f"class9-eval-beir-tsv-{'with' if header else 'without'}-header-doc-ids-with-spaces", 9, "eval", setup,
            Ok(_eval_check(sp_run, sp_qrels)))

    def setup_1_0(ctx):
        cp(ctx, "run.parquet")
        text, _ = _qrels_with_rel("1_0")
        ctx.write("qrels.tsv", text)
        return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", "-o", "m.tsv"], out=["m.tsv"])

    add("class9-eval-rel-1_0-ambiguous", 9, "eval", setup_1_0, Refuse(1))

    for slug, value in REL_STRINGS.items():
        text, ref_rows = _qrels_with_rel(value)

        def setup(ctx, text=text):
            cp(ctx, "run.parquet")
            ctx.write("qrels.tsv", text)
            return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

        add(f"class9-eval-rel-{slug}", 9, "eval", setup, Either(_eval_check(RUN_ROWS, ref_rows)))

    # Runs.
    def run_case(slug, rows_fn, fmt, expect_kind):
        rows = rows_fn()

        def setup(ctx):
            cp(ctx, "qrels.tsv")
            name = "r.trec" if fmt == "trec" else "r.parquet"
            if fmt == "trec":
                ctx.write(name, rows if isinstance(rows, str) else trec_text(rows))
            else:
                pq.write_table(run_table(rows), ctx.path(name))
            return Inv(argv=["eval", name, "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

        ref_rows = parse_trec(rows) if isinstance(rows, str) else rows
        expect = {"refuse": Refuse(1), "either": Either(_eval_check(ref_rows, QRELS_ROWS)),
                  "ok": Ok(_eval_check(ref_rows, QRELS_ROWS))}[expect_kind]
        add(f"class9-eval-run-{slug}", 9, "eval", setup, expect)

    def with_score(i, value):
        def fn():
            rows = list(RUN_ROWS)
            q, d, r, _ = rows[i]
            rows[i] = (q, d, r, value)
            return rows
        return fn

    run_case("nan-score-parquet", with_score(3, float("nan")), "parquet", "refuse")
    run_case("nan-score-trec", with_score(3, float("nan")), "trec", "refuse")
    run_case("inf-score-trec", with_score(4, float("inf")), "trec", "either")
    run_case("minus-inf-score-parquet", with_score(0, float("-inf")), "parquet", "either")
    def with_1e400():
        lines = trec_text(RUN_ROWS).splitlines(keepends=True)
        q_, _, d_, r_, _, tag = lines[5].split(" ")
        lines[5] = f"{q_} Q0 {d_} {r_} 1e400 {tag}"
        return "".join(lines)

    run_case("score-1e400-trec", with_1e400, "trec", "either")
    run_case("empty-parquet", list, "parquet", "either")
    run_case("negative-ranks-parquet", lambda: [(q, d, -r, s) for q, d, r, s in RUN_ROWS], "parquet", "either")
    run_case("tied-scores-parquet", lambda: [(q, d, r, 0.5 if q in ("q0", "q1") else s) for q, d, r, s in RUN_ROWS],
             "parquet", "ok")

    def setup_empty_trec(ctx):
        cp(ctx, "qrels.tsv")
        ctx.write("r.trec", "")
        return Inv(argv=["eval", "r.trec", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

    add("class9-eval-run-empty-trec-file", 9, "eval", setup_empty_trec, Either(_eval_check([], QRELS_ROWS)))


_class9()

# ====================================================================================== class 10

STDOUT_CMDS = {  # commands whose data goes to stdout, with their inputs
    "embed": (("corpus.jsonl",), lambda ctx: ["embed", "corpus.jsonl", "--model", ctx.model]),
    "quantize": (("docs.parquet",), lambda ctx: ["quantize", "docs.parquet", "--to", "int8"]),
    "binarize": (("docs.parquet",), lambda ctx: ["binarize", "docs.parquet", "--bits", "1"]),
    "search": (("queries.parquet", "flat.vpi"), lambda ctx: ["search", "queries.parquet", "--index", "flat.vpi", "-k",
                                                            str(K)]),
    "rerank": (("run.parquet", "docs.parquet", "queries.parquet"),
               lambda ctx: ["rerank", "run.parquet", "--vectors", "docs.parquet", "--queries", "queries.parquet", "-k",
                            "5"]),
    "eval": (("run.parquet", "qrels.tsv"), lambda ctx: ["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS]),
    "merge": (("s0.parquet", "s1.parquet"), lambda ctx: ["merge", "s0.parquet", "s1.parquet"]),
    "inspect": (("docs.parquet",), lambda ctx: ["inspect", "docs.parquet"]),
}


def _class10():
    # stdout closed.
    for cmd, (inputs, argv) in STDOUT_CMDS.items():
        def setup(ctx, inputs=inputs, argv=argv):
            cp(ctx, *inputs)
            return Inv(shell=f"exec vecpipe {q(*argv(ctx))} >&-")

        add(f"class10-{cmd}-stdout-closed", 10, cmd, setup, Refuse(1))

    for cmd in ("embed", "search", "eval", "quantize"):
        w = W[cmd]
        out = {"search": "run.trec", "eval": "m.tsv"}.get(cmd, "out.parquet")

        def setup(ctx, w=w, out=out):
            cp(ctx, *w.inputs)
            return Inv(shell=f"exec vecpipe {q(*w.args(ctx), '-o', out)} >&-", out=[out])

        add(f"class10-{cmd}-stdout-closed-with-output-file", 10, cmd, setup,
            Ok(lambda res, ctx, w=w, out=out: equals_ref(ctx, w, ctx.read(out))))

    # stderr closed: still a success, and nothing but data on stdout.
    for cmd, out in (("embed", "out.parquet"), ("build-index", "out.vpi"), ("eval", "m.tsv"), ("quantize", "out.parquet")):
        w = W[cmd]

        def setup(ctx, w=w, out=out):
            cp(ctx, *w.inputs)
            return Inv(shell=f"exec vecpipe {q(*w.args(ctx), '-o', out)} 2>&-", out=[out])

        def check(res, ctx, w=w, out=out):
            if res.stdout:
                fail(f"stdout carries {len(res.stdout)} bytes though the data went to {out}")
            equals_ref(ctx, w, ctx.read(out))

        add(f"class10-{cmd}-stderr-closed", 10, cmd, setup, Ok(check))

    def setup_search_stderr(ctx):
        cp(ctx, *W["search"].inputs)
        return Inv(shell=f"exec vecpipe {q('search', 'queries.parquet', '--index', 'flat.vpi', '-k', str(K))} 2>&-")

    def check_search_stderr(res, ctx):
        same_run(read_any_table(res.stdout), read_any_table(ctx.shared.get("ref-search.parquet")), "stdout")

    add("class10-search-stderr-closed-stdout-data", 10, "search", setup_search_stderr, Ok(check_search_stderr))

    # An early-closed pipe: exit 0, quietly.
    heads = {
        "search": (("docs.parquet", "flat.vpi"), ["search", "docs.parquet", "--index", "flat.vpi", "-k", "100"]),
        "merge": (("s0.parquet", "s1.parquet"), ["merge", "s0.parquet", "s1.parquet"]),
        "quantize": (("big.parquet",), ["quantize", "big.parquet", "--to", "int8"]),
        "binarize": (("big.parquet",), ["binarize", "big.parquet", "--bits", "1"]),
        "rerank": (("bigrun.parquet", "docs.parquet"), ["rerank", "bigrun.parquet", "--vectors", "docs.parquet",
                                                         "--queries", "docs.parquet", "-k", "100"]),
    }
    for cmd, (inputs, argv) in heads.items():
        def setup(ctx, inputs=inputs, argv=argv):
            cp(ctx, *inputs)
            return Inv(shell=f"set -o pipefail\nvecpipe {q(*argv, '-q')} | head -c 10 > head.out\n"
                             "exit ${PIPESTATUS[0]}")

        def check(res, ctx):
            stderr_empty(res, ctx)
            if len(ctx.read("head.out")) != 10:
                fail("head did not receive 10 bytes")

        add(f"class10-{cmd}-pipe-closed-early", 10, cmd, setup, Ok(check))

    # A full disk (a 1 KiB file size limit): refused, naming the user's path, nothing left behind.
    fulls = {
        "build-index": (("docs.parquet",), ["build-index", "docs.parquet", "--spec", "Flat"], "out.vpi"),
        "quantize": (("docs.parquet",), ["quantize", "docs.parquet", "--to", "fp16"], "out.parquet"),
        "binarize": (("docs.parquet",), ["binarize", "docs.parquet", "--bits", "4"], "out.parquet"),
        "embed": (("corpus.jsonl",), None, "out.parquet"),
        "search": (("queries.parquet", "flat.vpi"), ["search", "queries.parquet", "--index", "flat.vpi", "-k", "100"],
                   "run.trec"),
        "eval": (("run.parquet", "qrels.tsv"), ["eval", "run.parquet", "--qrels", "qrels.tsv", "--per-query"], "m.tsv"),
        "merge": (("s0.parquet", "s1.parquet"), ["merge", "s0.parquet", "s1.parquet"], "out.parquet"),
        "rerank": (("bigrun.parquet", "docs.parquet"), ["rerank", "bigrun.parquet", "--vectors", "docs.parquet",
                                                         "--queries", "docs.parquet", "-k", "100"], "out.parquet"),
    }
    for cmd, (inputs, argv, out) in fulls.items():
        def setup(ctx, inputs=inputs, argv=argv, out=out):
            cp(ctx, *inputs)
            ctx.write(out, OLD)
            args = argv or ["embed", "corpus.jsonl", "--model", ctx.model]
            return Inv(shell=f"ulimit -f 1\nexec vecpipe {q(*args, '-o', out, '--force')}", out=[out], mention=[out],
                       mention_re=[r"no space|too large|limit"])

        add(f"class10-{cmd}-disk-full", 10, cmd, setup, Refuse(1))

    # -q: nothing on stderr, faiss's clustering warnings included.
    def setup_ivf_q(ctx):
        cp(ctx, "d100.parquet")
        return Inv(argv=["build-index", "d100.parquet", "--spec", "IVF8,Flat", "-q", "-o", "out.vpi"], out=["out.vpi"])

    def check_ivf_q(res, ctx):
        stderr_empty(res, ctx)
        rows = _search_with(ctx, ctx.path("out.vpi"))
        check_topk(rows, QIDS, QUERIES, DOC_IDS[:100], DOCS[:100], K, "search of the IVF8 index (nprobe >= nlist)")

    add("class10-build-index-quiet-ivf-few-points", 10, "build-index", setup_ivf_q, Ok(check_ivf_q))

    def setup_pq_q(ctx):
        cp(ctx, "d100.parquet")
        return Inv(argv=["quantize", "d100.parquet", "--to", "pq", "--m", "4", "--nbits", "4", "-q", "-o", "out.parquet"],
                   out=["out.parquet"])

    def check_pq_q(res, ctx):
        stderr_empty(res, ctx)
        t = read_any_table(ctx.read("out.parquet"))
        if t.column("id").to_pylist() != DOC_IDS[:100]:
            fail("quantize pq: ids differ from the input's")

    add("class10-quantize-quiet-pq-few-points", 10, "quantize", setup_pq_q, Ok(check_pq_q))

    for cmd in ("embed", "search", "eval", "merge", "rerank"):
        w = W[cmd]
        out = {"search": "run.trec", "eval": "m.tsv"}.get(cmd, "out.parquet")

        def setup(ctx, w=w, out=out):
            cp(ctx, *w.inputs)
            return Inv(argv=[*w.args(ctx), "-q", "-o", out], out=[out])

        def check(res, ctx, w=w, out=out):
            stderr_empty(res, ctx)
            equals_ref(ctx, w, ctx.read(out))

        add(f"class10-{cmd}-quiet", 10, cmd, setup, Ok(check))

    # Options that do not apply are refused (exit 2).
    inapplicable = [
        ("binarize", "binarize-center-with-like", ("queries.parquet", "b1c.parquet"),
         ["binarize", "queries.parquet", "--like", "b1c.parquet", "--center", "-o", "out.parquet"], ["out.parquet"]),
        ("binarize", "binarize-center-with-2-bits", ("docs.parquet",),
         ["binarize", "docs.parquet", "--bits", "2", "--center", "-o", "out.parquet"], ["out.parquet"]),
        ("search", "search-rescore-multiplier-without-rescore", ("queries.parquet", "flat.vpi"),
         ["search", "queries.parquet", "--index", "flat.vpi", "--rescore-multiplier", "8", "-o", "run.parquet"],
         ["run.parquet"]),
        ("search", "search-prefix-with-vector-queries", ("queries.parquet", "flat.vpi"),
         ["search", "queries.parquet", "--index", "flat.vpi", "--prefix", "q: ", "-o", "run.parquet"], ["run.parquet"]),
        ("search", "search-model-with-vector-queries", ("queries.parquet", "flat.vpi"),
         ["search", "queries.parquet", "--index", "flat.vpi", "--model", "@MODEL@", "-o", "run.parquet"],
         ["run.parquet"]),
        ("search", "search-nprobe-on-flat", ("queries.parquet", "flat.vpi"),
         ["search", "queries.parquet", "--index", "flat.vpi", "--nprobe", "4", "-o", "run.parquet"], ["run.parquet"]),
        ("search", "search-nprobe-on-hnsw", ("queries.parquet", "hnsw.vpi"),
         ["search", "queries.parquet", "--index", "hnsw.vpi", "--nprobe", "4", "-o", "run.parquet"], ["run.parquet"]),
        ("search", "search-ef-search-on-flat", ("queries.parquet", "flat.vpi"),
         ["search", "queries.parquet", "--index", "flat.vpi", "--ef-search", "10", "-o", "run.parquet"],
         ["run.parquet"]),
        ("search", "search-ef-search-on-ivf", ("queries.parquet", "ivf.vpi"),
         ["search", "queries.parquet", "--index", "ivf.vpi", "--ef-search", "10", "-o", "run.parquet"], ["run.parquet"]),
        ("build-index", "build-index-nprobe-on-flat", ("docs.parquet",),
         ["build-index", "docs.parquet", "--spec", "Flat", "--nprobe", "4", "-o", "out.vpi"], ["out.vpi"]),
        ("build-index", "build-index-ef-search-on-ivf", ("docs.parquet",),
         ["build-index", "docs.parquet", "--spec", "IVF4,Flat", "--ef-search", "10", "-o", "out.vpi"], ["out.vpi"]),
        ("quantize", "quantize-m-with-int8", ("docs.parquet",),
         ["quantize", "docs.parquet", "--to", "int8", "--m", "4", "-o", "out.parquet"], ["out.parquet"]),
        ("quantize", "quantize-nbits-with-fp16", ("docs.parquet",),
         ["quantize", "docs.parquet", "--to", "fp16", "--nbits", "4", "-o", "out.parquet"], ["out.parquet"]),
    ]
    for cmd, slug, inputs, argv, outs in inapplicable:
        def setup(ctx, inputs=inputs, argv=argv, outs=outs):
            cp(ctx, *inputs)
            return Inv(argv=[ctx.model if a == "@MODEL@" else a for a in argv], out=outs)

        add(f"class10-{slug}", 10, cmd, setup, Refuse(2))


_class10()


# ====================================================================================== measures and plots (issue 11)

_BLOCKER = "raise ImportError('hidden by the hostile case')\n"


def _provider_check(names):
    """eval's TSV equals ir_measures (pytrec_eval, order-independent) on the fixture run and qrels."""
    def check(res, ctx, names=names):
        import ir_measures

        got = parse_eval_tsv(ctx.read("m.tsv").decode())
        qrels: dict = {}
        for q, d, r in QRELS_ROWS:
            qrels.setdefault(q, {})[d] = int(r)
        run: dict = {}
        for row in RUN_ROWS:
            if row[0] in qrels:
                run.setdefault(row[0], {})[row[1]] = float(row[-1])
        for name in names:
            m = ir_measures.parse_measure(name)
            want = ir_measures.calc_aggregate([m], qrels, run)[m]
            if name not in got or not math.isclose(got[name], want, abs_tol=6e-5):
                fail(f"{name}: eval gives {got.get(name)}, ir_measures {want:.6f}")
    return check


def _png_check(name, metrics=None):
    def check(res, ctx, name=name, metrics=metrics):
        data = ctx.read(name)
        if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 1000:
            fail(f"{name} is not a PNG image ({len(data)} bytes)")
        if metrics is not None:
            check_eval_text(ctx.read(metrics).decode(), RUN_ROWS, QRELS_ROWS)
    return check


def _class_measures():
    eval_in = ("run.parquet", "qrels.tsv")
    cmp_in = ("run.parquet", "run2.parquet", "qrels.tsv")
    cmds = {"eval": (eval_in, ["eval", "run.parquet"]), "compare": (cmp_in, ["compare", "run.parquet", "run2.parquet"])}
    for cmd, (inputs, head) in cmds.items():
        # measures nobody computes: one line listing close names or the forms providers accept (exit 2)
        for slug, measure, mention in (("measure-typo", "nDGC@10", "nDCG@10"), ("measure-unknown", "Foo@3", "unknown measure"),
                                       ("measure-no-provider", "RBP@10", "RBP(rel=REQUIRED"),
                                       ("measure-bad-parameter", "SetP@10", "SetP(")):
            def setup(ctx, inputs=inputs, head=head, measure=measure, mention=mention):
                cp(ctx, *inputs)
                ctx.write("m.tsv", OLD)
                return Inv(argv=[*head, "--qrels", "qrels.tsv", "-m", "nDCG@10", "-m", measure, "-o", "m.tsv", "--force"],
                           out=["m.tsv"], mention=[mention])

            add(f"class6-{cmd}-{slug}", 6, cmd, setup, Refuse(2))

        # a provider's measure whose package is missing: one line naming the extra (exit 1), before any work
        def setup_missing(ctx, inputs=inputs, head=head):
            cp(ctx, *inputs)
            ctx.write("block/pyndeval.py", _BLOCKER)
            args = [*head, "--qrels", "qrels.tsv", "-m", "alpha_nDCG@10", "-o", "m.tsv"]
            return Inv(shell=f"PYTHONPATH=$PWD/block:$PYTHONPATH exec vecpipe {q(*args)}", out=["m.tsv"],
                       mention=["pip install 'vecpipe[measures]'", "pyndeval"])

        add(f"class6-{cmd}-measure-backend-missing", 6, cmd, setup_missing, Refuse(1))

        # --plot: places that cannot take it
        for slug, plot, code, mention in (("plot-stdout", "-", 2, "--plot"), ("plot-not-png", "p.svg", 2, ".png"),
                                          ("plot-same-as-output", "m.tsv", 2, "-o output"),
                                          ("plot-directory", "adir", 1, "adir"), ("plot-missing-parent", "nope/p.png", 1, "nope")):
            def setup_plot(ctx, inputs=inputs, head=head, plot=plot, mention=mention):
                cp(ctx, *inputs)
                ctx.path("adir").mkdir()
                ctx.write("m.tsv", OLD)
                return Inv(argv=[*head, "--qrels", "qrels.tsv", "--plot", plot, "-o", "m.tsv", "--force"],
                           out=["m.tsv", "p.svg"], mention=[mention])

            add(f"class1-{cmd}-{slug}", 1, cmd, setup_plot, Refuse(code))

        # --plot without matplotlib: one line naming the extra, nothing written
        def setup_no_mpl(ctx, inputs=inputs, head=head):
            cp(ctx, *inputs)
            ctx.write("block/matplotlib/__init__.py", _BLOCKER)
            args = [*head, "--qrels", "qrels.tsv", "--plot", "p.png", "-o", "m.tsv"]
            return Inv(shell=f"PYTHONPATH=$PWD/block:$PYTHONPATH exec vecpipe {q(*args)}", out=["m.tsv", "p.png"],
                       mention=["pip install 'vecpipe[plot]'"])

        add(f"class6-{cmd}-plot-without-matplotlib", 6, cmd, setup_no_mpl, Refuse(1))

    # valid: provider measures equal ir_measures; plots are PNG images beside unchanged metrics
    names = ["SetP", "SetF", "NumQ"]

    def setup_provided(ctx):
        cp(ctx, *eval_in)
        return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", *[a for n in names for a in ("-m", n)], "-o", "m.tsv"],
                   out=["m.tsv"])

    add("class6-eval-provider-measures", 6, "eval", setup_provided, Ok(_provider_check(names)))

    def setup_eval_plot(ctx):
        cp(ctx, *eval_in)
        ctx.write("p.png", OLD)  # an existing file is replaced
        return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS, "--plot", "p.png", "-o", "m.tsv"],
                   out=["m.tsv", "p.png"])

    add("class1-eval-plot", 1, "eval", setup_eval_plot, Ok(_png_check("p.png", "m.tsv")))

    def setup_compare_plot(ctx):
        cp(ctx, *cmp_in)
        return Inv(argv=["compare", "run.parquet", "run2.parquet", "--qrels", "qrels.tsv", "--plot", "p.png", "-o", "c.tsv"],
                   out=["c.tsv", "p.png"])

    add("class1-compare-plot", 1, "compare", setup_compare_plot, Ok(_png_check("p.png")))


_class_measures()


# ============================================== issue 12: --hubness banks, --prf, calibrations

def _class_literature():
    search = ["search", "queries.parquet", "--index", "flat.vpi", "-k", "5", "-o", "out.parquet"]

    def bank_setup(table_of):
        def setup(ctx):
            cp(ctx, "flat.vpi", "queries.parquet")
            write_table_file(ctx.path("bank.parquet"), table_of())
            return Inv(argv=[*search, "--hubness", "qbnorm", "--bank", "bank.parquet"], out=["out.parquet"],
                       mention=["bank.parquet"], mention_id=[QIDS[2]] if table_of is bank_nan else [])
        return setup

    def bank_nan():
        return poisoned_table(QIDS, QUERIES, 2, "nan")

    add("class3-search-hubness-bank-nan", 3, "search", bank_setup(bank_nan), Refuse(1))
    add("class4-search-hubness-bank-of-another-model", 4, "search",
        bank_setup(lambda: vectors_table(QIDS, QUERIES, vec_meta(sha=SHA_B))), Refuse(1))
    add("class4-search-hubness-bank-of-another-dimension", 4, "search",
        bank_setup(lambda: vectors_table(QIDS, QUERIES[:, :16], vec_meta(dim=16))), Refuse(1))

    def setup_calibration_of_another_model(ctx):
        cp(ctx, "ref-search.parquet")
        ctx.write("calib.json", json.dumps({
            "kind": "calibration", "version": 1, "features": ["score", "top1", "gap_to_kth", "spread", "mean"], "depth": 5,
            "mean": [0.0] * 5, "scale": [1.0] * 5, "coef": [1.0, 0.0, 0.0, 0.0, 0.0], "intercept": 0.0,
            "model": "another-model", "metric": "cos", "hubness": None, "train": {}, "positive_quantiles": []}))
        return Inv(argv=["cut", "ref-search.parquet", "--calibration", "calib.json", "--min-prob", "0.5", "-o", "out.parquet"],
                   out=["out.parquet"], mention=["another-model"])

    add("class4-cut-calibration-of-another-model", 4, "cut", setup_calibration_of_another_model, Refuse(1))

    def setup_prf_deeper_than_k(ctx):
        cp(ctx, "flat.vpi", "queries.parquet")
        return Inv(argv=[*search, "--prf", "10"], out=["out.parquet"], mention=["--prf"])

    add("class10-search-prf-larger-than-k", 10, "search", setup_prf_deeper_than_k, Refuse(2))

    def setup_min_prob_alone(ctx):
        cp(ctx, "flat.vpi", "queries.parquet")
        return Inv(argv=[*search, "--min-prob", "0.5"], out=["out.parquet"], mention=["--calibration"])

    add("class10-search-min-prob-without-calibration", 10, "search", setup_min_prob_alone, Refuse(2))


_class_literature()


# ====================================================================================== MUVERA (issue 13)
# vecpipe fde and rerank --chamfer on token-vector tables written here (no model needed).


def _mv_table(ids, sets, dim=DIM, meta=None) -> pa.Table:
    from vecpipe.formats import metadata as _md
    from vecpipe.formats.multivectors import multivectors_batch, multivectors_schema

    meta = meta if meta is not None else _md.new("multivectors", dim=dim, multi_vector=True, model={"name": "m", "sha256": "a" * 64})
    return pa.Table.from_batches([multivectors_batch(ids, sets, multivectors_schema(dim, meta))])


def _mv_sets(n: int, seed: int, dim: int = DIM):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(k), dim)).astype(np.float32) for k in rng.integers(1, 6, n)]


def _class_muvera():
    docs_ids = [f"d{i}" for i in range(12)]

    def setup_poison(kind):
        def setup(ctx):
            sets = _mv_sets(12, 1)
            sets[7][0, 2] = {"nan": np.nan, "inf": np.inf}[kind]
            write_table_file(ctx.path("mv.parquet"), _mv_table(docs_ids, sets))
            return Inv(argv=["fde", "mv.parquet", "--role", "doc", "--reps", "2", "--ksim", "2", "--dproj", "4", "-o", "out.parquet"],
                       out=["out.parquet"], mention_id=["d7"])
        return setup

    for kind in ("nan", "inf"):
        add(f"class3-fde-{kind}", 3, "fde", setup_poison(kind), Refuse(1))

    def setup_dup(ctx):
        write_table_file(ctx.path("mv.parquet"), _mv_table(docs_ids[:11] + ["d3"], _mv_sets(12, 2)))
        return Inv(argv=["fde", "mv.parquet", "--role", "doc", "-o", "out.parquet"], out=["out.parquet"], mention_id=["d3"])

    add("class5-fde-duplicate-id", 5, "fde", setup_dup, Refuse(1))

    def setup_plain(ctx):
        cp(ctx, "docs.parquet")
        return Inv(argv=["fde", "docs.parquet", "--role", "doc", "-o", "out.parquet"], out=["out.parquet"], mention=["--multi-vector"])

    add("class4-fde-plain-vectors", 4, "fde", setup_plain, Refuse(1))

    def setup_dproj(ctx):
        write_table_file(ctx.path("mv.parquet"), _mv_table(docs_ids, _mv_sets(12, 3)))
        return Inv(argv=["fde", "mv.parquet", "--role", "doc", "--dproj", str(DIM + 1), "-o", "out.parquet"], out=["out.parquet"])

    add("class6-fde-dproj-over-dim", 6, "fde", setup_dproj, Refuse(1))

    for slug, args in (("ksim-13", ["--ksim", "13"]), ("reps-0", ["--reps", "0"]), ("final-dim-over", ["--reps", "1", "--ksim", "1",
                                                                                                      "--dproj", "2", "--final-dim", "5"])):
        def setup_range(ctx, args=args):
            write_table_file(ctx.path("mv.parquet"), _mv_table(docs_ids, _mv_sets(12, 4)))
            return Inv(argv=["fde", "mv.parquet", "--role", "doc", *args, "-o", "out.parquet"], out=["out.parquet"])

        add(f"class6-fde-{slug}", 6, "fde", setup_range, Refuse(2))

    def setup_like_other_model(ctx):
        write_table_file(ctx.path("d.parquet"), _mv_table(docs_ids, _mv_sets(12, 5)))
        ctx.vp("fde", "d.parquet", "--role", "doc", "--reps", "2", "--ksim", "2", "--dproj", "4", "-o", "dfde.parquet")
        from vecpipe.formats import metadata as _md

        other = _md.new("multivectors", dim=DIM, multi_vector=True, model={"name": "m2", "sha256": "b" * 64})
        write_table_file(ctx.path("q.parquet"), _mv_table(QIDS, _mv_sets(len(QIDS), 6), meta=other))
        return Inv(argv=["fde", "q.parquet", "--role", "query", "--like", "dfde.parquet", "-o", "out.parquet"], out=["out.parquet"])

    add("class4-fde-like-other-model", 4, "fde", setup_like_other_model, Refuse(1))

    def setup_chamfer(kind):
        def setup(ctx):
            write_table_file(ctx.path("d.parquet"), _mv_table(docs_ids, _mv_sets(12, 7)))
            dim = DIM * 2 if kind == "dim" else DIM
            write_table_file(ctx.path("q.parquet"), _mv_table(QIDS[:2], _mv_sets(2, 8, dim), dim=dim))
            extra = "" if kind != "missing" else f"{QIDS[0]} Q0 nowhere 3 0.1 t\n"
            ctx.write("run.trec", f"{QIDS[0]} Q0 d1 1 1.0 t\n{QIDS[0]} Q0 d2 2 0.5 t\n{extra}{QIDS[1]} Q0 d3 1 1.0 t\n")
            return Inv(argv=["rerank", "run.trec", "--chamfer", "d.parquet", "--queries", "q.parquet", "-o", "out.parquet"],
                       out=["out.parquet"])
        return setup

    add("class5-rerank-chamfer-missing-doc", 5, "rerank", setup_chamfer("missing"), Refuse(1))
    add("class4-rerank-chamfer-other-dimension", 4, "rerank", setup_chamfer("dim"), Refuse(1))


_class_muvera()

def _class_spann():
    """Issue 14: the SPANN disk index, --max-dist-ratio, --order and inspect --diagnose."""
    for slug, spec in (("heads-over", "SPANN,heads=2"), ("unknown-key", "SPANN,fanout=3"), ("codes", "SPANN,codes=pq"),
                       ("replicas-9", "SPANN,replicas=9"), ("ratio-half", "SPANN,max_dist_ratio=0.5"), ("nan", "SPANN,eps=nan")):
        def setup(ctx, spec=spec):
            cp(ctx, "docs.parquet")
            return Inv(argv=["build-index", "docs.parquet", "--spec", spec, "-o", "out.vpi"], out=["out.vpi"], mention=["SPANN"])

        add(f"class6-build-index-spann-{slug}", 6, "build-index", setup, Refuse(2))

    def setup_stdout(ctx):
        cp(ctx, "docs.parquet")
        return Inv(argv=["build-index", "docs.parquet", "--spec", "SPANN", "-o", "-"], mention=["-o INDEX.vpi"])

    add("class6-build-index-spann-stdout", 6, "build-index", setup_stdout, Refuse(2))

    def setup_nan(ctx):
        mat = DOCS.copy()
        mat[7, 3] = np.nan
        write_vectors(ctx.path("dn.parquet"), DOC_IDS, mat)
        return Inv(argv=["build-index", "dn.parquet", "--spec", "SPANN,heads=0.1", "-o", "out.vpi"], out=["out.vpi"], mention_id=["d7"])

    add("class3-build-index-spann-nan", 3, "build-index", setup_nan, Refuse(1))

    def setup_dup(ctx):
        write_vectors(ctx.path("dd.parquet"), list(DOC_IDS) + [DOC_IDS[5]], np.vstack([DOCS, DOCS[9:10]]))
        return Inv(argv=["build-index", "dd.parquet", "--spec", "SPANN", "-o", "out.vpi"], out=["out.vpi"], mention_id=["d5"])

    add("class5-build-index-spann-duplicate-id", 5, "build-index", setup_dup, Refuse(1))

    def build_spann(ctx):
        cp(ctx, "docs.parquet")
        ctx.vp("build-index", "docs.parquet", "--spec", "SPANN,heads=0.1,nprobe=8", "-o", "spann.vpi")

    def setup_wrong_dim(ctx):
        build_spann(ctx)
        write_vectors(ctx.path("q16.parquet"), QIDS, np.ascontiguousarray(QUERIES[:, :16]))
        return Inv(argv=["search", "q16.parquet", "--index", "spann.vpi", "-k", "5", "-o", "run.parquet"], out=["run.parquet"],
                   mention=["dimension"])

    add("class4-search-spann-wrong-dimension", 4, "search", setup_wrong_dim, Refuse(1))

    def setup_corrupt(ctx):
        build_spann(ctx)
        cp(ctx, "queries.parquet")
        path = ctx.path("spann.vpi")
        header = vpi.read_header(path)
        entry = next(e for e in header["sections"] if e["name"] == "index")
        data = bytearray(path.read_bytes())
        for pos in range(entry["offset"], entry["offset"] + entry["length"], 4096):  # every list's first row number
            data[pos] ^= 0xFF
        path.write_bytes(bytes(data))
        return Inv(argv=["search", "queries.parquet", "--index", "spann.vpi", "-k", "5", "-o", "run.parquet"], out=["run.parquet"],
                   mention=["corrupt"])

    add("class7-search-spann-corrupt-posting-list", 7, "search", setup_corrupt, Refuse(1))

    def build_spann8(ctx):
        cp(ctx, "docs.parquet")
        cp(ctx, "queries.parquet")
        ctx.vp("build-index", "docs.parquet", "--spec", "SPANN,heads=0.1,codes=sq8", "-o", "spann8.vpi")

    def setup_rescore_dim(ctx):
        build_spann8(ctx)
        write_vectors(ctx.path("d16.parquet"), DOC_IDS, np.ascontiguousarray(DOCS[:, :16]))
        return Inv(argv=["search", "queries.parquet", "--index", "spann8.vpi", "--rescore", "d16.parquet", "-k", "5", "-o", "run.parquet"],
                   out=["run.parquet"], mention=["dimension"])

    add("class4-search-spann-sq8-rescore-wrong-dimension", 4, "search", setup_rescore_dim, Refuse(1))

    def setup_rescore_missing(ctx):
        build_spann8(ctx)
        write_vectors(ctx.path("dpart.parquet"), DOC_IDS[:50], np.ascontiguousarray(DOCS[:50]))
        return Inv(argv=["search", "queries.parquet", "--index", "spann8.vpi", "--rescore", "dpart.parquet", "-k", "5", "-o", "run.parquet"],
                   out=["run.parquet"], mention=["not in this file"])

    add("class5-search-spann-sq8-rescore-missing-ids", 5, "search", setup_rescore_missing, Refuse(1))

    for slug, index, ratio, code in (("flat", "flat.vpi", "2", 2), ("below-one", "spann.vpi", "0.5", 2)):
        def setup_ratio(ctx, index=index, ratio=ratio):
            cp(ctx, "queries.parquet")
            if index == "spann.vpi":
                build_spann(ctx)
            else:
                cp(ctx, index)
            return Inv(argv=["search", "queries.parquet", "--index", index, "--max-dist-ratio", ratio, "-k", "5", "-o", "run.parquet"],
                       out=["run.parquet"], mention=["--max-dist-ratio"])

        add(f"class6-search-max-dist-ratio-{slug}", 6, "search", setup_ratio, Refuse(code))

    def setup_order(ctx):
        cp(ctx, "docs.parquet")
        return Inv(argv=["build-index", "docs.parquet", "--spec", "IVF4,Flat", "--order", "random", "-o", "out.vpi"], out=["out.vpi"],
                   mention=["--order"])

    add("class6-build-index-order-not-hnsw", 6, "build-index", setup_order, Refuse(2))

    def setup_order_bad(ctx):
        cp(ctx, "docs.parquet")
        return Inv(argv=["build-index", "docs.parquet", "--spec", "HNSW16", "--order", "sideways", "-o", "out.vpi"], out=["out.vpi"])

    add("class6-build-index-order-unknown", 6, "build-index", setup_order_bad, Refuse(2))

    def setup_diag_noq(ctx):
        cp(ctx, "flat.vpi")
        return Inv(argv=["inspect", "flat.vpi", "--diagnose"], mention=["--queries"])

    add("class6-inspect-diagnose-without-queries", 6, "inspect", setup_diag_noq, Refuse(2))

    def setup_diag_dim(ctx):
        cp(ctx, "flat.vpi")
        write_vectors(ctx.path("q16.parquet"), QIDS, np.ascontiguousarray(QUERIES[:, :16]))
        return Inv(argv=["inspect", "flat.vpi", "--diagnose", "--queries", "q16.parquet"], mention=["dimension"])

    add("class4-inspect-diagnose-wrong-dimension", 4, "inspect", setup_diag_dim, Refuse(1))

    def setup_diag_nan(ctx):
        cp(ctx, "flat.vpi")
        q = QUERIES.copy()
        q[4, 0] = np.nan
        write_vectors(ctx.path("qn.parquet"), QIDS, q)
        return Inv(argv=["inspect", "flat.vpi", "--diagnose", "--queries", "qn.parquet"], mention_id=["q4"])

    add("class3-inspect-diagnose-nan-query", 3, "inspect", setup_diag_nan, Refuse(1))


_class_spann()


def _class_many_inputs() -> None:
    """Several inputs as one (issue 10): embed INPUTS..., dataset directories of Parquet parts, --engine ray."""
    def setup_dup_across(ctx):
        recs = corpus_records()
        ctx.write("a.jsonl", "".join(json.dumps(r) + "\n" for r in recs[:10]))
        ctx.write("b.jsonl", "".join(json.dumps(r) + "\n" for r in recs[10:15] + [recs[3]]))
        return Inv(argv=["embed", "a.jsonl", "b.jsonl", "--model", ctx.model, "-o", "out.parquet"], out=["out.parquet"],
                   mention_id=[recs[3]["_id"]])

    add("class5-embed-duplicate-id-across-inputs", 5, "embed", setup_dup_across, Refuse(1))

    def setup_part_other_model(with_manifest):
        def setup(ctx):
            rng = np.random.default_rng(5)
            os.mkdir(ctx.path("vecs"))
            write_vectors(ctx.path("vecs/part-00000-00000.parquet"), DOC_IDS[:6], rng.standard_normal((6, DIM)))
            if with_manifest:
                from vecpipe.formats import dataset

                entry = dataset.write_part(ctx.path("vecs/part-00001-00000.parquet"),
                                           vectors_table(DOC_IDS[6:12], rng.standard_normal((6, DIM)), vec_meta()))
                first = ctx.path("vecs/part-00000-00000.parquet")
                listed = [{"name": first.name, "rows": 6, "size": first.stat().st_size}, entry]
                ctx.path("vecs/_vecpipe.json").write_bytes(dataset.manifest_bytes(vec_meta(), listed))
                # then a part from another model dropped in
                write_vectors(ctx.path("vecs/part-00002-00000.parquet"), DOC_IDS[12:18], rng.standard_normal((6, DIM)),
                              vec_meta(sha=SHA_B))
            else:
                write_vectors(ctx.path("vecs/part-00001-00000.parquet"), DOC_IDS[6:12], rng.standard_normal((6, DIM)),
                              vec_meta(sha=SHA_B))
            return Inv(argv=["build-index", "vecs", "--spec", "Flat", "-o", "out.vpi"], out=["out.vpi"])
        return setup

    add("class4-build-index-dataset-part-other-model", 4, "build-index", setup_part_other_model(False), Refuse(1))
    add("class4-build-index-dataset-unlisted-part", 4, "build-index", setup_part_other_model(True), Refuse(1))

    def setup_no_cluster(ctx):
        ctx.write("a.jsonl", "".join(json.dumps(r) + "\n" for r in corpus_records()[:4]))
        return Inv(argv=["embed", "a.jsonl", "--model", ctx.model, "--engine", "ray", "--address", "127.0.0.1:9", "-o", "out"],
                   out=["out"], timeout=30)

    add("class10-embed-ray-address-without-cluster", 10, "embed", setup_no_cluster, Refuse(1))


_class_many_inputs()


# Variants left out to keep the whole suite within about three minutes on two cores: each shares
# its code path with a kept case of the same class (e.g. quantize and binarize write through the same
# table sink). Run them with HOSTILE_ALL=1.
LEFT_OUT = {
    "class1-binarize-existing-file", "class1-binarize-symlink", "class1-binarize-chardev",
    "class1-binarize-dir-as-output", "class1-binarize-missing-parent", "class1-binarize-file-as-parent",
    "class1-quantize-existing-file", "class1-rerank-existing-file", "class1-rerank-file-as-parent",
    "class1-merge-existing-file", "class1-merge-file-as-parent", "class1-embed-file-as-parent",
    "class2-embed-unchanged-rerun", "class2-quantize-unchanged-rerun", "class2-quantize-two-concurrent-writers",
    "class3-binarize-inf", "class3-binarize--inf", "class3-binarize-null-element", "class3-binarize-null-id",
    "class3-quantize--inf", "class3-search-queries--inf",
    "class8-rerank-closed-stdin", "class8-quantize-closed-stdin", "class8-binarize-closed-stdin",
    "class9-eval-rel-leading-zeros",
    "class10-binarize-stdout-closed", "class10-merge-stdout-closed", "class10-quantize-stdout-closed-with-output-file",
    "class10-quantize-stderr-closed", "class10-binarize-pipe-closed-early", "class10-binarize-disk-full",
    "class10-rerank-disk-full", "class10-merge-quiet", "class10-rerank-quiet",
}
assert {c.id for c in CASES} >= LEFT_OUT, LEFT_OUT - {c.id for c in CASES}
ALL_CASES = list(CASES)
if not os.environ.get("HOSTILE_ALL"):
    CASES[:] = [c for c in CASES if c.id not in LEFT_OUT]


def by_id() -> dict[str, Case]:
    return {c.id: c for c in CASES}

"""Index specs checked before any work (vecpipe.index.specs), and faiss's stderr captured (vecpipe.native).

The fuzz runs check_spec over hostile and valid specs in worker subprocesses, and builds, trains,
adds and searches every spec it accepts there too: a spec that crashes faiss fails the test (the
worker dies, the parent names the spec) instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vecpipe.errors import UsageError
from vecpipe.index.specs import SpecInfo, applies, check_spec, parse_spec, search_params
from vecpipe.native import summarize_faiss_warnings

ROOT = Path(__file__).resolve().parents[1]
FAISS_WORDS = ("Error in", ".cpp", "RuntimeError", "faiss::", "Faiss assertion", "what()", "Traceback")

FLOAT_SPECS = [
    # valid
    "Flat", "HNSW", "HNSW2", "HNSW16", "HNSW8,Flat", "HNSW16_SQ8", "HNSW16_SQfp16", "HNSW16_SQ8_direct",
    "HNSW16_PQ4x4", "IVF4,Flat", "IVF16,Flat", "IVF8,SQ8", "IVF8,SQ4", "IVF4,SQtq4", "IVF8,PQ4", "IVF8,PQ4x4",
    "IVF8,PQ4np", "IVF8,PQ4x4fs", "IVF8,PQ4x4fsr", "IVF8_HNSW8,Flat", "IVF8_HNSW,SQ8", "IVF8,PQ4+4",
    "IVF8,PQ4,RFlat", "IVF8,PQ4,Refine(SQ8)", "IVF4,RaBitQ", "IVF4,RaBitQfs_64", "OPQ4,IVF4,PQ4", "OPQ4_16,PQ4x4",
    "PCA4,Flat", "PCAR4,IVF4,Flat", "PCA8,HNSW8", "RR,Flat", "RR16,SQ8", "L2norm,Flat",
    "L2norm,IVF4,SQ8", "SQ4", "SQ6", "SQ8", "SQfp16", "SQbf16", "SQ8_direct_signed", "SQtq3", "SQtqmse2", "PQ4",
    "PQ8x4", "PQ2x6", "PQ4x4fs", "PQ4x4fs_64", "LSH", "LSH8rt", "LSHt",
    "HNSW16,RFlat", "PQ4x4,Refine(Flat)", "RaBitQ", "RaBitQ4", "RaBitQfs", "IVF1024,Flat", "IVF4k,Flat",
    # hostile
    "", " ", "HNSW0", "HNSW1", "HNSW-1", "HNSW1000", "HNSW99999999999", "HNSW1_SQ8", "HNSW32_", "IVF0,Flat",
    "IVF8_HNSW1,Flat", "IVF8_HNSW0,Flat", "IVF99999999999,Flat", "PQ0", "PQ3", "PQ4x0", "PQ4x17", "PQ4x25",
    "PQ4x4fs_0", "PQ4x4fs_16", "OPQ0,Flat", "OPQ4_0,Flat", "OPQ3,PQ3", "RR0,Flat", "PCA0,Flat", "PCA64,Flat",
    "PCAW4,Flat", "PCAWR4,HNSW8", "LSH0", "LSH100", "NSG4", "NSG8", "NSG0", "NSG16", "NSG32,SQ8", "NSG16_PQ4x4",
    "HNSW16_SQtq3", "NSG16_SQtq2", "SQ0", "SQ7", "HSNW32", "flat",
    "IVF16,PQ4x", "Flat,Flat", "PQ4,IVF4", "Flat,PCA4", "IVF16", "PCA4", "IVF16,,Flat", "IVF16, Flat", "IDMap,Flat",
    "Flat,IDMap2", "RQ4x4", "IMI2x4,Flat", "BFlat", "BHNSW32", "IVF4_NSG32,Flat", "RFlat", "Refine(Flat)",
    "Flat,Refine(", "IVF4,PQ4,Refine(IVF4,Flat)", "PQ4+4", "HNSW32,IVF4,Flat", "RaBitQ0", "RaBitQ12",
    "RaBitQfs_16", "IVF4,HNSW32", "ITQ,Flat", "Pad64,Flat", "Flat\n", "IVF4,Flat,", ",Flat", "\uff26lat",
    "HNSW32_PQ4x4fs", "IVF4,LSH", "HNSW16,SQ8,Flat", "LSH,IVF4",
]
BINARY_SPECS = [
    "BFlat", "BHNSW32", "BHNSW2", "BIVF4", "BIVF4_HNSW16", "BIVF1024",
    "BHNSW1", "BHNSW0", "BHNSW-3", "BHNSW", "BIVF0", "BIVF-4", "BIVF4k", "BIVF4_HNSW1", "BHash16", "BHash2x8",
    "BHNSW32junk", "BFlat,IDMap", "HNSW32", "Flat", "IVF4,Flat", "bflat", "", "BIVF4,Flat",
]
DIMS = (8, 32, 48)

# What faiss 1.15 crashes (abort, segfault, SIGFPE, std::terminate) or hangs on: never accepted.
CRASHERS = ["HNSW0", "HNSW1", "HNSW1_SQ8", "IVF8_HNSW1,Flat", "IVF8_HNSW0,Flat", "PQ4x0", "OPQ4_0,Flat", "RR0,Flat",
            "PQ4x4fs_0", "NSG4", "NSG8", "HNSW16_SQtq3", "NSG16_SQtq2", "IVF0,Flat"]
BINARY_CRASHERS = ["BHNSW1", "BHNSW0", "BHNSW-3", "BIVF4_HNSW1", "BIVF0"]

WORKER = textwrap.dedent(r'''
    import json, sys, time
    import numpy as np
    from vecpipe.errors import UsageError
    from vecpipe.native import captured_native_stderr
    from vecpipe.index.specs import check_spec, make_index, search_params

    MAX_BUILD_TRAIN = 2048  # bigger minimums (IVF4k) are checked, not built, to keep the test short

    def out(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    def build(info, n, metric, seed):
        import faiss
        rng = np.random.default_rng(seed)
        if info.binary:
            x = rng.integers(0, 256, size=(n, info.dim // 8), dtype=np.uint8)
        else:
            x = (rng.standard_normal((n, 4)) @ rng.standard_normal((4, info.dim))
                 + 0.1 * rng.standard_normal((n, info.dim))).astype(np.float32)
            if metric != "l2":
                x /= np.linalg.norm(x, axis=1, keepdims=True)
        x[n // 2 : n // 2 + n // 4] = x[0]  # duplicates, as real corpora have (they hang faiss's NSG)
        index = make_index(info, metric)
        untrained = not index.is_trained
        with captured_native_stderr() as cap:
            if untrained:
                index.train(x[: info.train_vectors])
            index.add(x)
        # every parameter search_params names must be one faiss takes for this index
        space = faiss.ParameterSpace()
        for name in search_params(info):
            if name == "k_factor":
                try:
                    space.set_index_parameter(index, "k_factor_rf", 2)  # IndexRefine
                except RuntimeError:
                    space.set_index_parameter(index, "k_factor", 2)  # IndexIVFPQR
            else:
                space.set_index_parameter(index, name, {"nprobe": 4, "efSearch": 16}[name])
        D, I = index.search(x[:8], 5)
        ok = bool(((I >= -1) & (I < n)).all()) and bool(np.isfinite(D[I >= 0]).all())
        return {"untrained": untrained, "labels_ok": ok, "found_self": int((I[:, 0] >= 0).sum()),
                "faiss_lines": len(cap.lines)}

    cases = json.load(open(sys.argv[1]))
    start = int(sys.argv[2])
    for i in range(start, len(cases)):
        c = cases[i]
        out(i=i, stage="begin")
        if c.get("abort"):  # tests the parent's crash reporting
            import os
            os.abort()
        t0 = time.perf_counter()
        rec = {"i": i, "stage": "done"}
        try:
            n, train = c["n"], c["train"]
            if c["mode"] == "enough":
                probe = check_spec(c["spec"], dim=c["dim"], n_vectors=10**6, train_size=10**6,
                                   binary=c["binary"], metric=c["metric"])
                n = max(probe.min_train, 64)
                train = n
                rec["n"] = n
            info = check_spec(c["spec"], dim=c["dim"], n_vectors=n, train_size=train,
                              binary=c["binary"], metric=c["metric"])
            rec.update(accepted=True, min_train=info.min_train, needs_training=info.needs_training,
                       warning=info.warning)
            if info.train_vectors > MAX_BUILD_TRAIN:
                rec["built"] = "skipped"
            else:
                metric = c["metric"] or ("l2" if info.metrics == ("l2",) else "ip")
                rec.update(build(info, n, metric, i))
                rec["built"] = True
        except UsageError as exc:
            rec.update(accepted=False, message=str(exc))
        except Exception as exc:
            rec.update(accepted=None, error=f"{type(exc).__name__}: {exc}")
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        out(**rec)
''')


def _cases() -> list[dict]:
    cases = []
    for binary, specs in ((False, FLOAT_SPECS), (True, BINARY_SPECS)):
        for spec in specs:
            for dim in DIMS:
                for mode, n, metric in (("small", 20, None), ("enough", 0, None), ("enough", 0, "l2")):
                    if binary and metric:
                        continue
                    cases.append({"spec": spec, "dim": dim, "binary": binary, "mode": mode, "n": n, "train": n,
                                  "metric": metric})
    return cases


def _run_workers(cases: list[dict], tmp_path: Path, workers: int = 2) -> tuple[dict[int, dict], list[int]]:
    """Run ``cases`` in worker subprocesses; (results by case, cases whose worker died or hung)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    shards = [list(range(w, len(cases), workers)) for w in range(workers)]
    results: dict[int, dict] = {}
    crashed: list[int] = []
    pending = []
    for w, shard in enumerate(shards):
        path = tmp_path / f"cases{w}.json"
        path.write_text(json.dumps([cases[i] for i in shard]))
        pending.append((shard, path, 0))
    while pending:
        procs = [(shard, path, start, subprocess.Popen([sys.executable, str(script), str(path), str(start)], env=env,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for shard, path, start in pending]
        pending = []
        for shard, path, start, proc in procs:
            try:
                stdout, _ = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, _ = proc.communicate()
            last = None
            for line in stdout.splitlines():
                rec = json.loads(line)
                if rec["stage"] == "begin":
                    last = rec["i"]
                else:
                    results[shard[rec["i"]]] = rec
                    last = None
            if proc.returncode != 0 or last is not None:
                dead = last if last is not None else start
                crashed.append(shard[dead])
                if dead + 1 < len(shard):
                    pending.append((shard, path, dead + 1))  # go on after the crash, to find them all
    return results, crashed


def test_fuzz_specs_refused_or_built(tmp_path):
    """Every spec is refused with one clean line, or accepted and then built, trained, added, searched."""
    cases = _cases()
    t0 = time.perf_counter()
    results, crashed = _run_workers(cases, tmp_path)
    elapsed = time.perf_counter() - t0

    def where(i: int) -> str:
        c = cases[i]
        return f"{c['spec']!r} (dim {c['dim']}, {c['mode']}, metric {c['metric']}, binary={c['binary']})"

    assert not crashed, "faiss crashed or hung on: " + "; ".join(where(i) for i in crashed)
    assert len(results) == len(cases)
    problems = []
    for i, rec in results.items():
        if rec["accepted"] is None:
            problems.append(f"{where(i)}: raised {rec['error']}")
        elif rec["accepted"] is False:
            msg = rec["message"]
            if "\n" in msg or not msg.startswith(("--spec", "--train-size")) or any(w in msg for w in FAISS_WORDS):
                problems.append(f"{where(i)}: message {msg!r}")
        else:
            if rec.get("warning") and "\n" in rec["warning"]:
                problems.append(f"{where(i)}: warning {rec['warning']!r}")
            if rec["built"] is True:
                if not rec["labels_ok"] or rec["found_self"] == 0:
                    problems.append(f"{where(i)}: searched badly {rec}")
                if rec["untrained"] != rec["needs_training"]:
                    problems.append(f"{where(i)}: needs_training={rec['needs_training']} but faiss says {rec['untrained']}")
    assert not problems, "\n".join(problems)

    by_spec: dict[tuple[str, bool], list[dict]] = {}
    for i, rec in results.items():
        by_spec.setdefault((cases[i]["spec"], cases[i]["binary"]), []).append(rec)
    for spec in CRASHERS:
        assert all(r["accepted"] is False for r in by_spec[(spec, False)]), spec
    for spec in BINARY_CRASHERS:
        assert all(r["accepted"] is False for r in by_spec[(spec, True)]), spec
    # the valid specs are accepted and built at some dimension, with min_train vectors
    for spec in FLOAT_SPECS[: FLOAT_SPECS.index("")]:
        assert any(r["accepted"] and r.get("n") is not None for r in by_spec[(spec, False)]), spec
    for spec in BINARY_SPECS[:6]:
        assert any(r["accepted"] for r in by_spec[(spec, True)]), spec
    built = sum(1 for r in results.values() if r.get("built") is True)
    assert built > 150
    print(f"\n{len(cases)} cases, {built} built, {elapsed:.1f} s")


def test_fuzz_worker_reports_crashes(tmp_path):
    """A case that kills the worker is named, and the cases after it still run."""
    ok = {"spec": "Flat", "dim": 8, "binary": False, "mode": "small", "n": 20, "train": 20, "metric": None}
    cases = [ok, dict(ok, abort=True), ok, dict(ok, abort=True), ok]
    results, crashed = _run_workers(cases, tmp_path, workers=1)
    assert crashed == [1, 3] and sorted(results) == [0, 2, 4]
    assert all(r["accepted"] and r["built"] is True for r in results.values())


# --------------------------------------------------------------------------- messages


def _refusal(spec: str, **kw) -> str:
    args = {"dim": 384, "n_vectors": 5183, "train_size": 100_000} | kw
    with pytest.raises(UsageError) as err:
        check_spec(spec, **args)
    msg = str(err.value)
    assert "\n" not in msg and not any(w in msg for w in FAISS_WORDS), msg
    assert err.value.exit_code == 2
    return msg


@pytest.mark.parametrize("spec, fix", [
    ("HSNW32", "'HNSW32'"), ("flat", "'Flat'"), ("IVF1024,PQ48x", "PQ48x"), ("ivf64,flat", None),
    ("HNSW32,Falt", "'HNSW32,Flat'"), ("IVF64,SQ7", "'SQ8'"), ("PCA64,Flt", "'PCA64,Flat'"),
])
def test_did_you_mean(spec, fix):
    msg = _refusal(spec)
    assert msg.startswith(f"--spec {spec!r}") and "did you mean" in msg
    if fix:
        assert fix in msg


def test_training_set_too_small_names_the_fix():
    msg = _refusal("IVF1024,Flat", n_vectors=1000)
    assert msg == ("--spec 'IVF1024,Flat' needs at least 1,024 training vectors (faiss recommends 39,936); "
                   "you have 1,000: use IVF16 or fewer")
    msg = _refusal("IVF1024,Flat", n_vectors=50_000, train_size=500)
    assert "--train-size 500 allows 500" in msg and "raise --train-size" in msg
    assert "use PQ48x" in _refusal("PQ48x12", n_vectors=2000)
    assert "drop OPQ48" in _refusal("OPQ48,Flat", n_vectors=100)
    assert "PCA64" in _refusal("PCA64,Flat", n_vectors=10)


def test_warning_when_fewer_than_recommended():
    info = check_spec("IVF64,Flat", dim=32, n_vectors=1000, train_size=100_000)
    assert info.warning and "2,496" in info.warning and "IVF16" in info.warning and "\n" not in info.warning
    info = check_spec("IVF1024,Flat", dim=384, n_vectors=5183, train_size=100_000)
    assert "use IVF128 or fewer" in info.warning
    assert check_spec("IVF16,Flat", dim=32, n_vectors=1000, train_size=100_000).warning is None
    assert check_spec("HNSW32", dim=32, n_vectors=10, train_size=10).warning is None


@pytest.mark.parametrize("spec, words", [
    ("HNSW1", "M from 2 to 256"), ("HNSW512", "above 256"), ("IVF0,Flat", "no lists"), ("PQ5", "PQ4 or PQ6"),
    ("OPQ16_60,IVF16,PQ16", "OPQ15_60 or OPQ20_60"), ("PCA16,PQ5", "after PCA16"), ("PCA500,Flat", "PCA256"),
    ("PQ8x0", "0 bits"), ("PQ8x20", "hours"), ("PQ8x25", "1..24"), ("SQ0", "SQ8"), ("Flat,Flat", "repeated"),
    ("PQ8,IVF4", "'IVF4,PQ8'"), ("Flat,PCA64", "'PCA64,Flat'"), ("IVF16", "'IVF16,Flat'"), ("", "empty"),
    ("BFlat", "binarize"), ("IVF16, Flat", "'IVF16,Flat'"), ("IDMap,Flat", "ids itself"),
    ("HNSW32,IVF16,Flat", "'IVF16_HNSW32,Flat'"), ("NSG32", "use HNSW32"), ("HNSW32_SQtq4", "HNSW32_SQ8"),
])
def test_refusals(spec, words):
    msg = _refusal(spec)
    assert msg.startswith(f"--spec {spec!r}") and words in msg, msg


def test_binary_specs():
    info = check_spec("BIVF16_HNSW32", dim=256, n_vectors=5000, train_size=5000, binary=True)
    assert (info.ivf_nlist, info.hnsw_m, info.has_ivf, info.has_hnsw, info.binary) == (16, 32, True, True, True)
    assert "'BHNSW32'" in _refusal("HNSW32", dim=256, binary=True)
    assert "'BIVF1024'" in _refusal("IVF1024,Flat", dim=256, binary=True)
    assert "BIVF4096" in _refusal("BIVF4k", dim=256, binary=True)
    assert "'BHNSW32'" in _refusal("BHNSW32x", dim=256, binary=True)
    assert "multiple of 8" in _refusal("BFlat", dim=250, binary=True)


def test_metric_mismatches():
    for spec in ("HNSW32_PQ8", "LSH", "IVF16,PQ8+8"):
        assert "--metric l2" in _refusal(spec, metric="ip")
        assert check_spec(spec, dim=384, n_vectors=5183, train_size=100_000, metric="l2").metrics == ("l2",)
    assert check_spec("HNSW32_SQ8", dim=384, n_vectors=100, train_size=100, metric="cos").code == "SQ8"


def test_spec_info_fields():
    info = check_spec("OPQ16_64,IVF256_HNSW32,PQ16x4,RFlat", dim=384, n_vectors=20_000, train_size=100_000)
    assert info.spec == "OPQ16_64,IVF256_HNSW32,PQ16x4,RFlat"
    assert (info.transforms, info.code_dim, info.code) == (("OPQ16_64",), 64, "PQ16x4")
    assert (info.ivf_nlist, info.hnsw_m, info.hnsw_quantizer, info.pq_m, info.pq_nbits, info.opq_m) == (256, 32, True, 16, 4, 16)
    assert (info.min_train, info.recommended_train, info.refine) == (256, 9984, "Flat")
    assert info.needs_training and info.train_vectors == 20_000 and info.warning is None
    assert search_params(info) == ("nprobe", "efSearch", "k_factor")
    flat = check_spec("Flat", dim=8, n_vectors=0, train_size=1)
    assert not flat.needs_training and flat.min_train == 0 and search_params(flat) == ()
    assert _refusal("IVF4,Flat", n_vectors=0).endswith("use IVF1 or fewer")


def test_applies():
    assert applies(parse_spec("IVF1024,Flat"), "nprobe") and not applies(parse_spec("IVF1024,Flat"), "efSearch")
    assert applies({"spec": "HNSW32", "binary": False}, "efSearch")
    assert not applies({"spec": "HNSW32"}, "nprobe")
    assert applies({"spec": "IVF256_HNSW32,Flat"}, "efSearch") and applies("IVF256_HNSW32,Flat", "nprobe")
    assert applies({"spec": "BIVF16", "binary": True}, "nprobe") and not applies({"spec": "BFlat", "binary": True}, "nprobe")
    assert not applies({"spec": "SQ8"}, "nprobe") and not applies({"spec": "RB2"}, "efSearch")
    assert applies({"spec": "IVF64,PQ8,RFlat"}, "k_factor")
    assert applies({"spec": "legacy-IVF-thing"}, "nprobe")  # unparsed specs: what the name says
    with pytest.raises(ValueError):
        applies("Flat", "nprobes")


def test_parse_spec_never_calls_faiss_and_keeps_spec():
    info = parse_spec("HNSW32_SQ8")
    assert isinstance(info, SpecInfo) and info.spec == "HNSW32_SQ8" and info.has_hnsw and info.sq_type == "SQ8"
    with pytest.raises(UsageError):
        parse_spec("PQ5", dim=32)


# --------------------------------------------------------------------------- vecpipe.native

QUIET_SCRIPT = textwrap.dedent(r'''
    import json, os, sys
    import numpy as np, faiss
    from vecpipe.native import captured_native_stderr, summarize_faiss_warnings
    mode = sys.argv[1]
    x = np.random.default_rng(0).standard_normal((300, 16)).astype("float32")
    if mode == "closed":
        os.close(2)
    print("before", file=sys.stderr, flush=True) if mode != "closed" else None
    if mode == "interrupt":
        try:
            with captured_native_stderr() as cap:
                os.write(2, b"inside\n")
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    else:
        with captured_native_stderr() as cap:
            index = faiss.index_factory(16, "IVF64,PQ4np")
            index.train(x)
            if mode == "big":
                os.write(2, b"x" * 200_000 + b"\n")  # more than a pipe holds
    if mode != "closed":
        os.write(2, b"after\n")
    print(json.dumps({"lines": cap.lines, "active": cap.active, "summary": summarize_faiss_warnings(cap.lines)}))
''')


def _quiet(mode: str, tmp_path: Path) -> tuple[dict, str]:
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_faiss_warnings_captured_not_printed(tmp_path):
    out, err = _quiet("plain", tmp_path)
    assert "WARNING clustering" not in err and err.split() == ["before", "after"]
    assert any("clustering 300 points to 64 centroids" in line for line in out["lines"])
    assert out["active"]
    assert out["summary"] == ("faiss: clustering 300 points to 64 centroids; 300 points to 256 centroids (4 times): "
                              "fewer than the 39 per centroid faiss recommends")


def test_capture_restores_on_interrupt_and_survives_closed_fd(tmp_path):
    out, err = _quiet("interrupt", tmp_path)
    assert out["lines"] == ["inside"] and err.split() == ["before", "after"]
    out, err = _quiet("closed", tmp_path)
    assert out == {"lines": [], "active": False, "summary": None}
    out, err = _quiet("big", tmp_path)
    assert len(out["lines"]) == 2 + 4 and "after" in err and "x" * 100 not in err


def test_capture_nests():
    from vecpipe.native import captured_native_stderr

    with captured_native_stderr() as outer:
        os.write(2, b"a\n")
        with captured_native_stderr() as inner:
            os.write(2, b"b\n")
        os.write(2, b"c\n")
    assert outer.lines == ["a", "c"] and inner.lines == ["b"]


def test_summarize_faiss_warnings():
    assert summarize_faiss_warnings([]) is None
    line = "WARNING clustering 500 points to 256 centroids: please provide at least 9984 training points"
    assert summarize_faiss_warnings([line] * 8) == (
        "faiss: clustering 500 points to 256 centroids (8 times): fewer than the 39 per centroid faiss recommends")
    two = summarize_faiss_warnings([line, "something else", "something else", ""])
    assert two.endswith("; faiss: something else") and "\n" not in two

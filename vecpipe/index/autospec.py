"""``build-index --spec auto``: the fastest index that fits a memory budget and reaches a recall target.

1. Candidates: Flat, SQfp16, SQ8, HNSW32 (over float or SQ8 codes), IVF over Flat / SQ8 / PQ codes of
   several sizes, nlist about 4 sqrt(n) (a power of two, at least 39 training rows a list). Each one's
   memory is estimated from faiss's layouts (codes, ids, centroids, graph links); those over
   ``--max-memory`` are not tried.
2. Trial: a seeded sample of the corpus (at most ``TRIAL_ROWS``) is indexed by each fitting candidate
   (IVF's nlist scaled to the sample); held-out corpus rows (or ``--queries``) are searched, recall@10
   is measured against exact search over the sample. IVF's nprobe and HNSW's efSearch are raised
   step by step until the target recall is met; the search time per query at that setting is the
   candidate's latency. Candidates that never reach the target keep their best recall.
3. Choice: among candidates meeting the target (and ``--max-latency-ms`` when given), the fastest;
   when none does, the one with the highest recall, said on stderr. The chosen spec is built over the
   whole corpus with its tuned search default (nprobe as the same share of the lists); the table of
   what was tried, the choice, its measured recall and latency go into the index metadata
   (``auto``) and to stderr.

Latencies are measured on the sample: a relative ranking. Flat and IVF scans grow with the corpus,
so the choice holds; the metadata says which size they were measured at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vecpipe.errors import InputError, UsageError
from vecpipe.metric import prepare

TRIAL_ROWS = 100_000
TRIAL_QUERIES = 1_000
K = 10
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
EF_SEARCHES = (16, 32, 64, 128, 256, 512)


@dataclass
class Candidate:
    spec: str
    memory: int  # estimated bytes over the whole corpus
    param: str | None = None  # "nprobe" / "efSearch": tuned in the trial
    recall: float | None = None
    latency_ms: float | None = None
    setting: int | None = None  # the tuned nprobe / efSearch
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        out = {"spec": self.spec, "memory": self.memory, "recall": self.recall, "latency_ms": self.latency_ms}
        if self.param:
            out[self.param] = self.setting
        if self.note:
            out["note"] = self.note
        return out


def nlist_for(n: int) -> int:
    """About 4 sqrt(n), a power of two, with at least 39 rows a list to train on."""
    target = max(1, min(4 * math.sqrt(max(n, 1)), n / 39))
    return max(1, 2 ** round(math.log2(target)))


def pq_sizes(dim: int) -> list[int]:
    """Sub-quantizer counts for PQ: dim/4, dim/8, ... (four at most) that divide dim, 4 at least."""
    out: list[int] = []
    m = dim // 4
    while m >= 4 and len(out) < 4:
        if dim % m == 0:
            out.append(m)
        m //= 2
    return out


def candidates(n: int, dim: int) -> list[Candidate]:
    ids = 8 * n  # faiss's ids in inverted lists (vecpipe's own id strings are not counted)
    nlist = nlist_for(n)
    cents = nlist * dim * 4
    links = n * 32 * 2 * 4 + n * 8  # HNSW32: level-0 links (2M ints) plus upper levels and offsets
    out = [
        Candidate("Flat", n * dim * 4),
        Candidate("SQfp16", n * dim * 2),
        Candidate("SQ8", n * dim),
        Candidate("HNSW32", n * dim * 4 + links, "efSearch"),
        Candidate("HNSW32,SQ8", n * dim + links, "efSearch"),
        Candidate(f"IVF{nlist},Flat", n * dim * 4 + ids + cents, "nprobe"),
        Candidate(f"IVF{nlist},SQ8", n * dim + ids + cents, "nprobe"),
    ]
    for m in pq_sizes(dim):
        out.append(Candidate(f"IVF{nlist},PQ{m}", n * m + ids + cents + m * 256 * (dim // m) * 4, "nprobe"))
    return out


def _spec_for_sample(spec: str, rows: int) -> str:
    """IVF's nlist scaled to the trial sample (the same rows a list)."""
    if not spec.startswith("IVF"):
        return spec
    _head, rest = spec.split(",", 1)
    return f"IVF{nlist_for(rows)},{rest}"


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(a[a >= 0].tolist()) & set(b.tolist())) for a, b in zip(found, truth)]
    return float(np.mean(hits)) / truth.shape[1]


def _trainer(index: Any, train: np.ndarray) -> Callable[[], Any]:
    return lambda: index.train(train)


def _timed_search(index: Any, q: np.ndarray) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    _, labels = index.search(q, K)
    return labels, (time.perf_counter() - t) * 1000.0 / max(1, len(q))


def trial(cands: list[Candidate], data: np.ndarray, queries: np.ndarray | None, metric: str, target: float,
          seed: int, on_progress: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Measure each candidate's recall@10 and latency on a sample (in place). Returns (sample rows, queries)."""
    import faiss

    from vecpipe.index.faiss_util import faiss_metric, quietly
    from vecpipe.index.specs import check_spec, make_index

    rng = np.random.default_rng(seed)
    n = len(data)
    held = 0
    if queries is None:
        held = min(TRIAL_QUERIES, max(1, n // 10))
        order = rng.permutation(n)
        q = np.ascontiguousarray(data[np.sort(order[:held])])
        pool = np.sort(order[held:])
    else:
        q = np.ascontiguousarray(queries[:TRIAL_QUERIES])
        pool = np.arange(n)
    if len(pool) > TRIAL_ROWS:
        pool = np.sort(rng.choice(pool, TRIAL_ROWS, replace=False))
    base = np.ascontiguousarray(data[pool])
    if len(base) < 2 * K:
        raise InputError(f"--spec auto needs at least {2 * K + held} vectors to measure recall; give a spec")
    fm = faiss_metric(metric)
    exact = faiss.IndexFlat(base.shape[1], fm)
    exact.add(base)
    _, truth = exact.search(q, K)
    for c in cands:
        spec = _spec_for_sample(c.spec, len(base))
        try:
            index = make_index(check_spec(spec, dim=base.shape[1], n_vectors=len(base), train_size=50_000, metric=metric), metric)
            if not index.is_trained:
                train = base if len(base) <= 50_000 else base[rng.choice(len(base), 50_000, replace=False)]
                quietly(_trainer(index, train), None)
            index.add(base)
        except (RuntimeError, UsageError) as exc:
            c.note = f"not built: {str(exc).splitlines()[0][:80]}"
            continue
        if on_progress:
            on_progress(f"--spec auto: trying {c.spec} ({len(base)} rows, {len(q)} queries)")
        if c.param is None:
            labels, c.latency_ms = _timed_search(index, q)
            c.recall = _recall(labels, truth)
            continue
        if c.param == "nprobe":
            nlist = faiss.extract_index_ivf(index).nlist
            settings = [p for p in NPROBES if p <= nlist] or [1]
        else:
            settings = list(EF_SEARCHES)
        best: tuple[float, float, int] | None = None
        for s in settings:
            faiss.ParameterSpace().set_index_parameter(index, c.param, s)
            labels, ms = _timed_search(index, q)
            r = _recall(labels, truth)
            if best is None or r > best[0]:
                best = (r, ms, s)
            if r >= target:
                best = (r, ms, s)
                break
        assert best is not None
        c.recall, c.latency_ms, setting = best
        c.setting = setting
        if c.param == "nprobe":
            c.extra["nprobe_share"] = setting / faiss.extract_index_ivf(index).nlist
    return len(base), len(q)


def choose(cands: list[Candidate], budget: int, target: float, max_latency_ms: float | None) -> tuple[Candidate, str]:
    """The fastest candidate in budget meeting the target (and the latency cap); else the best recall."""
    tried = [c for c in cands if c.recall is not None and c.memory <= budget]
    if not tried:
        raise UsageError("--max-memory: no index kind fits; the smallest needs "
                         f"{min(c.memory for c in cands) / 2**20:.1f} MiB (IVF-PQ); give a larger budget")
    meeting = [c for c in tried if c.recall is not None and c.recall >= target
               and (max_latency_ms is None or (c.latency_ms or 0) <= max_latency_ms)]
    if meeting:
        return min(meeting, key=lambda c: (c.latency_ms or 0, c.memory)), "fastest meeting the target"
    best = max(tried, key=lambda c: (c.recall or 0, -(c.latency_ms or 0)))
    return best, f"none reached recall@10 {target} within the budget: the highest recall"


def final_params(chosen: Candidate, n: int) -> tuple[int | None, int | None]:
    """(nprobe, efSearch) to record for the whole corpus."""
    if chosen.param == "nprobe":
        nlist = nlist_for(n)
        share = float(chosen.extra.get("nprobe_share", 1.0))
        return max(1, min(nlist, math.ceil(share * nlist))), None
    if chosen.param == "efSearch":
        return None, chosen.setting
    return None, None


def table(cands: list[Candidate], budget: int, chosen: Candidate) -> list[str]:
    lines = [f"{'spec':<20} {'memory':>10} {'recall@10':>9} {'ms/query':>9} {'setting':>12}  "]
    for c in cands:
        mem = f"{c.memory / 2**20:.1f} MiB"
        if c.memory > budget:
            status = "over budget"
        elif c.recall is None:
            status = c.note or "not tried"
        else:
            status = "chosen" if c is chosen else ""
        rec = f"{c.recall:.4f}" if c.recall is not None else "-"
        lat = f"{c.latency_ms:.3f}" if c.latency_ms is not None else "-"
        setting = f"{c.param}={c.setting}" if c.param and c.setting is not None else ""
        lines.append(f"{c.spec:<20} {mem:>10} {rec:>9} {lat:>9} {setting:>12}  {status}")
    return lines


def pick(matrix: np.ndarray, metric: str, budget: int, target: float = 0.95, max_latency_ms: float | None = None,
         queries: np.ndarray | None = None, seed: int = 0, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Choose an index for ``matrix``: the choice, its tuned search defaults and the record of the trial."""
    n, dim = matrix.shape
    data = prepare(matrix, metric)
    q = prepare(queries, metric) if queries is not None else None
    cands = candidates(n, dim)
    fitting = [c for c in cands if c.memory <= budget]
    sample_rows, n_queries = trial(fitting, data, q, metric, target, seed, on_progress) if fitting else (0, 0)
    chosen, why = choose(cands, budget, target, max_latency_ms)
    nprobe, ef = final_params(chosen, n)
    lines = table(cands, budget, chosen)
    return {
        "spec": chosen.spec, "nprobe": nprobe, "ef_search": ef, "why": why, "lines": lines,
        "record": {"max_memory": budget, "target_recall": target, "max_latency_ms": max_latency_ms, "chosen": chosen.spec,
                   "why": why, "recall": chosen.recall, "latency_ms": chosen.latency_ms, "memory": chosen.memory,
                   "measured_on": {"rows": sample_rows, "queries": n_queries, "held_out": queries is None},
                   "tried": [c.row() for c in cands if c.recall is not None],
                   "over_budget": [c.spec for c in cands if c.memory > budget]},
    }

"""``build-index --spec auto``: the fastest index that fits a memory budget and reaches a recall target.

1. Candidates: Flat, SQfp16, SQ8, HNSW32 (over float or SQ8 codes), IVF over Flat / SQ8 / PQ codes
   (8-bit, m from dim/2 down to dim/16 sub-quantizers), the same PQ codes after an OPQ rotation
   (``OPQ{m}_{dim},IVF{nlist},PQ{m}``), nlist about 4 sqrt(n) (a power of two, at least 39 training
   rows a list). When the input is a file, the compressed kinds (IVF-PQ, OPQ-IVF-PQ, and 1-bit
   binary codes ``BFlat`` / ``BIVF{nlist}``) are tried a second way too: their k x M candidates
   rescored exactly with the float vectors read from that file on disk (M = :data:`MULTIPLIERS`);
   those float vectors stay on disk and do not count against the budget. Each one's memory is
   estimated from faiss's layouts (codes, ids, centroids, rotation, graph links; the look-up tables
   faiss precomputes for IVF-PQ under L2); those over ``--max-memory`` are not tried.
2. Trial: a seeded sample of the corpus (at most ``TRIAL_ROWS``) is indexed by each fitting candidate
   (IVF's nlist scaled to the sample); held-out corpus rows (or ``--queries``) are searched, recall@10
   is measured against exact search over the sample. IVF's nprobe and HNSW's efSearch are raised
   step by step until the target recall is met; the search time per query at that setting is the
   candidate's latency (for a rescoring candidate: the search of k x M, the gathering of those rows
   of the sample and their exact scores). Candidates that never reach the target keep their best
   recall. IVF candidates over one nlist share one trained coarse quantizer. PQ sizes are tried from
   the fewest sub-quantizers up, each family (IVF-PQ, OPQ-IVF-PQ) stopping at the first size one of
   whose ways (plain or rescored) meets the target: finer codes train slowly and scan slower.
3. Choice: among candidates meeting the target (and ``--max-latency-ms`` when given), the fastest;
   when none does, the one with the highest recall, said on stderr. The chosen spec is built over the
   whole corpus with its tuned search default (nprobe as the same share of the lists); the table of
   what was tried, the choice, its measured recall and latency go into the index metadata
   (``auto``) and to stderr.

A rescoring choice records where its float vectors are (``build-index`` puts the path, sha256 and
multiplier into the index's ``rescore`` metadata, and ``search`` rescores from there by default).

Latencies are measured on the sample: a relative ranking. Flat and IVF scans grow with the corpus,
so the choice holds; the metadata says which size they were measured at.

4. Check at full size: when the sample was smaller than the corpus, a recall measured on it need not
   carry to the whole (1-bit codes rescored x10 reached 0.96 on a 100,000-row sample of 1,000,000
   clustered rows and 0.78 over all of them). The built index is searched with the queries (or other
   held-out corpus rows, their own row left out) against exact search over the whole corpus; while it
   falls short of the target its nprobe / efSearch, then its rescoring depth
   (:data:`FULL_MULTIPLIERS`), are raised on the built index. What it reaches is what is recorded
   (``recall``, beside the sample's ``trial_recall``), and a shortfall is said on stderr.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
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
MULTIPLIERS = (4, 10)  # rescoring depth: k x M candidates from the compressed index
FULL_MULTIPLIERS = (4, 10, 20, 40)  # the depths the whole-corpus check may raise a rescoring choice to


@dataclass
class Candidate:
    spec: str
    memory: int  # estimated bytes over the whole corpus
    param: str | None = None  # "nprobe" / "efSearch": tuned in the trial
    recall: float | None = None
    latency_ms: float | None = None
    setting: int | None = None  # the tuned nprobe / efSearch
    note: str = ""
    rescore: int | None = None  # k x rescore candidates rescored with the float vectors on disk
    binary: bool = False  # 1-bit sign codes of the vectors (faiss binary index, Hamming)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.spec} +rescore x{self.rescore}" if self.rescore else self.spec

    def row(self) -> dict[str, Any]:
        out = {"spec": self.spec, "memory": self.memory, "recall": self.recall, "latency_ms": self.latency_ms}
        if self.rescore:
            out["rescore"] = self.rescore
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
    """Sub-quantizer counts for 8-bit PQ: dim/2, dim/3, dim/4, dim/8, dim/16 where they divide dim,
    4 at least (dim/2: two dimensions a code byte, the finest faiss's 8-bit PQ is worth)."""
    out: list[int] = []
    for div in (2, 3, 4, 8, 16):
        m = dim // div
        if dim % div == 0 and m >= 4 and m not in out:
            out.append(m)
    return out


def binary_width(dim: int) -> int:
    """Bytes a 1-bit code takes in vecpipe's binary indexes (padded to a size faiss has a fast kernel for)."""
    from vecpipe.index.compressed import padded_width

    return padded_width((dim + 7) // 8)


def candidates(n: int, dim: int, metric: str = "ip", rescore: bool = True) -> list[Candidate]:
    """Every kind tried, with its estimated memory over ``n`` rows; ``rescore``: add the kinds that
    rescore from the float vectors on disk (only when the input is a file)."""
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
    coded: list[Candidate] = []
    for m in pq_sizes(dim):
        pq = n * m + ids + cents + 256 * dim * 4  # codes, ids, coarse centroids, m x 256 sub-centroids
        if metric == "l2":
            pq += nlist * m * 256 * 4  # the term tables faiss precomputes for IVF-PQ under L2
        coded.append(Candidate(f"IVF{nlist},PQ{m}", pq, "nprobe"))
        coded.append(Candidate(f"OPQ{m}_{dim},IVF{nlist},PQ{m}", pq + dim * dim * 4, "nprobe"))  # + the rotation
    out += coded
    if rescore:
        width = binary_width(dim)
        coded += [Candidate("BFlat", n * width, binary=True),
                  Candidate(f"BIVF{nlist}", n * width + ids + nlist * width, "nprobe", binary=True)]
        out += [Candidate(c.spec, c.memory, c.param, rescore=mult, binary=c.binary) for c in coded for mult in MULTIPLIERS]
    return out


def _spec_for_sample(spec: str, rows: int) -> str:
    """IVF's nlist scaled to the trial sample (the same rows a list)."""
    return re.sub(r"(?<![A-Za-z])(B?)IVF\d+", lambda m: f"{m.group(1)}IVF{nlist_for(rows)}", spec)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(a[a >= 0].tolist()) & set(b.tolist())) for a, b in zip(found, truth)]
    return float(np.mean(hits)) / truth.shape[1]


def rescore_exact(found: np.ndarray, q: np.ndarray, base: np.ndarray, metric: str, k: int = K) -> np.ndarray:
    """The ``k`` best of each query's candidate rows ``found`` (-1: none) by exact score against
    ``base`` (prepared as the index was: ``l2`` ranks by distance, the rest by inner product)."""
    out = np.full((len(found), k), -1, dtype=np.int64)
    step = 256
    for s in range(0, len(found), step):
        cand = found[s : s + step]
        rows = base[np.where(cand >= 0, cand, 0)]
        if metric == "l2":
            diff = rows - q[s : s + step, None, :]
            scores = -np.einsum("bkd,bkd->bk", diff, diff)
        else:
            scores = np.einsum("bkd,bd->bk", rows, q[s : s + step])
        scores[cand < 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[s : s + step, : top.shape[1]] = np.take_along_axis(cand, top, axis=1)
    return out


def _trainer(index: Any, train: np.ndarray) -> Callable[[], Any]:
    return lambda: index.train(train)


def _timed_search(index: Any, qin: np.ndarray, c: Candidate, q: np.ndarray, base: np.ndarray,
                  metric: str) -> tuple[np.ndarray, float]:
    """(labels, ms per query): k results, or k x M candidates rescored exactly."""
    t = time.perf_counter()
    if c.rescore:
        _, found = index.search(qin, K * c.rescore)
        labels = rescore_exact(found, q, base, metric)
    else:
        _, labels = index.search(qin, K)
    return labels, (time.perf_counter() - t) * 1000.0 / max(1, len(q))


class _Builder:
    """Builds each spec of the trial over the sample once (its variants share it); IVF specs over
    one nlist share one trained coarse quantizer; binary specs index 1-bit sign codes."""

    def __init__(self, base: np.ndarray, metric: str, rng: np.random.Generator):
        from vecpipe.compress import codecs
        from vecpipe.index.compressed import pad_codes

        self.base, self.metric, self.rng = base, metric, rng
        self.train = base if len(base) <= 50_000 else base[rng.choice(len(base), 50_000, replace=False)]
        self.width = binary_width(base.shape[1])
        self.bits = codecs.binary_train(base, center=True)  # thresholds at the corpus mean, as binarize --center
        self.codes = pad_codes(codecs.binary_encode(base, self.bits), self.width)
        self.coarse: dict[int, np.ndarray] = {}

    def query_codes(self, q: np.ndarray) -> np.ndarray:
        from vecpipe.compress import codecs
        from vecpipe.index.compressed import pad_codes

        return pad_codes(codecs.binary_encode(q, self.bits), self.width)

    def build(self, spec: str, binary: bool) -> Any:
        import faiss

        from vecpipe.index.faiss_util import quietly
        from vecpipe.index.specs import check_spec, make_index

        if binary:
            index = make_index(check_spec(spec, dim=self.width * 8, n_vectors=len(self.codes), train_size=50_000, binary=True))
            if not index.is_trained:
                quietly(_trainer(index, self.codes[: len(self.train)]), None)
            index.add(self.codes)
            return index
        index = make_index(check_spec(spec, dim=self.base.shape[1], n_vectors=len(self.base), train_size=50_000,
                                      metric=self.metric), self.metric)
        lighter_training(index)
        if spec.startswith("IVF"):  # not after a rotation: those lists live in the rotated space
            ivf = faiss.extract_index_ivf(index)
            if ivf.nlist not in self.coarse:
                coarse = faiss.IndexIVFFlat(faiss.IndexFlat(ivf.d, ivf.metric_type), ivf.d, ivf.nlist, ivf.metric_type)
                quietly(_trainer(coarse, self.train), None)
                self.coarse[ivf.nlist] = coarse.quantizer.reconstruct_n(0, ivf.nlist)
            ivf.quantizer.add(self.coarse[ivf.nlist])  # faiss skips the coarse training of a filled quantizer
        if not index.is_trained:
            quietly(_trainer(index, self.train), None)
        index.add(self.base)
        return index


#: The trial trains PQ codebooks and OPQ rotations lighter than faiss's defaults (which the final
#: build keeps): PQ k-means of TRIAL_PQ_ITER iterations on at most 40 rows a centroid, OPQ with
#: TRIAL_OPQ_ITER alternations. Fine PQ (2-4 dimensions a sub-quantizer) trains slowly in faiss; the
#: trial's recall of a PQ kind is a lower bound of the built index's.
TRIAL_PQ_ITER = 10
TRIAL_OPQ_ITER = 5
TRIAL_PQ_ROWS_PER_CENTROID = 40


def lighter_training(index: Any) -> None:
    import faiss

    opq: Any = None
    if isinstance(index, faiss.IndexPreTransform):
        opq = faiss.downcast_VectorTransform(index.chain.at(0))  # type: ignore[attr-defined]
        index = faiss.downcast_index(index.index)
    if isinstance(opq, faiss.OPQMatrix):
        opq.niter = TRIAL_OPQ_ITER
        opq.max_train_points = 256 * TRIAL_PQ_ROWS_PER_CENTROID
    pq = getattr(index, "pq", None)
    if pq is not None:
        pq.cp.niter = TRIAL_PQ_ITER
        pq.cp.max_points_per_centroid = TRIAL_PQ_ROWS_PER_CENTROID


def _family(c: Candidate) -> tuple[str, int] | None:
    """(family, m) of a PQ kind: within a family, more sub-quantizers recall more, train slower and
    scan slower."""
    m = re.search(r",PQ(\d+)$", c.spec)
    return ("OPQ-IVF-PQ" if c.spec.startswith("OPQ") else "IVF-PQ", int(m.group(1))) if m else None


def _trial_order(cands: list[Candidate]) -> list[Candidate]:
    """The candidates with each PQ family's sizes from the fewest sub-quantizers up (its other kinds
    keep their places): the trial stops a family at the first size that meets the target."""
    fams = [(_family(c) or ("", 0)) for c in cands]
    out = list(cands)
    for fam in {f for f, _ in fams if f}:
        slots = [i for i, (f, _) in enumerate(fams) if f == fam]
        ordered = sorted((cands[i] for i in slots), key=lambda c: (_family(c) or ("", 0))[1])
        for i, c in zip(slots, ordered):
            out[i] = c
    return out


def trial(cands: list[Candidate], data: np.ndarray, queries: np.ndarray | None, metric: str, target: float,
          seed: int, on_progress: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Measure each candidate's recall@10 and latency on a sample (in place). Returns (sample rows, queries)."""
    import faiss

    from vecpipe.index.faiss_util import faiss_metric

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
    builder = _Builder(base, metric, rng)
    qcodes = builder.query_codes(q)
    groups: dict[tuple[str, bool], list[Candidate]] = {}
    for c in _trial_order(cands):
        groups.setdefault((c.spec, c.binary), []).append(c)
    met: dict[str, int] = {}  # PQ family -> the fewest sub-quantizers that met the target
    for (spec, binary), variants in groups.items():
        fam = _family(variants[0])
        if fam is not None and fam[0] in met:
            for c in variants:
                c.note = f"skipped: PQ{met[fam[0]]} met the target in fewer bytes"
            continue
        try:
            index = builder.build(_spec_for_sample(spec, len(base)), binary)
        except (RuntimeError, UsageError) as exc:
            for c in variants:
                c.note = f"not built: {str(exc).splitlines()[0][:80]}"
            continue
        for c in variants:
            if on_progress:
                on_progress(f"--spec auto: trying {c.label} ({len(base)} rows, {len(q)} queries)")
            _tune(index, c, qcodes if binary else q, q, base, truth, metric, target)
        if fam is not None and any((c.recall or 0) >= target for c in variants):
            met[fam[0]] = fam[1]
    return len(base), len(q)


def _tune(index: Any, c: Candidate, qin: np.ndarray, q: np.ndarray, base: np.ndarray, truth: np.ndarray, metric: str,
          target: float) -> None:
    """Measure ``c`` on ``index``, raising its nprobe / efSearch until the target recall (in place)."""
    import faiss

    if c.param is None:
        labels, c.latency_ms = _timed_search(index, qin, c, q, base, metric)
        c.recall = _recall(labels, truth)
        return
    nlist = None
    if c.param == "nprobe":
        ivf = index if c.binary else faiss.extract_index_ivf(index)  # index_binary_factory's BIVF is the IVF itself
        nlist = ivf.nlist
        settings = [p for p in NPROBES if p <= nlist] or [1]
    else:
        settings = list(EF_SEARCHES)
    best: tuple[float, float, int] | None = None
    for s in settings:
        if c.binary:
            ivf.nprobe = s
        else:
            faiss.ParameterSpace().set_index_parameter(index, c.param, s)
        labels, ms = _timed_search(index, qin, c, q, base, metric)
        r = _recall(labels, truth)
        if best is None or r > best[0]:
            best = (r, ms, s)
        if r >= target:
            best = (r, ms, s)
            break
    assert best is not None
    c.recall, c.latency_ms, c.setting = best
    if nlist is not None:
        c.extra["nprobe_share"] = c.setting / nlist


def choose(cands: list[Candidate], budget: int, target: float, max_latency_ms: float | None) -> tuple[Candidate, str]:
    """The fastest candidate in budget meeting the target (and the latency cap); else the best recall."""
    tried = [c for c in cands if c.recall is not None and c.memory <= budget]
    if not tried:
        smallest = min(cands, key=lambda c: c.memory)
        raise UsageError(f"--max-memory: no index kind fits; the smallest needs {smallest.memory / 2**20:.1f} MiB "
                         f"({smallest.label}); give a larger budget")
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
    width = max([20] + [len(c.label) for c in cands])
    lines = [f"{'spec':<{width}} {'memory':>10} {'recall@10':>9} {'ms/query':>9} {'setting':>12}  "]
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
        lines.append(f"{c.label:<{width}} {mem:>10} {rec:>9} {lat:>9} {setting:>12}  {status}")
    return lines


def pick(matrix: np.ndarray, metric: str, budget: int, target: float = 0.95, max_latency_ms: float | None = None,
         queries: np.ndarray | None = None, seed: int = 0, on_progress: Callable[[str], None] | None = None,
         rescore: bool = True) -> dict[str, Any]:
    """Choose an index for ``matrix``: the choice, its tuned search defaults and the record of the trial.
    ``rescore``: whether the kinds that rescore from the float vectors on disk may be tried."""
    n, dim = matrix.shape
    data = prepare(matrix, metric)
    q = prepare(queries, metric) if queries is not None else None
    cands = candidates(n, dim, metric, rescore)
    fitting = [c for c in cands if c.memory <= budget]
    sample_rows, n_queries = trial(fitting, data, q, metric, target, seed, on_progress) if fitting else (0, 0)
    chosen, why = choose(cands, budget, target, max_latency_ms)
    nprobe, ef = final_params(chosen, n)
    lines = table(cands, budget, chosen)
    return {
        "spec": chosen.spec, "nprobe": nprobe, "ef_search": ef, "why": why, "lines": lines, "label": chosen.label,
        "rescore": chosen.rescore, "binary": chosen.binary,
        "record": {"max_memory": budget, "target_recall": target, "max_latency_ms": max_latency_ms, "chosen": chosen.spec,
                   "rescore": chosen.rescore, "why": why, "recall": chosen.recall, "latency_ms": chosen.latency_ms, "memory": chosen.memory,
                   "measured_on": {"rows": sample_rows, "queries": n_queries, "held_out": queries is None},
                   "tried": [c.row() for c in cands if c.recall is not None],
                   "not_tried": {c.label: c.note for c in fitting if c.recall is None},
                   "over_budget": sorted({c.spec for c in cands if c.memory > budget})},
    }


def subsampled(record: dict[str, Any], n: int) -> bool:
    """Whether the trial saw fewer rows than the corpus holds (its recall may not carry to it)."""
    on = record.get("measured_on") or {}
    held = int(on.get("queries") or 0) if on.get("held_out") else 0
    return int(on.get("rows") or 0) < n - held


def _without(labels: np.ndarray, own: np.ndarray | None, k: int) -> np.ndarray:
    """The first ``k`` labels of each row, the query's own row (``own``) left out."""
    if own is None:
        return labels[:, :k]
    out = np.full((len(labels), k), -1, dtype=np.int64)
    for i, row in enumerate(labels):
        kept = row[row != own[i]][:k]
        out[i, : len(kept)] = kept
    return out


def check_full(loaded: Any, data: np.ndarray, queries: np.ndarray | None, metric: str, chosen: dict[str, Any],
               target: float, seed: int = 0, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Step 4: the built index (a :class:`vecpipe.index.search.LoadedIndex` over all of ``data``, the
    corpus as prepared for ``metric``) measured against exact search over the whole corpus, its search
    setting and rescoring depth raised until the target holds. Returns {recall, latency_ms, nprobe,
    ef_search, rescore, queries}: the first setting meeting the target, else the best recall tried."""
    import faiss

    from vecpipe.index.faiss_util import faiss_metric

    n = len(data)
    if queries is None:
        own: np.ndarray | None = np.sort(np.random.default_rng(seed + 1).choice(n, min(TRIAL_QUERIES, max(1, n // 10)), replace=False))
        q = np.ascontiguousarray(data[own])
    else:
        own, q = None, np.ascontiguousarray(prepare(queries[:TRIAL_QUERIES], metric))
    extra = 0 if own is None else 1
    if on_progress:
        on_progress(f"--spec auto: checking {chosen['label']} over all {n:,} rows ({len(q)} queries against exact search)")
    _, exact = faiss.knn(q, data, K + extra, metric=faiss_metric(metric))
    truth = _without(exact, own, K)
    param = "nprobe" if chosen.get("nprobe") else "efSearch" if chosen.get("ef_search") else None
    start = int(chosen.get("nprobe") or chosen.get("ef_search") or 0)
    settings: Sequence[int | None]
    if param == "nprobe":
        nlist = int(getattr(loaded.index, "nlist", 0) or faiss.extract_index_ivf(loaded.index).nlist)
        settings = [start] + [p for p in NPROBES if start < p <= nlist] + ([nlist] if nlist not in NPROBES and nlist > start else [])
    elif param == "efSearch":
        settings = [start] + [e for e in EF_SEARCHES if e > start]
    else:
        settings = [None]
    depths = [chosen["rescore"]] + [m for m in FULL_MULTIPLIERS if m > chosen["rescore"]] if chosen.get("rescore") else [None]
    best: dict[str, Any] = {}
    for depth in depths:
        previous = -1.0
        for setting in settings:
            loaded.set_params(nprobe=setting if param == "nprobe" else None, ef_search=setting if param == "efSearch" else None)
            t = time.perf_counter()
            if depth:
                _, found = loaded.search(q, (K + extra) * depth)
                labels = rescore_exact(found, q, data, metric, K + extra)
            else:
                _, labels = loaded.search(q, K + extra)
            ms = (time.perf_counter() - t) * 1000.0 / len(q)
            recall = _recall(_without(labels, own, K), truth)
            if not best or recall > best["recall"] or recall >= target:
                best = {"recall": recall, "latency_ms": ms, "rescore": depth, "queries": len(q),
                        "nprobe": setting if param == "nprobe" else None, "ef_search": setting if param == "efSearch" else None}
            if recall >= target or recall < previous + 0.002:  # met, or no longer gaining: a deeper rescoring next
                break
            previous = recall
        if best["recall"] >= target:
            break
    loaded.set_params(nprobe=best["nprobe"], ef_search=best["ef_search"])
    return best

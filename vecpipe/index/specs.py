"""faiss index specs checked before any work.

``check_spec`` parses a faiss ``index_factory`` string (or, for 1-bit vectors, an
``index_binary_factory`` string) against the data it will be built over and refuses, with one
user-worded line, anything faiss would crash on, spend minutes on and then refuse, or build with a
meaning the user did not ask for. What it accepts builds, trains on ``min_train`` vectors, adds and
searches in faiss 1.15 (``tests/test_specs.py`` fuzzes that in subprocesses).

The vocabulary (float vectors), in the order faiss reads it::

    [transform,]... index [,RFlat | ,Refine(code)]

    transform  PCA<d> PCAR<d>  OPQ<m>[_<d>]  RR[<d>]  L2norm
    index      Flat
               HNSW[<M>][(_|,)(Flat|SQ..|PQ<m>[x<b>][np])]
               IVF<nlist>[k|M][_HNSW[<M>]],code
                   code: Flat  SQ..  PQ<m>[x<b>][np]  PQ<m>x4fs[r][_<bbs>]  PQ<m>+<m2>
                         RaBitQ[<b>]  RaBitQfs[<b>][_<bbs>]
               PQ<m>[x<b>][np]  PQ<m>x4fs[_<bbs>]  SQ..  LSH[<nbits>][r][t]  RaBitQ[<b>]  RaBitQfs[<b>][_<bbs>]
    SQ..       SQ4 SQ6 SQ8 SQfp16 SQbf16 SQ8_direct SQ8_direct_signed SQtq2..5 SQtqmse1..4,8

Binary vectors: ``BFlat``, ``BHNSW<M>``, ``BIVF<nlist>``, ``BIVF<nlist>_HNSW<M>``.

What faiss 1.15 does with what is refused here (each found by building it in a subprocess):

- ``HNSW0``/``HNSW1`` (also ``HNSW1_SQ8``, ``IVF16_HNSW1,Flat``, ``BHNSW1``, ``BIVF16_HNSW0``): abort
  or segfault on add. M above 256 is refused too (memory, no recall).
- ``BHNSW-3``: loops forever. faiss reads binary specs with ``sscanf``, so ``BHNSW32junk`` is
  accepted and ``BIVF4k`` means 4 lists; the binary grammar here is strict.
- ``NSG<R>``: loops forever with R below 8, and with any R on duplicate vectors (1,000 vectors of
  which half are one vector; 20 distinct vectors repeated); ``NSG32`` over 101-102 vectors aborts
  in NNDescent. NSG is refused altogether, with an HNSW suggestion.
- ``PQ8x0``, ``OPQ8_0``, ``PQ8x4fs_0``: SIGFPE. ``RR0``: segfault.
- ``Flat,Refine(PQ8x4fs)``: std::terminate (fast-scan codes have no distance computer).
- ``HNSW32_SQtq3`` (any TurboQuant ``SQtq*`` under a graph): std::terminate while building it.
- ``PQ8x4fs_256``, ``RaBitQfs_256`` (fast-scan blocks above 128): build, then every search fails.
- ``IVF0,Flat``, ``BIVF0``: train and add, then every search fails.
- ``PCAW<d>``/``PCAWR<d>``: whitening divides by each eigenvalue with no floor; a direction without
  variance in the training sample (duplicates, constant dimensions) makes every vector NaN and
  every search empty.
- ``PCA0``, ``LSH0``, ``SQ0``: an index that stores nothing.
- ``HNSW32_PQ8`` (and ``NSG32,PQ8``): L2 distances whatever the metric asked, so inner-product
  scores would rank backwards; ``LSH`` and ``IVF..,PQ<m>+<m2>`` are L2-only too (refused for
  ``--metric ip``/``cos``).
- ``PQ<m>x<b>`` with b above 16 trains 2^b centroids per sub-quantizer (hours); above 24 faiss refuses.
- ``IVF<nlist>`` with more lists than training vectors, PQ with fewer than 2^b, OPQ with fewer than
  256, PCA with fewer than its output dimension: faiss refuses, after the work before it.
- Polysemous training (on by default for PQ codes) takes minutes and changes no result:
  ``make_index`` turns it off.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from vecpipe.errors import UsageError

if TYPE_CHECKING:
    import faiss

CENTROID_POINTS = 39  # faiss Clustering.min_points_per_centroid: below this it warns
HNSW_M_RANGE = (2, 256)  # M < 2 crashes faiss; above 256 the graph costs memory without recall
PQ_NBITS_MAX = 16  # faiss refuses above 24; 17..24 train 2^nbits centroids per sub-quantizer
FAISS_PQ_NBITS_MAX = 24
OPQ_TRAIN = 256  # OPQ trains an 8-bit PQ inside
FASTSCAN_BLOCKS = (32, 64, 96, 128)  # 0: SIGFPE; not a multiple of 32: refused; 256 and up: builds, then search fails
MAX_DIM = 1 << 16
MAX_SPEC = 200  # characters
INT_MAX = (1 << 31) - 1

SQ_TYPES = (
    "SQ4", "SQ6", "SQ8", "SQfp16", "SQbf16", "SQ8_direct", "SQ8_direct_signed",
    "SQtq2", "SQtq3", "SQtq4", "SQtq5", "SQtqmse1", "SQtqmse2", "SQtqmse3", "SQtqmse4", "SQtqmse8",
)
SQ_UNTRAINED = ("SQfp16", "SQbf16", "SQ8_direct", "SQ8_direct_signed")
SQ_GRAPH_UNSAFE = tuple(s for s in SQ_TYPES if s.startswith("SQtq"))  # no symmetric distance: terminate

FLOAT_METRICS = ("ip", "l2", "cos")
SEARCH_PARAMS = ("nprobe", "efSearch", "k_factor")
_PARAM_ALIASES = {"nprobe": "nprobe", "efsearch": "efSearch", "ef_search": "efSearch", "k_factor": "k_factor",
                  "k_factor_rf": "k_factor"}

EXAMPLES = "Flat, HNSW32, IVF1024,Flat or OPQ48,IVF1024,PQ48"
BINARY_EXAMPLES = "BFlat, BHNSW32, BIVF1024 or BIVF1024_HNSW32"


@dataclass(frozen=True)
class SpecInfo:
    """What a spec builds, what it needs, and which search parameters apply to it."""

    spec: str  # as the user gave it
    binary: bool = False
    dim: int | None = None  # input dimension (bits for binary specs)
    code_dim: int | None = None  # dimension the index proper sees, after the transforms
    transforms: tuple[str, ...] = ()  # e.g. ("OPQ16_64",)
    kind: str = "flat"  # flat | hnsw | ivf | pq | sq | lsh | rabitq
    code: str | None = None  # how vectors are stored: Flat, SQ8, PQ48x4, ...
    needs_training: bool = False
    ivf_nlist: int | None = None
    hnsw_m: int | None = None  # M of the HNSW graph (the index, or the IVF coarse quantizer)
    hnsw_quantizer: bool = False  # the HNSW graph is the IVF coarse quantizer (IVF256_HNSW32)
    pq_m: int | None = None
    pq_nbits: int | None = None
    opq_m: int | None = None
    sq_type: str | None = None
    refine: str | None = None  # code of the refinement index: "Flat" for RFlat
    has_ivf: bool = False  # nprobe applies
    has_hnsw: bool = False  # efSearch applies
    has_refine: bool = False  # k_factor applies
    metrics: tuple[str, ...] = FLOAT_METRICS  # metrics faiss honours for this spec
    min_train: int = 0  # fewest training vectors faiss accepts
    recommended_train: int = 0  # what faiss's clustering recommends (39 per centroid)
    train_vectors: int | None = None  # min(train_size, n_vectors) when checked against data
    warning: str | None = None  # one line for the caller to print once (unless -q)
    polysemous: bool = False  # faiss would run its (slow, unused here) polysemous training on PQ codes
    requirements: tuple[tuple[str, int, int], ...] = field(default=(), repr=False)  # (component, min, recommended)


# --------------------------------------------------------------------------- public API


def check_spec(spec: str, *, dim: int, n_vectors: int, train_size: int, binary: bool = False,
               metric: str | None = None) -> SpecInfo:
    """Check ``spec`` for ``n_vectors`` vectors of ``dim`` dimensions (bits when ``binary``).

    ``train_size`` is the most vectors training samples (``--train-size``); ``metric`` (``ip``,
    ``l2``, ``cos``; optional) refuses specs faiss builds with another metric. Raises
    :class:`UsageError` with one line naming ``--spec``, the component and the fix; returns the
    :class:`SpecInfo`, whose ``warning`` says when training is smaller than faiss recommends.
    """
    if not isinstance(spec, str):
        raise UsageError(f"--spec {spec!r}: give a faiss index factory string such as {EXAMPLES}")
    dim = _whole(dim, "dim")
    n_vectors = _whole(n_vectors, "n_vectors")
    train_size = _whole(train_size, "train_size")
    if dim < 1:
        raise UsageError(f"--spec {spec!r}: the vectors have no dimensions; embed or quantize them again")
    if train_size < 1:
        raise UsageError(f"--train-size {train_size}: must be at least 1")
    if metric is not None and metric not in FLOAT_METRICS + ("hamming",):
        raise UsageError(f"--metric {metric!r}: choose one of ip, l2, cos, hamming")
    if binary and dim % 8:
        raise UsageError(f"--spec {spec!r}: binary indexes need a multiple of 8 bits, and the vectors have {dim}; "
                         "pad the codes to whole bytes")
    if dim > MAX_DIM:
        raise UsageError(f"--spec {spec!r}: {dim:,} dimensions is more than faiss indexes handle here (at most {MAX_DIM:,})")
    info = _parse(spec, binary, dim, True)
    if not binary and metric in FLOAT_METRICS and metric not in info.metrics:
        raise UsageError(_metric_message(info, metric))
    info = _check_data(info, n_vectors, train_size)
    info = _faiss_check(info, metric)
    if info.needs_training and (info.train_vectors or 0) < max(1, info.min_train):
        raise UsageError(f"--spec {spec!r} needs training vectors and there are none: give vectors, or use Flat")
    return info


def parse_spec(spec: str, *, binary: bool = False, dim: int | None = None) -> SpecInfo:
    """Parse ``spec`` without data: structure, parameters and (with ``dim``) dimension checks.

    Raises :class:`UsageError` as :func:`check_spec` does; never calls faiss.
    """
    if not isinstance(spec, str):
        raise UsageError(f"--spec {spec!r}: give a faiss index factory string such as {EXAMPLES}")
    return _parse(spec, bool(binary), None if dim is None else int(dim), True)


def search_params(target: SpecInfo | Mapping[str, Any] | str) -> tuple[str, ...]:
    """The search parameters (``nprobe``, ``efSearch``, ``k_factor``) that mean something for an index."""
    info = _as_info(target)
    if info is None:
        spec = _spec_of(target) or ""
        legacy = []  # a spec this module does not parse (older artifacts, BM25...): what its name says
        if re.search(r"IVF", spec):
            legacy.append("nprobe")
        if re.search(r"HNSW", spec):
            legacy.append("efSearch")
        return tuple(legacy)
    out = []
    if info.has_ivf:
        out.append("nprobe")
    if info.has_hnsw:
        out.append("efSearch")
    if info.has_refine:
        out.append("k_factor")
    return tuple(out)


def applies(target: SpecInfo | Mapping[str, Any] | str, param: str) -> bool:
    """Whether search parameter ``param`` (``nprobe`` | ``efSearch`` | ``k_factor``) applies to an index.

    ``target`` is a :class:`SpecInfo`, an index's metadata (the ``.vpi`` header: ``spec`` and
    ``binary`` are read), or a spec string. ``search --nprobe`` on an index without IVF lists can be
    refused with ``if not applies(meta, "nprobe")``.
    """
    name = _PARAM_ALIASES.get(str(param).lower()) or _PARAM_ALIASES.get(str(param))
    if name is None:
        raise ValueError(f"unknown search parameter {param!r}; one of {', '.join(SEARCH_PARAMS)}")
    return name in search_params(target)


def make_index(info: SpecInfo, metric: str = "ip") -> Any:
    """The faiss index ``info`` describes (untrained), ready for ``train``/``add``.

    Same as ``faiss.index_factory`` (``index_binary_factory`` for binary specs) except that the
    polysemous training faiss runs on PQ codes (``PQ8``, ``IVF1024,PQ48``, ``HNSW32_PQ16``; not
    ``...np`` nor fast-scan) is switched off: vecpipe never searches in polysemous mode, and that
    training takes minutes (46 s for ``PQ8`` on 500 vectors, 85 s for ``IVF16,PQ8`` on 2,000) while
    only renumbering the centroids: the PQ distances, hence the results, are the same.
    """
    import faiss

    dim = cast(int, info.dim)  # None (from parse_spec without dim) fails in int() as before
    if info.binary:
        return faiss.index_binary_factory(int(dim), info.spec)
    fm = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.index_factory(int(dim), info.spec, fm)
    if info.polysemous:
        _no_polysemous(index)
    return index


# --------------------------------------------------------------------------- grammar

RE_PCA = re.compile(r"PCA(W?)(R?)(\d+)", re.ASCII)
RE_OPQ = re.compile(r"OPQ(\d+)(?:_(\d+))?", re.ASCII)
RE_RR = re.compile(r"RR(\d*)", re.ASCII)
RE_L2NORM = re.compile(r"L2[nN]orm", re.ASCII)
RE_HNSW = re.compile(r"HNSW(\d*)(?:_(.*))?", re.DOTALL | re.ASCII)
RE_NSG = re.compile(r"NSG(\d*)(?:_(.*))?", re.DOTALL | re.ASCII)
RE_IVF = re.compile(r"IVF(\d+)([kM]?)(?:_HNSW(\d*))?", re.ASCII)
RE_IVF_OTHER = re.compile(r"IVF(\d+)([kM]?)_(\w+)", re.ASCII)
RE_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?(np)?", re.ASCII)
RE_PQFS = re.compile(r"PQ(\d+)x4fs(r?)(?:_(\d+))?", re.ASCII)
RE_PQR = re.compile(r"PQ(\d+)\+(\d+)", re.ASCII)
RE_LSH = re.compile(r"LSH(\d*)(r?)(t?)", re.ASCII)
RE_RABITQ = re.compile(r"RaBitQ(\d*)", re.ASCII)
RE_RABITQFS = re.compile(r"RaBitQfs(\d*)(?:_(\d+))?", re.ASCII)
RE_BHNSW = re.compile(r"BHNSW(\d+)", re.ASCII)
RE_BIVF = re.compile(r"BIVF(\d+)(?:_HNSW(\d+))?", re.ASCII)

_UNSUPPORTED = re.compile(
    r"IMI\d.*|Residual\d.*|(?:RQ|LSQ|PRQ|PLSQ|RCQ|LSCQ)\d.*|ZnLattice.*|Flat(?:L2|IP)?Panorama.*|FlatDedup|"
    r"ITQ\d*|Pad\d+|HR\d*|MinMax(?:FP16)?|EDEN.*|SVS.*|RefinePanorama.*|IVF\d+[kM]?\(.*|HNSW\d*_?\d*\+PQ.*"
)


def _is_transform(tok: str) -> bool:
    return bool(RE_PCA.fullmatch(tok) or RE_OPQ.fullmatch(tok) or RE_RR.fullmatch(tok) or RE_L2NORM.fullmatch(tok))


def _is_main(tok: str) -> bool:
    return bool(
        tok == "Flat" or RE_HNSW.fullmatch(tok) or RE_NSG.fullmatch(tok) or RE_IVF.fullmatch(tok)
        or RE_PQ.fullmatch(tok) or RE_PQFS.fullmatch(tok) or tok in SQ_TYPES or tok == "SQ0"
        or RE_LSH.fullmatch(tok) or RE_RABITQ.fullmatch(tok) or RE_RABITQFS.fullmatch(tok)
    )


class _Spec:
    """One parse: fields of the SpecInfo being built, and the spec's training requirements."""

    def __init__(self, spec: str, binary: bool, dim: int | None, suggest: bool):
        self.spec = spec
        self.binary = binary
        self.dim = dim
        self.suggest = suggest
        self.f: dict[str, Any] = {"spec": spec, "binary": binary, "dim": dim}
        self.reqs: list[tuple[str, int, int]] = []  # (component, min, recommended)
        self.warnings: list[str] = []
        self.needs_training = False
        self.l2_only: list[str] = []

    # -- messages

    def fail(self, msg: str) -> None:
        raise UsageError(f"--spec {self.spec!r}: {msg}")

    def unknown(self, tok: str, context: str = "", where: str = "") -> None:
        """Refuse an unknown component, with a did-you-mean from the component vocabulary."""
        hint = ""
        if _UNSUPPORTED.fullmatch(tok) or tok in ("IDMap", "IDMap2"):
            if tok in ("IDMap", "IDMap2"):
                self.fail(f"{tok!r} is not needed: vecpipe keeps the ids itself; drop it")
            self.fail(f"{tok!r} is a faiss component vecpipe does not build; use a spec such as {EXAMPLES}")
        guess = _suggest(tok, self.binary, context)
        if guess is not None and self.suggest:
            fixed = _replace_token(self.spec, tok, guess)
            try:
                _parse(fixed, self.binary, self.dim, False)
                hint = f"; did you mean --spec {fixed!r}?"
            except UsageError:
                hint = f"; did you mean {guess!r}?"
        elif guess is not None:
            hint = f"; did you mean {guess!r}?"
        if not hint:
            hint = f"; use a spec such as {BINARY_EXAMPLES if self.binary else EXAMPLES}"
        self.fail(f"unknown component {tok!r}{where}{hint}")

    # -- numbers

    def number(self, text: str, what: str, comp: str, lo: int, hi: int, fix: str) -> int:
        value = int(text)
        if value < lo or value > hi:
            self.fail(f"{what} in {comp!r} is {value:,}; it must be {lo:,}..{hi:,}: {fix}")
        return value

    def require(self, comp: str, minimum: int, recommended: int) -> None:
        self.needs_training = True
        self.reqs.append((comp, int(minimum), int(recommended)))


def _parse(spec: str, binary: bool, dim: int | None, suggest: bool) -> SpecInfo:
    p = _Spec(spec, binary, dim, suggest)
    if len(spec) > MAX_SPEC:
        raise UsageError(f"--spec is {len(spec):,} characters long; faiss specs are short, such as "
                         f"{BINARY_EXAMPLES if binary else EXAMPLES}")
    if not spec.strip():
        p.fail(f"the spec is empty; give a faiss index factory string such as {BINARY_EXAMPLES if binary else EXAMPLES}")
    if re.search(r"\s", spec):
        fixed = re.sub(r"\s+", "", spec)
        p.fail(f"remove the spaces: --spec {fixed!r}")
    if spec.count("(") != spec.count(")"):
        p.fail("unbalanced parentheses; a refinement is written IVF1024,PQ32,Refine(Flat)")
    if binary:
        _parse_binary(p)
    else:
        _parse_float(p)
    reqs = tuple(p.reqs)
    p.f["min_train"] = max((r[1] for r in reqs), default=1 if p.needs_training else 0)
    p.f["recommended_train"] = max((r[2] for r in reqs), default=p.f["min_train"])
    p.f["needs_training"] = p.needs_training
    p.f["requirements"] = reqs
    if p.warnings:
        p.f["warning"] = "; ".join(p.warnings)
    if p.l2_only:
        p.f["metrics"] = ("l2",)
    if binary:
        p.f["metrics"] = ("hamming",)
    return SpecInfo(**p.f)


# --------------------------------------------------------------------------- float specs


def _parse_float(p: _Spec) -> None:
    spec = p.spec
    if _binary_grammar(spec) or (spec.startswith("B") and _is_main(spec[1:].split(",")[0])):
        flt = spec.removeprefix("B")
        m = RE_BIVF.fullmatch(spec)
        if m:
            flt = f"IVF{m.group(1)}" + (f"_HNSW{m.group(2)}" if m.group(2) else "") + ",Flat"
        p.fail(f"{spec.split(',')[0]!r} is a binary index but the vectors are float: binarize them first "
               f"(vecpipe binarize --bits 1), or use --spec {flt!r}")
    base = spec
    m = re.fullmatch(r"(.*),Refine\((.*)\)", spec, re.DOTALL)
    if m:
        base, rspec = m.group(1), m.group(2)
        if not base:
            p.fail("Refine(...) refines another index: write it last, as in IVF1024,PQ32,Refine(Flat)")
        _parse_refine(p, rspec)
    elif spec.endswith(",RFlat"):
        base = spec[: -len(",RFlat")]
        p.f["refine"] = "Flat"
        p.f["has_refine"] = True
        if not base:
            p.fail("RFlat refines another index: write it last, as in IVF1024,PQ32,RFlat")
    if "Refine(" in base or "(" in base or ")" in base:
        if base.startswith("Refine("):
            p.fail("Refine(...) refines another index: write it last, as in IVF1024,PQ32,Refine(Flat)")
        if "Refine(" in base:
            p.fail("Refine(...) must come last, as in IVF1024,PQ32,Refine(Flat)")
        p.fail("parentheses are only read in a final Refine(...), as in IVF1024,PQ32,Refine(Flat)")
    tokens = base.split(",")
    if any(t == "" for t in tokens):
        p.fail("empty component (a doubled or trailing comma); components are separated by single commas, as in IVF1024,Flat")
    if base == "RFlat":
        p.fail("RFlat refines another index: write it last, as in IVF1024,PQ32,RFlat")
    if "RFlat" in tokens:
        p.fail("RFlat must come last, as in IVF1024,PQ32,RFlat")

    d = p.dim
    transforms = []
    i = 0
    while i < len(tokens) and _is_transform(tokens[i]):
        tok = tokens[i]
        if i == len(tokens) - 1:
            p.fail(f"{tok!r} transforms the vectors for an index that is missing: add one after it, as in --spec {tok + ',Flat'!r}")
        d = _parse_transform(p, tok, d)
        transforms.append(tok)
        i += 1
    p.f["transforms"] = tuple(transforms)
    p.f["code_dim"] = d
    after = f" (after {','.join(transforms)})" if transforms else ""
    rest = tokens[i:]
    main = rest[0]
    used = _parse_main(p, main, rest[1:], d, after)
    extra = rest[used:]
    if extra:
        _misplaced(p, tokens[: i + used], extra[0], main)


def _parse_transform(p: _Spec, tok: str, d: int | None) -> int | None:
    m = RE_PCA.fullmatch(tok)
    if m:
        if m.group(1):
            plain = tok.replace("W", "", 1)
            p.fail(f"{tok!r} whitens without a floor: any direction without variance in the training sample "
                   f"(duplicates, constant dimensions) turns every vector into NaN; use {plain}")
        out: int | None
        out = p.number(m.group(3), "the output dimension", tok, 1, MAX_DIM, "PCA64 keeps 64 dimensions")
        if d is not None and out > d:
            p.fail(f"{tok!r} cannot output {out:,} dimensions from {d:,}: use PCA{_pow2_le(d)} or fewer")
        p.require(tok, out, out)
        return out
    m = RE_OPQ.fullmatch(tok)
    if m:
        opq_m = p.number(m.group(1), "the number of sub-quantizers", tok, 1, MAX_DIM, "OPQ16 rotates for a PQ16")
        out = d if m.group(2) is None else p.number(m.group(2), "the output dimension", tok, 1, MAX_DIM,
                                                      "OPQ16_64 rotates to 64 dimensions")
        if out is not None and out % opq_m:
            which = f"its output dimension {out:,}" if m.group(2) else f"the dimension {out:,}"
            p.fail(f"{tok!r} splits {which} into {opq_m:,} sub-quantizers, which does not divide it: "
                   f"use {_divisor_hint('OPQ', opq_m, out, m.group(2))}")
        p.f["opq_m"] = opq_m
        p.require(tok, OPQ_TRAIN, CENTROID_POINTS * OPQ_TRAIN)
        return out
    m = RE_RR.fullmatch(tok)
    if m:
        out = d if not m.group(1) else p.number(m.group(1), "the output dimension", tok, 1, MAX_DIM,
                                                "RR64 rotates to 64 dimensions, RR keeps them")
        p.require(tok, 1, 1)
        return out
    # L2norm
    return d


def _parse_main(p: _Spec, tok: str, rest: list[str], d: int | None, after: str) -> int:
    """Parse the index component; returns how many of ``rest`` tokens it used besides ``tok``."""
    if tok == "Flat":
        p.f.update(kind="flat", code="Flat")
        return 1
    m = RE_HNSW.fullmatch(tok)
    if m:
        hm = _graph_degree(p, tok, "HNSW", m.group(1), 32, HNSW_M_RANGE, "HNSW32")
        p.f.update(kind="hnsw", hnsw_m=hm, has_hnsw=True)
        code, used = _graph_code(p, tok, m.group(2), rest, "HNSW", hm)
        _parse_code(p, code, d, after, context="graph", owner=f"HNSW{hm}")
        return 1 + used
    m = RE_NSG.fullmatch(tok)
    if m:
        r = int(m.group(1)) if m.group(1) else 32
        alt = f"HNSW{r if HNSW_M_RANGE[0] <= r <= 64 else 32}" + (f"_{m.group(2)}" if m.group(2) else "")
        p.fail(f"vecpipe does not build NSG graphs: faiss's NSG build can loop forever (on duplicate vectors, "
               f"or with few links per node); use {alt}")
    m = RE_IVF.fullmatch(tok)
    if m:
        nlist = int(m.group(1)) * {"": 1, "k": 1024, "M": 1024 * 1024}[m.group(2)]
        if nlist < 1:
            p.fail(f"{tok!r} has no lists; use IVF1 or more (IVF1024 for a million vectors)")
        if nlist > INT_MAX:
            p.fail(f"{tok!r} asks for {nlist:,} lists, more than faiss handles; use IVF65536 or fewer")
        p.f.update(kind="ivf", ivf_nlist=nlist, has_ivf=True)
        if m.group(3) is not None:
            hm = _graph_degree(p, tok, "HNSW", m.group(3), 32, HNSW_M_RANGE, f"IVF{m.group(1)}{m.group(2)}_HNSW32")
            p.f.update(hnsw_m=hm, has_hnsw=True, hnsw_quantizer=True)
        p.require(tok, nlist, CENTROID_POINTS * nlist)
        if not rest:
            p.fail(f"{tok!r} needs a code for the vectors in its lists: use --spec {tok + ',Flat'!r} "
                   f"(or {tok},SQ8, {tok},PQ{_pq_guess(d)})")
        _parse_code(p, rest[0], d, after, context="ivf", owner=tok)
        return 2
    m = RE_IVF_OTHER.fullmatch(tok)
    if m:
        if m.group(3).startswith("NSG"):
            p.fail(f"{tok!r}: an NSG coarse quantizer is not supported; use IVF{m.group(1)}{m.group(2)}_HNSW32")
        p.unknown(tok)
    if _is_transform(tok):  # a transform after a non-transform cannot happen here; kept for safety
        p.fail(f"{tok!r} is a transform and must come first")
    if tok in ("RFlat",) or tok.startswith("Refine"):
        p.fail(f"{tok!r} must come last, as in IVF1024,PQ32,RFlat")
    # codes that are indexes of their own
    if RE_PQ.fullmatch(tok) or RE_PQFS.fullmatch(tok) or tok in SQ_TYPES or tok == "SQ0" \
            or RE_LSH.fullmatch(tok) or RE_RABITQ.fullmatch(tok) or RE_RABITQFS.fullmatch(tok):
        _parse_code(p, tok, d, after, context="flat", owner="")
        return 1
    if RE_PQR.fullmatch(tok):
        p.fail(f"{tok!r} refines PQ codes inside IVF lists only: use IVF1024,{tok}")
    if tok.startswith("SQ"):
        _bad_sq(p, tok)
    p.unknown(tok)
    return 1


def _graph_degree(p: _Spec, tok: str, name: str, text: str, default: int, bounds: tuple[int, int], example: str) -> int:
    if not text:
        return default
    lo, hi = bounds
    value = int(text)
    if value < lo:
        why = "faiss crashes on graphs of fewer than 2 links per node"
        letter = "M" if name == "HNSW" else "R"
        p.fail(f"{name} {letter} in {tok!r} is {value}; {why}: use {example} ({letter} from {lo} to {hi})")
    if value > hi:
        p.fail(f"{name} {'M' if name == 'HNSW' else 'R'} in {tok!r} is {value:,}; above {hi} a graph costs memory "
               f"without adding recall: use {example} (16..64 is usual)")
    return value


def _graph_code(p: _Spec, tok: str, underscored: str | None, rest: list[str], name: str, degree: int) -> tuple[str, int]:
    if underscored is not None:
        if underscored == "":
            p.fail(f"nothing follows the '_' in {tok!r}: use {name}{degree} or {name}{degree}_SQ8")
        return underscored, 0
    if rest and (rest[0] == "Flat" or RE_PQ.fullmatch(rest[0]) or rest[0].startswith("SQ")):
        return rest[0], 1
    return "Flat", 0


def _parse_code(p: _Spec, tok: str, d: int | None, after: str, context: str, owner: str) -> None:
    """A code: how vectors are stored. ``context``: flat (the index itself), ivf, graph, refine."""
    where = f" after {owner!r}" if owner else ""
    if tok == "Flat":
        if context == "refine":
            p.f["refine"] = "Flat"
        else:
            p.f["code"] = "Flat"
        return
    m = RE_PQFS.fullmatch(tok)
    if m and context == "refine":
        p.fail(f"Refine({tok}) cannot refine: fast-scan codes give no distances to refine with (faiss aborts); "
               f"use Refine(Flat), Refine(SQ8) or Refine(PQ{m.group(1)})")
    if m and context in ("flat", "ivf"):
        if m.group(2) and context != "ivf":
            p.fail(f"{tok!r}: the 'r' (by residual) variant exists only in IVF lists; use {tok.replace('fsr', 'fs')!r}")
        pq_m = _pq_m(p, tok, m.group(1), d, after)
        if m.group(3) is not None:
            bbs = int(m.group(3))
            if bbs not in FASTSCAN_BLOCKS:
                p.fail(f"the block size in {tok!r} is {bbs}; faiss's fast-scan blocks are 32, 64, 96 or 128 vectors: "
                       f"use PQ{pq_m}x4fs (32) or PQ{pq_m}x4fs_64")
        _set_code(p, context, "PQ", tok, pq_m=pq_m, pq_nbits=4)
        p.require(tok, 16, CENTROID_POINTS * 16)
        return
    m = RE_PQ.fullmatch(tok)
    if m:
        pq_m = _pq_m(p, tok, m.group(1), d, after)
        nbits: int | None
        nbits = 8 if m.group(2) is None else _pq_nbits(p, tok, pq_m, int(m.group(2)))
        _set_code(p, context, "PQ", tok, pq_m=pq_m, pq_nbits=nbits)
        if not m.group(3):
            p.f["polysemous"] = True
        if context == "graph":
            p.l2_only.append(f"{owner}_{tok}")
        p.require(tok, 1 << nbits, CENTROID_POINTS << nbits)
        return
    if context == "graph" and (tok.endswith("fs") or "x4fs" in tok):
        p.fail(f"{tok!r}: {owner} stores Flat, SQ8 or PQ<m> codes, not fast-scan PQ; use {owner}_PQ{_pq_guess(d)} or IVF1024,{tok}")
    m = RE_PQR.fullmatch(tok)
    if m and context == "ivf":
        m1 = _pq_m(p, tok, m.group(1), d, after)
        m2 = _pq_m(p, tok, m.group(2), d, after)
        _set_code(p, context, "PQ", tok, pq_m=m1, pq_nbits=8)
        p.f["refine"] = f"PQ{m2}"
        p.f["has_refine"] = True
        p.l2_only.append(f"{owner},{tok}")
        p.require(tok, 256, CENTROID_POINTS * 256)
        return
    if tok in SQ_TYPES:
        if context == "graph" and tok in SQ_GRAPH_UNSAFE:
            p.fail(f"{tok!r} cannot code the vectors of an {owner} graph (faiss crashes building it): "
                   f"use {owner}_SQ8, or IVF1024,{tok}")
        _set_code(p, context, "SQ", tok, sq_type=tok)
        if tok not in SQ_UNTRAINED:
            p.require(tok, 1, 1)
        if tok.startswith("SQ8_direct"):
            scale = "-128..127" if tok.endswith("signed") else "0..255"
            p.warnings.append(f"{tok} stores each value rounded to an integer in {scale}, as it is: "
                              "only for vectors already on that scale; SQ8 is the usual choice for embeddings")
        return
    if tok.startswith("SQ"):
        _bad_sq(p, tok)
    m = RE_RABITQFS.fullmatch(tok) or RE_RABITQ.fullmatch(tok)
    if m and context in ("flat", "ivf"):
        bits = int(m.group(1)) if m.group(1) else 1
        fs = tok.startswith("RaBitQfs")
        if not 1 <= bits <= 9:
            p.fail(f"{tok!r} has {bits} bits per dimension; RaBitQ takes 1..9: use {'RaBitQfs' if fs else 'RaBitQ'}4")
        if fs and m.group(2) is not None:
            bbs = int(m.group(2))
            if bbs not in FASTSCAN_BLOCKS:
                p.fail(f"the block size in {tok!r} is {bbs}; faiss's fast-scan blocks are 32, 64, 96 or 128 vectors: "
                       "use RaBitQfs (32) or RaBitQfs_64")
        _set_code(p, context, "rabitq", tok)
        p.require(tok, 1, 1)
        return
    m = RE_LSH.fullmatch(tok)
    if m and context == "flat":
        nbits = d if not m.group(1) else int(m.group(1))
        if nbits is not None:
            if nbits < 1:
                p.fail(f"{tok!r} hashes to 0 bits and stores nothing: use LSH (one bit per dimension) or LSH{_pow2_le(d or 64)}")
            if not m.group(2) and d is not None and nbits > d:
                p.fail(f"{tok!r} asks for {nbits:,} bits from {d:,} dimensions: use LSH{d} or fewer, or rotate first with LSH{nbits}r")
            if nbits > MAX_DIM:
                p.fail(f"{tok!r} asks for {nbits:,} bits: use LSH{_pow2_le(d or 64)}")
        p.f.update(kind="lsh", code=tok)
        p.l2_only.append(tok)
        if m.group(3):  # trained thresholds; the rotation (r) is drawn when the index is made
            p.require(tok, 1, 1)
        return
    # something that is not a code here
    if context == "ivf":
        if RE_IVF.fullmatch(tok):
            p.fail(f"{tok!r} repeats the IVF component: one IVF per spec, as in {owner},Flat")
        if RE_HNSW.fullmatch(tok):
            p.fail(f"{owner!r} cannot store vectors as {tok!r}: use Flat, SQ8, PQ<m> or RaBitQ after it "
                   f"(for an HNSW coarse quantizer write {owner}_{tok},Flat)")
        if _is_transform(tok):
            p.fail(f"{tok!r} is a transform and must come first: use --spec {tok + ',' + owner + ',Flat'!r}")
        if RE_LSH.fullmatch(tok) or tok == "SQ0":
            p.fail(f"{owner!r} cannot store vectors as {tok!r}: use Flat, SQ8, PQ<m> or RaBitQ after it")
        p.unknown(tok, "ivf", where)
    if context == "graph":
        if _is_main(tok) or _is_transform(tok):
            p.fail(f"{owner!r} stores its vectors as Flat, SQ8 or PQ<m>, not {tok!r}: use {owner}, {owner}_SQ8 or {owner}_PQ{_pq_guess(d)}")
        p.unknown(tok, "graph", where)
    if context == "refine":
        p.fail(f"Refine({tok}) is not supported: refine with Refine(Flat), Refine(SQ8) or Refine(PQ<m>), or use RFlat")
    p.unknown(tok)


def _set_code(p: _Spec, context: str, kind: str, tok: str, **fields: Any) -> None:
    if context == "refine":
        p.f["refine"] = tok
        return
    p.f["code"] = tok
    if context == "flat":
        p.f["kind"] = {"PQ": "pq", "SQ": "sq", "rabitq": "rabitq"}[kind]
    for k, v in fields.items():
        p.f[k] = v


def _parse_refine(p: _Spec, rspec: str) -> None:
    p.f["has_refine"] = True
    if rspec == "":
        p.fail("Refine() is empty: use Refine(Flat) (or RFlat), Refine(SQ8)")
    if "," in rspec or "(" in rspec:
        p.fail(f"Refine({rspec}) is not supported: refine with Refine(Flat), Refine(SQ8) or Refine(PQ<m>), or use RFlat")
    p.f["refine"] = rspec
    _parse_code(p, rspec, p.dim, "", context="refine", owner="Refine")


def _pq_m(p: _Spec, tok: str, text: str, d: int | None, after: str) -> int:
    m = int(text)
    if m < 1:
        p.fail(f"{tok!r} has no sub-quantizers; use PQ{_pq_guess(d)} (the dimension divided by 2, 4 or 8)")
    if d is not None:
        if m > d:
            p.fail(f"{tok!r} asks for {m:,} sub-quantizers of the {d:,} dimensions{after}: use PQ{_pq_guess(d)} (at most PQ{d})")
        if d % m:
            lower, upper = _divisors_around(d, m)
            options = " or ".join(f"PQ{x}" for x in (lower, upper) if x)
            p.fail(f"{tok!r} splits the {d:,} dimensions{after} into {m:,} sub-quantizers, which does not divide them: use {options}")
    elif m > MAX_DIM:
        p.fail(f"{tok!r} asks for {m:,} sub-quantizers; use PQ48 or so")
    return m


def _pq_nbits(p: _Spec, tok: str, m: int, nbits: int) -> int:
    if nbits < 1:
        p.fail(f"{tok!r} has 0 bits per sub-quantizer (faiss crashes on it): use PQ{m} (8 bits) or PQ{m}x4")
    if nbits > FAISS_PQ_NBITS_MAX:
        p.fail(f"{tok!r} has {nbits} bits per sub-quantizer; faiss supports 1..{FAISS_PQ_NBITS_MAX}: use PQ{m} (8 bits)")
    if nbits > PQ_NBITS_MAX:
        p.fail(f"{tok!r} has {nbits} bits per sub-quantizer: training 2^{nbits} centroids each takes hours; "
               f"use PQ{m} (8 bits) or at most PQ{m}x{PQ_NBITS_MAX}")
    return nbits


def _bad_sq(p: _Spec, tok: str) -> None:
    if tok == "SQ0":
        p.fail("'SQ0' stores no bits and every vector scores the same: use SQ8, SQ4 or SQfp16")
    guess = _suggest(tok, False, "sq")
    options = "SQ4, SQ6, SQ8, SQfp16, SQbf16, SQ8_direct"
    p.fail(f"unknown scalar quantizer {tok!r}{f'; did you mean {guess!r}?' if guess else ''} (faiss has {options})")


def _misplaced(p: _Spec, before: list[str], tok: str, main: str) -> None:
    """Refuse a component after the index is complete, with the order that works."""
    head = ",".join(before)

    def valid(fixed: str) -> str | None:
        try:
            _parse(fixed, False, p.dim, False)
        except UsageError:
            return None
        return fixed

    graph = bool(RE_HNSW.fullmatch(main) or RE_NSG.fullmatch(main))
    if not (_is_main(tok) or _is_transform(tok) or RE_PQR.fullmatch(tok) or tok in ("RFlat", "IDMap", "IDMap2")):
        p.unknown(tok, "graph" if graph else "", f" after {head!r}")  # maybe a typo
    if _is_transform(tok):
        fixed = valid(",".join([tok] + before))
        use = f": use --spec {fixed!r}" if fixed else ""
        p.fail(f"{tok!r} is a transform and must come before the index{use}")
    if RE_IVF.fullmatch(tok) and not RE_IVF.fullmatch(main):
        lead = [t for t in before if _is_transform(t)]
        codes = [t for t in before if not _is_transform(t)]
        m = RE_HNSW.fullmatch(codes[0])
        if m and not cast("re.Match[str]", RE_IVF.fullmatch(tok)).group(3):  # matched just above
            fixed = valid(",".join(lead + [f"{tok}_HNSW{m.group(1)}", "Flat"]))
            if fixed:
                p.fail(f"{tok!r} cannot follow {head!r}; for IVF lists found through an HNSW graph use --spec {fixed!r}")
        fixed = valid(",".join(lead + [tok] + codes))
        if fixed:
            p.fail(f"{tok!r} must come before {codes[-1]!r}, as the coarse quantizer of its lists: use --spec {fixed!r}")
        p.fail(f"{tok!r} cannot follow {head!r}: IVF comes first, then the code of its lists, as in {tok},Flat")
    if tok == before[-1] or tok == main:
        p.fail(f"{tok!r} is repeated; a spec has one index: use --spec {head!r}")
    if tok in ("IDMap", "IDMap2"):
        p.unknown(tok)
    if graph:
        p.fail(f"{tok!r} cannot follow {head!r}: a graph stores its vectors as Flat, SQ8 or PQ<m> "
               f"(as in {main.split('_')[0]},SQ8), and only RFlat or Refine(...) may follow")
    p.fail(f"{tok!r} cannot follow {head!r}: a spec has one index (optionally after transforms such as "
           "OPQ16_64 or PCA64, and before RFlat or Refine(...))")


# --------------------------------------------------------------------------- binary specs


def _binary_grammar(spec: str) -> bool:
    return bool(spec == "BFlat" or RE_BHNSW.fullmatch(spec) or RE_BIVF.fullmatch(spec))


def _parse_binary(p: _Spec) -> None:
    spec = p.spec
    p.f["code"] = "BFlat"
    p.f["code_dim"] = p.dim
    if spec == "BFlat":
        p.f["kind"] = "flat"
        return
    m = RE_BHNSW.fullmatch(spec)
    if m:
        hm = _graph_degree(p, spec, "HNSW", m.group(1), 32, HNSW_M_RANGE, "BHNSW32")
        p.f.update(kind="hnsw", hnsw_m=hm, has_hnsw=True)
        return
    m = RE_BIVF.fullmatch(spec)
    if m:
        nlist = int(m.group(1))
        if nlist < 1:
            p.fail("'BIVF0' has no lists; use BIVF1 or more (BIVF1024 for a million vectors)")
        if nlist > INT_MAX:
            p.fail(f"'BIVF{nlist}' asks for more lists than faiss handles; use BIVF65536 or fewer")
        p.f.update(kind="ivf", ivf_nlist=nlist, has_ivf=True)
        if m.group(2) is not None:
            hm = _graph_degree(p, spec, "HNSW", m.group(2), 32, HNSW_M_RANGE, f"BIVF{nlist}_HNSW32")
            p.f.update(hnsw_m=hm, has_hnsw=True, hnsw_quantizer=True)
        p.require(f"BIVF{nlist}", nlist, CENTROID_POINTS * nlist)
        return
    # not a binary spec: say what the float spec would be in binary, or what is wrong
    if re.fullmatch(r"B(IVF\d+[kM]).*", spec):
        m = re.match(r"BIVF(\d+)([kM])", spec)
        assert m is not None  # the fullmatch above
        n = int(m.group(1)) * (1024 if m.group(2) == "k" else 1024 * 1024)
        p.fail(f"binary specs take plain numbers (faiss would read {m.group(0)!r} as BIVF{m.group(1)}): use BIVF{n}")
    if spec.startswith("BHash"):
        p.fail("'BHash' returns only the codes in the query's hash buckets, usually fewer than k: "
               f"use {BINARY_EXAMPLES}")
    if "IDMap" in spec.split(","):
        p.fail("'IDMap' is not needed: vecpipe keeps the ids itself; drop it")
    equivalent = _binary_equivalent(spec)
    if equivalent:
        p.fail(f"the vectors are binary (1 bit per dimension), so the index must be binary too: use --spec {equivalent!r}")
    if spec == "BHNSW" or spec == "BIVF":
        p.fail(f"{spec!r} needs a number: use {spec}{32 if spec == 'BHNSW' else 1024}")
    first = spec.split(",")[0]
    if "," in spec and _binary_grammar(first):
        p.fail(f"binary indexes are one component ({BINARY_EXAMPLES}); drop {spec[len(first) + 1:]!r}")
    if "," in spec:
        p.fail(f"binary indexes are one component: use {BINARY_EXAMPLES}")
    p.unknown(spec, "binary")


def _binary_equivalent(spec: str) -> str | None:
    """The binary spec for a float spec given for binary vectors (HNSW32 -> BHNSW32), if there is one."""
    try:
        info = _parse(spec, False, None, False)
    except UsageError:
        return None
    if info.transforms or info.has_refine or info.code not in ("Flat", None):
        return None
    if info.kind == "flat":
        return "BFlat"
    if info.kind == "hnsw":
        return f"BHNSW{info.hnsw_m}"
    if info.kind == "ivf":
        return f"BIVF{info.ivf_nlist}" + (f"_HNSW{info.hnsw_m}" if info.hnsw_quantizer else "")
    return None


# --------------------------------------------------------------------------- checks against data


def _check_data(info: SpecInfo, n_vectors: int, train_size: int) -> SpecInfo:
    spec = info.spec
    avail = min(train_size, n_vectors)
    have = f"you have {avail:,}" if avail == n_vectors else f"--train-size {train_size:,} allows {avail:,}"
    if info.needs_training and avail < max(1, info.min_train):
        comp, minimum, recommended = max(info.requirements, key=lambda r: (r[1], _fix_priority(r[0])),
                                         default=(spec, 1, 1))
        rec = f" (faiss recommends {recommended:,})" if recommended > minimum else ""
        fix = _train_fix(info, comp, avail)
        more = ", or raise --train-size" if avail < n_vectors else ""
        raise UsageError(f"--spec {spec!r} needs at least {minimum:,} training vectors{rec}; {have}: {fix}{more}")
    warnings = [info.warning] if info.warning else []
    if info.needs_training and info.requirements and avail < info.recommended_train:
        comp, minimum, recommended = max(info.requirements, key=lambda r: (r[2], _fix_priority(r[0])))
        what = _per_centroid(comp)
        fix = _train_fix(info, comp, avail, at_least=True)
        warnings.insert(0, f"--spec {spec!r}: {avail:,} training vectors are fewer than the {recommended:,} faiss "
                           f"recommends{what}; recall may suffer: {fix}, or train on more vectors")
    return replace(info, train_vectors=avail, warning="; ".join(warnings) if warnings else None)


def _train_fix(info: SpecInfo, comp: str, avail: int, at_least: bool = False) -> str:
    """How to make ``comp`` fit ``avail`` training vectors (at the recommended ratio when possible)."""
    fit = max(1, avail // CENTROID_POINTS)
    m = re.fullmatch(r"B?IVF\d+[kM]?(_HNSW\d*)?", comp)
    if m:
        prefix = "BIVF" if comp.startswith("B") else "IVF"
        return f"use {prefix}{_pow2_le(fit)}{m.group(1) or ''} or fewer"
    m = RE_PQ.fullmatch(comp)
    if m:
        # as many bits as the recommended 39 per centroid allows, else as many as can be trained at all
        bits = int(math.log2(fit)) if fit >= 2 else int(math.log2(max(avail, 2)))
        bits = max(1, min(bits, int(m.group(2) or 8) - 1))
        return f"use PQ{m.group(1)}x{bits}" + (" or fewer bits" if bits > 1 else "")
    if RE_PQFS.fullmatch(comp):
        return "use SQ8 or Flat codes (fast-scan PQ trains 16 centroids per sub-quantizer)"
    if RE_PQR.fullmatch(comp):
        return "use a plain PQ code instead of PQ<m>+<m2> (it trains 256 centroids)"
    if RE_OPQ.fullmatch(comp):
        return f"drop {comp} (it trains 256 centroids per sub-quantizer)"
    if RE_PCA.fullmatch(comp):
        return f"use PCA{_pow2_le(max(1, avail))} or fewer dimensions"
    return "use Flat"


def _fix_priority(comp: str) -> int:
    """Among components that need as many training vectors, the one whose fix to suggest."""
    if re.fullmatch(r"B?IVF.*", comp):
        return 3
    if RE_PQ.fullmatch(comp) or RE_PQFS.fullmatch(comp):
        return 2
    return 0 if RE_OPQ.fullmatch(comp) else 1


def _per_centroid(comp: str) -> str:
    if RE_PQ.fullmatch(comp) or RE_PQFS.fullmatch(comp) or RE_PQR.fullmatch(comp) or RE_OPQ.fullmatch(comp):
        return f" ({CENTROID_POINTS} per centroid of each PQ sub-quantizer)"
    if re.fullmatch(r"B?IVF.*", comp):
        return f" ({CENTROID_POINTS} per list)"
    return ""


def _metric_message(info: SpecInfo, metric: str) -> str:
    spec = info.spec
    if info.kind == "hnsw" and info.pq_m:
        graph = f"HNSW{info.hnsw_m}"
        alt = f"{graph}_SQ8"
        return (f"--spec {spec!r}: faiss builds {graph} over PQ codes with L2 distances whatever the metric, so "
                f"--metric {metric} would rank backwards: use --metric l2 (on normalized vectors it ranks as cos does), or --spec {alt!r}")
    if info.kind == "lsh":
        return f"--spec {spec!r}: faiss's LSH index compares with L2 (Hamming) distances only: use --metric l2, or --spec 'SQ8'"
    return (f"--spec {spec!r}: faiss implements this index (PQ<m>+<m2> refinement) for L2 distances only: "
            f"use --metric l2, or a plain PQ code such as IVF{info.ivf_nlist},PQ{info.pq_m},RFlat")


def _faiss_check(info: SpecInfo, metric: str | None) -> SpecInfo:
    """Construct the index in faiss (no training): anything faiss still refuses becomes a UsageError."""
    import faiss

    assert info.dim is not None  # check_spec's dim
    spec, dim = info.spec, int(info.dim)
    if info.binary:
        try:
            index: faiss.IndexBinary | faiss.Index = faiss.index_binary_factory(dim, spec)
        except Exception:  # noqa: BLE001  (whatever faiss raises, the user sees one line)
            raise UsageError(f"--spec {spec!r}: faiss cannot build this binary index over {dim}-bit codes; "
                             f"use {BINARY_EXAMPLES}") from None
        trained = bool(index.is_trained)
        del index
        return replace(info, needs_training=info.needs_training or not trained)
    want = faiss.METRIC_L2 if (metric == "l2" or (metric is None and "l2" in info.metrics and len(info.metrics) == 1)) \
        else faiss.METRIC_INNER_PRODUCT
    try:
        index = faiss.index_factory(dim, spec, want)
    except Exception:  # noqa: BLE001  (whatever faiss raises, the user sees one line)
        raise UsageError(f"--spec {spec!r}: faiss cannot build this index over {dim}-dimensional vectors; "
                         f"check each component against the faiss index factory syntax, as in {EXAMPLES}") from None
    got = int(index.metric_type)
    trained = bool(index.is_trained)
    del index
    if got != want:
        raise UsageError(_metric_message(info, "ip" if metric is None else metric))
    return replace(info, needs_training=info.needs_training or not trained)


def _no_polysemous(index: faiss.Index) -> None:
    import faiss

    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexPreTransform):
        _no_polysemous(idx.index)
    elif isinstance(idx, faiss.IndexRefine):
        _no_polysemous(idx.base_index)
        if idx.refine_index is not None:
            _no_polysemous(idx.refine_index)
    elif hasattr(idx, "do_polysemous_training"):
        idx.do_polysemous_training = False
    elif isinstance(idx, faiss.IndexHNSW) and idx.storage is not None:
        _no_polysemous(idx.storage)


# --------------------------------------------------------------------------- suggestions


def _templates(binary: bool, context: str) -> list[str]:
    if binary:
        return ["BFlat", "BHNSW{a}", "BIVF{a}", "BIVF{a}_HNSW{b}"]
    codes = ["Flat", "PQ{a}", "PQ{a}x{b}", "PQ{a}np", "PQ{a}x4fs", "PQ{a}+{b}", "RaBitQ", "RaBitQfs"] + list(SQ_TYPES)
    if context in ("ivf", "graph"):
        return codes
    if context == "sq":
        return list(SQ_TYPES)
    return codes + [
        "HNSW{a}", "HNSW{a}_SQ8", "HNSW{a}_PQ{b}", "IVF{a}", "IVF{a}_HNSW{b}", "LSH", "LSH{a}", "LSH{a}rt",
        "PCA{a}", "PCAR{a}", "PCAW{a}", "PCAWR{a}", "OPQ{a}", "OPQ{a}_{b}", "RR", "RR{a}", "L2norm", "RFlat",
        "Refine(Flat)",
    ]


def _suggest(tok: str, binary: bool, context: str = "") -> str | None:
    nums = re.findall(r"[0-9]+", tok)
    a = nums[0] if nums else ("32" if re.search(r"HNSW|NSG", tok, re.IGNORECASE) else "1024" if re.search(r"IVF", tok, re.IGNORECASE) else "8")
    b = nums[1] if len(nums) > 1 else ("32" if re.search(r"HNSW", tok, re.IGNORECASE) else "8")
    cands = []
    for t in _templates(binary, context):
        c = t.format(a=a, b=b)
        if c not in cands:
            cands.append(c)
    cands = [c for c in cands if c != tok]
    for c in cands:
        if c.lower() == tok.lower():
            return c
    # same letters, other digits or case
    close = difflib.get_close_matches(tok, cands, n=1, cutoff=0.6)
    if close:
        return close[0]
    close = difflib.get_close_matches(tok.upper(), [c.upper() for c in cands], n=1, cutoff=0.6)
    if close:
        return cands[[c.upper() for c in cands].index(close[0])]
    return None


def _replace_token(spec: str, tok: str, new: str) -> str:
    parts = spec.split(",")
    for i, part in enumerate(parts):
        if part == tok:
            parts[i] = new
            return ",".join(parts)
        if part.endswith("_" + tok):
            parts[i] = part[: -len(tok)] + new
            return ",".join(parts)
    return spec.replace(tok, new, 1)


# --------------------------------------------------------------------------- small helpers


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer, not {value!r}") from None
        if as_int != value:
            raise ValueError(f"{name} must be an integer, not {value!r}")
        return as_int
    return value


def _pow2_le(n: int) -> int:
    """The largest power of two not above ``n`` (1 at least)."""
    return 1 << max(0, int(n).bit_length() - 1) if n >= 1 else 1


def _pq_guess(d: int | None) -> int:
    if not d:
        return 16
    for m in (d // 4, d // 2, d // 8, d):
        if m >= 1 and d % m == 0:
            return m
    return d


def _divisors_around(d: int, m: int) -> tuple[int | None, int | None]:
    divs = [x for x in range(1, d + 1) if d % x == 0]
    lower = max((x for x in divs if x < m), default=None)
    upper = min((x for x in divs if x > m), default=None)
    return lower, upper


def _divisor_hint(prefix: str, m: int, out: int, out_text: str | None) -> str:
    lower, upper = _divisors_around(out, m)
    suffix = f"_{out_text}" if out_text else ""
    return " or ".join(f"{prefix}{x}{suffix}" for x in (lower, upper) if x)


def _spec_of(target: Any) -> str | None:
    if isinstance(target, SpecInfo):
        return target.spec
    if isinstance(target, str):
        return target
    if isinstance(target, Mapping):
        spec = target.get("spec")
        return spec if isinstance(spec, str) else None
    return None


@lru_cache(maxsize=256)
def _cached_parse(spec: str, binary: bool) -> SpecInfo | None:
    try:
        return _parse(spec, binary, None, False)
    except UsageError:
        return None


def _as_info(target: Any) -> SpecInfo | None:
    if isinstance(target, SpecInfo):
        return target
    spec = _spec_of(target)
    if spec is None:
        return None
    binary = bool(target.get("binary")) if isinstance(target, Mapping) else spec.startswith("B") and _binary_grammar(spec)
    return _cached_parse(spec, binary)

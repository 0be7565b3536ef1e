"""Measure names, parsed into :class:`Measure` values without importing ir_measures.

Two notations, for every measure of the table in :mod:`vecpipe.evaluate.registry`:

- ir_measures notation: ``nDCG@10``, ``R@100``, ``RR@10``, ``AP``, ``AP(rel=2)``, ``P(rel=2)@5``,
  ``nDCG(dcg='log2')@10``, ``IPrec@0.5``, ``NumRelRet``, ... Parsed as ir_measures parses it (a
  Python expression ``Name(key=value, ...)@value``, read with :mod:`ast`, nothing evaluated), so a
  name gives the same kind, cutoff and parameters as ``ir_measures.parse_measure`` would.
- trec_eval names: ``ndcg_cut_10`` (= nDCG@10), ``ndcg``, ``recall_100`` (= R@100), ``P_10``,
  ``map``, ``map_cut_10``, ``recip_rank``, ``success_10``, ``Rprec``, ``bpref``, ``infAP``,
  ``num_ret``, ``num_rel``, ``num_rel_ret``, ``iprec_at_recall_0.50`` (``.`` works for ``_`` before
  the number, as in trec_eval's ``-m P.10``).

Every other measure ir_measures can compute (a name or a parameter the table lacks: ``SetP``,
``RBP(rel=1)``, ``alpha_nDCG@10``, ``nDCG(dcg='exp-log2')@10``, ``P(judged_only=True)@10``,
trec_eval's ``set_F``, ...) is handed to ir_measures' providers (:mod:`vecpipe.evaluate.providers`);
ir_measures is imported only for such a name, or to explain one nobody knows.

A measure is reported under the name the user wrote. Unknown, unsupported or malformed names raise
:class:`~vecpipe.errors.UsageError` (exit status 2: a bad option value) with a one-line message
listing close names; a provider's measure whose package is not installed raises
:class:`~vecpipe.errors.ExtraError` (exit status 1) naming what to install.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vecpipe.errors import UsageError
from vecpipe.evaluate.registry import REGISTRY, SPECS, MeasureSpec

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10", "AP")

KNOWN = (", ".join(form for s in SPECS for form in s.known) + "; trec_eval names such as ndcg_cut_10, P_10, map; "
         "every other ir_measures measure through its providers (SetP, RBP(rel=1), alpha_nDCG@10, ...)")

# ir_measures names and aliases -> (table row, parameters the alias sets)
_NAMES: dict[str, tuple[MeasureSpec, Mapping[str, int]]] = {}
for _s in SPECS:
    _NAMES[_s.name] = (_s, {})
    for _alias, _preset in _s.aliases.items():
        _NAMES[_alias] = (_s, _preset)

# trec_eval names: plain ones, and bases that take a numeric suffix (ndcg_cut_10, iprec_at_recall_0.50)
_TREC: dict[str, tuple[MeasureSpec, Mapping[str, int]]] = {}
_TREC_SUFFIXED: dict[str, tuple[MeasureSpec, Mapping[str, int]]] = {}
for _s in SPECS:
    for _trec, _preset in _s.trec.items():
        if _trec.endswith("_K"):
            _TREC_SUFFIXED[_trec[:-2]] = (_s, _preset)
        else:
            _TREC[_trec] = (_s, _preset)
_TREC_RE = re.compile(r"(?P<base>" + "|".join(sorted(map(re.escape, _TREC_SUFFIXED), key=len, reverse=True))
                      + r")[._](?P<arg>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True)
class Measure:
    """A parsed measure: ``name`` as the user wrote it, ``kind`` (the ir_measures name of its row in
    the measure table: ``nDCG``, ``R``, ``RR``, ``AP``, ``P``, ``Judged``, ``Success``, ``Rprec``,
    ``Bpref``, ``infAP``, ``ERR``, ``IPrec``, ``NumRet``, ``NumRel``), ``cutoff`` (``None``: the whole
    ranking), ``rel`` (the lowest relevance level counted as relevant, trec_eval's ``-l``; measures
    without that parameter keep 1 and ignore it; ``NumRet`` without it is ``None``: every document)
    and ``recall`` (IPrec's recall level).

    A measure vecpipe does not compute has ``provider`` set (the ir_measures provider that computes
    it, :mod:`vecpipe.evaluate.providers`), ``expr`` (the text ir_measures parses) and ``summed``
    (aggregated as a sum, as ``NumQ``); its ``kind`` is ir_measures' name and ``spec`` is ``None``."""

    name: str
    kind: str
    cutoff: int | None = None
    rel: int | None = 1
    recall: float | None = None
    provider: str | None = None
    expr: str | None = None
    summed: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def spec(self) -> MeasureSpec | None:
        """Its row in the measure table (``None`` for a provider's measure)."""
        return None if self.provider is not None else REGISTRY[self.kind]

    @property
    def native(self) -> bool:
        """Computed by vecpipe's own code (the measure table)."""
        return self.provider is None

    @property
    def total(self) -> bool:
        """Aggregated as a sum over queries (``NumRet``, ``NumRel``, ``NumQ``), not the mean."""
        spec = self.spec
        return self.summed if spec is None else spec.total

    @property
    def depth(self) -> int | None:
        """How deep into a ranking it looks (its cutoff), ``None`` for the whole ranking."""
        return self.cutoff


class _Malformed(Exception):
    """Not in ``Name(key=value, ...)@value`` form."""


def parse_measure(name: str | Measure) -> Measure:
    """Parse one measure name; an unknown, unsupported or malformed one raises :class:`UsageError`."""
    if isinstance(name, Measure):
        if name.provider is not None:
            return name
        if name.kind not in REGISTRY:
            raise UsageError(f"measure {name.name!r} has kind {name.kind!r}, which vecpipe eval does not compute; known: {KNOWN}")
        return name
    text = str(name).strip()
    if not text:
        raise UsageError(f"empty measure name; known: {KNOWN}")
    trec = _parse_trec(text)
    if trec is not None:
        return trec
    try:
        ident, params, at = _parse_notation(text)
    except _Malformed:
        raise UsageError(f"unknown measure {text!r}{_suggest(text)}; known: {KNOWN}") from None
    if ident not in _NAMES:
        return _from_provider(text, ident)
    spec, preset = _NAMES[ident]
    merged: dict[str, Any] = dict(preset)
    merged.update(params)
    if at is not _NOTHING:
        merged[spec.at or "cutoff"] = at
    try:
        return _build(text, spec, merged)
    except _Unsupported:  # a parameter the table lacks (judged_only, gains, dcg='exp-log2'): a provider's measure
        return _from_provider(text, ident)


class _Unsupported(UsageError):
    """A parameter (or parameter value) the measure table does not compute."""


def _from_provider(text: str, ident: str) -> Measure:
    """A measure the table lacks, computed by an ir_measures provider; or the error for a name
    nobody knows."""
    from vecpipe.evaluate import providers

    try:
        m = providers.parse(text)
    except ImportError:
        m = None
    if m is None:
        raise _unknown(text, ident)
    found = providers.resolve(text, m)
    return Measure(name=text, kind=found.kind, cutoff=found.cutoff, rel=None, provider=found.provider, expr=found.expr,
                   summed=found.summed)


_NOTHING: Any = object()


def _parse_notation(text: str) -> tuple[str, dict[str, Any], Any]:
    """ir_measures' grammar: ``Name``, ``Name(k=v, ...)``, either followed by ``@value``."""
    import ast  # already loaded by typer's inspect; a few ms otherwise

    try:
        body = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _Malformed from None
    at: Any = _NOTHING
    if isinstance(body, ast.BinOp) and isinstance(body.op, ast.MatMult):
        at = _value(body.right)
        body = body.left
    params: dict[str, Any] = {}
    if isinstance(body, ast.Call):
        if body.args or any(k.arg is None for k in body.keywords):
            raise _Malformed
        for kw in body.keywords:
            assert kw.arg is not None
            params[kw.arg] = _value(kw.value)
        body = body.func
    if not isinstance(body, ast.Name):
        raise _Malformed
    return body.id, params, at


def _value(node: Any) -> Any:
    """A literal as ir_measures reads it (numbers, strings, True/False/None, dicts of those)."""
    import ast

    if (isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool))) or (
            isinstance(node, ast.Constant) and node.value is None):
        return node.value
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    return _Unreadable(ast.unparse(node))


@dataclass(frozen=True)
class _Unreadable:
    """A parameter value that is not a literal (``nDCG@x``): refused by the checks below."""

    text: str

    def __repr__(self) -> str:
        return self.text


def _parse_trec(text: str) -> Measure | None:
    if text in _TREC:
        spec, preset = _TREC[text]
        return _build(text, spec, dict(preset))
    if text in _TREC_SUFFIXED and text not in _NAMES:  # P alone is ir_measures' P
        example = "0.50" if _TREC_SUFFIXED[text][0].at == "recall" else "10"
        raise UsageError(f"measure {text!r} needs a cutoff, as in {text}_{example}")
    if not _TREC_SUFFIXED:
        return None
    match = _TREC_RE.fullmatch(text)
    if match is None:
        return None
    spec, preset = _TREC_SUFFIXED[match["base"]]
    arg = match["arg"]
    params: dict[str, Any] = dict(preset)
    if spec.at == "recall":
        params["recall"] = float(arg)
    elif arg.isdigit():
        params["cutoff"] = int(arg)
    else:
        params["cutoff"] = _Unreadable(arg)
    return _build(text, spec, params)


def _build(text: str, spec: MeasureSpec, params: dict[str, Any]) -> Measure:
    """Check the parameters against the table row; the :class:`Measure`."""
    kind = spec.name
    cutoff = params.pop("cutoff", None)
    recall = params.pop("recall", None)
    if cutoff is not None:
        if spec.at != "cutoff":
            what = "a recall level, as in IPrec@0.5" if spec.at == "recall" else "no cutoff"
            raise UsageError(f"measure {text!r}: {kind} takes {what}; known: {KNOWN}")
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1:
            raise UsageError(f"measure {text!r}: the cutoff must be a positive integer, as in {kind}@10")
    if recall is not None:
        if spec.at != "recall":
            raise UsageError(f"measure {text!r}: {kind} takes no recall level; known: {KNOWN}")
        if isinstance(recall, bool) or not isinstance(recall, (int, float)) or not 0 <= recall <= 1:
            raise UsageError(f"measure {text!r}: the recall level must be a number from 0 to 1, as in {kind}@0.5")
        recall = float(recall)
    if spec.at_required and (cutoff if spec.at == "cutoff" else recall) is None:
        example = "0.5" if spec.at == "recall" else "10"
        what = "a recall level" if spec.at == "recall" else "a cutoff"
        raise UsageError(f"measure {text!r} needs {what}, as in {kind}@{example}")
    rel = spec.rel_default
    for key, value in params.items():
        if key == "rel" and spec.rel:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(
                    f"measure {text!r}: rel must be a non-negative integer relevance level, as in {kind}(rel=2)")
            rel = value
        elif key in spec.choices:
            choices = spec.choices[key]
            if value not in choices:
                raise _Unsupported(f"measure {text!r}: {key}={value!r} is not supported "
                                   f"(supported: {', '.join(map(str, choices))})")
        else:
            raise _Unsupported(f"measure {text!r}: parameter {key!r} is not supported; known: {KNOWN}")
    if not spec.rel:
        rel = 1
    return Measure(name=text, kind=kind, cutoff=cutoff, rel=rel, recall=recall)


def parse_measures(names: Iterable[str | Measure] | str | Measure | None = None) -> list[Measure]:
    """Parse measure names (``None``: the defaults ``nDCG@10 R@100 RR@10 AP``), dropping repeats.

    A string may hold several names separated by spaces or commas (outside parentheses).
    """
    if names is None:
        names = DEFAULT_MEASURES
    if isinstance(names, (str, Measure)):
        names = [names]
    out: list[Measure] = []
    seen: set[str] = set()
    for item in names:
        for text in _split(item) if isinstance(item, str) else [item]:
            m = parse_measure(text)
            if m.name not in seen:
                seen.add(m.name)
                out.append(m)
    if not out:
        raise UsageError(f"no measure given; known: {KNOWN}")
    return out


def _split(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth == 0 and (ch == "," or ch.isspace()):
            if cur:
                parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return parts


# ------------------------------------------------------------------------------------------ errors

_SYNONYMS = {"mrr": "RR", "recall": "R", "precision": "P", "map": "AP", "ndcg": "nDCG", "success": "Success",
             "bpref": "Bpref", "rprec": "Rprec", "err": "ERR", "infap": "infAP", "iprec": "IPrec",
             "judged": "Judged", "numret": "NumRet", "numrel": "NumRel", "numrelret": "NumRelRet"}


def _unknown(text: str, ident: str) -> UsageError:
    """The error for a well-formed name that neither the table nor ir_measures knows, with close names."""
    return UsageError(f"unknown measure {text!r}{_suggest(text)}; known: {KNOWN}")


def _suggest(text: str) -> str:
    """`` (did you mean nDCG@10?)`` for a near miss, else ``""``."""
    import difflib

    match = re.match(r"[^@(]*", text)
    base = match.group(0) if match else text
    rest = text[len(base):]
    from vecpipe.evaluate.providers import known_names

    names = {n.lower(): n for n in known_names() if n.isascii()}
    names.update({n.lower(): n for n in _NAMES})
    names.update({s.name.lower(): s.name for s in SPECS})  # nDCG before its alias NDCG
    fixed = names.get(base.lower()) or _SYNONYMS.get(base.lower())
    if fixed is not None:
        return "" if fixed == base else f" (did you mean {fixed}{rest}?)"
    # near misses: ir_measures names first, then trec_eval names
    trec = {**{n.lower(): n for n in _TREC}, **{f"{b}_K".lower(): f"{b}_K" for b in _TREC_SUFFIXED}}
    found: list[str] = []
    for pool, cutoff in ((names, 0.75), (trec, 0.75), (names, 0.6)):
        if found:
            break
        for close in difflib.get_close_matches(base.lower(), list(pool), n=3, cutoff=cutoff):
            hit = pool[close]
            if pool is trec:
                hit = f"{hit[:-2]}_10" if hit.endswith("_K") else hit
            else:
                hit = f"{hit}{rest}"
            if hit not in found and hit != text:
                found.append(hit)
    if not found:
        return ""
    return f" (did you mean {' or '.join(found[:3])}?)"

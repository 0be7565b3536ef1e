"""Measure names in ir_measures notation (``nDCG@10``, ``R@100``, ``RR@10``, ``AP``, ``P@10``,
``Judged@10``), parsed with :func:`ir_measures.parse_measure` into :class:`Measure` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from vecpipe.errors import InputError

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10", "AP")

KNOWN = "nDCG@k, nDCG, R@k, R, RR@k, RR, AP, AP@k, P@k, Judged@k, Judged"

# measure -> parameters (besides cutoff) we compute, and whether a cutoff is required
_SUPPORTED = {
    "nDCG": ({"dcg": ("log2",)}, False),
    "R": ({"rel": None}, False),
    "RR": ({"rel": None}, False),
    "AP": ({"rel": None}, False),
    "P": ({"rel": None}, True),
    "Judged": ({}, False),
}


@dataclass(frozen=True)
class Measure:
    """A parsed measure: ``name`` as the user wrote it, ``kind`` (``nDCG``, ``R``, ``RR``, ``AP``,
    ``P``, ``Judged``), ``cutoff`` (``None``: the whole ranking) and ``rel`` (the lowest relevance
    level counted as relevant, trec_eval's ``-l``; nDCG uses graded gains and ignores it)."""

    name: str
    kind: str
    cutoff: int | None = None
    rel: int = 1

    def __str__(self) -> str:
        return self.name


def parse_measure(name: str) -> Measure:
    """Parse one measure name; an unknown or unsupported name raises :class:`InputError`."""
    if isinstance(name, Measure):
        return name
    text = str(name).strip()
    if not text:
        raise InputError(f"empty measure name; known: {KNOWN}")
    import ir_measures  # lazy: keeps --help fast

    try:
        parsed = ir_measures.parse_measure(text)
    except (NameError, ValueError, SyntaxError, TypeError, AttributeError):
        raise InputError(f"unknown measure {text!r}{_suggest(text)}; known: {KNOWN}") from None
    kind = parsed.NAME
    if kind not in _SUPPORTED:
        raise InputError(f"measure {text!r} is not supported by vecpipe eval; known: {KNOWN}")
    allowed, needs_cutoff = _SUPPORTED[kind]
    params = dict(parsed.params)
    cutoff = params.pop("cutoff", None)
    if cutoff is not None:
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1:
            raise InputError(f"measure {text!r}: the cutoff must be a positive integer, as in {kind}@10")
    elif needs_cutoff:
        raise InputError(f"measure {text!r} needs a cutoff, as in {kind}@10")
    rel = 1
    for key, value in params.items():
        if key not in allowed:
            raise InputError(f"measure {text!r}: parameter {key!r} is not supported; known: {KNOWN}")
        choices = allowed[key]
        if choices is not None and value not in choices:
            raise InputError(f"measure {text!r}: {key}={value!r} is not supported (supported: {', '.join(map(str, choices))})")
        if key == "rel":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"measure {text!r}: rel must be a non-negative integer relevance level, as in {kind}(rel=2)")
            rel = value
    return Measure(name=text, kind=kind, cutoff=cutoff, rel=rel)


def parse_measures(names: Iterable[str] | str | None = None) -> list[Measure]:
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
        raise InputError(f"no measure given; known: {KNOWN}")
    return out


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
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


def _suggest(text: str) -> str:
    base, _, rest = text.partition("@")
    aliases = {"ndcg": "nDCG", "r": "R", "recall": "R", "rr": "RR", "mrr": "RR", "map": "AP", "ap": "AP",
               "p": "P", "precision": "P", "judged": "Judged"}
    fixed = aliases.get(base.lower())
    if fixed and fixed != base:
        return f" (did you mean {fixed}{'@' + rest if rest else ''}?)"
    return ""

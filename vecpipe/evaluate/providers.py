"""Measures vecpipe does not compute itself, computed by ir_measures' providers.

vecpipe's own code (:mod:`vecpipe.evaluate.registry`) computes the trec_eval measures it lists, fast
and identical to trec_eval. Every other measure ir_measures can compute (``SetP``, ``SetF``,
``NumQ``, ``RBP(rel=1)``, ``alpha_nDCG@10``, ``nDCG(dcg='exp-log2')@10``, ``P(judged_only=True)@10``,
...) is handed to ir_measures' default pipeline (``ir_measures.DefaultPipeline``), which sends each
measure to the first installed provider that supports it, exactly as ``ir_measures.iter_calc`` does:
the numbers are ir_measures' own.

Providers and what they need (ir_measures 0.4):

- ``pytrec_eval`` (``SetP``, ``SetR``, ``SetF``, ``SetAP``, ``NumQ``, the ``judged_only`` and
  ``gains`` variants of the trec_eval measures): pytrec-eval-terrier, which ir_measures itself
  requires (installed with vecpipe).
- ``judged``, ``msmarco``, ``accuracy``, ``compat``: pure Python, inside ir_measures.
- ``gdeval`` (``nDCG(dcg='exp-log2')@k``): the ``perl`` program.
- ``cwl_eval`` (``RBP(rel=...)``, ``SDCG``, ``BPM``, ``INST``, ``INSQ``, ``NERR8``..``NERR11``):
  the cwl-eval package; ``pyndeval`` (``alpha_nDCG``, ``ERR_IA``, ``nERR_IA``, ``NRBP``, ``P_IA``,
  ``AP_IA``, ``StRecall``): the pyndeval package. These two are the optional extra
  ``vecpipe[measures]``.
- ``ranx`` (only ``nDCG(dcg='exp-log2')`` over the whole ranking falls to it): the ranx package, a
  large install left out of the extra (ranx 0.3.21 also fails under pandas 3 inside ir_measures;
  vecpipe reports such a provider failure in one line).

A measure a provider supports but whose package is missing is refused before any work with one line
naming what to install (:class:`~vecpipe.errors.ExtraError`, exit status 1). ir_measures is imported
only when a measure needs it: parsing vecpipe's own measures never imports it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vecpipe.errors import ExtraError, UsageError, VecpipeError

MEASURES_EXTRA = "pip install 'vecpipe[measures]'"

#: provider -> (what it needs, how to install it)
BACKENDS: dict[str, tuple[str, str]] = {
    "pytrec_eval": ("the pytrec-eval-terrier package", "pip install pytrec-eval-terrier"),
    "cwl_eval": ("the cwl-eval package", MEASURES_EXTRA),
    "pyndeval": ("the pyndeval package", MEASURES_EXTRA),
    "ranx": ("the ranx package", "pip install ranx"),
    "gdeval": ("the perl program", "install perl (https://www.perl.org)"),
}


@dataclass(frozen=True)
class ProviderMeasure:
    """What :func:`resolve` finds: ir_measures' text of the measure (``expr``, parsed again by
    :func:`compute`), its name, its cutoff (``None`` if none), whether it aggregates as a sum and
    the provider that computes it here."""

    expr: str
    kind: str
    cutoff: int | None
    summed: bool
    provider: str


def _irm() -> Any:
    import ir_measures  # ~100 ms: only for measures vecpipe does not compute

    return ir_measures


def known_names() -> list[str]:
    """Every measure name ir_measures knows (empty if it cannot be imported)."""
    try:
        return sorted(_irm().measures.registry)
    except ImportError:
        return []


def forms(name: str) -> list[str]:
    """The forms of measure ``name`` the default pipeline's providers accept, as ir_measures writes
    them (``RBP(rel=REQUIRED,p=ANY)``)."""
    out: list[str] = []
    for provider in _irm().DefaultPipeline.providers:
        for m in provider.SUPPORTED_MEASURES:
            text = str(m)
            if name == m.NAME and text not in out:
                out.append(text)
    return out


def _clean(message: str) -> str:
    """ir_measures' assertion text on one line, without object addresses."""
    message = re.sub(r"<object object at 0x[0-9a-f]+>", "missing", message)
    return " ".join(message.split())


def parse(text: str) -> Any | None:
    """ir_measures' measure for ``text`` (its notation, or a trec_eval name naming one measure), or
    ``None`` when ir_measures does not know the name. Invalid parameters raise :class:`UsageError`."""
    irm = _irm()
    ident = re.match(r"[^@(]*", text)
    base = ident.group(0) if ident else text
    if base in irm.measures.registry:
        try:
            m = irm.parse_measure(text)
            m.validate_params()
        except (AssertionError, ValueError, TypeError, SyntaxError, NameError, KeyError, AttributeError) as exc:
            shown = ", ".join(forms(base)) or base
            raise UsageError(f"measure {text!r}: {_clean(str(exc)) or 'invalid parameters'}; "
                             f"forms ir_measures computes: {shown}") from None
        return m
    try:
        found = irm.parse_trec_measure(text)
    except (ValueError, KeyError, AssertionError, TypeError, IndexError):
        return None
    if len(found) != 1:
        return None
    m = found[0]
    m.validate_params()
    return m


def resolve(text: str, measure: Any) -> ProviderMeasure:
    """The provider that computes ``measure`` (ir_measures' parsed measure) here, as the default
    pipeline picks it: the first that supports it and is installed. :class:`UsageError` when no
    provider supports it; :class:`ExtraError` when those that do are not installed."""
    irm = _irm()
    supporting = [p for p in irm.DefaultPipeline.providers if p.supports(measure)]
    if not supporting:
        shown = ", ".join(forms(measure.NAME)) or "none"
        raise UsageError(f"measure {text!r}: no ir_measures provider computes it with these parameters; "
                         f"forms they compute: {shown}")
    for p in supporting:
        if p.is_available():
            cutoff = measure.params.get("cutoff")
            return ProviderMeasure(expr=str(text), kind=measure.NAME,
                                   cutoff=cutoff if isinstance(cutoff, int) and not isinstance(cutoff, bool) else None,
                                   summed=type(measure.aggregator()).__name__ == "SumAgg", provider=p.NAME)
    first = supporting[0].NAME
    what, how = BACKENDS.get(first, (f"ir_measures' {first} provider", f"pip install 'ir-measures[{first}]'"))
    raise ExtraError(f"measure {text!r} is computed by ir_measures' {first} provider, which needs {what}: {how}")


def _measure(expr: str) -> Any:
    m = parse(expr)
    assert m is not None  # resolved before
    return m


def compute(exprs: Sequence[str], provider_names: Sequence[str], qids: Sequence[str],
            run: tuple[list[str], list[str], list[float]],
            qrels: tuple[list[str], list[str], list[int]]) -> tuple[np.ndarray, list[float]]:
    """The measures ``exprs``, each computed by its provider (``provider_names``, as :func:`resolve`
    found them), over ``run`` (qid, docid, score lists: the rows of qrels queries) and ``qrels``
    (qid, docid, relevance lists): per-query values (``[len(qids), len(exprs)]``, rows in ``qids``
    order) and each measure's aggregate as ir_measures computes it (``calc_aggregate``: the
    measure's aggregator over the values its provider gives).

    Each provider is called on its own measures, as ``ir_measures.<provider>.iter_calc`` (and the
    default pipeline asked for those measures alone) does. A query a provider gives no value shows
    0 (the measures' default): every provider gives each qrels query a value except ``accuracy``,
    whose mean is over the queries it scores (those with a relevant document retrieved). A
    provider's failure raises :class:`~vecpipe.errors.VecpipeError` in one line."""
    parsed = [_measure(e) for e in exprs]
    qrels_d: dict[str, dict[str, int]] = {}
    for q, d, r in zip(*qrels):
        qrels_d.setdefault(q, {})[d] = int(r)
    run_d: dict[str, dict[str, float]] = {}
    for q, d, s in zip(*run):
        run_d.setdefault(q, {})[d] = float(s)
    row = {q: i for i, q in enumerate(qids)}
    out = np.zeros((len(qids), len(exprs)), dtype=np.float64)
    agg = [0.0] * len(exprs)
    for name in dict.fromkeys(provider_names):
        columns: dict[Any, list[int]] = {}
        for j, (m, p) in enumerate(zip(parsed, provider_names)):
            if p == name:
                columns.setdefault(m, []).append(j)
        aggregators = {m: m.aggregator() for m in columns}
        try:
            for metric in _irm().providers.registry[name].iter_calc(list(columns), qrels_d, run_d):
                i = row.get(metric.query_id)
                if i is None or metric.measure not in columns:
                    continue
                aggregators[metric.measure].add(metric.value)
                for j in columns[metric.measure]:
                    out[i, j] = float(metric.value)
        except Exception as exc:  # noqa: BLE001 - any failure inside a third-party provider becomes one line
            text = " ".join(str(exc).split()) or type(exc).__name__
            shown = ", ".join(exprs[j] for cols in columns.values() for j in cols)
            raise VecpipeError(f"ir_measures' {name} provider failed computing {shown} ({type(exc).__name__}: {text[:300]}); "
                               "check that provider's package versions, or leave these measures out") from None
        for m, cols in columns.items():
            value = aggregators[m].result()
            for j in cols:
                agg[j] = float(value)
    return out, agg

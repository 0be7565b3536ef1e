"""Plain renderings of an :class:`~vecpipe.evaluate.metrics.EvalResult` (TSV, JSON); no rich.

The terminal table belongs to the command line.
"""

from __future__ import annotations

import json

from vecpipe.evaluate.metrics import EvalResult


def _fmt(value: float, digits: int, count: bool = False) -> str:
    return f"{value:.0f}" if count else f"{value:.{digits}f}"


def format_tsv(result: EvalResult, per_query: bool = False, digits: int = 4) -> str:
    """Tab-separated text ending in a newline.

    Without ``per_query``: a header ``measure<TAB>value`` and one line per measure (the mean; the
    sum, as an integer, for the count measures ``NumRet``, ``NumRel``, ``NumRelRet``).
    With ``per_query``: header ``qid<TAB>measure<TAB>value``, one line per qrels query and measure
    (qrels order; missing queries score 0), then the means under qid ``all`` (as trec_eval ``-q``).
    """
    lines: list[str] = []
    agg = result.aggregate
    counts = [m.total for m in result.measures]  # NumRet, NumRel: integers, summed
    if per_query:
        lines.append("qid\tmeasure\tvalue")
        names = result.names
        for qid, row in zip(result.qids, result.values.tolist()):
            for name, value, count in zip(names, row, counts):
                lines.append(f"{qid}\t{name}\t{_fmt(value, digits, count)}")
        for (name, value), count in zip(agg.items(), counts):
            lines.append(f"all\t{name}\t{_fmt(value, digits, count)}")
    else:
        lines.append("measure\tvalue")
        for (name, value), count in zip(agg.items(), counts):
            lines.append(f"{name}\t{_fmt(value, digits, count)}")
    return "\n".join(lines) + "\n"


def to_dict(result: EvalResult, per_query: bool = False) -> dict:
    """A JSON-ready dict: means, query counts and optionally the per-query values."""
    out: dict = {
        "measures": result.aggregate,
        "queries": result.n_qrels_queries,
        "missing_queries": result.missing_queries,
        "run_queries": result.n_run_queries,
    }
    if per_query:
        out["per_query"] = result.per_query
    return out


def format_json(result: EvalResult, per_query: bool = False, indent: int | None = 2) -> str:
    """JSON text (one document, newline-terminated) of :func:`to_dict`."""
    return json.dumps(to_dict(result, per_query), indent=indent) + "\n"

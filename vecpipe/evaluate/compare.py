"""Comparing runs as a paper does: every run's means, and paired tests of each against a baseline.

For each measure and each run other than the baseline, the per-query values (every qrels query;
queries a run lacks score 0, as in eval) are tested against the baseline's with a two-sided paired
test; the p-values of one measure are corrected together for the number of runs compared (Holm by
default). A difference is marked significant when its corrected p-value is at most alpha.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.evaluate.metrics import EvalResult, evaluate
from vecpipe.evaluate.significance import DEFAULT_PERMUTATIONS, correct, mean_ci, p_value


@dataclass
class Comparison:
    names: list[str]
    measures: list[str]
    means: np.ndarray  # [runs, measures]
    baseline: int
    test: str
    correction: str
    alpha: float
    seed: int
    permutations: int
    n_queries: int
    #: [run][measure] -> {"p": raw p, "p_corrected": ..., "mean_diff", "ci_low", "ci_high", "significant"}
    tests: list[list[dict[str, Any] | None]] = field(default_factory=list)
    qids: list[str] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)  # per run: [queries, measures]
    per_query: bool = False
    #: per run: mean R@k for k = 1..its depth (when compare() was asked for them, for plots)
    recall_curves: list[np.ndarray] = field(default_factory=list)


def compare(runs: list[pa.Table], names: list[str], qrels: pa.Table, measures: list[str], baseline: int = 0,
            test: str = "t", correction: str = "holm", alpha: float = 0.05, seed: int = 0,
            permutations: int = DEFAULT_PERMUTATIONS, qrels_name: str = "qrels", recall_curves: bool = False) -> Comparison:
    results: list[EvalResult] = [evaluate(run, qrels, measures, run_name=name, qrels_name=qrels_name, recall_curve=recall_curves)
                                 for run, name in zip(runs, names)]
    base = results[baseline]
    comp = Comparison(names=names, measures=base.names, means=np.array([[r.aggregate[m] for m in base.names] for r in results]),
                      baseline=baseline, test=test, correction=correction, alpha=alpha, seed=seed, permutations=permutations,
                      n_queries=base.n_qrels_queries)
    comp.tests = [[None] * len(base.names) for _ in results]
    comp.qids, comp.values = base.qids, [r.values for r in results]
    if recall_curves:
        comp.recall_curves = [r.recall_curve for r in results if r.recall_curve is not None]
    others = [i for i in range(len(results)) if i != baseline]
    for j, _m in enumerate(base.names):
        x = base.values[:, j]
        raw = [p_value(test, x, results[i].values[:, j], permutations, seed) for i in others]
        adjusted = correct(raw, correction)
        for i, p, pc in zip(others, raw, adjusted):
            mean, lo, hi = mean_ci(x, results[i].values[:, j])
            comp.tests[i][j] = {"p": p, "p_corrected": pc, "mean_diff": mean, "ci_low": lo, "ci_high": hi,
                                "significant": bool(pc <= alpha)}
    return comp


def _cell(comp: Comparison, i: int, j: int, digits: int = 4) -> str:
    value = f"{comp.means[i, j]:.{digits}f}"
    t = comp.tests[i][j]
    if t is None:
        return value
    return value + ("*" if t["significant"] else "")


def _rows(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["run"] + comp.measures
    rows = [[name] + [_cell(comp, i, j) for j in range(len(comp.measures))] for i, name in enumerate(comp.names)]
    return head, rows


def _footer(comp: Comparison) -> str:
    test = {"t": "paired t-test", "randomization": f"Fisher randomization test ({comp.permutations} permutations, seed {comp.seed})",
            "wilcoxon": "Wilcoxon signed-rank test"}[comp.test]
    corr = "" if comp.correction == "none" else f", {comp.correction}-corrected"
    return (f"* differs from the baseline {comp.names[comp.baseline]} at p <= {comp.alpha} ({test}, two-sided{corr}); "
            f"{comp.n_queries} queries")


def format_table(comp: Comparison) -> str:
    head, rows = _rows(comp)
    widths = [max(len(r[k]) for r in [head] + rows) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))).rstrip() for r in [head] + rows]
    return "\n".join(lines) + "\n" + _footer(comp) + "\n"


def format_tsv(comp: Comparison) -> str:
    """A row per run and measure; with per-query values a ``qid`` column too (``all`` on the means'
    rows, which come after each run's per-query rows, as trec_eval -q prints them)."""
    q = ["qid"] if comp.per_query else []
    head = ["run"] + q + ["measure", "value", "baseline", "mean_diff", "ci_low", "ci_high", "p", "p_corrected", "significant"]
    out = ["\t".join(head)]
    for i, name in enumerate(comp.names):
        if comp.per_query:
            for qid, row in zip(comp.qids, comp.values[i].tolist()):
                for m, v in zip(comp.measures, row):
                    out.append("\t".join([name, qid, m, f"{v:.6f}"] + [""] * 7))
        for j, m in enumerate(comp.measures):
            t = comp.tests[i][j]
            if t is None:
                extra = ["yes"] + [""] * 6
            else:
                extra = ["no", f"{t['mean_diff']:.6f}", f"{t['ci_low']:.6f}", f"{t['ci_high']:.6f}", f"{t['p']:.6g}",
                         f"{t['p_corrected']:.6g}", "yes" if t["significant"] else "no"]
            out.append("\t".join([name] + (["all"] if comp.per_query else []) + [m, f"{comp.means[i, j]:.6f}"] + extra))
    return "\n".join(out) + "\n"


def to_dict(comp: Comparison) -> dict[str, Any]:
    return {"baseline": comp.names[comp.baseline], "test": comp.test, "correction": comp.correction, "alpha": comp.alpha,
            "seed": comp.seed if comp.test == "randomization" else None,
            "permutations": comp.permutations if comp.test == "randomization" else None, "queries": comp.n_queries,
            "runs": [{"name": name, "measures": {m: float(comp.means[i, j]) for j, m in enumerate(comp.measures)},
                      "tests": None if i == comp.baseline else {m: comp.tests[i][j] for j, m in enumerate(comp.measures)},
                      **({"per_query": {qid: dict(zip(comp.measures, row)) for qid, row in zip(comp.qids, comp.values[i].tolist())}}
                         if comp.per_query else {})}
                     for i, name in enumerate(comp.names)]}


def format_json(comp: Comparison) -> str:
    return json.dumps(to_dict(comp), indent=2) + "\n"


def format_markdown(comp: Comparison) -> str:
    head, rows = _rows(comp)
    rows = [[r[0]] + [c.replace("*", "\\*") for c in r[1:]] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + _footer(comp).replace("*", "\\*", 1) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("$", "\\$"), ("#", "\\#"), ("_", "\\_"),
                 ("{", "\\{"), ("}", "\\}"), ("~", "\\textasciitilde{}"), ("^", "\\textasciicircum{}")):
        text = text.replace(a, b)
    return text


def format_latex(comp: Comparison) -> str:
    head, rows = _rows(comp)
    cols = "l" + "r" * (len(head) - 1)
    out = [f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(_latex_escape(h) for h in head) + " \\\\", "\\midrule"]
    for r in rows:
        cells = [_latex_escape(r[0])] + [c.replace("*", "$^{*}$") for c in r[1:]]
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "% " + _footer(comp)]
    return "\n".join(out) + "\n"


RENDERERS = {"table": format_table, "tsv": format_tsv, "json": format_json, "markdown": format_markdown, "latex": format_latex}

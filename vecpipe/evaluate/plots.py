"""Figures of evaluations and comparisons, drawn with matplotlib (the optional extra ``[plot]``).

Each figure is built by a function that returns a :class:`matplotlib.figure.Figure` (tests count its
panels) and written by :func:`png_bytes`: the Agg canvas, no pyplot and no global state, and no
timestamp or software version in the PNG, so the same inputs give the same bytes.

- :func:`eval_figure`: the per-query distribution of each measure, one panel per measure
  (a histogram of the per-query values, the mean marked).
- :func:`compare_figure`: per-query differences against the baseline, sorted, one panel per other
  run (one line per measure, zero marked); then one panel of recall@k curves, k = 1 .. each run's
  depth, one line per run.
- :func:`tradeoff_figure`: quality against size and against speed (``bench/bench_compress.py``).

matplotlib is imported by these functions only; :func:`require` turns its absence into one line
naming the extra.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vecpipe.errors import ExtraError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vecpipe.evaluate.compare import Comparison
    from vecpipe.evaluate.metrics import EvalResult

PLOT_EXTRA = "pip install 'vecpipe[plot]'"
PANEL = (4.2, 3.0)  # inches per panel
DPI = 100


def require() -> None:
    """Refuse, in one line naming the extra, when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ExtraError(f"--plot draws with matplotlib, which is not installed: {PLOT_EXTRA}") from None


def _figure(n_panels: int, cols: int = 3, title: str | None = None) -> tuple[Figure, list[Any]]:
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(cols, n_panels))
    rows = max(1, math.ceil(n_panels / cols))
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows + (0.4 if title else 0)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    if title:
        fig.suptitle(title, fontsize=11)
    return fig, axes


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg), without metadata that changes between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def eval_figure(result: EvalResult, title: str | None = None) -> Figure:
    """One panel per measure: a histogram of its per-query values, the mean (sum for count
    measures: the mean per query is marked) as a dashed line."""
    n = len(result.measures)
    fig, axes = _figure(n, title=title or f"per-query values, {result.n_qrels_queries} queries")
    for ax, m, col in zip(axes, result.measures, result.values.T):
        lo, hi = (float(col.min()), float(col.max())) if len(col) else (0.0, 1.0)
        unit = lo >= 0 and hi <= 1 and not m.total
        bins = np.linspace(0, 1, 21) if unit else min(30, max(1, len(np.unique(col))))
        ax.hist(col, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.5)
        mean = float(col.mean()) if len(col) else 0.0
        ax.axvline(mean, color="#C44E52", linestyle="--", linewidth=1.2, label=f"mean {mean:.4f}")
        ax.set_title(m.name, fontsize=10)
        ax.set_xlabel("value per query", fontsize=8)
        ax.set_ylabel("queries", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper center")
    return fig


def compare_figure(comp: Comparison) -> Figure:
    """One panel per run other than the baseline: its per-query differences from the baseline,
    each measure sorted ascending (x: the queries' share, 0..1), zero marked; then one panel of
    mean recall@k, k = 1 .. each run's depth (``comp.recall_curves``), one line per run."""
    others = [i for i in range(len(comp.names)) if i != comp.baseline]
    curves = getattr(comp, "recall_curves", None) or []
    n = len(others) + (1 if curves else 0)
    base = comp.names[comp.baseline]
    fig, axes = _figure(n, cols=min(3, n), title=f"against the baseline {base}, {comp.n_queries} queries")
    x = (np.arange(comp.n_queries) + 0.5) / max(comp.n_queries, 1)
    for ax, i in zip(axes, others):
        diff = comp.values[i] - comp.values[comp.baseline]
        for j, m in enumerate(comp.measures):
            ax.plot(x, np.sort(diff[:, j]), linewidth=1.3, label=f"{m} ({comp.means[i, j] - comp.means[comp.baseline, j]:+.4f})")
        ax.axhline(0.0, color="black", linewidth=0.7)
        ax.set_title(f"{comp.names[i]} − {base}", fontsize=10)
        ax.set_xlabel("queries, sorted by difference", fontsize=8)
        ax.set_ylabel("difference per query", fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    if curves:
        ax = axes[-1]
        for name, curve in zip(comp.names, curves):
            k = np.arange(1, len(curve) + 1)
            ax.plot(k, curve, linewidth=1.3, label=name)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title("recall@k", fontsize=10)
        ax.set_xlabel("k (log scale)", fontsize=8)
        ax.set_ylabel("mean R@k", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def tradeoff_figure(rows: Sequence[dict[str, Any]], quality: str = "nDCG@10", size: str = "bytes/vec",
                    speed: str = "queries/s", title: str | None = None) -> Figure:
    """Two panels: ``quality`` against ``size`` (log scale) and against ``speed`` (log scale), one
    labelled point per row (``row["method"]``)."""
    fig, axes = _figure(2, cols=2, title=title)
    for ax, key, label in ((axes[0], size, f"{size} (log scale)"), (axes[1], speed, f"{speed} (log scale)")):
        for r in rows:
            if key not in r or quality not in r:
                continue
            marker = "s" if "rescore" in str(r["method"]) else "o"
            ax.scatter([r[key]], [r[quality]], marker=marker, s=28)
            ax.annotate(str(r["method"]), (r[key], r[quality]), fontsize=6, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.35, y=0.08)  # room for the labels of the outermost points
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel(quality, fontsize=8)
        ax.set_title(f"{quality} against {key}", fontsize=10)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3)
    return fig

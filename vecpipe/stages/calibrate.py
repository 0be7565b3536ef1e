"""The calibrate and cut stages: fit a score-to-probability map on training qrels, and cut runs with it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpipe.errors import InputError, UsageError
from vecpipe.formats import metadata, registry
from vecpipe.formats.runs import DEFAULT_TAG, check_tag
from vecpipe.pipeline.runner import Context, Stage, inp, opt, rec

SCORES = ("raw", "prob")


def run_meta(table: Any) -> dict[str, Any]:
    return metadata.read(table.schema) if table.schema.metadata else {}


@dataclass
class Calibrate(Stage):
    """Fit a query-conditioned map from a run's scores to probabilities of relevance (training qrels)."""

    name = "calibrate"
    output_kind = registry.CALIBRATION

    run_input: str = inp("-")
    qrels: str = inp(None)
    output: str | None = opt(None)
    depth: int | None = rec(None)

    def inputs(self) -> dict[str, str | None]:
        return {"run": self.run_input, "qrels": self.qrels}

    def check(self) -> None:
        if self.qrels is None:
            raise UsageError("calibrate needs --qrels TRAIN_QRELS")
        if self.depth is not None and self.depth < 1:
            raise UsageError("--depth must be at least 1")

    def run(self, ctx: Context) -> Any:
        from vecpipe.evaluate.calibration import fit, labels_of, run_arrays
        from vecpipe.formats.qrels import read_qrels
        from vecpipe.formats.runs import read_run, refuse_duplicate_pairs

        name = "<stdin>" if self.run_input == "-" else self.run_input
        table = read_run(self.run_input)
        refuse_duplicate_pairs(table, name)
        if table.num_rows == 0:
            raise InputError(f"{name}: the run is empty; nothing to calibrate on")
        meta = run_meta(table)
        run = run_arrays(table, name)
        y, judged = labels_of(run, read_qrels(self.qrels))
        if not judged.any():
            raise InputError(f"{name}: none of its queries is in {self.qrels}; give the qrels of the run's (training) queries")
        unjudged = int((~judged).sum())
        if unjudged:
            ctx.note(f"{unjudged} rows of queries that {self.qrels} does not judge are left out of the fit")
            table = table.take(pa.array(np.sort(run.order[judged])))
            run = run_arrays(table, name)
            y = y[judged]
        depth = self.depth or int(run.ranks.max())  # the depth the run reaches (k, or fewer on a small corpus)
        calib = fit(run, y, depth, model=meta.get("model"), metric=(meta.get("index") or {}).get("metric"),
                    hubness=(meta.get("hubness") or {}).get("method"))
        ctx.write_text(calib.to_json())
        ctx.done(f"calibrated on {calib.train['queries']} queries, {calib.train['rows']} rows ({calib.train['positives']} relevant): "
                 f"training ECE {calib.train['ece']:.4f}, PR-AUC {calib.train['pr_auc']:.4f}")
        return calib


def read_calibration(path: str, ctx: Context, role: str = "calibration") -> Any:
    from vecpipe.evaluate.calibration import Calibration

    source = ctx.input(role, path)
    return Calibration.from_json(source.stream.read().decode("utf-8", "replace"), source.name)


def threshold(calib: Any, min_prob: float | None, target_recall: float | None) -> float:
    if min_prob is not None:
        return float(min_prob)
    assert target_recall is not None
    return float(calib.threshold_for_recall(target_recall))


def check_cut_options(min_prob: float | None, target_recall: float | None, scores: str, needed: bool = True) -> None:
    if min_prob is not None and target_recall is not None:
        raise UsageError("give --min-prob or --target-recall, not both")
    if needed and min_prob is None and target_recall is None:
        raise UsageError("give --min-prob P or --target-recall R")
    if min_prob is not None and not (0.0 <= min_prob <= 1.0):
        raise UsageError(f"--min-prob {min_prob}: a probability, from 0 to 1")
    if target_recall is not None and not (0.0 < target_recall <= 1.0 and math.isfinite(target_recall)):
        raise UsageError(f"--target-recall {target_recall}: a share of the training positives, above 0 and at most 1")
    if scores not in SCORES:
        raise UsageError(f"--scores {scores}: choose one of {', '.join(SCORES)}")


@dataclass
class Cut(Stage):
    """Drop a run's results whose calibrated probability of relevance is under a threshold."""

    name = "cut"
    output_kind = registry.RUN

    run_input: str = inp("-")
    calibration: str = inp(None)
    output: str | None = opt(None)
    min_prob: float | None = rec(None)
    target_recall: float | None = rec(None)
    scores: str = rec("raw")
    format: str | None = rec(None)
    tag: str = rec(DEFAULT_TAG)

    def inputs(self) -> dict[str, str | None]:
        return {"run": self.run_input, "calibration": self.calibration}

    def check(self) -> None:
        check_tag(self.tag)
        if self.calibration is None:
            raise UsageError("cut needs --calibration CALIB.json (from vecpipe calibrate)")
        if self.calibration == "-" and self.run_input == "-":
            raise UsageError("the run and the calibration cannot both come from stdin ('-')")
        check_cut_options(self.min_prob, self.target_recall, self.scores)

    def run(self, ctx: Context) -> int:
        from vecpipe.evaluate.calibration import check_run_fits, cut, run_arrays
        from vecpipe.formats.runs import read_run, refuse_duplicate_pairs

        calib = read_calibration(self.calibration, ctx)
        name = "<stdin>" if self.run_input == "-" else self.run_input
        table = read_run(self.run_input)
        refuse_duplicate_pairs(table, name)
        meta = run_meta(table)
        ranks = run_arrays(table, name).ranks
        if calib.model and not meta.get("model"):
            ctx.note(f"{name} records no model (TREC text, or written by another tool): make sure it comes from "
                     f"{calib.model}, the model {self.calibration} was fitted on")
        check_run_fits(calib, meta, int(ranks.max()) if len(ranks) else 0, name, self.calibration)
        p = threshold(calib, self.min_prob, self.target_recall)
        out = cut(table, calib, p, self.scores == "prob", name)
        kept = dict(meta)
        kept.pop("manifest", None)
        kept["cut"] = {"threshold": p, "scores": self.scores, "target_recall": self.target_recall, "depth": calib.depth}
        kept.setdefault("kind", "run")
        ctx.done(f"kept {out.num_rows} of {table.num_rows} results (probability of relevance >= {p:.4f})")
        with ctx.run_writer(kept, self.tag) as writer:
            writer.write(out)
            return int(writer.rows)

"""Evaluation of runs against qrels: trec_eval-compatible measures, vectorised with numpy.

>>> from vecpipe.evaluate import evaluate                     # doctest: +SKIP
>>> result = evaluate(run, qrels, ["nDCG@10", "R@100"])      # doctest: +SKIP
>>> result.aggregate                                        # doctest: +SKIP
{'nDCG@10': 0.65, 'R@100': 0.91}
"""

from vecpipe.evaluate.measures import (
    DEFAULT_MEASURES,
    KNOWN,
    Measure,
    parse_measure,
    parse_measures,
)
from vecpipe.evaluate.metrics import EvalResult, evaluate
from vecpipe.evaluate.output import format_json, format_tsv, to_dict

__all__ = [
    "DEFAULT_MEASURES",
    "KNOWN",
    "EvalResult",
    "Measure",
    "evaluate",
    "format_json",
    "format_tsv",
    "parse_measure",
    "parse_measures",
    "to_dict",
]

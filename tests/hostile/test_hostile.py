"""Issue 16, "Nothing silently wrong": every hostile case must end ``correct``.

Each case (see cases.py) runs ``python -m vecpipe`` as a subprocess against ``$VECPIPE_ROOT``
(default: this repository) and is classified as correct, bad_refusal, silent_wrong, signal or hang.
"""

from __future__ import annotations

import os

import pytest
from cases import CASES, MEASURE_ARGS, RUN_ROWS, _eval_check, _qrels_with_rel
from hostile_harness import Case, Either, Inv, run_case
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize("case_id", [c.id for c in CASES])
def test_hostile(case_id, hostile_outcomes):
    out = hostile_outcomes[case_id]
    if out.kind == "skipped":
        pytest.skip(out.reason)
    assert out.kind == "correct", f"{out.kind}: {out.reason}\n--- stderr of the command ---\n{out.stderr}"


def test_case_ids_unique_and_classes_covered():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c.cls for c in CASES} == set(range(1, 11))
    for c in CASES:
        assert c.id.startswith(f"class{c.cls}-{c.cmd}-") or c.id.startswith(f"class{c.cls}-"), c.id
    subcommands = {"embed", "quantize", "binarize", "build-index", "search", "rerank", "eval", "inspect", "merge", "fuse", "compare", "cut",
                   "fde"}
    assert {c.cmd for c in CASES} == subcommands


# Relevance strings beyond the fixed list: trec_eval's reading (atol) or a clean refusal, never
# another number.
REL_TEXT = st.one_of(
    st.builds(lambda sign, zeros, n: f"{sign}{'0' * zeros}{n}", st.sampled_from(["", "+", "-"]),
              st.integers(0, 3), st.integers(0, 30)),
    st.sampled_from(["1.0", "2.5", "", "abc", " 1", "1 ", "1e1", "0x1", "inf", "nan", "1_0", "+-1", "--1", "1.5e1"]),
    st.text(alphabet="0123456789+-._ eE", max_size=5),
)


@settings(max_examples=int(os.environ.get("HOSTILE_HYPOTHESIS_EXAMPLES", "8")), deadline=None, derandomize=True,
          database=None, phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a subprocess
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rel=REL_TEXT)
def test_eval_relevance_strings(rel, hostile_shared):
    text, ref_rows = _qrels_with_rel(rel)

    def setup(ctx):
        ctx.copy("run.parquet")
        ctx.write("qrels.tsv", text)
        return Inv(argv=["eval", "run.parquet", "--qrels", "qrels.tsv", *MEASURE_ARGS, "-o", "m.tsv"], out=["m.tsv"])

    case = Case("class9-eval-rel-hypothesis", 9, "eval", setup, Either(_eval_check(RUN_ROWS, ref_rows)))
    out = run_case(case, hostile_shared)
    assert out.kind == "correct", f"relevance {rel!r}: {out.kind}: {out.reason}"

"""Fixtures of the hostile-input suite: the shared artifacts, and every selected case run once.

The cases are black-box subprocess runs; they are run up front, a few at a time (the machine has
two cores and most of a case's time is process start-up), and each parametrised test reads its own
outcome. Run against another checkout with ``VECPIPE_ROOT=/path/to/checkout``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases
from hostile_harness import Shared, run_all, vecpipe_root


def pytest_report_header(config):
    return f"hostile suite: vecpipe under test at {vecpipe_root()} (VECPIPE_ROOT)"


@pytest.fixture(scope="session")
def hostile_shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def hostile_outcomes(request, hostile_shared):
    """Outcomes of the cases this session selected (after -k / deselection), run once, in parallel."""
    wanted = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "case_id" in callspec.params:
            wanted.add(callspec.params["case_id"])
    return run_all([c for c in cases.CASES if c.id in wanted], hostile_shared)

"""Run every hostile case (no pytest needed) and print counts per class and outcome.

    python tests/hostile/tally.py [--root DIR] [--jobs N] [-k SUBSTRING] [--keep]

``--root`` is the vecpipe checkout under test (sets VECPIPE_ROOT; default: this repository).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="vecpipe checkout to test (default: $VECPIPE_ROOT or this repository)")
    ap.add_argument("--jobs", type=int, default=0, help="cases run at once (default: cores + 1, at most 4)")
    ap.add_argument("-k", dest="filter", default="", help="only cases whose id contains this")
    ap.add_argument("--keep", action="store_true", help="keep every case directory and the shared artifacts")
    ap.add_argument("--verbose", "-v", action="store_true", help="print each outcome as it arrives")
    args = ap.parse_args(argv)
    if args.root:
        os.environ["VECPIPE_ROOT"] = str(Path(args.root).resolve())
    if args.keep:
        os.environ["HOSTILE_KEEP"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(HERE))
    import cases
    from hostile_harness import CLASSES, OUTCOMES, Shared, python, run_all, vecpipe_root

    selected = [c for c in cases.CASES if args.filter in c.id]
    base = Path(tempfile.mkdtemp(prefix="vecpipe-hostile-"))
    shared = Shared(base)
    t0 = time.monotonic()

    def progress(o):
        if args.verbose:
            print(f"{o.kind:13s} {o.seconds:5.1f}s {o.id}", file=sys.stderr, flush=True)

    outcomes = run_all(selected, shared, jobs=args.jobs or None, progress=progress)
    wall = time.monotonic() - t0

    cols = list(OUTCOMES)
    extra = [k for k in ("skipped", "error") if any(o.kind == k for o in outcomes.values())]
    cols += extra
    width = max(len(f"{n:>2} {name}") for n, name in CLASSES.items()) + 1
    print(f"vecpipe hostile-input tally: root {vecpipe_root()}")
    print(f"{len(selected)} cases, {wall:.0f} s wall, python {python()}")
    print()
    head = f"{'class':<{width}}" + "".join(f"{c:>13}" for c in cols) + f"{'total':>8}"
    print(head)
    print("-" * len(head))
    totals = {c: 0 for c in cols}
    for n, name in CLASSES.items():
        row = [o for o in outcomes.values() if o.cls == n]
        counts = {c: sum(1 for o in row if o.kind == c) for c in cols}
        for c in cols:
            totals[c] += counts[c]
        print(f"{f'{n:>2} {name}':<{width}}" + "".join(f"{counts[c]:>13}" for c in cols) + f"{len(row):>8}")
    print("-" * len(head))
    print(f"{'all':<{width}}" + "".join(f"{totals[c]:>13}" for c in cols) + f"{len(outcomes):>8}")
    bad = [o for o in outcomes.values() if o.kind != "correct"]
    wrong = sum(1 for o in outcomes.values() if o.kind in ("silent_wrong",))
    print()
    print(f"not correct: {len(bad)} of {len(outcomes)}; silently wrong (exit 0): {wrong}")
    if bad:
        print()
        order = {k: i for i, k in enumerate(cols)}
        for o in sorted(bad, key=lambda o: (o.cls, order.get(o.kind, 99), o.id)):
            reason = " ".join(o.reason.split())
            print(f"{o.id:<58} {o.kind:<13} {reason[:220]}")
    if args.keep:
        print()
        print(f"case directories: {base}")
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sizes as people write them (``4GiB``, ``500MB``)."""

from __future__ import annotations

import math


def parse_size(text: str) -> int:
    """``4GiB``, ``500MB``, ``2G``, ``1048576`` -> bytes; ValueError otherwise."""
    units = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
             "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("kmgtib")
    unit = t[len(num):]
    if not num or unit not in units:
        raise ValueError(text)
    value = float(num) * units[unit]
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return int(value)

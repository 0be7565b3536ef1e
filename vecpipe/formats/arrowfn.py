"""Arrow's compute kernels, called by name without importing :mod:`pyarrow.compute`.

Importing ``pyarrow.compute`` builds a Python wrapper, with a docstring scraped from the C++
documentation, for each of its ~290 kernels: 50-80 ms of CPU in every process that imports it, a
fifth of a one-row ``eval``. The kernels themselves live in pyarrow's compiled ``_compute`` module
(loaded with pyarrow), and :func:`call` runs them by name, as ``pyarrow.compute`` does underneath.
Arrow's own array methods (``Array.cast``, ``.take``, ``.filter`` ...) import ``pyarrow.compute``
on first use, so the commands' quick paths call :func:`cast`, :func:`take` and :func:`filter` here
instead. The names and arguments follow ``pyarrow.compute`` (the subset vecpipe uses), so a module
may ``from vecpipe.formats import arrowfn as pc``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

try:  # pyarrow's compiled module; pyarrow.compute is its documented, slow-to-import face
    from pyarrow._compute import (
        CastOptions,
        JoinOptions,
        MatchSubstringOptions,
        SetLookupOptions,
        SortOptions,
    )
    from pyarrow._compute import call_function as _call_function
except ImportError:  # pragma: no cover - a pyarrow that moved it: the public module, slower to import
    from pyarrow.compute import (
        CastOptions,
        JoinOptions,
        MatchSubstringOptions,
        SetLookupOptions,
        SortOptions,
    )
    from pyarrow.compute import call_function as _call_function

Arrayish = Any  # pa.Array | pa.ChunkedArray | pa.Scalar | pa.Table | pa.RecordBatch


def call(name: str, *args: Arrayish, options: Any = None) -> Any:
    """Arrow kernel ``name`` over ``args`` (``pyarrow.compute.call_function``)."""
    return _call_function(name, list(args), options)


# --- element-wise


def equal(a: Arrayish, b: Arrayish) -> Any:
    return call("equal", a, b)


def greater(a: Arrayish, b: Arrayish) -> Any:
    return call("greater", a, b)


def less_equal(a: Arrayish, b: Arrayish) -> Any:
    return call("less_equal", a, b)


def and_(a: Arrayish, b: Arrayish) -> Any:
    return call("and", a, b)


def or_(a: Arrayish, b: Arrayish) -> Any:
    return call("or", a, b)


def is_valid(a: Arrayish) -> Any:
    return call("is_valid", a)


def is_null(a: Arrayish) -> Any:
    return call("is_null", a)


def is_nan(a: Arrayish) -> Any:
    return call("is_nan", a)


def binary_length(a: Arrayish) -> Any:
    return call("binary_length", a)


def match_substring_regex(a: Arrayish, pattern: str) -> Any:
    return call("match_substring_regex", a, options=MatchSubstringOptions(pattern))


def binary_join_element_wise(*strings: Arrayish) -> Any:
    """The strings joined row by row; the last argument is the separator (nulls give null)."""
    return call("binary_join_element_wise", *strings, options=JoinOptions())


def fill_null(a: Arrayish, value: Any) -> Any:
    return call("coalesce", a, pa.scalar(value, a.type))


def cast(a: Arrayish, target: pa.DataType, safe: bool = True) -> Any:
    if a.type == target:
        return a
    return call("cast", a, options=CastOptions(target) if safe else CastOptions.unsafe(target))


# --- selections


def take(a: Arrayish, indices: Arrayish) -> Any:
    return call("take", a, indices)


def filter(a: Arrayish, mask: Arrayish) -> Any:
    return call("filter", a, mask)


def sort_indices(data: Arrayish, sort_keys: list[tuple[str, str]] | None = None) -> Any:
    """Indices that sort ``data``: a table by ``sort_keys``, an array ascending."""
    return call("sort_indices", data, options=SortOptions(sort_keys) if sort_keys else None)


def index_in(a: Arrayish, value_set: pa.Array) -> Any:
    return call("index_in", a, options=SetLookupOptions(value_set))


def is_in(a: Arrayish, value_set: pa.Array) -> Any:
    return call("is_in", a, options=SetLookupOptions(value_set))


def unique(a: Arrayish) -> Any:
    return call("unique", a)


def dictionary_encode(a: Arrayish) -> Any:
    return call("dictionary_encode", a)


def value_counts(a: Arrayish) -> Any:
    return call("value_counts", a)


# --- aggregates


def sum(a: Arrayish) -> Any:
    return call("sum", a)


def min(a: Arrayish) -> Any:
    return call("min", a)


def max(a: Arrayish) -> Any:
    return call("max", a)


def min_max(a: Arrayish) -> Any:
    return call("min_max", a)


def any(a: Arrayish) -> Any:
    return call("any", a)


def all(a: Arrayish) -> Any:
    return call("all", a)


def count_distinct(a: Arrayish) -> Any:
    return call("count_distinct", a)


# --- keys


def first_repeated(*columns: pa.Array | pa.ChunkedArray) -> int | None:
    """The row of the first key (the columns' values together) that appears more than once, in
    order of first appearance of the key; ``None`` when every key is unique. Hash-coded, so it
    never goes through Arrow's group-by (which imports Acero and ``pyarrow.compute``)."""
    import numpy as np

    n = len(columns[0])
    if n < 2:
        return None
    key = np.zeros(n, dtype=np.int64)
    for col in columns:
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        codes = dictionary_encode(col)  # nulls stay null: coded -1 below
        idx = codes.indices
        if idx.null_count:
            idx = fill_null(idx, -1)
        key = key * (len(codes.dictionary) + 1) + np.asarray(idx, dtype=np.int64) + 1
    order = np.argsort(key, kind="stable")
    ks = key[order]
    same = ks[1:] == ks[:-1]
    if not same.any():
        return None
    # the first row of every repeated key is the start of a run of equal sorted keys; the answer is
    # the earliest such first row
    starts = np.flatnonzero(same & np.concatenate(([True], ~same[:-1])))
    return int(order[starts].min())

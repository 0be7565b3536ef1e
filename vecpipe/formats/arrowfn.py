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


def _kernel(name: str) -> Any:
    """``pyarrow.compute.<name>`` for a kernel that takes its arguments only (no options)."""

    def fn(*args: Arrayish) -> Any:
        return _call_function(name, list(args), None)

    fn.__name__ = fn.__qualname__ = name
    return fn


# kernels without options, by pyarrow.compute's names (and_/or_: Python keywords)
equal, greater, less_equal = _kernel("equal"), _kernel("greater"), _kernel("less_equal")
and_, or_ = _kernel("and"), _kernel("or")
is_valid, is_null, is_nan, binary_length = _kernel("is_valid"), _kernel("is_null"), _kernel("is_nan"), _kernel("binary_length")
take, filter, unique = _kernel("take"), _kernel("filter"), _kernel("unique")
dictionary_encode, value_counts, count_distinct = _kernel("dictionary_encode"), _kernel("value_counts"), _kernel("count_distinct")
sum, min, max, min_max = _kernel("sum"), _kernel("min"), _kernel("max"), _kernel("min_max")
any, all = _kernel("any"), _kernel("all")


# --- kernels with options


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


def sort_indices(data: Arrayish, sort_keys: list[tuple[str, str]] | None = None) -> Any:
    """Indices that sort ``data``: a table by ``sort_keys``, an array ascending."""
    return call("sort_indices", data, options=SortOptions(sort_keys) if sort_keys else None)


def index_in(a: Arrayish, value_set: pa.Array) -> Any:
    return call("index_in", a, options=SetLookupOptions(value_set))


def is_in(a: Arrayish, value_set: pa.Array) -> Any:
    return call("is_in", a, options=SetLookupOptions(value_set))


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

"""The kinds of index a ``.vpi`` container can hold, and how each is loaded.

A kind is recognised from the container's metadata and loaded into a searcher that answers
``search(queries, k) -> (scores, labels)`` over the container's ids. Adding an index kind is one
module with its builder and loader, plus one entry in :data:`KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vecpipe.errors import InputError
from vecpipe.formats import vpi


@dataclass(frozen=True)
class IndexKind:
    name: str
    accepts: Callable[[dict[str, Any]], bool]
    load: Callable[[vpi.Container, str], Any]


def _load_faiss(container: vpi.Container, name: str) -> Any:
    from vecpipe.index.search import load_faiss

    return load_faiss(container, name)


def _load_bm25(container: vpi.Container, name: str) -> Any:
    from vecpipe.index.bm25 import load

    return load(container, name)


#: Tried in order; the first kind whose ``accepts`` takes the metadata loads the index.
KINDS: list[IndexKind] = [
    IndexKind("bm25", lambda meta: meta.get("index_kind") == "bm25", _load_bm25),
    IndexKind("faiss-binary", lambda meta: bool(meta.get("binary")), _load_faiss),
    IndexKind("faiss", lambda meta: meta.get("kind") in (None, "index"), _load_faiss),
]


def kind_of(meta: dict[str, Any]) -> IndexKind:
    for kind in KINDS:
        if kind.accepts(meta):
            return kind
    raise InputError(f"index kind {meta.get('kind')!r} is not known to this vecpipe; upgrade vecpipe or rebuild the index")

"""Build and search faiss indexes (stored by the stages in ``.vpi`` containers), and rescore
candidates exactly with full-precision vectors."""

from vecpipe.index.build import BuiltIndex, build_index
from vecpipe.index.search import LoadedIndex, load_index

__all__ = ["BuiltIndex", "LoadedIndex", "build_index", "load_index"]

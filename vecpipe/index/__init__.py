"""Build and search faiss indexes stored in ``.vpi`` containers."""

from vecpipe.index.build import build_index
from vecpipe.index.search import LoadedIndex, load_index

__all__ = ["build_index", "load_index", "LoadedIndex"]

"""vecpipe: Unix-style utilities for embedding-based retrieval."""

__version__ = "0.1.0"

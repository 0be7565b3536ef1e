"""Models by name, for the command line: export a sentence-transformers model into the user's model
cache, list the cache (the work is in :mod:`vecpipe.encode.export`; no table in or out, so no Stage)."""

from vecpipe.encode.export import ExportedModel, ExtraMissing, export_model, list_models  # noqa: F401
from vecpipe.encode.model import display_path, models_dir  # noqa: F401

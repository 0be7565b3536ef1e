"""Import every subcommand module so that each registers itself on ``vecpipe.cli.app``."""

from vecpipe.cli import embed, build_index, search, eval as eval_, inspect, merge  # noqa: F401
from vecpipe.cli import quantize, binarize, rerank  # noqa: F401

"""Import every subcommand module so that each registers itself on ``vecpipe.cli.app``."""

from vecpipe.cli import embed, build_index, search, eval as eval_, inspect, merge  # noqa: F401
from vecpipe.cli import quantize, binarize, rerank  # noqa: F401
from vecpipe.cli import completions  # noqa: F401,E402
from vecpipe.cli import model  # noqa: F401,E402  (vecpipe model export / list)

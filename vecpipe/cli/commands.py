"""Import every subcommand module so that each registers itself on ``vecpipe.cli.app``."""

from vecpipe.cli import (  # noqa: F401 - imported for the commands they register
    binarize,
    build_index,
    cache,
    calibrate,
    compare,
    completions,
    embed,
    eval,
    fde,
    fuse,
    inspect,
    merge,
    model,
    quantize,
    rerank,
    search,
)

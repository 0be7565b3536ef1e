"""The one call every command makes: run a stage with the command line's reporters.

Nothing heavy is imported here: the runner (and with it pyarrow and numpy) is imported when a
command runs, never when the command line starts (``--help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vecpipe.pipeline.runner import Outcome, Stage


def run_stage(stage: Stage, force: bool = False, quiet: bool = False, device: str = "auto", engine: str = "local",
              **engine_options: Any) -> Outcome:
    """Run ``stage``: notes and progress on stderr (none with ``--quiet``), errors mapped by the CLI.
    ``engine_options``: --address, --workers, --gpus-per-worker of ``--engine ray``."""
    from vecpipe.cli._progress import note, reporter
    from vecpipe.pipeline.runner import Options, run

    options = Options(force=force, quiet=quiet, note=lambda message: note(message, quiet),
                      progress=lambda: reporter(quiet), device=device, engine=engine, engine_options=engine_options)
    return run(stage, options)


def value(option: Any) -> Any:
    """An enum option's value (``None`` stays ``None``)."""
    return option.value if option is not None else None

"""Where a stage's batch work runs. ``local`` (this process) is the default and needs nothing.

An engine maps a *worker* over a stream of record batches: ``make_worker()`` builds the per-worker
state once (an encoder session, say) and returns a function from an iterator of batches to an
iterator of results, in order. The local engine runs one worker in this process; an engine for a
cluster runs a pool of them and must yield the same results in the same order. Adding an engine is
one class here registered in :data:`ENGINES` (and the stages that support it list its name).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vecpipe.errors import UsageError

Worker = Callable[[Iterable[Any]], Iterator[Any]]


class Engine(ABC):
    name: str = ""

    def stop(self) -> None:  # noqa: B027 - a hook: engines that start nothing keep it empty
        """Release what the engine started (a local cluster)."""

    @abstractmethod
    def map_batches(self, make_worker: Callable[[], Worker], batches: Iterable[Any]) -> Iterator[Any]:
        """Results of the worker over ``batches``, in input order."""


class LocalEngine(Engine):
    name = "local"

    def map_batches(self, make_worker: Callable[[], Worker], batches: Iterable[Any]) -> Iterator[Any]:
        worker = make_worker()
        yield from worker(batches)


def _ray(**options: Any) -> Engine:
    from vecpipe.pipeline.ray_engine import RayEngine

    return RayEngine(**options)


ENGINES: dict[str, Callable[..., Engine]] = {"local": LocalEngine, "ray": _ray}


def get_engine(name: str, supported: tuple[str, ...] = ("local",), **options: Any) -> Engine:
    """The engine ``name``; ``options`` (address, workers, gpus_per_worker) apply to a cluster engine
    and are refused with the local one."""
    if name not in ENGINES:
        raise UsageError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name not in supported:
        raise UsageError(f"--engine {name}: this stage runs on {', '.join(supported)}")
    given = {k: v for k, v in options.items() if v not in (None, 0, 0.0)}
    if name == "local":
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags}: applies with --engine ray only")
        return LocalEngine()
    return ENGINES[name](**given)

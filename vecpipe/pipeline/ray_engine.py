"""``--engine ray``: a stage's batch work on a Ray cluster, through Ray Data (the optional extra
``vecpipe[ray]``).

* No ``--address``: a local Ray is started on this machine's cores (``--workers`` of them by default
  all), and stopped when the command ends. ``--address auto`` joins the cluster ``ray start --head``
  started on this machine; ``HOST:PORT`` or ``ray://HOST:PORT`` one elsewhere. An address where no
  cluster answers is one line and exit status 1 within seconds (the port is tried before Ray is).
* Ray's own console output is turned off (no driver log forwarding, no progress bars, no execution
  banners, warnings only as errors): vecpipe's progress line and notes are all the user sees.
* Work is a Ray Data pipeline over *items* (small dicts) with a pool of actors
  (:class:`ray.data.ActorPoolStrategy`), each built once (a model session, an index) and called on
  one item at a time; results come back with the item's key, so the caller orders them itself and
  the output never depends on which actor ran what.
* A failure inside a worker that vecpipe raised on purpose (bad data) comes back as that error, one
  line; anything else as one line naming the worker's error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from vecpipe.errors import ExtraError, UsageError, VecpipeError
from vecpipe.pipeline.engines import Engine, Worker

EXTRA = "pip install 'vecpipe[ray]'"
CONNECT_TIMEOUT_S = 10.0


def import_ray() -> Any:
    """The ``ray`` module (with Ray Data), or a one-line error naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ExtraError(f"--engine ray needs Ray Data: {EXTRA}") from None
    return ray


def _quiet_environment() -> None:
    """Ray's console output off before it starts (its own variables; set only where unset)."""
    for key, value in (("RAY_DEDUP_LOGS", "0"), ("RAY_BACKEND_LOG_LEVEL", "fatal"), ("RAY_LOG_TO_STDERR", "0"),
                       ("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"), ("RAY_DATA_DISABLE_PROGRESS_BARS", "1"),
                       ("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0"), ("RAY_TRAIN_V2_ENABLED", "0")):
        os.environ.setdefault(key, value)
    for name in ("ray", "ray.data", "ray._private", "ray.util", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\..*)?")


def _resolve_auto() -> str | None:
    """Where ``--address auto`` points: the cluster `ray start` recorded on this machine (None: none)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray: let ray.init resolve it
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError, OSError):
        raise VecpipeError("--address auto: no Ray cluster was started on this machine; start one with `ray start --head`, "
                           "or leave out --address for a local Ray") from None


def check_reachable(address: str) -> None:
    """Refuse at once an address where nothing listens (``auto``: the one `ray start` recorded here,
    which may be a cluster stopped since), instead of Ray's own minute of retries."""
    if address == "auto":
        resolved = _resolve_auto()
        if resolved is None:
            return
        try:
            check_reachable(resolved)
        except VecpipeError:
            raise VecpipeError(f"--address auto: the Ray cluster recorded on this machine ({resolved}) does not answer; "
                               "start one with `ray start --head`, or leave out --address for a local Ray") from None
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise VecpipeError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                           "start one with `ray start --head`, or leave out --address for a local Ray") from None


def unwrap(exc: BaseException) -> BaseException:
    """A worker's own error out of Ray's wrappers (one line), for the command line to report: the
    vecpipe error in the chain of causes, or named in the worker's traceback text, else one line
    naming the worker's failure."""
    import re

    from vecpipe import errors

    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        cause = todo.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, VecpipeError):
            return cause
        for nested in (getattr(cause, "cause", None), cause.__cause__, cause.__context__):
            if isinstance(nested, BaseException):
                todo.append(nested)
    text = str(exc)
    found = re.findall(r"vecpipe\.errors\.(\w+): (.+)", text)
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, VecpipeError)
        return kind(message.strip()) if isinstance(kind, type) and issubclass(kind, VecpipeError) else VecpipeError(message.strip())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return VecpipeError(f"--engine ray: a worker failed: {last}")


class RayEngine(Engine):
    """A Ray cluster: started locally (no address) or joined; one per command."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0,
                 threads: int | None = None):
        if workers is not None and workers < 1:
            raise UsageError("--workers must be at least 1")
        if gpus_per_worker < 0:
            raise UsageError("--gpus-per-worker must be at least 0")
        self.address = address
        self.workers_wanted = workers
        self.gpus_per_worker = gpus_per_worker
        self.threads = threads
        self._ray: Any = None
        self._started_here = False

    # -- the cluster
    def start(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        _quiet_environment()
        if self.address is not None:
            check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True,
                                      "include_dashboard": False}
            if self.address is None:
                kwargs["address"] = "local"  # a new local Ray, never one `ray start` left running here
                kwargs["num_cpus"] = (self.workers_wanted or os.cpu_count() or 1) * (self.threads or 1)
            else:
                kwargs["address"] = self.address
            try:
                with _stderr_quiet():
                    ray.init(**kwargs)
            except ConnectionError as exc:
                raise VecpipeError(f"--address {self.address}: no Ray cluster found ({str(exc).splitlines()[0]}); "
                                   "start one with `ray start --head`, or leave out --address for a local Ray") from None
            self._started_here = True
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.execution_options.preserve_order = True
        with contextlib.suppress(AttributeError):
            ctx.enable_operator_progress_bars = False
        self._ray = ray
        return ray

    def stop(self) -> None:
        if self._ray is not None and self._started_here:
            with contextlib.suppress(Exception), _stderr_quiet():
                self._ray.shutdown()
        self._ray = None
        self._started_here = False

    @property
    def workers(self) -> int:
        """How many actors: --workers, else the cluster's CPUs (GPUs with --gpus-per-worker)."""
        if self.workers_wanted:
            return self.workers_wanted
        ray = self.start()
        res = ray.cluster_resources()
        if self.gpus_per_worker:
            return max(1, int(res.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(res.get("CPU", 1)))

    # -- work
    def map_items(self, make_worker: Callable[..., Callable[[Any], Any]], items: Iterable[Any],
                  shared: bytes | None = None) -> Iterator[tuple[int, Any]]:
        """(position, result) of ``worker(item)`` for every item, in input order; each actor builds its
        worker once with ``make_worker`` (pickled by cloudpickle: closures over paths and options).
        ``shared``: bytes put once in Ray's object store and given to ``make_worker`` on every actor
        (an index file, so that nodes need no shared filesystem)."""
        ray = self.start()  # ray.data imported with it
        from ray import cloudpickle

        blobs = [{"k": k, "item": pickle.dumps(item, protocol=5)} for k, item in enumerate(items)]
        if not blobs:
            return
        factory = cloudpickle.dumps(make_worker)
        size = min(self.workers, len(blobs))
        num_cpus = float(self.threads or 1)
        args = (factory,) if shared is None else (factory, ray.put(shared))
        try:
            ds = ray.data.from_items(blobs, override_num_blocks=len(blobs)).map_batches(
                _Actor, fn_constructor_args=args, batch_size=1, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=size), num_cpus=num_cpus, num_gpus=self.gpus_per_worker or None)
            with _stderr_quiet():
                rows = ds.take_all()
        except Exception as exc:  # noqa: BLE001 - Ray wraps a worker's error; report it in one line
            raise unwrap(exc) from None
        for row in sorted(rows, key=lambda r: r["k"]):
            yield int(row["k"]), pickle.loads(row["out"])

    def map_batches(self, make_worker: Callable[[], Worker], batches: Iterable[Any]) -> Iterator[Any]:
        def make_one() -> Callable[[Any], Any]:
            worker = make_worker()
            return lambda item: next(iter(worker(iter([item]))))

        for _, result in self.map_items(make_one, batches):
            yield result


class _Actor:
    """One pooled worker: builds the caller's worker once, then maps items."""

    def __init__(self, factory: bytes, shared: Any = None):
        from ray import cloudpickle

        _quiet_environment()
        make = cloudpickle.loads(factory)
        if shared is not None and not isinstance(shared, bytes):  # an ObjectRef Ray did not resolve
            import ray

            shared = ray.get(shared)
        self.worker = make() if shared is None else make(shared)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        keys = batch.column("k").to_pylist()
        items = batch.column("item").to_pylist()
        return {"k": keys, "out": [pickle.dumps(self.worker(pickle.loads(item)), protocol=5) for item in items]}


@contextlib.contextmanager
def _stderr_quiet() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null while Ray starts or runs (its C++ core writes there
    directly); Python's ``sys.stderr`` writes from vecpipe itself are not affected by this."""
    if os.environ.get("VECPIPE_RAY_VERBOSE"):
        yield
        return
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A multi-node Ray cluster simulated on this machine with `ray start` (for tests and benchmarks):
    a head and ``nodes - 1`` more nodes of ``cpus`` CPUs each, each node a `ray start --block` process
    in its own process group, stopped by signalling those groups only (never `ray stop`, which would
    stop every Ray on the machine). ``address`` is what ``--address`` takes.
    """

    def __init__(self, nodes: int = 2, cpus: int = 1, env: dict[str, str] | None = None):
        import shutil
        import sys

        self.nodes, self.cpus = nodes, cpus
        self.ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
        self.env = dict(env or os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[Any] = []

    def _start(self, args: list[str]) -> None:
        import subprocess

        self.procs.append(subprocess.Popen([self.ray, "start", *args, "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
                                            "--block", "--disable-usage-stats"], env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True))

    def __enter__(self) -> LocalCluster:
        import time

        try:
            self._start(["--head", "--port", str(self.port), "--include-dashboard", "false"])
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise VecpipeError(f"ray start --head: nothing listens on port {self.port} after 60 s") from None
                    time.sleep(0.3)
            for _ in range(self.nodes - 1):
                # more nodes on one machine need ports of their own (their agents would clash with the head's)
                ports = [str(_free_port()) for _ in range(6)]
                self._start(["--address", self.address, "--dashboard-agent-listen-port", ports[0], "--dashboard-agent-grpc-port", ports[1],
                             "--metrics-export-port", ports[2], "--runtime-env-agent-port", ports[3], "--node-manager-port", ports[4],
                             "--object-manager-port", ports[5]])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        for proc in reversed(self.procs):
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.procs = []

"""The stage runner: what every stage shares, in one place.

A stage (:mod:`vecpipe.stages`) is a dataclass that declares, once, its inputs (:func:`inp`), the
parameters that shape its output (:func:`rec`, recorded in the manifest; models by sha256), the
options that do not (:func:`opt`), the kind of artifact it writes, and its work (:meth:`Stage.run`).
:func:`run` does the rest, in this order:

1. check the stage's options (usage errors, exit status 2) and the engine and device;
2. resolve the output target (stdout, a regular file, a symlink's target, a device or FIFO;
   refuse a directory, a missing parent, an unwritable place, binary data to a terminal);
3. lock a file output (a second writer waits), fingerprint the inputs into the manifest and skip
   the work when the output already records it ("up to date");
4. run the stage with a :class:`Context` that opens inputs (files, stdin, FIFOs, compressed
   streams), opens the output (atomically for files, the manifest injected into its metadata),
   keeps checkpoints beside it, reports progress and notes;
5. put the output in place, record the sidecar of a text output (manifest and content digest), and
   print the stage's closing notes. On any failure nothing is left behind but the old output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import pyarrow as pa

from vecpipe.errors import InputError
from vecpipe.formats import metadata, registry, sniff
from vecpipe.formats.tables import TableSink, refuse_terminal
from vecpipe.formats.targets import STDOUT, Target, resolve_target
from vecpipe.pipeline import manifest as manifests
from vecpipe.pipeline.checkpoint import Checkpoint
from vecpipe.pipeline.devices import check_device
from vecpipe.pipeline.engines import Engine, get_engine
from vecpipe.pipeline.progress import Progress

# ------------------------------------------------------------------------------ stage declarations


def inp(default: Any = "-") -> Any:
    """An input path (a file, ``-`` for stdin, a FIFO); fingerprinted into the manifest."""
    return field(default=default, metadata={"input": True})


def rec(default: Any = None, *, omit_default: bool = False) -> Any:
    """A parameter that shapes the output: recorded in the manifest. ``omit_default``: recorded
    only when it differs from the default (options added later keep earlier manifests valid)."""
    return field(default=default, metadata={"record": True, "omit_default": omit_default})


def opt(default: Any = None) -> Any:
    """An option that does not change the output's content (threads, batch sizes, verbosity)."""
    return field(default=default)


@dataclass
class Stage(ABC):
    """Base of every stage. Subclasses are dataclasses that declare ``output`` among their fields."""

    name: ClassVar[str] = ""
    output_kind: ClassVar[str] = registry.VECTORS
    engines: ClassVar[tuple[str, ...]] = ("local",)
    devices: ClassVar[tuple[str, ...]] = ("auto", "cpu")

    def inputs(self) -> dict[str, str | None]:
        """Input role -> path, for every field declared with :func:`inp`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("input")}

    def params(self) -> dict[str, Any]:
        """What the manifest records: every :func:`rec` field (through :meth:`recorded`)."""
        out = {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("record"):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = self.recorded(f.name, value)
        return out

    def recorded(self, name: str, value: Any) -> Any:
        """How a parameter is recorded (override to record a model by sha256, say)."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return value

    def check(self) -> None:  # noqa: B027 - a hook: stages with no usage checks keep it empty
        """Usage checks before any work (raise :class:`~vecpipe.errors.UsageError`)."""

    def skippable(self) -> bool:
        """Whether an up-to-date output lets the run be skipped (``False`` when the run also writes
        something the manifest does not cover, such as ``--plot``)."""
        return True

    def output_format(self) -> registry.OutputFormat:
        return registry.output_format(self.output_kind, getattr(self, "output", None), getattr(self, "format", None))

    def manifest(self) -> dict[str, Any] | None:
        """The manifest of this run (``None`` when an input is a stream)."""
        return manifests.build_manifest(self.name, self.inputs(), self.params())

    @abstractmethod
    def run(self, ctx: Context) -> Any:
        """The stage's work, given its context (inputs, output target, notes); returns its summary."""

    def directory_writer(self, engine: Engine) -> Callable[[Engine, Options], Outcome] | None:
        """The run's own output handling when, on ``engine``, it writes a dataset directory instead
        of one file (``None``: the runner's file output, the usual case)."""
        return None


# ------------------------------------------------------------------------------------ the runner


@dataclass
class Options:
    """How the caller wants the run reported: the command line passes its own reporters."""

    force: bool = False
    quiet: bool = False
    note: Callable[[str], None] = lambda message: None
    progress: Callable[[], Progress] = Progress
    engine: str = "local"
    device: str = "auto"
    #: --address, --workers, --gpus-per-worker of a cluster engine (refused with the local one)
    engine_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    value: Any = None
    up_to_date: bool = False
    target: Target | None = None


class Context:
    """What a running stage gets from the runner."""

    def __init__(self, stage: Stage, target: Target, fmt: registry.OutputFormat, manifest: dict[str, Any] | None,
                 options: Options, engine: Engine):
        self.stage = stage
        self.target = target
        self.format = fmt
        self.manifest = manifest
        self.options = options
        self.engine = engine
        self.device = options.device
        self.digest: str | None = None  # sha256 of a text output's bytes, set by its writer
        self._stack = contextlib.ExitStack()
        self._progress: Progress | None = None
        self._closing: list[str] = []
        self._opened_output = False

    # -- reporting
    def note(self, message: str) -> None:
        self.options.note(message)

    def done(self, message: str) -> None:
        """A note printed once the output is in place."""
        self._closing.append(message)

    @property
    def progress(self) -> Progress:
        if self._progress is None:
            # Data for a terminal goes to the same screen: no progress bar between its lines.
            to_screen = self.target.kind == STDOUT and sys.stdout is not None and sys.stdout.isatty()
            self._progress = Progress() if to_screen else self.options.progress()
        return self._progress

    # -- inputs
    def input(self, role: str, path: str | Path | None = None) -> sniff.Input:
        """The opened input of ``role`` (closed when the stage ends)."""
        where = path if path is not None else cast(str, self.stage.inputs()[role])  # a role whose input was given
        return self._stack.enter_context(sniff.Input(where))

    def local_path(self, role: str, path: str | Path | None = None) -> tuple[Path, str]:
        """(a regular file holding the whole input, the user's name for it): FIFOs, stdin and
        compressed inputs are spooled to a temporary file for readers that need random access."""
        inp = self.input(role, path)
        return inp.local_path(), inp.name

    # -- the output
    def output_path(self) -> Path | None:
        """Where to write: a temporary path renamed into place on success, the special file, or
        ``None`` for stdout. Opened once per run."""
        if self._opened_output:
            raise RuntimeError("the output was already opened")
        self._opened_output = True
        return self._stack.enter_context(self.target.writing())

    def with_manifest(self, meta: dict[str, Any]) -> dict[str, Any]:
        if self.manifest is not None:
            meta = dict(meta)
            meta[manifests.MANIFEST_KEY] = self.manifest
        return meta

    def table_sink(self, schema: pa.Schema, fmt: str | None = None) -> TableSink:
        """A sink for the output table; the manifest is added to the schema's ``vecpipe`` metadata."""
        schema = metadata.attach(schema, self.with_manifest(metadata.read(schema)))
        return TableSink(self.output_path(), schema, fmt or self.format.name)

    def run_writer(self, meta: dict[str, Any] | None, tag: str) -> Any:
        from vecpipe.formats.runs import RunSink

        return _DigestKeeping(self, RunSink(self.output_path(), self.format.name, tag=tag,
                                              metadata=self.with_manifest(meta or {}) if meta is not None else None))

    def write_side(self, target: Target, data: bytes) -> None:
        """Write a second output (a plot) through its own resolved target: a regular file is written
        to a temporary file renamed into place with the main output, so a failure leaves neither."""
        path = self._stack.enter_context(target.writing())
        assert path is not None  # stdout is refused for side outputs
        with target.errors(), open(path, "wb" if target.is_file else "ab") as fh:
            fh.write(data)

    def write_text(self, text: str) -> None:
        """Write a whole text output (metrics), keeping its digest for the sidecar."""
        path = self.output_path()
        if path is None:  # no sidecar, so no digest
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        import hashlib

        data = text.encode()
        self.digest = hashlib.sha256(data).hexdigest()
        with open(path, "wb") as fh:
            fh.write(data)

    def checkpoint(self, schema: pa.Schema) -> Checkpoint | None:
        """Checkpoints beside a file output whose run has a manifest (resumable), else ``None``."""
        if not self.target.is_file or self.manifest is None:
            return None
        return Checkpoint(self.target.beside(".vecpipe-partial"), schema)

    # -- lifecycle
    def _finish(self, failure: BaseException | None) -> None:
        """Close what the stage opened: on success the output is put in place; on failure every
        opened context sees the real exception (a write error becomes one line naming the output)."""
        progress = self._progress
        if failure is not None:
            if progress is not None:
                progress.abort()
            self._stack.__exit__(type(failure), failure, failure.__traceback__)
            return
        try:
            self._stack.close()
        except BaseException:
            if progress is not None:
                progress.abort()
            raise
        if progress is not None:
            progress.close()


class _DigestKeeping:
    """Wraps a RunSink so that the context learns the digest of TREC text when it closes."""

    def __init__(self, ctx: Context, writer: Any):
        self._ctx, self._writer = ctx, writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    def __enter__(self) -> Any:
        self._writer.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._writer.__exit__(*exc)
        if exc[0] is None and self._writer.format in ("trec", "msmarco"):
            self._ctx.digest = self._writer.digest


def run(stage: Stage, options: Options | None = None) -> Outcome:
    """Run ``stage`` with everything every stage shares (see the module docstring)."""
    options = options or Options()
    stage.check()
    engine = get_engine(options.engine, stage.engines, **options.engine_options)
    check_device(options.device, stage.devices)
    try:
        return _run(stage, options, engine)
    finally:
        engine.stop()


def _run(stage: Stage, options: Options, engine: Engine) -> Outcome:
    writer = stage.directory_writer(engine)
    if writer is not None:
        return writer(engine, options)
    fmt = stage.output_format()
    target = resolve_target(getattr(stage, "output", None))
    if target.kind == STDOUT:
        refuse_terminal(fmt.binary)
    with target.lock(on_wait=options.note):
        manifest = stage.manifest() if target.records_manifest else None
        if manifest is not None and not options.force and stage.skippable() and manifests.is_up_to_date(target.path, manifest):
            assert target.path is not None
            manifests.refresh_mtime(target.path, stage.inputs())
            options.note(f"up to date: {target.display}")
            return Outcome(up_to_date=True, target=target)
        ctx = Context(stage, target, fmt, manifest, options, engine)
        try:
            value = stage.run(ctx)
        except BaseException as exc:
            ctx._finish(exc)
            raise
        ctx._finish(None)
        if target.is_file and not fmt.binary:
            assert target.path is not None
            if manifest is not None and ctx.digest is not None:
                manifests.record_sidecar(target.path, manifest, ctx.digest)
            else:
                manifests.remove_sidecar(target.path)
    for message in ctx._closing:
        options.note(message)
    return Outcome(value=value, target=target)


@contextlib.contextmanager
def opened(ctx: Context, role: str) -> Iterator[sniff.Input]:
    """An input opened for the duration of a block (closed at its end, not the stage's)."""
    inp = sniff.Input(cast(str, ctx.stage.inputs()[role]))  # a role whose input was given
    try:
        yield inp
    finally:
        inp.close()


def require_file(path: str | None, what: str) -> None:
    if path is not None and str(path) == "-":
        raise InputError(f"{what} -: this input is read by random access; give a file, not stdin")

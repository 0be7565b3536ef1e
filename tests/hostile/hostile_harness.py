"""The machinery of the hostile-input suite: cases as data, a black-box runner, a classifier.

Every case runs ``python -m vecpipe ...`` as a subprocess, with ``PYTHONPATH`` set to the vecpipe
root under test (``$VECPIPE_ROOT``, default: the repository that holds this file), in its own
temporary directory, with relative paths, so that messages naming the user's path can be checked.

A case is a ``Case(id, cls, cmd, setup, expect)``:

* ``setup(ctx)`` builds the inputs in ``ctx.dir`` (copying shared artifacts, making FIFOs, devices,
  symlinks) and returns an :class:`Inv`: the argv (or a bash script run with ``vecpipe`` on PATH),
  FIFOs to feed or drain, the output paths the command may write, the strings a refusal must name.
* ``expect`` is ``Refuse(code)``, ``Ok(check)`` or ``Either(check)`` (exit 0 with a correct result,
  or a clean refusal with exit 1).

:func:`run_case` classifies the outcome as one of ``correct``, ``bad_refusal``, ``silent_wrong``,
``signal``, ``hang`` (``error`` is reserved for a broken setup: a valid setup command that failed,
or a bug in the suite itself).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = HERE.parents[1]

OUTCOMES = ("correct", "bad_refusal", "silent_wrong", "signal", "hang")
CLASSES = {
    1: "output targets",
    2: "staleness",
    3: "non-finite values",
    4: "vectors from another model",
    5: "duplicate ids",
    6: "index specs",
    7: "TREC text output",
    8: "inputs that are not plain files",
    9: "eval parsing",
    10: "streams and messages",
}

TIMEOUT = float(os.environ.get("HOSTILE_TIMEOUT", "60"))


def vecpipe_root() -> Path:
    return Path(os.environ.get("VECPIPE_ROOT") or REPO).resolve()


def python() -> str:
    return os.environ.get("HOSTILE_PYTHON") or sys.executable


# ------------------------------------------------------------------------------------ data model


@dataclass
class Inv:
    """How to invoke the command under test."""

    argv: list[str] | None = None  # vecpipe arguments
    shell: str | None = None  # a bash script instead; ``vecpipe`` is on PATH; use ``exec`` where possible
    stdin: bytes | None = None  # bytes on stdin (default: an empty stdin)
    fifo_in: dict[str, bytes] = field(default_factory=dict)  # FIFO path -> bytes a thread writes into it
    fifo_out: list[str] = field(default_factory=list)  # FIFO paths a thread drains
    out: list[str] = field(default_factory=list)  # paths the command may write (their sidecars too)
    mention: list[str] = field(default_factory=list)  # strings a refusal must contain
    mention_id: list[str] = field(default_factory=list)  # ids a refusal must name (word-bounded, raw or escaped)
    mention_re: list[str] = field(default_factory=list)  # regexes a refusal must match (case-insensitive)
    forbid: list[str] = field(default_factory=list)  # extra strings a refusal must not contain
    copies: int = 1  # identical processes started at once
    timeout: float | None = None
    data: dict[str, Any] = field(default_factory=dict)  # anything the check needs


@dataclass
class Proc:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass
class Result:
    procs: list[Proc]
    fifo_data: dict[str, bytes]
    dir: Path
    inv: Inv

    @property
    def proc(self) -> Proc:
        return self.procs[0]

    @property
    def returncode(self):
        return self.proc.returncode

    @property
    def stdout(self) -> bytes:
        return self.proc.stdout

    @property
    def stderr(self) -> bytes:
        return self.proc.stderr

    @property
    def err(self) -> str:
        return self.proc.err


class Refuse:
    def __init__(self, code: int):
        self.code = code

    def __repr__(self):
        return f"REFUSE({self.code})"


class Ok:
    def __init__(self, check: Callable[[Result, Ctx], None]):
        self.check = check

    def __repr__(self):
        return "OK"


class Either:
    """Exit 0 with a result that passes ``check``, or a clean refusal with exit ``code``."""

    def __init__(self, check: Callable[[Result, Ctx], None], code: int = 1):
        self.check = check
        self.code = code

    def __repr__(self):
        return f"OK|REFUSE({self.code})"


@dataclass
class Case:
    id: str
    cls: int
    cmd: str
    setup: Callable[[Ctx], Inv]
    expect: Any
    skip: Callable[[], str | None] | None = None
    note: str = ""


@dataclass
class Outcome:
    id: str
    cls: int
    cmd: str
    kind: str  # one of OUTCOMES, or "error" / "skipped"
    reason: str = ""
    seconds: float = 0.0
    stderr: str = ""


class CheckFailed(Exception):
    pass


class SetupError(Exception):
    pass


def fail(msg: str) -> None:
    raise CheckFailed(msg)


# ------------------------------------------------------------------------------- running vecpipe


def vp_env(shared_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(vecpipe_root())
    env["NO_COLOR"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("VECPIPE_DEBUG", None)
    env.pop("VECPIPE_LOG_FORMAT", None)
    env.pop("PYTHONWARNINGS", None)
    if shared_dir is not None:
        env["XDG_CACHE_HOME"] = str(shared_dir / "xdg-cache")
        env["PATH"] = f"{shared_dir / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _communicate(p: subprocess.Popen, stdin: bytes | None, deadline: float) -> Proc:
    start = time.monotonic()
    try:
        out, err = p.communicate(stdin, timeout=max(0.1, deadline - time.monotonic()))
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, err = p.communicate()
        timed_out = True
    return Proc(p.returncode, out or b"", err or b"", timed_out, time.monotonic() - start)


def _start(cmd: list[str], cwd: Path, env: dict, stdin: bytes | None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


# ------------------------------------------------------------------------------------ FIFO feeders


class _FifoWriter(threading.Thread):
    def __init__(self, path: Path, data: bytes):
        super().__init__(daemon=True)
        self.path, self.data, self.error = path, data, None

    def run(self):
        try:
            with open(self.path, "wb") as fh:
                fh.write(self.data)
        except OSError as exc:  # the command closed or never opened it
            self.error = exc

    def release(self):
        """Unblock a writer still waiting for a reader (the command never opened the FIFO)."""
        if self.is_alive():
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
                time.sleep(0.05)
                os.close(fd)
            except OSError:
                pass
            self.join(5)


class _FifoReader(threading.Thread):
    """Drains a FIFO. A write end is held open by the harness so that the reader never blocks in
    open() and sees EOF only after :meth:`release` (the command may open and close it any number of
    times; a command that replaces the FIFO by a file leaves it empty)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path = path
        self.keep = os.open(path, os.O_RDWR)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        self.chunks: list[bytes] = []

    def run(self):
        try:
            while True:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                self.chunks.append(chunk)
        finally:
            os.close(self.fd)

    def release(self) -> bytes:
        os.close(self.keep)
        self.join(10)
        return b"".join(self.chunks)


# ------------------------------------------------------------------------------------ snapshots

TMP_MARKS = ("vecpipe-tmp", "vecpipe-partial")


def sidecar_of(path: Path) -> Path:
    return path.parent / f".{path.name}.vecpipe.json"


def _state(p: Path):
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return ("absent",)
    except NotADirectoryError:
        return ("absent",)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(p))
    if stat.S_ISCHR(st.st_mode):
        return ("chr", st.st_rdev)
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo",)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", tuple(sorted(os.listdir(p))))
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as fh:
            return ("file", hashlib.sha256(fh.read()).hexdigest())
    return ("other", stat.S_IFMT(st.st_mode))


def _describe(state) -> str:
    if state[0] == "file":
        return f"a regular file (sha256 {state[1][:12]})"
    if state[0] == "link":
        return f"a symlink to {state[1]}"
    if state[0] == "chr":
        return "a character device"
    if state[0] == "dir":
        return f"a directory holding {list(state[1])}"
    return {"absent": "absent", "fifo": "a FIFO"}.get(state[0], str(state))


def snapshot(root: Path) -> dict[str, Any]:
    """The state of every entry under ``root`` (regular files by content)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            snap[str(p.relative_to(root))] = _state(p)
    return snap


def leftovers(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if any(m in name for m in TMP_MARKS):
                found.append(str((Path(dirpath) / name).relative_to(root)))
    return sorted(found)


# ------------------------------------------------------------------------------------ message checks

_INTERNAL = [
    (re.compile(r"Traceback \(most recent call last\)"), "a traceback"),
    (re.compile(r"vecpipe-tmp|vecpipe-partial"), "a temporary file name"),
    (re.compile(r"Error in .* at |faiss::"), "faiss exception text"),
    (re.compile(r"\.cpp\b"), "faiss exception text (.cpp)"),
    (re.compile(r"RuntimeError"), "RuntimeError"),
    (re.compile(r"^vecpipe: error: [A-Z][A-Za-z]*(Error|Exception|Invalid|Warning|NotImplemented)\b:", re.MULTILINE),
     "an internal exception name"),
]


def id_forms(s: str) -> list[str]:
    forms = [s, repr(s)[1:-1], json.dumps(s)[1:-1], s.encode("unicode_escape").decode()]
    return list(dict.fromkeys(forms))


def names_id(text: str, ident: str) -> bool:
    return any(re.search(r"(?<![\w-])" + re.escape(form) + r"(?![\w-])", text) for form in id_forms(ident))


_NOTE = re.compile(r"^(vecpipe: (?!error: )|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d vecpipe |\{\"time\": )")


def refusal_problems(proc: Proc, code: int, inv: Inv) -> list[str]:
    """Why a refusal with the right exit code is not a clean one (empty: it is)."""
    problems = []
    err = proc.err
    if proc.stdout:
        problems.append(f"stdout not empty ({len(proc.stdout)} bytes)")
    # Progress notes printed before the failure ("vecpipe: training ...", timestamped log lines) are
    # not part of the refusal; the refusal itself is the one "vecpipe: error: " line that ends stderr.
    all_lines = err.splitlines()
    first_error = next((i for i, ln in enumerate(all_lines) if ln.startswith("vecpipe: error: ")), None)
    if first_error is not None and all(_NOTE.match(ln) for ln in all_lines[:first_error]):
        err = "\n".join(all_lines[first_error:]) + ("\n" if err.endswith("\n") else "")
    lines = err.splitlines()
    if code == 2 and not err.startswith("vecpipe: error: "):
        # typer's own usage error output is acceptable for exit 2
        if not err.strip():
            problems.append("no message on stderr")
    else:
        if len(lines) != 1 or not lines[0].strip():
            problems.append(f"stderr has {len(lines)} lines, expected exactly one")
        if not err.startswith("vecpipe: error: "):
            problems.append("stderr does not start with 'vecpipe: error: '")
    for pattern, what in _INTERNAL:
        if pattern.search(err):
            problems.append(f"message shows {what}")
    for s in inv.forbid:
        if s in err:
            problems.append(f"message contains {s!r}")
    for s in inv.mention:
        if s not in err:
            problems.append(f"message does not name {s!r}")
    for pattern in inv.mention_re:
        if not re.search(pattern, err, re.IGNORECASE):
            problems.append(f"message does not say /{pattern}/")
    for s in inv.mention_id:
        if not names_id(err, s):
            problems.append(f"message does not name the id {s!r}")
    return problems


def first_line(text: str, limit: int = 160) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "(empty)"
    errors = [ln for ln in lines if ln.startswith("vecpipe: error") or "Error:" in ln or "Error " in ln]
    line = errors[0] if errors else (lines[-1] if lines[0].startswith("Traceback") else lines[0])
    if len(lines) > 1:
        line += f" [+{len(lines) - 1} lines]"
    return line[:limit] + ("..." if len(line) > limit else "")


# ------------------------------------------------------------------------------------ context


class Ctx:
    """Per-case: the case directory, the shared artifacts, helpers to run vecpipe for setup/checks."""

    def __init__(self, case_dir: Path, shared: Shared):
        self.dir = case_dir
        self.shared = shared

    # -- files
    def path(self, name: str) -> Path:
        return self.dir / name

    def copy(self, shared_name: str, as_name: str | None = None) -> str:
        src = self.shared.get(shared_name)
        dst = self.dir / (as_name or Path(shared_name).name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst.name if as_name is None else as_name

    def write(self, name: str, data: bytes | str) -> str:
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return name

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    @property
    def model(self) -> str:
        return str(self.shared.get("tiny-model"))

    # -- running vecpipe for setup or checks (must succeed)
    def vp(self, *args: str, check: bool = True, stdin: bytes | None = None) -> Proc:
        return self.shared.vp(list(args), cwd=self.dir, check=check, stdin=stdin)


# ------------------------------------------------------------------------------------ shared artifacts


class Shared:
    """Artifacts built once per session, on first use (thread-safe)."""

    builders: ClassVar[dict[str, Callable[[Shared, Path], Any]]] = {}

    def __init__(self, base: Path):
        self.base = Path(base)
        self.dir = self.base / "shared"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "bin").mkdir(exist_ok=True)
        (self.dir / "xdg-cache").mkdir(exist_ok=True)
        wrapper = self.dir / "bin" / "vecpipe"
        wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(python())} -m vecpipe \"$@\"\n")
        wrapper.chmod(0o755)
        self.env = vp_env(self.dir)
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Any] = {}
        self._failed: dict[str, str] = {}

    @classmethod
    def register(cls, name: str):
        def deco(fn):
            cls.builders[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Any:
        """Build (once) and return the artifact ``name`` (usually a path under ``self.dir``)."""
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._done:
                return self._done[name]
            if name in self._failed:
                raise SetupError(self._failed[name])
            try:
                value = self.builders[name](self, self.dir / name)
            except SetupError as exc:
                self._failed[name] = f"{name}: {exc}"
                raise SetupError(self._failed[name]) from None
            except Exception as exc:
                self._failed[name] = f"{name}: {type(exc).__name__}: {exc}"
                raise SetupError(self._failed[name]) from None
            self._done[name] = self.dir / name if value is None else value
            return self._done[name]

    def vp(self, argv: list[str], cwd: Path | None = None, check: bool = True, stdin: bytes | None = None,
           timeout: float | None = None) -> Proc:
        cmd = [python(), "-m", "vecpipe", *map(str, argv)]
        p = _start(cmd, cwd or self.dir, self.env, stdin)
        proc = _communicate(p, stdin, time.monotonic() + (timeout or TIMEOUT))
        if check and (proc.timed_out or proc.returncode != 0):
            status = "timed out" if proc.timed_out else f"exit {proc.returncode}"
            raise SetupError(f"setup command `vecpipe {' '.join(map(str, argv))}` {status}: {first_line(proc.err)}")
        return proc


# ------------------------------------------------------------------------------------ running a case


def _execute(case: Case, inv: Inv, ctx: Ctx) -> Result:
    env = ctx.shared.env
    if inv.argv is not None:
        cmd = [python(), "-m", "vecpipe", *map(str, inv.argv)]
    else:
        cmd = ["bash", "-c", inv.shell]
    writers = [_FifoWriter(ctx.dir / p, data) for p, data in inv.fifo_in.items()]
    readers = {p: _FifoReader(ctx.dir / p) for p in inv.fifo_out}
    for t in writers + list(readers.values()):
        t.start()
    deadline = time.monotonic() + (inv.timeout or TIMEOUT)
    popens = [_start(cmd, ctx.dir, env, inv.stdin) for _ in range(inv.copies)]
    if len(popens) == 1:
        procs = [_communicate(popens[0], inv.stdin, deadline)]
    else:
        results: list[Proc | None] = [None] * len(popens)

        def wait(i):
            results[i] = _communicate(popens[i], inv.stdin, deadline)

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(popens))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        procs = [r for r in results if r is not None]
    for w in writers:
        w.release()
    fifo_data = {p: r.release() for p, r in readers.items()}
    if inv.shell is not None:
        for proc in procs:  # bash reports a child killed by signal N as 128+N
            if proc.returncode is not None and proc.returncode > 128 and proc.returncode != 130:
                proc.returncode = -(proc.returncode - 128)
    return Result(procs, fifo_data, ctx.dir, inv)


def _changes(before: dict, after: dict, allowed: set[str]) -> list[str]:
    changes = []
    for rel, state in before.items():
        if rel in allowed:
            continue
        now = after.get(rel, ("absent",))
        if now != state:
            if state[0] == "dir" and now[0] == "dir":
                continue  # directory listings are checked through their entries
            changes.append(f"{rel} was {_describe(state)}, now {_describe(now)}")
    return changes


def _guard_paths(inv: Inv) -> list[str]:
    paths = []
    for p in inv.out:
        paths.append(p)
        paths.append(str(sidecar_of(Path(p))))
    return paths


def classify(case: Case, res: Result, ctx: Ctx, before: dict, guard_before: dict) -> tuple[str, str]:
    procs = res.procs
    if any(p.timed_out for p in procs):
        return "hang", f"no exit within {res.inv.timeout or TIMEOUT:.0f} s"
    sigs = [p.returncode for p in procs if p.returncode is not None and p.returncode < 0]
    if sigs:
        try:
            name = signal.Signals(-sigs[0]).name
        except ValueError:
            name = str(-sigs[0])
        return "signal", f"killed by {name}; stderr: {first_line(procs[0].err)}"
    after = snapshot(ctx.dir)
    inv = res.inv
    guard_after = {p: _state(ctx.dir / p) for p in _guard_paths(inv)}
    # Inputs and anything else that existed before must be untouched (outputs may change on success).
    allowed = set()
    for p in _guard_paths(inv):
        allowed.add(str(Path(p)))
        target = ctx.dir / p
        if target.is_symlink():
            allowed.add(str(Path(os.path.normpath(target.parent / os.readlink(target))).relative_to(ctx.dir)))
    untouched = _changes(before, after, allowed)
    left = leftovers(ctx.dir)
    expect = case.expect
    rc = procs[0].returncode
    refused = rc != 0
    if isinstance(expect, Refuse) or (isinstance(expect, Either) and refused):
        want = expect.code
        if all(p.returncode == 0 for p in procs):
            return "silent_wrong", f"exit 0, expected a refusal with exit {want}"
        damaged = [f"{p} was {_describe(guard_before[p])}, now {_describe(guard_after[p])}"
                   for p in guard_before if guard_before[p] != guard_after[p]]
        # On a refusal nothing that existed may change, a symlink's target included.
        damaged += [c for c in _changes(before, after, set()) if not any(c.startswith(f"{g} was") for g in guard_before)]
        problems = []
        if rc != want:
            problems.append(f"exit {rc}, expected {want}")
        problems += refusal_problems(procs[0], want, inv)
        if damaged:
            problems.append("output damaged: " + "; ".join(damaged))
        if left:
            problems.append(f"left temporary files {left}")
        if problems:
            return "bad_refusal", "; ".join(problems) + f" | stderr: {first_line(procs[0].err)}"
        return "correct", ""
    # An OK (or Either that exited 0) expectation.
    bad = [p for p in procs if p.returncode != 0]
    if bad:
        return "bad_refusal", f"valid input refused: exit {bad[0].returncode}: {first_line(bad[0].err)}"
    if untouched:
        return "silent_wrong", "exit 0 but an input changed: " + "; ".join(untouched)
    if left:
        return "silent_wrong", f"exit 0 but left temporary files {left}"
    try:
        expect.check(res, ctx)
    except CheckFailed as exc:
        return "silent_wrong", str(exc)
    except SetupError as exc:
        return "error", f"reference failed: {exc}"
    except AssertionError as exc:
        return "silent_wrong", f"check failed: {exc}"
    except Exception as exc:  # an unreadable result is a wrong result
        return "silent_wrong", f"result unusable: {type(exc).__name__}: {str(exc)[:200]}"
    return "correct", ""


def run_case(case: Case, shared: Shared) -> Outcome:
    t0 = time.monotonic()
    if case.skip is not None:
        why = case.skip()
        if why:
            return Outcome(case.id, case.cls, case.cmd, "skipped", why)
    case_dir = Path(tempfile.mkdtemp(prefix=case.id[:40] + "-", dir=shared.base))
    ctx = Ctx(case_dir, shared)
    try:
        inv = case.setup(ctx)
    except SetupError as exc:
        return Outcome(case.id, case.cls, case.cmd, "error", f"setup: {exc}", time.monotonic() - t0)
    except Exception as exc:
        return Outcome(case.id, case.cls, case.cmd, "error",
                       f"setup raised {type(exc).__name__}: {exc} :: {traceback.format_exc(limit=3)}",
                       time.monotonic() - t0)
    before = snapshot(case_dir)
    guard_before = {p: _state(case_dir / p) for p in _guard_paths(inv)}
    try:
        res = _execute(case, inv, ctx)
        kind, reason = classify(case, res, ctx, before, guard_before)
        stderr = res.err
    except Exception as exc:
        kind, reason, stderr = "error", f"harness raised {type(exc).__name__}: {exc}", ""
    finally:
        _make_removable(case_dir)
    if kind == "correct" and not os.environ.get("HOSTILE_KEEP"):
        shutil.rmtree(case_dir, ignore_errors=True)
    return Outcome(case.id, case.cls, case.cmd, kind, reason, time.monotonic() - t0, stderr[-2000:])


def _make_removable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            p = Path(dirpath) / d
            try:
                if not p.is_symlink():
                    p.chmod(0o755)
            except OSError:
                pass


def run_all(cases: list[Case], shared: Shared, jobs: int | None = None,
            progress: Callable[[Outcome], None] | None = None) -> dict[str, Outcome]:
    jobs = jobs or int(os.environ.get("HOSTILE_JOBS", "0")) or max(2, min(4, (os.cpu_count() or 2) + 1))
    outcomes: dict[str, Outcome] = {}
    # Slow cases (big shards) first so that the pool drains evenly.
    order = sorted(cases, key=lambda c: 0 if "merge" in c.id or "shard" in c.id else 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for out in pool.map(lambda c: run_case(c, shared), order):
            outcomes[out.id] = out
            if progress:
                progress(out)
    return outcomes


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def need_root() -> str | None:
    return None if is_root() else "making character devices needs root"


def need_non_root() -> str | None:
    return "root ignores directory permissions; the file-as-parent cases cover the unwritable target" if is_root() else None

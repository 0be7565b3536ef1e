"""What an output path really is, and how each kind is written.

:func:`resolve_target` looks at ``-o`` before any work is done:

* ``None`` or ``-``: standard output (refused when it is closed);
* a regular file or a new path: written to a temporary file in the same directory and renamed into
  place when complete (an interrupted run leaves the old file, never a truncated one); the
  replaced file's permission bits are kept;
* a symlink: followed, and its final target replaced atomically in the target's directory (the link
  stays a link);
* a character device or a FIFO: written directly, streaming, with no temporary file, no lock, no
  manifest and no sidecar;
* a directory, a missing or non-directory parent, an unwritable directory or another kind of
  special file: a one-line :class:`~vecpipe.errors.InputError` naming the user's path.

Errors while writing name the user's path, never a temporary file: a full disk or a file-size limit
becomes "no space left while writing OUT" / "file size limit reached while writing OUT".
:meth:`Target.lock` makes a second writer of the same file wait for the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vecpipe.errors import InputError

_TMP_MARK = ".vecpipe-tmp-"
STDOUT = "stdout"
FILE = "file"
SPECIAL = "special"

_SPACE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EFBIG: "file size limit reached"}


def is_stdout(out: str | Path | None) -> bool:
    return out is None or str(out) == "-"


def stdout_open() -> bool:
    """Whether file descriptor 1 is open (``cmd >&-`` closes it)."""
    try:
        os.fstat(1)
    except OSError:
        return False
    return sys.stdout is not None


def space_error(exc: BaseException) -> str | None:
    """The wording for an error that means the output does not fit, else ``None``."""
    if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS:
        return _SPACE_ERRNOS[exc.errno]
    text = str(exc)
    for needle, wording in (("No space left", _SPACE_ERRNOS[errno.ENOSPC]), ("Disk quota", _SPACE_ERRNOS[errno.EDQUOT]),
                            ("File too large", _SPACE_ERRNOS[errno.EFBIG])):
        if needle in text:
            return wording
    return None


@dataclass
class Target:
    """A resolved output: ``kind`` is ``stdout``, ``file`` or ``special``.

    ``display`` is the path as the user wrote it (for messages); ``path`` is the file that is
    replaced (a symlink's final target) or the special file written in place.
    """

    kind: str
    display: str
    path: Path | None = None
    _tmp: Path | None = None

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    @property
    def records_manifest(self) -> bool:
        """Only regular files keep a manifest (stdout and devices are never up to date)."""
        return self.kind == FILE

    def beside(self, suffix: str) -> Path:
        """A hidden path next to the written file: ``.NAME{suffix}``."""
        assert self.path is not None
        return self.path.parent / f".{self.path.name}{suffix}"

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path | None]:
        """The path to write to (a temporary file renamed onto the target on success, or the special
        file itself); ``None`` for stdout. Write errors name the user's path."""
        if self.kind == STDOUT:
            with self.errors():
                yield None
            return
        assert self.path is not None
        if self.kind == SPECIAL:
            with self.errors():
                yield self.path
            return
        with self.errors(), atomic_path(self.path, display=self.display) as tmp:
            self._tmp = tmp
            yield tmp

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """A binary file object to write: stdout's buffer, the special file, or a temporary file."""
        with self.writing() as path:
            if path is None:
                yield sys.stdout.buffer
                sys.stdout.buffer.flush()
                return
            mode = "wb" if self.kind == FILE else "ab"  # a device or FIFO is opened without truncating
            with open(path, mode) as fh:
                yield fh

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the OS errors of writing into one line naming the user's path."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            wording = space_error(exc)
            if wording:
                raise InputError(f"{self.display}: {wording} while writing; free some space or write elsewhere") from None
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise InputError(f"{self.display}: cannot write here ({os.strerror(exc.errno)})") from None
            own = getattr(self, "_tmp", None)
            if exc.filename not in (None, str(own), str(self.path)):
                raise  # another file's error (an input): not ours to reword
            text = str(exc).strip()
            reason = exc.strerror or (text.splitlines()[0] if text else type(exc).__name__)
            if own is not None:
                reason = reason.replace(str(own), self.display)
            raise InputError(f"{self.display}: cannot write ({reason})") from None

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold an exclusive lock beside a file target; a second writer waits for the first."""
        if self.kind != FILE:
            yield
            return
        with exclusive_lock(self.beside(".vecpipe-lock"), lambda: on_wait and on_wait(f"waiting for another vecpipe writing {self.display}")):
            yield


def resolve_target(out: str | Path | None) -> Target:
    """Classify ``-o`` before any work; refuse places that cannot be written."""
    if is_stdout(out):
        if not stdout_open():
            raise InputError("standard output is closed; give -o FILE or redirect stdout")
        return Target(STDOUT, "<stdout>")
    display = str(out)
    given = Path(display)
    path = Path(os.path.realpath(given)) if given.is_symlink() else given
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise InputError(f"{display}: a parent of this path is not a directory; give an output path in a directory") from None
    except OSError as exc:
        raise InputError(f"{display}: cannot use this output path ({exc.strerror})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{display}: is a directory; give a file path to -o")
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            return Target(SPECIAL, display, path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{display}: is neither a regular file, a character device nor a FIFO; give a file path to -o")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{display}: directory {str(parent)!r} does not exist; create it first")
    if not parent.is_dir():
        raise InputError(f"{display}: {str(parent)!r} is not a directory; give an output path in a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{display}: cannot write in directory {str(parent)!r} (permission denied)")
    return Target(FILE, display, path)


# --------------------------------------------------------------------------------- atomic writes


def _tmp_prefix(final: Path) -> str:
    return f".{final.name}{_TMP_MARK}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(final: Path) -> None:
    """Remove temporary files left next to ``final`` by writers that are no longer running."""
    prefix = _tmp_prefix(final)
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_part = entry.name[len(prefix):].split("-", 1)[0]
        if pid_part.isdigit() and _pid_alive(int(pid_part)) and int(pid_part) != os.getpid():
            continue
        with contextlib.suppress(OSError):
            entry.unlink()


#: Bytes written between two requests to start writing a file's pages to disk (:class:`WriteBehind`).
WRITE_BEHIND_BYTES = 32 << 20
_sync_file_range: Any = None  # libc's, looked up once; False where there is none


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing a file's dirty pages to disk now, without waiting for them
    (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, any descriptor of the file). The fsync that
    makes an output durable at the end then waits for what was written since, not for the whole
    file: a 300 MB index took 0.84 s to write and fsync here, 0.38 s with writeback started every
    32 MB. A no-op where the call does not exist (the fsync then does all the work, as before)."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                _sync_file_range = fn
            except (OSError, AttributeError):
                pass
    if _sync_file_range:
        _sync_file_range(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE over the whole file; errors ignored: fsync reports them


class WriteBehind:
    """Starts writeback of a file every :data:`WRITE_BEHIND_BYTES` as it grows (see
    :func:`start_writeback`). ``wrote(n)`` after each write; or ``poll()`` where the writer is a
    library, which reads the file's size."""

    def __init__(self, path: str | Path):
        self._path: str | Path | None = path
        self._fd: int | None = None  # opened at first use: the writer may create the file after us
        self._pending = 0
        self._size = 0

    def _open(self) -> int | None:
        if self._fd is None and self._path is not None:
            try:
                self._fd = os.open(self._path, os.O_RDONLY)
            except OSError:
                self._path = None  # not a file we can open: nothing to start
        return self._fd

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= WRITE_BEHIND_BYTES:
            self._pending = 0
            fd = self._open()
            if fd is not None:
                start_writeback(fd)

    def poll(self) -> None:
        fd = self._open()
        if fd is not None:
            size = os.fstat(fd).st_size
            self.wrote(size - self._size)
            self._size = size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._path = None


@contextlib.contextmanager
def atomic_path(final: str | Path, display: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` if the block succeeds.

    The parent directory must exist. The temporary file is removed on any failure.
    """
    final = Path(final)
    clean_stale(final)
    tmp = final.parent / f"{_tmp_prefix(final)}{os.getpid()}-{os.urandom(4).hex()}"
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(os.stat(final).st_mode))
            os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(final: str | Path, mode: str = "wb") -> Iterator[IO]:
    with atomic_path(final) as tmp, open(tmp, mode) as fh:
        yield fh


@contextlib.contextmanager
def exclusive_lock(path: Path, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
    """flock on ``path``, created if needed and removed on release.

    Removal is safe: after locking, the holder checks that the path still names the file it locked
    (a waiter that locked a file the previous holder just unlinked starts over).
    """
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)

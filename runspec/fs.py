"""The only atomic write and the only file lock in the tree.

Atomic: a file is written under a temporary name in its own directory, flushed to disk and
renamed over the target, so a reader sees the old file or the new one, never half of either,
and a failure (disk full, a kill) leaves the old file and no temporary behind.

Locks: an exclusive ``flock`` on a dedicated lock file, waited for at most ``timeout`` seconds.
The holder writes its pid and command line into the lock file, so a process that waits too long
(a holder that hung) gets one line naming who holds it instead of blocking for ever. filelock
was considered: it truncates the lock file on every attempt, which would erase that name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator

LOCK_TIMEOUT = 60.0  # seconds; changes under a lock take milliseconds, even on a busy machine


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """A file to write ``path``'s new content into; it replaces ``path`` when the block ends
    without an exception (and is removed when one is raised)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8)."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


class LockHeld(OSError):
    """The lock stayed held by someone else past the timeout; ``holder`` names them."""

    def __init__(self, path: Path, holder: str, timeout: float):
        self.path, self.holder = path, holder
        waited = f"for {timeout:g} s" if timeout else "now"
        super().__init__(f"{path} is held by {holder} ({waited}); if that process is hung, end it "
                         f"and try again")


class Lock:
    """A held lock; ``release`` (or leaving ``locked``) frees it."""

    def __init__(self, f: IO):
        self.file = f

    def release(self) -> None:
        if not self.file.closed:
            with contextlib.suppress(OSError):
                fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def acquire(path: str | Path, timeout: float = LOCK_TIMEOUT) -> Lock:
    """Take the exclusive lock on ``path`` (created if missing), waiting at most ``timeout``
    seconds (0: only if free now); raises LockHeld naming the holder. A missing parent
    directory raises FileNotFoundError, for callers whose directory may have been removed.

    A contended lock is waited for by a blocking flock in a helper thread, not by polling: the
    kernel hands the lock over the moment it is released, in order, so a busy writer cannot
    starve a waiter. A wait that times out is abandoned: should the flock succeed later, the
    helper releases it at once."""
    path = Path(path)
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not _wait_for(f, timeout):
            holder = _holder_of(path)
            raise LockHeld(path, holder, timeout) from None
    with contextlib.suppress(OSError):  # who holds it, for whoever waits too long
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200]}")
        f.flush()
    return Lock(f)


def _wait_for(f: IO, timeout: float) -> bool:
    """Block on the lock for at most ``timeout`` s; False (and ``f`` closed) when it stays held."""
    if timeout <= 0:
        f.close()
        return False
    got = threading.Event()
    state = {"abandoned": False}
    guard = threading.Lock()

    def wait() -> None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except (OSError, ValueError):  # closed meanwhile
            return
        with guard:
            if state["abandoned"]:
                with contextlib.suppress(OSError, ValueError):
                    fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
                return
            got.set()

    threading.Thread(target=wait, name="lock-wait", daemon=True).start()
    got.wait(timeout)
    with guard:
        if got.is_set():
            return True
        state["abandoned"] = True  # the helper releases and closes it if the flock ever succeeds
    return False


def _holder_of(path: Path) -> str:
    """Who holds the lock, as its holder wrote it into the lock file."""
    with contextlib.suppress(OSError):
        pid, _, cmd = path.read_text(encoding="utf-8").strip().partition(" ")
        if pid.isdigit():
            return f"pid {pid}" + (f" ({cmd})" if cmd else "")
    return "another process"


@contextlib.contextmanager
def locked(path: str | Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lock on ``path`` for the block (see ``acquire``)."""
    lock = acquire(path, timeout)
    try:
        yield
    finally:
        lock.release()

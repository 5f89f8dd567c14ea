"""One writer per output file: an advisory lock (``fcntl.flock`` on ``FILE.lock``) held while writing.

A run (and a merge) holds the lock of every file it writes; a second process gets :class:`OutputLocked`
naming the holder's pid. POSIX only, as the rest of the run machinery (``fsync``, ``os.replace`` on one
volume).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from garvideo.errors import GarVideoError, PathLike

__all__ = ["OutputLocked", "lock_path", "output_lock"]


class OutputLocked(GarVideoError):
    """Another process holds the lock of an output file (it is writing or merging it).

    Not an :class:`~garvideo.errors.InputError`: the input is fine, the file is busy. The CLI prints it
    as one line ``error: <file>: is being written by another process (pid N)`` and exits 2.

    Attributes:
        path: the output file.
        pid: the holder's pid as its lock file says (``"unknown"`` when it says nothing).
        problem: the message without the file.
    """

    def __init__(self, path: PathLike, pid: str) -> None:
        self.path = Path(path)
        self.pid = pid
        self.problem = f"is being written by another process (pid {pid})"
        super().__init__(f"{os.fspath(path)}: {self.problem}")


def lock_path(path: PathLike) -> Path:
    """The lock file of an output: ``FILE.lock`` beside it (removed when the lock is released)."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[Path]:
    """Hold the advisory write lock of ``path`` (``fcntl.flock`` on :func:`lock_path`) meanwhile.

    The lock file holds the holder's pid, for the message the next writer gets. It is released by the
    kernel when the process dies, so ``kill -9`` leaves no stale lock (only, at most, the lock file).

    Raises:
        OutputLocked: another process holds the lock.
    """
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise OutputLocked(path, pid) from None
        try:  # the holder before us may have removed the file after we opened it: lock the new one
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield lp
    finally:
        with contextlib.suppress(OSError):
            lp.unlink()
        os.close(fd)

"""Machine-wide locks between the API's processes: advisory file locks (flock) the kernel keeps.

A lock is held while its file descriptor is open and released when it is closed or its process
dies, so a crashed holder never leaves a lock behind. Each `try_lock` opens a new file description,
so threads of one process exclude each other exactly as processes do.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


def try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on `path` (created if missing), or None if held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def lock(path: Path) -> int:
    """An open descriptor holding an exclusive lock on `path` (created if missing), waiting for it in the
    kernel (no polling: the waiter wakes when the holder releases). For short critical sections only."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(fd: int | None) -> None:
    """Release a lock taken by `try_lock` (closing the descriptor releases it); None is a no-op."""
    if fd is not None:
        os.close(fd)

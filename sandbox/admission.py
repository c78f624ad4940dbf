"""Admission to the sandbox: a per-organisation limit, a machine-wide worker count and a bounded queue.

The limits hold across every API process on the machine (`market serve --workers N`, or several
servers on one data directory) because they are kept by the kernel, as advisory locks (flock) on
small files in `<data_dir>/run/sandbox/`. A slot is held while its file is locked; the kernel
releases it when the holder closes the file or its process dies, so a crashed process never leaks a
slot and nothing needs cleaning up. Each acquisition opens its own file description, so threads of
one process exclude each other exactly as processes do.

- `org-<hash>-<i>`, i < per_org: an organisation's queries in flight (waiting or running). Past it,
  429 `too_many_queries`: one buyer can never hold more than its share of the workers.
- `worker-<i>`, i < workers: queries running in a sandbox worker, machine-wide.
- `queue-<i>`, i < queue_size: queries waiting for a worker. When every queue slot is taken, or a
  query has waited `queue_timeout` seconds, 503 `sandbox_busy`.

Waiting without polling: a query in the queue sleeps in `poll()` on a named pipe, `doorbell`, in the
same directory, and a query that releases a worker slot writes one byte to it. Every waiter wakes,
one reads the byte, and each tries the worker slots once more, then sleeps again; a waiter opens the
pipe before its first try, so a release between its try and its sleep still wakes it (the byte waits
in the pipe). The sleep is also cut every CANCEL_CHECK_SECONDS to look for a cancel request and ends
at the queue timeout; a slot freed by a crash (no byte) is found at the next such wake-up.

Why files rather than rows in the database: a slot must be held for the whole query, but no
database session or pooled connection may be (a lease row would need a session, or expiry times
and a sweeper for crashed holders); the product files the workers read live in the same data
directory, so every process that can run a query shares it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from market.errors import ServiceUnavailable, TooManyRequests
from market.locks import release, try_lock
from sandbox.errors import QueryFailed

CANCEL_CHECK_SECONDS = 0.1
"""How often a waiting query wakes without a doorbell: to look for a cancel request (and a crashed holder)."""
DOORBELL = "doorbell"
NO_DOORBELL_SECONDS = 0.01
"""The nap between tries where the doorbell cannot be made (a file system without named pipes)."""
TOO_MANY_RETRY_AFTER = 1
"""Seconds a buyer over its limit is told to wait: about one small query."""
BUSY_RETRY_AFTER = 2
"""Seconds a caller turned away by a full or slow queue is told to wait."""


def _first_free(paths: list[Path]) -> int | None:
    for path in paths:
        fd = try_lock(path)
        if fd is not None:
            return fd
    return None


@dataclass(frozen=True)
class Admission:
    """The sandbox's admission rules over one slot directory; cheap to build, holds no state itself."""

    directory: Path
    workers: int
    per_org: int
    queue_size: int
    queue_timeout: float

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _slots(self, kind: str, count: int) -> list[Path]:
        return [self.directory / f"{kind}-{i}" for i in range(max(0, count))]

    def org_slots(self, org_id: str) -> list[Path]:
        digest = hashlib.sha256(org_id.encode()).hexdigest()[:24]
        return self._slots(f"org-{digest}", self.per_org)

    def worker_slots(self) -> list[Path]:
        return self._slots("worker", self.workers)

    def queue_slots(self) -> list[Path]:
        return self._slots("queue", self.queue_size)

    @contextlib.contextmanager
    def organisation(self, org_id: str) -> Iterator[TooManyRequests | None]:
        """Hold one of the organisation's slots for the block; yields None, or the 429 to answer
        (`too_many_queries`, with Retry-After) when the organisation is at its limit.

        Yielded rather than raised so that the caller can still replay an Idempotency-Key and record
        the refused attempt in the transaction it opens anyway.
        """
        fd = _first_free(self.org_slots(org_id))
        try:
            if fd is None:
                yield TooManyRequests("too_many_queries", limit=self.per_org, retry_after=TOO_MANY_RETRY_AFTER)
            else:
                yield None
        finally:
            release(fd)

    @contextlib.contextmanager
    def worker(self, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold a worker slot for the block, waiting in the queue if every one is busy.

        Raises ServiceUnavailable (`sandbox_busy`, with Retry-After) when the queue is full or the
        wait times out, and QueryFailed (`query_cancelled`) when `cancelled()` answers True while it
        waits; nothing is held then.
        """
        fd = _first_free(self.worker_slots())
        if fd is None:
            fd = self._wait_for_worker(cancelled)
        try:
            yield
        finally:
            release(fd)
            self._ring()

    def _doorbell(self) -> int | None:
        """The doorbell, open read-write (a writer stays connected, so the pipe never reports a hang-up
        once a ringer has gone); None where no named pipe can be made (the waiter then naps briefly)."""
        path = self.directory / DOORBELL
        try:
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.mkfifo(path, 0o600)
            return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None

    def _ring(self) -> None:
        """Wake the queries waiting for a worker, if any (a pipe nobody reads: nobody waits)."""
        try:
            fd = os.open(self.directory / DOORBELL, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # ENXIO: no waiter has it open; ENOENT: nobody ever waited
            return
        try:
            # Full (BlockingIOError): the waiters have plenty to wake on. Broken pipe: the last waiter
            # closed its end between our open and our write, so nobody waits any more. Neither may fail
            # the query whose release rang (it has run, and its answer is still to be metered).
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(fd, b"!")
        finally:
            os.close(fd)

    def _wait_for_worker(self, cancelled: Callable[[], bool] | None = None) -> int:
        queued = _first_free(self.queue_slots())
        if queued is None:
            raise ServiceUnavailable("sandbox_busy", seconds=self.queue_timeout, retry_after=BUSY_RETRY_AFTER)
        bell: int | None = None
        try:
            bell = self._doorbell()
            poller = select.poll()  # not select(): descriptors past 1024 are common in a busy server
            if bell is not None:
                poller.register(bell, select.POLLIN)
            deadline = time.monotonic() + self.queue_timeout
            while True:
                worker = _first_free(self.worker_slots())
                if worker is not None:
                    return worker
                if cancelled is not None and cancelled():
                    raise QueryFailed("query_cancelled", status_code=409)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if bell is None:
                    time.sleep(min(left, NO_DOORBELL_SECONDS))
                elif poller.poll(min(left, CANCEL_CHECK_SECONDS) * 1000):
                    with contextlib.suppress(BlockingIOError):  # another waiter took the byte: try anyway
                        os.read(bell, 1)
            raise ServiceUnavailable("sandbox_busy", seconds=self.queue_timeout, retry_after=BUSY_RETRY_AFTER)
        finally:
            if bell is not None:
                os.close(bell)
            release(queued)

    def held(self, paths: list[Path]) -> int:
        """How many of `paths` some holder has locked now (for operations, tests and the bench)."""
        count = 0
        for path in paths:
            fd = try_lock(path)
            if fd is None:
                count += 1
            release(fd)
        return count

    @contextlib.contextmanager
    def occupy(self, paths: list[Path]) -> Iterator[None]:
        """Hold every slot in `paths` for the block, as busy holders elsewhere would (tests, drills)."""
        fds: list[int] = []
        try:
            for path in paths:
                fd = try_lock(path)
                if fd is None:
                    raise RuntimeError(f"slot {path.name} is already held")
                fds.append(fd)
            yield
        finally:
            for fd in fds:
                release(fd)

"""Cancelling a buyer's query while it waits for a sandbox worker or runs in one, from any API process.

A query sent with an Idempotency-Key can be cancelled by that key (`POST /v1/queries/{key}/cancel`,
or the console's Cancel button). The request that cancels may reach another API process than the one
running the query, so the two meet in files under `<data_dir>/run/sandbox/cancel/`, like the
admission slots (sandbox/admission.py), named by a digest of the organisation and the key (one buyer
can never name another's query):

- `run-<digest>`: locked (flock) while the query is in flight; the kernel releases it if the process
  dies, so "is it running?" never sees a stale holder.
- `stop-<digest>`: the cancel request. The running query checks for it while it waits in the queue
  and every POLL_SECONDS while a worker runs it; then the worker interrupts DuckDB
  (`connection.interrupt()`), the slots are released and the attempt is recorded as `rejected`
  with `query_cancelled`, never charged. A request older than MAX_AGE_SECONDS is ignored (it named
  a query that had already finished), and the query removes its request when it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from market.locks import release, try_lock

POLL_SECONDS = 0.1
"""How often a running query looks for a cancel request: a stat() of one file."""
MAX_AGE_SECONDS = 600.0
"""A cancel request older than this is ignored: longer than any query may wait and run."""


@dataclass(frozen=True)
class Cancellations:
    """The cancel requests and running markers of one data directory; cheap to build, holds no state."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    @staticmethod
    def token(org_id: str, key: str) -> str:
        """The name of a query: a digest of its organisation and its Idempotency-Key."""
        return hashlib.sha256(f"{org_id}\0{key}".encode()).hexdigest()[:32]

    def _stop(self, token: str) -> Path:
        return self.directory / f"stop-{token}"

    def _run(self, token: str) -> Path:
        return self.directory / f"run-{token}"

    def request(self, token: str) -> None:
        """Ask the query named `token` to stop (it may be running, queued, or about to start)."""
        path = self._stop(token)
        path.touch(mode=0o600)
        os.utime(path)
        self._sweep()

    def _sweep(self) -> None:
        """Remove requests too old to matter (for queries that never started), so none piles up."""
        cutoff = time.time() - MAX_AGE_SECONDS
        for old in self.directory.glob("stop-*"):
            with contextlib.suppress(FileNotFoundError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()

    def requested(self, token: str) -> bool:
        """Whether a recent cancel request names the query."""
        try:
            age = time.time() - self._stop(token).stat().st_mtime
        except FileNotFoundError:
            return False
        return age <= MAX_AGE_SECONDS

    def checker(self, token: str | None) -> Callable[[], bool] | None:
        """A callable telling whether the query was cancelled (None for a query that cannot be)."""
        if token is None:
            return None
        return lambda: self.requested(token)

    def is_running(self, token: str) -> bool:
        """Whether some process holds the query's running marker now (a missing marker: not running)."""
        try:
            fd = os.open(self._run(token), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    @contextlib.contextmanager
    def running(self, token: str | None) -> Iterator[None]:
        """Hold the query's running marker for the block; its cancel request is removed at the end."""
        if token is None:
            yield
            return
        fd = try_lock(self._run(token))
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._stop(token).unlink()
            if fd is not None:  # removed while still held: no file is left behind per query
                with contextlib.suppress(FileNotFoundError):
                    self._run(token).unlink()
            release(fd)

    def wait_until_stopped(self, token: str, seconds: float) -> bool:
        """Wait up to `seconds` for the query to leave; True when it is no longer running."""
        deadline = time.monotonic() + seconds
        while self.is_running(token):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

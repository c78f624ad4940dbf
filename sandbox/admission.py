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

Waiters are served by organisation in turn: the next worker goes to the waiting query whose
organisation was served least recently (an organisation never served, or long forgotten, first), then
to the earliest arrival. So while a query waits, no other organisation is served twice: it waits at
most about (organisations waiting) x (one query's time), however many queries one buyer queued.

- `queue.lock`: a short critical section (a blocking flock, held for microseconds, never while a query
  waits or runs) and the queue's book, in the same file: a tick counter, the tick at which each
  organisation was last served, and each queue slot's waiter (organisation digest and arrival tick).
  Every queue slot is taken, and every worker slot taken by a waiter or a newcomer, under this lock.
- A waiter's entry counts only while its queue slot file is locked: the entry of a waiter that
  crashed (its slot unlocked by the kernel) is ignored and dropped at the next read, so a crashed
  waiter or holder never blocks the queue. The book is only an order: lost or unreadable, the queue
  is rebuilt from the locked slot files (each also records its waiter) and fairness restarts.

Waiting without polling: each waiter sleeps in `poll()` on its own named pipe, `queue-<i>.bell`,
opened while it enqueues (under the lock). A query that releases a worker slot reads the book and
rings the bell of the first waiter in turn only; that waiter takes a worker slot if one is free (under
the lock, and only if it is still first) and rings the next in turn, so that several freed workers are
all taken. A newcomer takes a free worker at once when nobody waits; otherwise it queues, placed by
the same rule (first in turn, it takes a free worker at once too). The sleep is also cut every
CANCEL_CHECK_SECONDS to look for a cancel request and ends at the queue timeout; the first in turn
then also looks for a slot freed by a crash (no ring), the others every LOOK_EVERY_NAPS such naps (one
ahead of them may have crashed).

`fair=False` keeps the previous policy (every waiter woken, the first to grab a free worker wins, a
newcomer takes a free worker even past waiters), for the bench's side-by-side (bench/sandbox_fairness.py).

Why files rather than rows in the database: a slot must be held for the whole query, but no
database session or pooled connection may be (a lease row would need a session, or expiry times
and a sweeper for crashed holders); the product files the workers read live in the same data
directory, so every process that can run a query shares it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from market.errors import ServiceUnavailable, TooManyRequests
from market.locks import lock, release, try_lock
from sandbox.errors import QueryFailed

CANCEL_CHECK_SECONDS = 0.1
"""How often a waiting query wakes without a ring: to look for a cancel request (and a crashed holder)."""
LOOK_EVERY_NAPS = 5
"""A waiter not first in turn reads the queue's book at every ring but only every this many naps."""
QUEUE_LOCK = "queue.lock"
BELL = ".bell"
NO_DOORBELL_SECONDS = 0.01
"""The nap between tries where the doorbell cannot be made (a file system without named pipes)."""
REMEMBERED = 256
"""Organisations whose last service the book keeps while nobody waits (forgotten ones count as the
oldest forgotten: never ahead of an organisation served before them)."""
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


def _digest(org_id: str) -> str:
    return hashlib.sha256(org_id.encode()).hexdigest()[:24]


@dataclass
class _Book:
    """The queue's order, kept in the queue lock's file; read and written only while holding that lock."""

    tick: int = 0
    floor: int = 0
    """The newest service forgotten: an organisation the book does not know counts as served then."""
    served: dict[str, int] = field(default_factory=dict)
    queued: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Queue slot -> (organisation digest, arrival tick); an entry counts only while its slot is locked."""
    readable: bool = True

    @classmethod
    def read(cls, fd: int) -> _Book:
        raw = os.pread(fd, 1 << 20, 0)
        if not raw:
            return cls()
        try:
            # raw_decode: a write cut short by a crash may leave the end of a longer old book behind.
            data, _ = json.JSONDecoder().raw_decode(raw.decode())
            return cls(
                tick=int(data["tick"]),
                floor=int(data["floor"]),
                served={str(org): int(at) for org, at in data["served"].items()},
                queued={int(slot): (str(org), int(at)) for slot, (org, at) in data["queued"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError):  # OverflowError: int(1e999)
            return cls(readable=False)

    def write(self, fd: int) -> None:
        data = {"tick": self.tick, "floor": self.floor, "served": self.served, "queued": self.queued}
        encoded = json.dumps(data, separators=(",", ":")).encode()
        os.pwrite(fd, encoded, 0)
        os.ftruncate(fd, len(encoded))

    def next_tick(self) -> int:
        self.tick += 1
        return self.tick

    def key(self, slot: int) -> tuple[int, int, int]:
        """Order of service: least recently served organisation first, then earliest arrival."""
        org, arrival = self.queued[slot]
        return (self.served.get(org, self.floor), arrival, slot)

    def serve(self, org: str) -> None:
        """Record a service of `org`, and forget the records that decide nothing any more."""
        self.served[org] = self.next_tick()
        waiting = {other for other, _ in self.queued.values()}
        for other in waiting:  # pinned: raising the floor below must not move a waiting organisation back
            self.served.setdefault(other, self.floor)
        oldest = min((self.served[other] for other in waiting), default=None)
        kept: dict[str, int] = {}
        for other, at in sorted(self.served.items(), key=lambda item: item[1], reverse=True):
            if other in waiting or (len(kept) < REMEMBERED and (oldest is None or at >= oldest)):
                kept[other] = at
            else:  # older than every waiting organisation's record, or past the memory: the floor stands for it
                self.floor = max(self.floor, at)
        self.served = kept


@dataclass(frozen=True)
class Admission:
    """The sandbox's admission rules over one slot directory; cheap to build, holds no state itself."""

    directory: Path
    workers: int
    per_org: int
    queue_size: int
    queue_timeout: float
    fair: bool = True
    """Serve waiters by organisation in turn (False: the previous free-for-all, kept for the bench)."""

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _slots(self, kind: str, count: int) -> list[Path]:
        return [self.directory / f"{kind}-{i}" for i in range(max(0, count))]

    def org_slots(self, org_id: str) -> list[Path]:
        return self._slots(f"org-{_digest(org_id)}", self.per_org)

    def worker_slots(self) -> list[Path]:
        return self._slots("worker", self.workers)

    def queue_slots(self) -> list[Path]:
        return self._slots("queue", self.queue_size)

    def _queue_slot(self, slot: int) -> Path:
        return self.directory / f"queue-{slot}"

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
    def worker(self, org_id: str, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold a worker slot for the block, for a query of `org_id`, waiting in the queue (served by
        organisation in turn) if every one is busy or others already wait.

        Raises ServiceUnavailable (`sandbox_busy`, with Retry-After) when the queue is full or the
        wait times out, and QueryFailed (`query_cancelled`) when `cancelled()` answers True while it
        waits; nothing is held then.
        """
        fd = self._take(_digest(org_id), cancelled)
        try:
            yield
        finally:
            release(fd)
            # The query has run: failing to ring must not fail it (the first in turn looks at its next nap).
            with contextlib.suppress(OSError):
                self._ring(self._next_in_turn())

    @contextlib.contextmanager
    def _book(self) -> Iterator[tuple[int, _Book]]:
        fd = lock(self.directory / QUEUE_LOCK)
        try:
            yield fd, _Book.read(fd)
        finally:
            release(fd)

    def _waiting(self, book: _Book) -> list[int]:
        """The queue slots whose waiters are still there (slot locked), in the order they are to be
        served; entries of waiters gone (crashed) are dropped from `book`."""
        if not book.readable:  # rebuilt from the slot files: each records its waiter
            book.readable = True
            book.queued = {}
            for slot, path in enumerate(self.queue_slots()):
                if self.held([path]):
                    with contextlib.suppress(OSError, ValueError):
                        org, arrival = path.read_text().split()
                        book.queued[slot] = (org, int(arrival))
                        book.tick = max(book.tick, int(arrival))
        for slot in list(book.queued):
            if slot >= self.queue_size or not self.held([self._queue_slot(slot)]):
                del book.queued[slot]
        return sorted(book.queued, key=book.key)

    def _next_in_turn(self) -> list[int]:
        """The waiters to ring after a worker was freed: the first in turn (every waiter, unfair)."""
        with self._book() as (fd, book):
            before = len(book.queued)
            waiting = self._waiting(book)
            if len(waiting) != before:
                book.write(fd)
        return waiting if not self.fair else waiting[:1]

    def _take(self, org: str, cancelled: Callable[[], bool] | None) -> int:
        """A worker slot, at once if nobody waits and one is free, else after waiting in turn."""
        with self._book() as (fd, book):
            waiting = self._waiting(book)
            if not waiting or not self.fair:
                worker = _first_free(self.worker_slots())
                if worker is not None:
                    book.serve(org)
                    try:
                        book.write(fd)
                    except BaseException:
                        release(worker)
                        raise
                    return worker
            queued = slot = None
            for slot in sorted(range(self.queue_size), key=lambda slot: slot in book.queued):
                queued = try_lock(self._queue_slot(slot))
                if queued is not None:
                    break
            if queued is None or slot is None:
                raise ServiceUnavailable("sandbox_busy", seconds=self.queue_timeout, retry_after=BUSY_RETRY_AFTER)
            try:
                arrival = book.next_tick()
                os.ftruncate(queued, 0)
                os.pwrite(queued, f"{org} {arrival}\n".encode(), 0)
                book.queued[slot] = (org, arrival)
                book.write(fd)
                bell = self._bell(slot)
            except BaseException:
                release(queued)
                raise
        return self._wait_in_turn(org, slot, queued, bell, cancelled)

    def _bell(self, slot: int) -> int | None:
        """The waiter's own doorbell, open read-write (a ringer's close never reports a hang-up); None
        where no named pipe can be made (the waiter then naps briefly between tries)."""
        path = self.directory / f"queue-{slot}{BELL}"
        try:
            if not path.exists():
                with contextlib.suppress(FileExistsError):
                    os.mkfifo(path, 0o600)
            bell = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        with contextlib.suppress(BlockingIOError):  # a ring meant for the slot's previous waiter
            os.read(bell, 64)
        return bell

    def _ring(self, slots: list[int]) -> None:
        """Wake the waiters in `slots` (a pipe nobody reads: that waiter has just gone)."""
        for slot in slots:
            try:
                fd = os.open(self.directory / f"queue-{slot}{BELL}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # ENXIO: nobody has it open; ENOENT: no pipe could be made
                continue
            try:
                # Full (BlockingIOError): the waiter has plenty to wake on. Broken pipe: it closed its end
                # between our open and our write. Neither may fail the query whose release rang.
                with contextlib.suppress(BlockingIOError, BrokenPipeError):
                    os.write(fd, b"!")
            finally:
                os.close(fd)

    def _try_in_turn(self, org: str, slot: int, queued: int) -> tuple[int | None, bool]:
        """A worker slot if this waiter is first in turn and one is free (its queue slot then released,
        and the next in turn rung); and whether it is first in turn."""
        worker: int | None = None
        with self._book() as (fd, book):
            waiting = self._waiting(book)
            first = not self.fair or waiting[:1] == [slot]
            if first:
                worker = _first_free(self.worker_slots())
            if worker is None:
                return None, first
            del book.queued[slot]
            book.serve(org)
            try:
                book.write(fd)
            except BaseException:
                release(worker)
                raise  # the queue slot stays held: _wait_in_turn's cleanup releases it, once
            release(queued)
        if self.fair:  # another worker may be free too: the next in turn looks
            self._ring([other for other in waiting if other != slot][:1])
        return worker, True

    def _wait_in_turn(
        self, org: str, slot: int, queued: int, bell: int | None, cancelled: Callable[[], bool] | None
    ) -> int:
        served = False
        try:
            poller = select.poll()  # not select(): descriptors past 1024 are common in a busy server
            if bell is not None:
                poller.register(bell, select.POLLIN)
            deadline = time.monotonic() + self.queue_timeout
            look, naps = True, 0
            while True:
                if look:
                    worker, first = self._try_in_turn(org, slot, queued)
                    if worker is not None:
                        served = True
                        return worker
                    naps = 0
                if cancelled is not None and cancelled():
                    raise QueryFailed("query_cancelled", status_code=409)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if bell is None:
                    time.sleep(min(left, NO_DOORBELL_SECONDS))
                    look = True
                elif poller.poll(min(left, CANCEL_CHECK_SECONDS) * 1000):
                    with contextlib.suppress(BlockingIOError):
                        os.read(bell, 64)
                    look = True
                else:
                    # No ring. The first in turn looks anyway (a holder that crashed rang nobody); the others
                    # look less often (one ahead that crashed rang nobody either), sparing the queue's lock.
                    naps += 1
                    look = first or naps >= LOOK_EVERY_NAPS
            raise ServiceUnavailable("sandbox_busy", seconds=self.queue_timeout, retry_after=BUSY_RETRY_AFTER)
        finally:
            if not served:  # leaving without a worker: if it was first in turn, the next one is now
                with self._book() as (fd, book):
                    book.queued.pop(slot, None)
                    release(queued)
                    waiting = self._waiting(book)
                    book.write(fd)
                self._ring(waiting[:1] if self.fair else [])
            if bell is not None:
                os.close(bell)

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

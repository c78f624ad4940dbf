"""Per-process caches of the sandbox: validated plans, and answers of threshold mode.

Both are bounded LRU maps guarded by a lock (API processes serve requests from several threads).

- **Plan cache.** Key: the protection policy (its canonical JSON) and the buyer's SQL text. Value:
  the `Plan` both validators accepted. A plan depends on nothing else: validation reads the text
  and the policy only (the binder check that needs the tables' types runs in the worker, every time
  a statement runs). Refusals are not cached; they are cheap to refuse again and carry the buyer's
  language.
- **Result cache** (threshold mode only). Key: the version's files (immutable, and new for every
  product version, so a new version never meets an old entry), the mode, and the exact statements
  that would run (stage 1 template, decision and output, which embed the policy's k and every
  rewrite), and the row limit. Value: the sandbox's answer and its measurements.

A cached answer is still a metered query: metering.service records a usage record, audits and
charges it exactly as if it had run (the measurements that decide the charge, rows and bytes
scanned, are computed from the text and the files, so they are the same). Only `cpu_ms`, which is
informational, is 0 for a hit. Why an identical answer reveals nothing new: docs/sandbox.md.

Hit rates are counted per process (`stats()`), and shown by bench/http_throughput.py.

**One run for identical queries in flight** (`flight`). When several requests of one process miss the
result cache for the same key at once (a dashboard's panels refreshed by many buyers), the first runs
the query and the others wait for it, then take its answer from the cache, as a hit; if it failed
(refused, cancelled, busy) they run it themselves. Each is still metered, audited and charged on its
own. A follower that is cancelled stops waiting at once (checked every FOLLOW_CHECK_SECONDS).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    entries: int = 0
    size: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class BoundedCache(Generic[V]):
    """An LRU map bounded by entry count and by a total of caller-given sizes (an estimate of bytes)."""

    def __init__(self, max_entries: int, max_size: int) -> None:
        self.max_entries = max_entries
        self.max_size = max_size
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: Hashable) -> V | None:
        if self.max_entries <= 0:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self._stats.misses += 1
                return None
            self._items.move_to_end(key)
            self._stats.hits += 1
            return found[0]

    def put(self, key: Hashable, value: V, size: int = 1) -> None:
        if self.max_entries <= 0 or size > self.max_size:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._stats.size -= old[1]
            self._items[key] = (value, size)
            self._stats.size += size
            while len(self._items) > self.max_entries or self._stats.size > self.max_size:
                _, (_, dropped) = self._items.popitem(last=False)
                self._stats.size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._stats = CacheStats()

    def resize(self, max_entries: int, max_size: int) -> None:
        with self._lock:
            self.max_entries, self.max_size = max_entries, max_size
            while self._items and (len(self._items) > max(0, max_entries) or self._stats.size > max_size):
                _, (_, dropped) = self._items.popitem(last=False)
                self._stats.size -= dropped

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._stats.hits, self._stats.misses, len(self._items), self._stats.size)


PLAN_ENTRIES = 2048
PLAN_SIZE = 64 * 1024 * 1024
RESULT_ENTRIES = 1024
RESULT_BYTES = 64 * 1024 * 1024
"""Default bounds of the result cache per API process: 1,024 answers and about 64 MB of them."""

plans: BoundedCache[Any] = BoundedCache(PLAN_ENTRIES, PLAN_SIZE)
results: BoundedCache[Any] = BoundedCache(RESULT_ENTRIES, RESULT_BYTES)


def configure(result_entries: int, result_bytes: int) -> None:
    """Bounds of this process's result cache (settings `sandbox_result_cache_entries`, `..._bytes`)."""
    if (results.max_entries, results.max_size) != (result_entries, result_bytes):
        results.resize(result_entries, result_bytes)


def size_of(rows: list[list[Any]]) -> int:
    """A cheap estimate of the bytes an answer holds: 16 per cell plus the length of its text."""
    return sum(16 * len(row) + sum(len(v) for v in row if isinstance(v, str)) for row in rows) + 256


FOLLOW_CHECK_SECONDS = 0.1
"""How often a request waiting for an identical query in flight looks for a cancel request."""

_flights: dict[Hashable, threading.Event] = {}
_flights_lock = threading.Lock()


@contextlib.contextmanager
def flight(key: Hashable, cancelled: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Run the block once per `key` at a time in this process; yields True for the one that should run
    the query (the leader), False for a follower, after the leader has finished (its answer, if any,
    is in `results` then).

    A follower waits on an event the leader sets when it leaves the block (always, also on failure);
    `cancelled()` is asked every FOLLOW_CHECK_SECONDS while it waits, and once it answers True the
    follower stops waiting and yields False at once (its caller then sees the cancellation itself).
    """
    if results.max_entries <= 0:  # no cache to share an answer through: everybody runs
        yield True
        return
    with _flights_lock:
        running = _flights.get(key)
        if running is None:
            running = _flights[key] = threading.Event()
            leader = True
        else:
            leader = False
    if not leader:
        while not running.wait(FOLLOW_CHECK_SECONDS if cancelled is not None else None):
            if cancelled is not None and cancelled():
                break
        yield False
        return
    try:
        yield True
    finally:
        with _flights_lock:
            _flights.pop(key, None)
        running.set()

"""Where an API process spends a request's wall time, per phase, behind a debug flag.

With `MARKET_DEBUG_PHASES=1` in the environment (read once, at import), the metered query path times
its phases (authentication, the transactions, planning, the hop to the sandbox worker, serialisation)
and the whole request; each API process logs, when it stops, per phase: how many, the median, the
99th percentile and the total, and the phases of its slowest 1 % of requests (market.app). Without the
flag every call below returns at once: nothing is timed or kept.

A diagnostic for benchmarks (bench.http_throughput --phases), not a metric: samples are kept in
memory, at most MAX_SAMPLES per phase.

Thread hops (branch tidy15): the dependencies and handlers that call `on_thread` note where they run, on the
request's own thread (the event loop's) or in a worker thread, and in which hop to one. A hop is one call
FastAPI hands to its threadpool (a sync dependency, a sync handler): each gets its own copy of the request's
context, so a mark set in one stays in it. `hops()` gives, per request kept, its route and its sites with
their hop (0: the event loop); the log names each route's hop counts. tests/market/test_thread_hops_http.py
holds POST /v1/queries to its design: every dependency on the event loop, the handler in the one hop, and a
second hop only for a caller read from the database (a key-cache miss).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

ENABLED = os.environ.get("MARKET_DEBUG_PHASES", "").strip().lower() in {"1", "true", "yes"}
MAX_SAMPLES = 200_000


class Record(dict[str, float]):
    """A request's phases (name: seconds), and where its code ran: `sites`, (site, hop) in the order they
    ran; hop 0 is the request's own thread (the event loop's), 1, 2, ... each call handed to a worker thread."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.sites: list[tuple[str, int]] = []


_samples: dict[str, list[float]] = {}
_requests: list[tuple[float, dict[str, float]]] = []
_lock = threading.Lock()
_hops: list[tuple[str, tuple[tuple[str, int], ...]]] = []
_current: ContextVar[Record | None] = ContextVar("market_phases", default=None)
_hop: ContextVar[int] = ContextVar("market_phases_hop", default=0)


def add(name: str, seconds: float) -> None:
    """Count `seconds` of wall time to phase `name` (and to the current request's phases)."""
    if not ENABLED:
        return
    with _lock:
        kept = _samples.setdefault(name, [])
        if len(kept) < MAX_SAMPLES:
            kept.append(seconds)
    current = _current.get()
    if current is not None:
        current[name] = current.get(name, 0.0) + seconds


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as phase `name`."""
    if not ENABLED:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - started)


def start_request() -> Record | None:
    """A fresh per-request record for the phases timed in this context (None when disabled). The
    record is a dict shared with the threads the request hops to (contextvars are copied, the dict is not)."""
    if not ENABLED:
        return None
    record = Record()
    _current.set(record)
    return record


def on_thread(site: str) -> None:
    """Note that `site` (a dependency, a route's handler) runs now, on the request's own thread or in a hop
    to a worker thread (see the module doc)."""
    if not ENABLED:
        return
    record = _current.get()
    if record is None:
        return
    hop = 0
    if threading.get_ident() != record.thread:
        hop = _hop.get()
        if not hop:  # the first site of this call handed to the threadpool: a new hop
            hop = 1 + max((h for _, h in record.sites), default=0)
            _hop.set(hop)
    record.sites.append((site, hop))


def end_request(record: Record | None, seconds: float, route: str = "") -> None:
    if record is None:
        return
    add("request (whole)", seconds)
    with _lock:
        if len(_requests) < MAX_SAMPLES:
            _requests.append((seconds, dict(record)))
        if len(_hops) < MAX_SAMPLES:
            _hops.append((route, tuple(record.sites)))


def hops() -> list[tuple[str, tuple[tuple[str, int], ...]]]:
    """Per request kept, oldest first: its route (method and path template) and its sites with their hop."""
    with _lock:
        return list(_hops)


def reset() -> None:
    """Forget every sample kept so far (a bench calls it, through SIGUSR1 to the API process (market.app),
    once the server is warm: what is reported then is the measurement, not the warm-up)."""
    if not ENABLED:
        return
    with _lock:
        _samples.clear()
        _requests.clear()
        _hops.clear()


def _ms(value: float) -> str:
    return f"{1000 * value:.2f}"


def report() -> list[str]:
    """Lines for the log: per phase n, p50, p99, total; then the mean phases of the slowest 1 % of requests."""
    if not ENABLED:
        return []
    pid = os.getpid()
    lines: list[str] = []
    with _lock:
        samples = {name: sorted(values) for name, values in _samples.items()}
        requests = sorted(_requests, key=lambda item: item[0])
        routes: dict[str, Counter[int]] = {}
        for route, sites in _hops:
            routes.setdefault(route, Counter())[max((hop for _, hop in sites), default=0)] += 1
    for name, values in sorted(samples.items(), key=lambda item: -sum(item[1])):
        n = len(values)
        p50, p99 = values[n // 2], values[min(n - 1, int(0.99 * n))]
        total = _ms(sum(values))
        lines.append(f"phases of process {pid}: {name}: n {n}, p50 {_ms(p50)} ms, p99 {_ms(p99)} ms, total {total} ms")
    if requests:
        slow = requests[-max(1, len(requests) // 100) :]
        names = sorted({name for _, phases in slow for name in phases})
        mean = {name: sum(phases.get(name, 0.0) for _, phases in slow) / len(slow) for name in names}
        whole = sum(seconds for seconds, _ in slow) / len(slow)
        parts = ", ".join(f"{name} {_ms(value)}" for name, value in sorted(mean.items(), key=lambda item: -item[1]))
        head = f"phases of process {pid}: slowest {len(slow)} of {len(requests)} requests, mean {_ms(whole)} ms"
        lines.append(f"{head}: {parts}")
    for route, counts in sorted(routes.items()):
        spread = ", ".join(f"{hops} x{n}" for hops, n in sorted(counts.items()))
        lines.append(f"phases of process {pid}: thread hops of {route or '?'} (hops x requests): {spread}")
    return lines

"""Where an API process spends a request's wall time, per phase, behind a debug flag.

With `MARKET_DEBUG_PHASES=1` in the environment (read once, at import), the metered query path times
its phases (authentication, the transactions, planning, the hop to the sandbox worker, serialisation)
and the whole request; each API process logs, when it stops, per phase: how many, the median, the
99th percentile and the total, and the phases of its slowest 1 % of requests (market.app). Without the
flag every call below returns at once: nothing is timed or kept.

A diagnostic for benchmarks (bench.http_throughput --phases), not a metric: samples are kept in
memory, at most MAX_SAMPLES per phase.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar

ENABLED = os.environ.get("MARKET_DEBUG_PHASES", "").strip().lower() in {"1", "true", "yes"}
MAX_SAMPLES = 200_000

_samples: dict[str, list[float]] = {}
_requests: list[tuple[float, dict[str, float]]] = []
_lock = threading.Lock()
_current: ContextVar[dict[str, float] | None] = ContextVar("market_phases", default=None)


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


def start_request() -> dict[str, float] | None:
    """A fresh per-request record for the phases timed in this context (None when disabled). The
    record is a dict shared with the threads the request hops to (contextvars are copied, the dict is not)."""
    if not ENABLED:
        return None
    record: dict[str, float] = {}
    _current.set(record)
    return record


def end_request(record: dict[str, float] | None, seconds: float) -> None:
    if record is None:
        return
    add("request (whole)", seconds)
    with _lock:
        if len(_requests) < MAX_SAMPLES:
            _requests.append((seconds, dict(record)))


def reset() -> None:
    """Forget every sample kept so far (a bench calls it, through SIGUSR1 to the API process (market.app),
    once the server is warm: what is reported then is the measurement, not the warm-up)."""
    if not ENABLED:
        return
    with _lock:
        _samples.clear()
        _requests.clear()


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
    return lines

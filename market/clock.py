"""Time and identifiers, in one place so tests and billing agree on them.

Every time-dependent rule (billing periods, expiry, review deadlines, notices, disclosure
deadlines) reads `utcnow()`. Tests travel in time with `travel_to()` / `advance()`; a process
started with `MARKET_CLOCK_START=<ISO timestamp>` (a subprocess server, the tour) starts its
clock at that instant and lets it run forward from there.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_offset = timedelta(0)
_frozen: datetime | None = None


def _real_now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the clock takes timezone-aware datetimes")
    return moment.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (travelled, if a test or MARKET_CLOCK_START moved it)."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return _real_now() + _offset


def set_start(moment: datetime) -> None:
    """Make the clock read `moment` now, and run forward from there."""
    global _offset, _frozen
    with _lock:
        _frozen = None
        _offset = _aware(moment) - _real_now()


def freeze(moment: datetime) -> None:
    """Stop the clock at `moment` until `advance()`, `set_start()` or `reset()`."""
    global _frozen
    with _lock:
        _frozen = _aware(moment)


def advance(delta: timedelta) -> datetime:
    """Move the clock forward (frozen or running) by `delta`; returns the new time."""
    global _offset, _frozen
    with _lock:
        if _frozen is not None:
            _frozen = _frozen + delta
        else:
            _offset = _offset + delta
    return utcnow()


def reset() -> None:
    """Back to real time."""
    global _offset, _frozen
    with _lock:
        _offset = timedelta(0)
        _frozen = None


@contextmanager
def travel_to(moment: datetime, *, frozen: bool = True) -> Iterator[None]:
    """Within the block the clock reads `moment` (frozen, or running from it); restored afterwards."""
    global _offset, _frozen
    with _lock:
        saved = (_offset, _frozen)
    if frozen:
        freeze(moment)
    else:
        set_start(moment)
    try:
        yield
    finally:
        with _lock:
            _offset, _frozen = saved


def _from_environment() -> None:
    start = os.environ.get("MARKET_CLOCK_START", "").strip()
    if start:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        set_start(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


_from_environment()


def new_id(prefix: str) -> str:
    """A new opaque identifier such as `prd_3f9c...`, readable in logs and URLs."""
    return f"{prefix}_{secrets.token_hex(10)}"

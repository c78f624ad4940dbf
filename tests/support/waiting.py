"""Waiting, in a test, for something another thread or process does that offers nothing to await."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], object], what: str, seconds: float = 60.0, every: float = 0.02) -> None:
    """Return once `condition()` is true, asking every `every` seconds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(every)

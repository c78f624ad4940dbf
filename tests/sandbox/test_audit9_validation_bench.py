"""Audit of issues 9 and 12 (branch audit9): the validation latency bench measures validation.

Issue 9 and 12's target "validation p99 <= 2 ms" is read from `python -m bench.sandbox_overhead
--validation-only`. Since the per-process plan cache (sandbox.cache.plans, 2026-12-02) an accepted
query's second `plan_query` is a cache hit (~0.07 ms), so ten of the bench's eleven passes timed the
cache, not the validators: the recorded p99 fell from 1.6-2.3 ms to 0.3-0.7 ms without any change to
validation. Every timed call must now miss the cache, i.e. run both validators and the rewrite.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest

from bench import sandbox_overhead
from sandbox import cache


class _CountingCache(cache.BoundedCache[Any]):
    def __init__(self) -> None:
        super().__init__(cache.PLAN_ENTRIES, cache.PLAN_SIZE)
        self.hits = 0
        self.puts = 0

    def get(self, key: Hashable) -> Any:
        found = super().get(key)
        self.hits += found is not None
        return found

    def put(self, key: Hashable, value: Any, size: int = 1) -> None:
        self.puts += 1
        super().put(key, value, size)


def test_every_timed_validation_runs_the_validators_not_the_plan_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _CountingCache()
    monkeypatch.setattr(cache, "plans", counting)
    p50, p99, _fastest, corpus = sandbox_overhead.validation_latency(repeats=3)
    assert corpus >= 250 and 0 < p50 <= p99
    assert counting.puts > 100  # the corpus's accepted queries were planned, three times each
    assert counting.hits == 0

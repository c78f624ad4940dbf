"""Red team red16p (session 12): the summary path's cache of query shapes (sandbox.summary.shape) is read and
written by every request thread of an API process (the sandbox's other caches are locked for that reason,
sandbox.cache). Unlocked, a thread that found its key could lose it to another thread's eviction before
moving it to the end: a KeyError, a 500 for a buyer's valid query. The shapes are also held within a size
bound, as the plan cache's are (a template may be tens of KB)."""

from __future__ import annotations

import sys
import threading
import tracemalloc
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import summary


def _plan(i: int | str, text: str = "q") -> Any:
    template = i if isinstance(i, str) else f"{text}{i}"
    return SimpleNamespace(units=[SimpleNamespace(sql='"t"."u"')], join_keys=None, tables=["t"], template=template)


def test_shapes_read_and_evicted_from_several_threads_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread adds new shapes to a full cache (each evicting the oldest) while another reads, again and
    again, the shape about to be evicted (a hit, then a move to the end): the hit must never lose its key in
    between. Unlocked, a KeyError came within a few thousand reads (checked: the test failed)."""
    monkeypatch.setattr(summary, "_shape", lambda plan: None)  # the cache, not the parse, is under test
    for i in range(4096):
        summary.shape(_plan(i))
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                # The oldest key (peeked without the lock: a concurrent change may stop the peek, not the read).
                template = next(iter(summary._SHAPES._items))[0]
            except (StopIteration, RuntimeError):
                continue
            try:
                summary.shape(_plan(template))
            except BaseException as error:
                errors.append(error)
                return

    def add() -> None:
        for i in range(4096, 300_000):
            if errors:
                break
            summary.shape(_plan(i))
        done.set()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=read), threading.Thread(target=add)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []


def test_shapes_are_held_within_a_size_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """4,096 templates of 20 KB (a 20,000-character query's) must not all stay held: at most 16 MB of them."""
    monkeypatch.setattr(summary, "_shape", lambda plan: None)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(4096):
            summary.shape(_plan(i, "x" * 20_000))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= 20 * 1024 * 1024, held

"""Red team red10: whatever the queue's book holds on disk (garbled by a crash, or valid JSON of the wrong
shape), a query is still admitted: the book is only an order, rebuilt when unreadable (admission.py)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.admission import QUEUE_LOCK, Admission

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_books = st.fixed_dictionaries({"tick": _json, "floor": _json, "served": _json, "queued": _json})


@settings(max_examples=200, deadline=None)
@given(book=_books | _json)
def test_any_book_on_disk_still_admits_a_query(book: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        admission = Admission(Path(tmp), workers=1, per_org=2, queue_size=2, queue_timeout=1.0)
        (admission.directory / QUEUE_LOCK).write_text(json.dumps(book))
        with admission.worker("org"):
            assert admission.held(admission.worker_slots()) == 1
        assert admission.held(admission.worker_slots()) == 0


def test_a_book_with_an_infinite_tick_still_admits_a_query() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        admission = Admission(Path(tmp), workers=1, per_org=2, queue_size=2, queue_timeout=1.0)
        (admission.directory / QUEUE_LOCK).write_text('{"tick": 1e999, "floor": 0, "served": {}, "queued": {}}')
        with admission.worker("org"):
            pass


def test_a_book_write_failing_as_a_waiter_is_served_closes_its_queue_slot_once(monkeypatch: object) -> None:
    """A failed write of the book (a full disk) while a waiter takes a worker: its queue slot's descriptor was
    closed in _try_in_turn and again in _wait_in_turn's cleanup. The second close hits whatever descriptor the
    process opened since under that number (another query's slot lock: released under it), or EBADF."""
    import threading

    import sandbox.admission as admission_module

    double: list[int] = []
    real_release = admission_module.release

    def recording_release(fd: int | None) -> None:
        if fd is not None:
            try:
                identity = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
            except OSError:
                identity = None
            if identity is None:
                double.append(fd)
        real_release(fd)

    monkeypatch.setattr(admission_module, "release", recording_release)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        admission = Admission(Path(tmp), workers=1, per_org=4, queue_size=2, queue_timeout=5.0)
        errors: list[BaseException] = []
        fail = threading.Event()
        real_write = admission_module._Book.write

        def write(book: object, fd: int) -> None:
            if fail.is_set() and book.queued == {}:  # type: ignore[attr-defined]
                fail.clear()
                raise OSError(28, "No space left on device")
            real_write(book, fd)  # type: ignore[arg-type]

        monkeypatch.setattr(admission_module._Book, "write", write)  # type: ignore[attr-defined]

        def waiter() -> None:
            try:
                with admission.worker("b"):
                    pass
            except BaseException as error:
                errors.append(error)

        with admission.worker("a"):
            thread = threading.Thread(target=waiter, daemon=True)
            thread.start()
            deadline = time.monotonic() + 5
            while admission.held(admission.queue_slots()) == 0:
                assert time.monotonic() < deadline
                time.sleep(0.002)
            fail.set()
        thread.join(10)
        assert admission.held(admission.worker_slots() + admission.queue_slots()) == 0
    assert [type(e) for e in errors] == [OSError] and errors[0].errno == 28, errors
    assert not double, double

"""Red team red10: whatever the queue's book holds on disk (garbled by a crash, or valid JSON of the wrong
shape), a query is still admitted: the book is only an order, rebuilt when unreadable (admission.py)."""

from __future__ import annotations

import json
import tempfile
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

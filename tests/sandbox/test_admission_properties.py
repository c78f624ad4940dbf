"""Admission holds its limits for every interleaving of queries entering and leaving (hypothesis).

Each step starts or ends one query of one organisation. A query is refused with 429 exactly when its
organisation already has `per_org` in flight, and (with no queue) with 503 exactly when every worker
is taken; nothing is ever held by a refused query, and everything is free at the end.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from market.errors import ServiceUnavailable
from sandbox.admission import Admission

ORGS = ("org-a", "org-b", "org-c")
steps = st.lists(st.tuples(st.booleans(), st.sampled_from(ORGS)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(workers=st.integers(1, 3), per_org=st.integers(1, 3), steps=steps)
def test_refusals_happen_exactly_at_the_limits(workers: int, per_org: int, steps: list[tuple[bool, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        admission = Admission(Path(tmp), workers=workers, per_org=per_org, queue_size=0, queue_timeout=0.01)
        running: dict[str, list[contextlib.ExitStack]] = {org: [] for org in ORGS}
        for start, org in steps:
            if not start:
                if running[org]:
                    running[org].pop().close()
                continue
            in_flight = sum(len(queries) for queries in running.values())
            query = contextlib.ExitStack()
            refusal = query.enter_context(admission.organisation(org))
            if len(running[org]) >= per_org:
                assert refusal is not None and refusal.code == "too_many_queries" and refusal.retry_after
                query.close()
                continue
            assert refusal is None
            try:
                query.enter_context(admission.worker(org))
            except ServiceUnavailable as busy:
                assert in_flight >= workers and busy.code == "sandbox_busy" and busy.retry_after
                query.close()
                continue
            assert in_flight < workers
            running[org].append(query)
            assert admission.held(admission.org_slots(org)) == len(running[org])
            assert admission.held(admission.worker_slots()) == in_flight + 1
        for queries in running.values():
            for query in queries:
                query.close()
        assert admission.held(admission.worker_slots()) == 0
        assert all(admission.held(admission.org_slots(org)) == 0 for org in ORGS)

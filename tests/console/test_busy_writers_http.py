"""Issue 12, "no request ever waits on a busy-retry loop" (branch busy-writers): a console form post queues for
the SQLite writer lock in the kernel, holding no pooled connection, and succeeds once the lock is free.

Before, a form post began a deferred transaction and, meeting another writer, waited in SQLite's sleeping busy
handler (up to SQLITE_BUSY_TIMEOUT_MS) with a pooled connection checked out; here the post is seen waiting
on `<db>.writer-lock` in /proc/locks (the kernel's queue), with the pool empty, and answers 303 after the
other writer commits. Every write of the post ran inside BEGIN IMMEDIATE (tests/conftest.py's listener).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from market.accounts.models import Role
from market.db import Database, NestedWriter, begin_write
from tests.conftest import ON_POSTGRES, Market
from tests.console.helpers import csrf_of, sign_in

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="SQLite's machine-wide writer lock (PostgreSQL locks rows)")

QUEUE_DEADLINE_SECONDS = 30.0
"""How long the test waits for the post to reach the kernel's queue (a guard against hanging, not a timing)."""


def _waiters(lock_file: Path) -> int:
    """Processes or threads blocked in flock() on `lock_file` (lines `N: -> FLOCK ...` of /proc/locks)."""
    inode = f":{os.stat(lock_file).st_ino} "
    with open("/proc/locks", encoding="ascii") as locks:
        return sum(1 for line in locks if "->" in line and "FLOCK" in line and inode in line)


def test_a_form_post_waits_for_the_writer_lock_in_the_kernel_holding_no_connection(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    client = sign_in(market, admin)
    token = csrf_of(client.get("/console/admin/orgs").text)
    database_file = Path(str(market.database.engine.url.database))
    lock_file = Path(f"{database_file}.writer-lock")
    other = Database.from_settings(market.settings)  # another writer (as another API process or a CLI command)
    answer: dict[str, Any] = {}

    def post() -> None:
        answer["response"] = client.post(
            "/console/admin/orgs", data={"name": "Harbour Freight", "kind": "buyer", "csrf_token": token}
        )

    try:
        with other.sessions() as holder:
            begin_write(holder)  # holds the writer lock and SQLite's write lock (BEGIN IMMEDIATE)
            posting = threading.Thread(target=post)
            posting.start()
            deadline = time.monotonic() + QUEUE_DEADLINE_SECONDS
            while posting.is_alive() and not _waiters(lock_file) and time.monotonic() < deadline:
                time.sleep(0.01)  # polling for the post to reach the queue, not a timed assertion
            assert _waiters(lock_file) == 1, "the form post never queued for the writer lock in the kernel"
            assert posting.is_alive()  # it waits while the other writer holds the lock
            assert market.database.engine.pool.checkedout() == 0  # and holds no pooled connection meanwhile
            holder.commit()
        posting.join(timeout=QUEUE_DEADLINE_SECONDS)
        assert not posting.is_alive()
    finally:
        other.dispose()
    response = answer["response"]
    assert response.status_code == 303, response.text
    orgs = market.client.get("/v1/orgs", headers=admin.headers).json()["items"]
    assert "Harbour Freight" in {org["name"] for org in orgs}


def test_a_page_is_drawn_while_another_writer_holds_the_lock(market: Market) -> None:
    """Reads stay deferred: a console page (GET) neither takes nor waits for the writer lock."""
    admin = market.actor(Role.ADMIN)
    client = sign_in(market, admin)
    other = Database.from_settings(market.settings)
    answer: dict[str, Any] = {}
    try:
        with other.sessions() as holder:
            begin_write(holder)
            reading = threading.Thread(target=lambda: answer.update(response=client.get("/console/admin/orgs")))
            reading.start()
            reading.join(timeout=QUEUE_DEADLINE_SECONDS)  # a guard against hanging: it never waits for the lock
            assert not reading.is_alive(), "the page waited for the writer lock"
            holder.commit()
    finally:
        other.dispose()
    assert answer["response"].status_code == 200


def test_a_writer_nested_in_a_writer_fails_at_once_instead_of_waiting_for_itself(market: Market) -> None:
    with market.database.transaction(write=True) as outer:
        outer.execute(text("SELECT 1"))
        with pytest.raises(NestedWriter), market.database.transaction(write=True) as inner:
            inner.execute(text("SELECT 1"))

"""Red team red15 (session 11): busy-writers' SQLite writer lock held across an await, by anyone.

A console form post's session is a writer (market.console.web.get_console): its first use, the sign-in
cookie's lookup in the dependency, takes the machine-wide writer lock (market.db.begin_write). Five console
routes are async and read their form afterwards (`await request.form()`): the lock was held while the client
sent its body. A client with any session cookie (signed in or not: the lookup runs either way) and a CSRF
token of its own (cookie and header: it is its own browser) could send the body slowly and stop every write
of the marketplace: every metered query's transaction 3 waited for it, answering nothing. Fixed in
check_csrf (a router dependency, solved before the console's): a form post's body is read there, before any
transaction begins. On PostgreSQL there is no writer lock; the query is answered there too.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from market.accounts.models import Role
from market.locks import release, try_lock
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION
from tests.served import served
from tests.support.batches import writer_lock_path

TOKEN = "t" * 40


def _writer_lock_seen_held(market: Market, seconds: float) -> bool:
    """SQLite: whether the writer lock is found held (by the served process) within `seconds`."""
    if not market.database.is_sqlite:
        return False
    path = writer_lock_path(market)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fd = try_lock(path)
        if fd is None:
            return True
        release(fd)
        time.sleep(0.01)
    return False


@pytest.mark.parametrize(
    ("route", "content_type"),
    [
        ("/console/products/new", "application/x-www-form-urlencoded"),
        ("/console/admin/orgs/org_x", "Application/X-WWW-Form-Urlencoded"),  # a form to Starlette too
        ("/console/regulator/allowed-revenue", "multipart/form-data; boundary=b"),
    ],
)
def test_a_console_form_sent_slowly_holds_no_writer_lock_and_stops_no_query(
    market: Market, tmp_path: Path, route: str, content_type: str
) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    assert query(market, buyer, listed.slug, BY_REGION).status_code == 200
    with served(market, tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            slow.sendall(
                (
                    f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Cookie: market_session=anything; market_csrf={TOKEN}\r\n"
                    f"X-CSRF-Token: {TOKEN}\r\n"
                    f"Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
                    '--b\r\nContent-Disposition: form-data; name="slug"\r\n\r\nslow'
                ).encode()
            )
            held = _writer_lock_seen_held(market, 2.0)
            answer = httpx.post(
                f"{server.url}/v1/queries",
                headers=buyer.headers,
                json={"product": listed.slug, "sql": BY_REGION},
                timeout=20,
            )
        finally:
            slow.close()
    assert not held, "the writer lock was held while a client sent its form"
    assert answer.status_code == 200, answer.text

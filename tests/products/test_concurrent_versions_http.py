"""Red team (session 5): two versions of one product stored at the same moment.

A stored version's files never change: the sandbox's result cache, its statistics cache and the warm
connections of its workers are keyed by the files' paths on that promise. Before, the build that lost
the race for a version number (both read the same next number; on SQLite nothing serialises them until
their inserts) deleted the directory the winner had just renamed into place and put its own files
there, before its own insert failed with 409: the winner's committed version then served the loser's
data.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pytest
from sqlalchemy import select

from market.accounts.models import Role
from products import storage
from products.models import ProductVersion
from tests.conftest import Market
from tests.factories import PEOPLE_POLICY, authorise, create_product, csv_bytes, people_rows


def _upload(market: Market, operator: Any, slug: str, content: bytes) -> Any:
    return market.client.post(
        f"/v1/products/{slug}/versions",
        headers=operator.headers,
        files=[("files", ("people.csv", content, "text/csv"))],
        data={"policy": json.dumps(PEOPLE_POLICY)},
    )


def test_the_build_that_loses_the_race_never_touches_the_winners_files(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = market.actor(Role.OPERATOR)
    assert authorise(market, operator, regulator=market.actor(Role.REGULATOR)).status_code == 201
    assert create_product(market, operator, "raced").status_code == 201
    contents = {
        8730: csv_bytes(people_rows()),  # the sum of `amount` each upload's file holds
        8910: csv_bytes([dict(r, amount=r["amount"] + 1) for r in people_rows()]),
    }
    # Both builds read the same next version number, then both finish their files before either stores.
    barrier = threading.Barrier(2, timeout=30)
    hash_files = storage.content_hash

    met = threading.local()

    def meet_then_hash(paths: list[Any]) -> str:
        if not getattr(met, "done", False):
            met.done = True
            try:
                if barrier.wait() == 0:
                    time.sleep(0.3)  # the other stores first: this one is the loser
            except threading.BrokenBarrierError:
                pass
        return hash_files(paths)

    if market.database.is_sqlite:  # PostgreSQL serialises the builds on the product's row lock before
        monkeypatch.setattr(storage, "content_hash", meet_then_hash)  # they read the number: no race there
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda c: _upload(market, operator, "raced", c), contents.values()))
    statuses = sorted(a.status_code for a in answers)
    assert statuses in ([201, 201], [201, 409]), [a.text for a in answers]
    monkeypatch.setattr(storage, "content_hash", hash_files)

    with market.database.transaction() as session:
        versions = list(session.scalars(select(ProductVersion)))
        assert versions
        for version in versions:
            (table,) = version.tables
            path = market.settings.products_dir / version.product_id / f"v{version.number}" / table["file"]
            total = duckdb.execute(f"SELECT sum(amount) FROM read_parquet('{path}')").fetchall()[0][0]
            uploaded = version.sources["people"]["sha256"]
            expected = next(t for t, c in contents.items() if hashlib.sha256(c).hexdigest() == uploaded)
            assert total == expected, f"version {version.number} serves another build's files"
            assert version.content_hash == hash_files([path])

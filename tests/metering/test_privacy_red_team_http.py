"""Red team of DP mode (issue 11), over HTTP: each test is an attack that worked before its fix.

docs/privacy.md ("Red team") lists every attack tried, with its result."""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from market.accounts.models import Role
from tests.conftest import Actor, Market, running_market
from tests.factories import grant, listed_product
from tests.metering.test_privacy_http import dp_policy


@pytest.fixture
def market(database_factory: Any, tmp_path: Path) -> Iterator[Market]:
    with running_market(database_factory, tmp_path / "data") as running:
        yield running


def _csv(units: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["person_id", "name", "region", "category", "month", "amount", "trips"])
    for person, category in units:
        writer.writerow([person, "x", "north", category, 1, 1, 1])
    return out.getvalue().encode()


def _buyer(market: Market, slug: str, policy: dict[str, Any], tables: dict[str, bytes]) -> Actor:
    listed = listed_product(market, slug, tables=tables, policy=policy)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)
    return buyer


def test_the_order_of_thresholded_groups_does_not_depend_on_single_units(market: Market) -> None:
    """Groups released through the noisy threshold came in DuckDB's hash-aggregate order, which follows
    the first unit of each group in the bounding pipeline: removing one person (P0085) reordered the
    answer, a deterministic signal outside the noise. The answer now lists groups in key order."""
    units = [(f"P{u:04d}", f"g{(u * 7) % 6}") for u in range(1200)]
    policy = dp_policy(public_keys={})
    people = policy["tables"].pop("people")
    policy["tables"] = {"d": people, "e": copy.deepcopy(people), "f": copy.deepcopy(people)}
    renamed = [(f"Q{u:04d}", category) for u, (_, category) in enumerate(units)]
    tables = {
        "d.csv": _csv(units),
        "e.csv": _csv([u for u in units if u[0] != "P0085"]),  # d's neighbour: one person fewer
        "f.csv": _csv(renamed),  # the same groups and sizes, other people
    }
    buyer = _buyer(market, "people-dp-order", policy, tables)
    orders = []
    for table in "def":
        answer = market.client.post(
            "/v1/queries",
            headers=buyer.headers,
            json={"product": "people-dp-order", "sql": f"SELECT category, count(*) AS n FROM {table} GROUP BY category"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["privacy"]["groups"] == "noisy threshold"
        orders.append([row[0] for row in answer.json()["rows"]])
    assert sorted(orders[0]) == [f"g{i}" for i in range(6)]  # every group passes tau
    assert orders[0] == orders[1] == orders[2], orders


def test_a_dp_product_publishes_no_exact_statistics_of_its_data(market: Market) -> None:
    """The catalogue's quality summary gave distinct counts, ranges and null shares of every column,
    exact over values k units hold: exact k-suppression, outside the budget (two versions' summaries
    differ by exactly what one person adds). A DP product's detail shows none; threshold mode's still does."""
    buyer = _buyer(market, "people-dp-stats", dp_policy(), {"people.csv": _csv([(f"P{u:04d}", "a") for u in range(40)])})
    shown = market.client.get("/v1/products/people-dp-stats", headers=buyer.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["quality"] is None

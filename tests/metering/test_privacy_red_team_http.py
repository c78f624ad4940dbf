"""Red team of DP mode (issue 11), over HTTP: each test is an attack that worked before its fix.

docs/privacy.md ("Red team") lists every attack tried, with its result."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import dp_policy, grant, listed_product
from tests.metering.test_concurrency_http import market

__all__ = ["market"]  # the burst market fixture (tests/metering/test_concurrency_http.py)


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
            json={
                "product": "people-dp-order",
                "sql": f"SELECT category, count(*) AS n FROM {table} GROUP BY category",
            },
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
    buyer = _buyer(
        market, "people-dp-stats", dp_policy(), {"people.csv": _csv([(f"P{u:04d}", "a") for u in range(40)])}
    )
    shown = market.client.get("/v1/products/people-dp-stats", headers=buyer.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["quality"] is None


def test_64_concurrent_queries_from_two_agreements_never_overspend_the_version_cap(market: Market) -> None:
    """Two buyers race 64 distinct queries against a version cap smaller than their two budgets: exactly
    what the cap holds is answered, and both budgets account exactly for what was spent."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from sqlalchemy import select

    from metering.models import PrivacyBudget
    from sandbox import dp

    policy = dp_policy(agreement_epsilon=3.0, version_epsilon_cap=4.0, max_query_epsilon=1.0)
    listed = listed_product(market, "people-dp-cap", policy=policy)
    buyers = [market.actor(Role.BUYER) for _ in range(2)]
    for buyer in buyers:
        grant(market, listed, buyer, purpose="public_welfare", plan="public", monthly_query_quota=1000)

    def ask(buyer: Actor, sql: str, **extra: Any) -> Any:
        body = {"product": "people-dp-cap", "sql": sql, **extra}
        return market.client.post("/v1/queries", headers=buyer.headers, json=body)

    dry = ask(buyers[0], "SELECT count(*) FROM people WHERE month <> 0", dry_run=True).json()
    cost = dp.rho_nano(dry["privacy"]["cost"]["rho"])
    delta = policy["dp"]["delta"]
    own, cap = dp.rho_nano(dp.rho_of(3.0, delta)), dp.rho_nano(dp.rho_of(4.0, delta))
    expected = min(cap // cost, 2 * (own // cost))
    assert expected < 2 * (own // cost) and expected < 64  # the cap binds
    barrier = Barrier(64)

    def one(i: int) -> Any:
        barrier.wait()
        return ask(buyers[i % 2], f"SELECT count(*) FROM people WHERE month <> {i}")

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = [r.status_code for r in pool.map(one, range(64))]
    assert statuses.count(200) == expected and statuses.count(429) == 64 - expected, statuses
    with market.database.transaction() as session:
        rows = session.scalars(select(PrivacyBudget)).all()
    version = [b for b in rows if b.agreement_id is None]
    agreements = [b for b in rows if b.agreement_id is not None]
    assert len(version) == 1 and len(agreements) == 2
    assert all(b.reserved_nano == 0 for b in rows)
    assert version[0].spent_nano == sum(b.spent_nano for b in agreements) == expected * cost <= cap


def test_a_dp_answer_and_its_usage_record_show_no_cpu_time(market: Market, monkeypatch: Any) -> None:
    """The answer's `usage.cpu_ms` timed the worker: on nyc-flights-2013-dp, `WHERE dest = 'LEX'` (one
    flight) took a median 7 ms against 5 ms for the absent 'LEY' (150 alternated pairs at epsilon 0.05,
    0.0058 rho in all): whether a hidden row matches a filter, outside the noise. DP answers and their
    usage records now carry no CPU time (0), whatever the worker measured."""
    from sandbox import dp_run

    real = dp_run.run

    def timed(*args: Any, **kwargs: Any) -> Any:
        execution, rows, size = real(*args, **kwargs)
        execution.cpu_ms = 37  # what a worker could measure; it depends on the rows
        return execution, rows, size

    monkeypatch.setattr("metering.privacy.dp_run.run", timed)
    buyer = _buyer(market, "people-dp-time", dp_policy(), {"people.csv": _csv([(f"P{u:04d}", "a") for u in range(40)])})
    answer = market.client.post(
        "/v1/queries",
        headers=buyer.headers,
        json={"product": "people-dp-time", "sql": "SELECT count(*) FROM people WHERE category = 'a'"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["cpu_ms"] == 0
    usage = market.client.get("/v1/usage", headers=buyer.headers)
    assert usage.status_code == 200, usage.text
    assert [r["cpu_ms"] for r in usage.json()["items"]] == [0]


def test_an_answer_states_both_contribution_bounds_its_error_bounds_leave_out(market: Market) -> None:
    """The 95% bounds are honest around the *bounded* value (measured on nyc-flights-2013-dp: 4.9% and
    5.4% of 900 count and sum rows outside them), but `SELECT count(*) FROM flights` answers about
    227,574 +- 1,130 of 336,776 flights, because each aircraft counts at most R = 100 rows. The answer
    stated G only; it now states R too, so the buyer can tell noise from bounding."""
    buyer = _buyer(
        market, "people-dp-bounds", dp_policy(), {"people.csv": _csv([(f"P{u:04d}", "a") for u in range(40)])}
    )
    for extra in ({"dry_run": True}, {}):
        answer = market.client.post(
            "/v1/queries",
            headers=buyer.headers,
            json={"product": "people-dp-bounds", "sql": "SELECT count(*) FROM people", **extra},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["privacy"]["contribution_bounds"] == {"max_groups_per_unit": 1, "max_rows_per_group": 3}

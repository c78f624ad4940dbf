"""Shared set-up for billing tests: a listed product, a commercial and a public buyer with usage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.config import Period
from market import clock
from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import Listed, grant, listed_product, query

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"


BILLED_PERIOD = "2026-06"
"""The period billing tests make usage in: the clock starts inside it (`in_billed_period`)."""
PERIOD_START = datetime(2026, 6, 10, 9, 0, tzinfo=UTC)


def this_period() -> str:
    """The period the test's usage falls in (finalizing it first moves the clock past its end)."""
    return BILLED_PERIOD


@contextmanager
def in_billed_period() -> Iterator[None]:
    """Run the block with the clock running from inside `BILLED_PERIOD`."""
    with clock.travel_to(PERIOD_START, frozen=False):
        yield


def end_period(period: str = BILLED_PERIOD) -> None:
    """Move the clock just past the period's end (if it is not already), so it can be finalized."""
    end = Period.parse(period).end
    if clock.utcnow() < end:
        clock.advance(end - clock.utcnow() + timedelta(hours=1))


@dataclass
class Scene:
    listed: Listed
    commercial: Actor
    public: Actor
    finance: Actor


def scene(market: Market, *, commercial_queries: int = 2, public_queries: int = 1, plans: Any = None) -> Scene:
    listed = listed_product(market, plans=plans)
    commercial = market.actor(Role.BUYER)
    public = market.actor(Role.BUYER)
    grant(market, listed, commercial, purpose="commercial", plan="standard")
    grant(market, listed, public, purpose="public_welfare", plan="public")
    for _ in range(commercial_queries):
        assert query(market, commercial, listed.slug, SQL).status_code == 200
    for _ in range(public_queries):
        assert query(market, public, listed.slug, SQL).status_code == 200
    return Scene(listed, commercial, public, market.actor(Role.FINANCE))


def run(market: Market, finance: Actor, period: str | None = None, finalize: bool = False) -> dict[str, Any]:
    end_period(period or this_period())  # only an ended period can be billed
    response = market.client.post(
        "/v1/billing/runs", headers=finance.headers, json={"period": period or this_period(), "finalize": finalize}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def invoices_of(market: Market, actor: Actor, **params: Any) -> list[dict[str, Any]]:
    response = market.client.get("/v1/invoices", headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def usage_total(market: Market, buyer: Actor) -> int:
    response = market.client.get("/v1/usage", headers=buyer.headers, params={"limit": 200})
    assert response.status_code == 200, response.text
    return sum(u["amount_minor"] for u in response.json()["items"] if u["charge_type"] != "rejected")


def acknowledge_all(market: Market, finance: Actor, period: str, note: str = "accepted by finance") -> list[str]:
    """Finance acknowledges every open mismatch of the period; returns their reasons."""
    report = market.client.get("/v1/reconciliation", headers=finance.headers, params={"period": period}).json()
    reasons = []
    for mismatch in report["mismatches"]:
        if mismatch["acknowledgement"] is None:
            response = market.client.post(
                f"/v1/billing/periods/{period}/acknowledgements",
                headers=finance.headers,
                json={"mismatch_key": mismatch["key"], "note": note},
            )
            assert response.status_code == 200, response.text
            reasons.append(mismatch["reason"])
    return reasons

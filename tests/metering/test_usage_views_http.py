"""Usage views over HTTP: buyers see their own, operators their products' (without SQL); summaries and CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from market.accounts.models import Role
from market.clock import utcnow
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION, usage


def _two_buyers_on_two_products(market: Market):
    first = listed_product(market, slug="first-product")
    second = listed_product(market, slug="second-product")
    paying, public = market.actor(Role.BUYER), market.actor(Role.BUYER)
    grant(market, first, paying, purpose="commercial", plan="standard")
    grant(market, second, paying, purpose="commercial", plan="standard")
    grant(market, first, public, purpose="public_welfare", plan="public")
    query(market, paying, first.slug, BY_REGION)
    query(market, paying, first.slug, "SELECT max(amount) FROM people")
    query(market, paying, second.slug, BY_REGION)
    query(market, public, first.slug, BY_REGION)
    return first, second, paying, public


def test_buyer_sees_only_its_own_records_and_can_filter_by_product(market: Market) -> None:
    first, _, paying, public = _two_buyers_on_two_products(market)
    mine = usage(market, paying)
    assert len(mine) == 3 and all(r["sql"] for r in mine)
    assert {r["buyer_org_id"] for r in mine} == {paying.principal.org_id}
    assert len(usage(market, paying, product=first.slug)) == 2
    assert len(usage(market, public)) == 1


def test_buyer_daily_summary_groups_by_product_and_charge_type(market: Market) -> None:
    _, _, paying, _ = _two_buyers_on_two_products(market)
    response = market.client.get("/v1/usage/summary", headers=paying.headers)
    assert response.status_code == 200, response.text
    today = utcnow().date().isoformat()
    rows = {(r["day"], r["product"], r["charge_type"]): r for r in response.json()["items"]}
    assert set(rows) == {
        (today, "first-product", "billable"),
        (today, "first-product", "rejected"),
        (today, "second-product", "billable"),
    }
    assert rows[(today, "first-product", "billable")]["queries"] == 1
    assert rows[(today, "first-product", "billable")]["amount_minor"] == 150
    assert rows[(today, "first-product", "rejected")]["amount_minor"] == 0
    assert rows[(today, "first-product", "billable")]["rows_scanned"] == 180
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert market.client.get(f"/v1/usage/summary?from={tomorrow}", headers=paying.headers).json()["items"] == []
    backwards = market.client.get(f"/v1/usage/summary?from={tomorrow}&to={today}", headers=paying.headers)
    assert backwards.status_code == 400 and backwards.json()["error"]["code"] == "invalid_date_range"
    assert market.client.get("/v1/usage/summary?from=yesterday", headers=paying.headers).status_code == 422


def test_operator_sees_usage_of_its_products_without_buyers_sql(market: Market) -> None:
    first, second, paying, public = _two_buyers_on_two_products(market)
    seen = usage(market, first.operator)
    assert len(seen) == 3
    assert {r["buyer_org_id"] for r in seen} == {paying.principal.org_id, public.principal.org_id}
    assert all(r["sql"] is None for r in seen)
    assert len(usage(market, second.operator)) == 1
    summary = market.client.get("/v1/usage/summary", headers=first.operator.headers).json()["items"]
    assert {r["product"] for r in summary} == {"first-product"}
    assert market.client.get(f"/v1/usage?product={first.slug}", headers=second.operator.headers).status_code == 404
    assert market.client.get("/v1/usage", headers=first.regulator.headers).status_code == 403


def test_csv_exports_for_buyer_with_sql_and_for_operator_without(market: Market) -> None:
    first, _, paying, _ = _two_buyers_on_two_products(market)
    response = market.client.get("/v1/usage/export", headers=paying.headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3 and {r["sql"] for r in rows} >= {BY_REGION}
    assert {r["charge_type"] for r in rows} == {"billable", "rejected"}
    operator_rows = list(
        csv.DictReader(io.StringIO(market.client.get("/v1/usage/export", headers=first.operator.headers).text))
    )
    assert len(operator_rows) == 3 and {r["sql"] for r in operator_rows} == {""}


def test_malformed_cursors_and_huge_quotas_are_4xx(market: Market) -> None:
    import base64

    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    naive = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|qry_x").decode()
    for cursor in ("bogus", naive, base64.urlsafe_b64encode(b"\xff\xfe").decode()):
        response = market.client.get(f"/v1/usage?cursor={cursor}", headers=buyer.headers)
        assert response.status_code == 400, (cursor, response.text)
    request = market.client.post(
        "/v1/access-requests",
        headers=buyer.headers,
        json={"product": listed.slug, "plan": "public", "purpose": "public_welfare", "scenario": "s"},
    ).json()
    huge = market.client.post(
        f"/v1/access-requests/{request['id']}/decision",
        headers=listed.regulator.headers,
        json={"decision": "approve", "monthly_query_quota": 10**12},
    )
    assert huge.status_code == 422 and huge.json()["error"]["code"] == "invalid_request"

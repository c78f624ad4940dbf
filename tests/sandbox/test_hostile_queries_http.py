"""Hostile SQL over HTTP: every value DuckDB returns leaves as JSON, casts work as refusals say, errors are plain."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query


def test_interval_results_are_iso_durations_and_the_query_is_metered(market: Market) -> None:
    # Before: the result held a timedelta, JSON encoding failed after metering, and the 500 rolled the record back.
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    sql = (
        "SELECT region, count(*) AS n, INTERVAL 1 DAY AS one_day, INTERVAL '-90 minutes 1.5 seconds' AS back, "
        "DATE '2026-01-01' - DATE '2025-12-31' AS days FROM people GROUP BY region ORDER BY region"
    )
    response = query(market, buyer, listed.slug, sql)
    assert response.status_code == 200, response.text
    assert {tuple(row[2:]) for row in response.json()["rows"]} == {("P1DT0S", "-P0DT5398.5S", 1)}
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [u["id"] for u in usage] == [response.json()["query_id"]]


def test_a_cast_to_timestamp_is_allowed_as_the_refusal_message_says(market: Market) -> None:
    # Before: sqlglot reads DuckDB's TIMESTAMP as TIMESTAMPNTZ, so "cast to ... TIMESTAMP" was always refused.
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    sql = "SELECT region, count(*) AS n, CAST('2026-01-02 03:04' AS TIMESTAMP) AS t FROM people GROUP BY region"
    response = query(market, buyer, listed.slug, sql)
    assert response.status_code == 200, response.text
    assert {row[2] for row in response.json()["rows"]} == {"2026-01-02T03:04:00"}


def test_a_syntax_error_names_no_parser_internals(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    response = query(market, buyer, listed.slug, "(((((")
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "sql_syntax"
    assert "<class" not in message and "sqlglot" not in message and ".." not in message, message

"""The regulator's audit log: every query on the platform, filters, and flags for follow-up."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import grant, listed_product, query
from tests.metering.helpers import BY_REGION


def test_the_regulator_reads_every_query_with_its_context(market: Market) -> None:
    listed = listed_product(market)
    other = listed_product(market, slug="other-product")
    paying = market.actor(Role.BUYER, org="Swift Logistics")
    public = market.actor(Role.BUYER, org="Research Institute")
    grant(market, listed, paying, purpose="commercial", plan="standard")
    grant(market, other, paying, purpose="industry", plan="standard")
    grant(market, listed, public, purpose="public_welfare", plan="public")
    sql = "SELECT category, count(*) AS n FROM people GROUP BY category"
    query(market, paying, listed.slug, sql)
    query(market, paying, other.slug, BY_REGION)
    query(market, public, listed.slug, "SELECT max(amount) FROM people")

    response = market.client.get("/v1/audit/queries", headers=listed.regulator.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) == 3
    accepted = next(i for i in items if i["sql"] == sql)
    assert accepted["buyer"] == "Swift Logistics" and accepted["purpose"] == "commercial"
    assert accepted["scenario"] == "analysis" and accepted["product"] == listed.slug
    assert accepted["result_columns"] == ["category", "n"] and accepted["result_rows"] == 1
    assert accepted["suppressed_groups"] == 2
    # The SQL as run is what ran: the threshold columns and restriction in place of their placeholders,
    # with the exact distinct count that decided the suppressed groups, and the output query. A small
    # product runs all of it as one statement (sandbox.engine.execute_single, or execute_folded when
    # its groups are expected to be large, as the one category that k units hold is here).
    run = accepted["sql_run"]
    assert "__threshold__" not in run and "__restrict__" not in run
    statements = run.split(";\n")
    assert statements[0].startswith(('WITH "__all" AS (SELECT', 'WITH "__first" AS MATERIALIZED (SELECT'))
    assert len(statements) == 1
    # The exact distinct count, or (branch pre16) the version's build-time unit counts read from its summary.
    assert any("COUNT(DISTINCT" in s or '"__summary__people"' in s for s in statements) and '"__c0"' in statements[-1]

    def ids(**params: str) -> int:
        return len(
            market.client.get("/v1/audit/queries", headers=listed.regulator.headers, params=params).json()["items"]
        )

    assert ids(product=listed.slug) == 2
    assert ids(buyer=public.principal.org_id) == 1
    assert ids(purpose="industry") == 1
    assert ids(purpose="public_welfare", product=listed.slug) == 1
    assert ids(**{"from": "2000-01-01", "to": "2000-12-31"}) == 0
    assert market.client.get("/v1/audit/queries?purpose=fun", headers=listed.regulator.headers).status_code == 422


def test_only_the_regulator_reads_the_audit_log(market: Market) -> None:
    listed = listed_product(market)
    for role in (Role.BUYER, Role.OPERATOR, Role.FINANCE):
        response = market.client.get("/v1/audit/queries", headers=market.actor(role).headers)
        assert response.status_code == 403
    assert market.client.get("/v1/audit/queries", headers=listed.operator.headers).status_code == 403


def test_the_regulator_flags_a_query_for_follow_up(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_governance", plan="public")
    query_id = query(market, buyer, listed.slug, BY_REGION).json()["query_id"]
    query(market, buyer, listed.slug, "SELECT count(*) FROM people")
    url = f"/v1/audit/queries/{query_id}/flags"
    assert market.client.post(url, headers=buyer.headers, json={"reason": "x"}).status_code == 403
    assert market.client.post(url, headers=listed.regulator.headers, json={"reason": ""}).status_code == 422
    missing = market.client.post(
        "/v1/audit/queries/qry_nope/flags", headers=listed.regulator.headers, json={"reason": "x"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "usage_record_not_found"
    flagged = market.client.post(url, headers=listed.regulator.headers, json={"reason": "Check the scenario."})
    assert flagged.status_code == 201 and flagged.json()["usage_record_id"] == query_id
    only_flagged = market.client.get("/v1/audit/queries?flagged=true", headers=listed.regulator.headers).json()
    assert [i["id"] for i in only_flagged["items"]] == [query_id]
    assert only_flagged["items"][0]["flags"][0]["reason"] == "Check the scenario."

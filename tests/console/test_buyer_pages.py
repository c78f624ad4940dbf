"""The buyer's pages over HTTP: catalogue, access, query, usage and invoices, reusing the services' rules."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from market.accounts.models import Role
from tests.billing.helpers import run
from tests.conftest import Actor, Market
from tests.console.helpers import browser, csrf_of, post_form, sign_in
from tests.factories import create_product, grant, listed_product

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"


def test_signed_out_catalogue_lists_listed_products_only_with_money_formatted(market: Market) -> None:
    listed_product(market, slug="people-trips")
    create_product(market, market.actor(Role.OPERATOR), "secret-draft")
    client = browser(market)
    page = client.get("/", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "people-trips" in page.text and "secret-draft" not in page.text
    product = client.get("/products/people-trips", headers={"Accept-Language": "en"})
    assert product.status_code == 200
    assert "1.50 per query" in product.text and "person_id" in product.text
    assert "at least 10 distinct protected entities" in product.text
    assert client.get("/products/secret-draft").status_code == 404


def test_catalogue_filters_by_words_and_price(market: Market) -> None:
    listed_product(market, slug="people-trips")
    client = browser(market)
    client.headers["Accept-Language"] = "en"  # the English texts below
    assert "people-trips" in client.get("/", params={"q": "people", "pricing": "paid"}).text
    missing = client.get("/", params={"q": "no-such-word"})
    assert "people-trips" not in missing.text and "No listed product matches" in missing.text


def test_page_language_follows_cookie_then_accept_language_then_zh(market: Market) -> None:
    client = browser(market)
    assert '<html lang="zh-CN">' in client.get("/").text
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    token = csrf_of(client.get("/").text)
    switched = client.post("/lang", data={"lang": "zh_CN", "next": "/", "csrf_token": token})
    assert switched.status_code == 303
    assert '<html lang="zh-CN">' in client.get("/", headers={"Accept-Language": "en"}).text


def test_request_access_validates_in_place_then_lists_the_request_with_its_deadline(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    client = sign_in(market, buyer)
    form_page = f"/console/access/new?product={listed.slug}"
    fields = {"product": listed.slug, "purpose": "commercial", "scenario": "analysis"}
    wrong = post_form(client, form_page, "/console/access/new", {**fields, "plan": "public"})
    assert wrong.status_code == 422
    assert 'class="field-error" id="plan-error"' in wrong.text and 'value="analysis"' in wrong.text
    sent = post_form(client, form_page, "/console/access/new", {**fields, "plan": "standard"})
    assert sent.status_code == 303
    listing = client.get("/console/access", headers={"Accept-Language": "en"})
    assert listed.slug in listing.text and "pending" in listing.text and "Review deadline" in listing.text


def test_query_console_runs_charges_and_keeps_history_with_rerun(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    client = sign_in(market, buyer)
    page = client.get("/console/query", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "person_id" in page.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
    data = {"product": listed.slug, "sql": SQL, "idempotency_key": key, "csrf_token": csrf_of(page.text)}
    first = client.post("/console/query", data=data, headers={"Accept-Language": "en"})
    assert first.status_code == 200 and 'id="result-table"' in first.text and "billable" in first.text
    again = client.post("/console/query", data=data)
    assert again.status_code == 200
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert len(usage) == 1 and usage[0]["charge_type"] == "billable", "a resent form is charged once"
    history = client.get("/console/query").text
    assert "/console/query?product=" in history and "sql=SELECT" in history


def test_a_refused_query_shows_the_advice_next_to_the_sql_and_is_not_charged(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    client = sign_in(market, buyer)
    page = client.get("/console/query")
    data = {"product": listed.slug, "sql": "SELECT max(income) FROM people", "csrf_token": csrf_of(page.text)}
    refused = client.post("/console/query", data=data)
    assert refused.status_code in (400, 403, 422) and 'id="sql-error"' in refused.text
    usage = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert [u["charge_type"] for u in usage] == ["rejected"] and usage[0]["amount_minor"] == 0


def test_the_builder_compiles_to_checked_sql(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="public_welfare", plan="public")
    client = sign_in(market, buyer)
    page = client.get("/console/query")
    data = {
        "product": listed.slug,
        "builder": "1",
        "table": "people",
        "dimensions": "region",
        "aggregate_0": "count",
        "csrf_token": csrf_of(page.text),
    }
    built = client.post("/console/query", data=data)
    assert built.status_code == 200 and 'id="result-table"' in built.text and "free_public" in built.text


def queried(market: Market) -> tuple[Actor, TestClient]:
    """A commercial buyer, signed in, that ran one paid query through the console."""
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    client = sign_in(market, buyer)
    page = client.get("/console/query")
    ran = client.post("/console/query", data={"product": listed.slug, "sql": SQL, "csrf_token": csrf_of(page.text)})
    assert ran.status_code == 200, ran.text
    return buyer, client


def test_usage_page_and_csv_export(market: Market) -> None:
    _, client = queried(market)
    usage = client.get("/console/usage", headers={"Accept-Language": "en"})
    assert usage.status_code == 200 and 'id="chart-data"' in usage.text and "998.50" in usage.text
    exported = client.get("/console/usage.csv")
    assert exported.status_code == 200 and exported.text.count("\n") == 2 and "billable" in exported.text


@pytest.mark.usefixtures("billed_period_clock")  # bills a past period
def test_invoice_pages_trace_lines_and_show_bank_transfer_details(market: Market) -> None:
    buyer, client = queried(market)
    run(market, market.actor(Role.FINANCE), finalize=True)
    client = sign_in(market, buyer)  # the clock moved past the period's end, and past the session's life
    listing = client.get("/console/invoices")
    invoice_id = re.search(r'href="/console/invoices/(inv_[^"]+)"', listing.text).group(1)
    detail = client.get(f"/console/invoices/{invoice_id}", headers={"Accept-Language": "en"})
    assert detail.status_code == 200 and "Bank transfer" in detail.text and "1.50" in detail.text
    line = re.search(rf'href="(/console/invoices/{invoice_id}/lines/[^"]+)"', detail.text).group(1)
    records = client.get(line)
    assert records.status_code == 200 and "qry_" in records.text
    assert client.get(f"/console/invoices/{invoice_id}/document").text.lstrip().lower().startswith("<!doctype")
    pdf = client.get(f"/console/invoices/{invoice_id}/document", params={"format": "pdf"})
    assert pdf.content.startswith(b"%PDF")


@pytest.mark.usefixtures("billed_period_clock")  # bills a past period
def test_another_buyers_objects_are_not_found_in_the_console(market: Market) -> None:
    owner, owner_client = queried(market)
    agreement = market.client.get("/v1/agreements", headers=owner.headers).json()["items"][0]["id"]
    run(market, market.actor(Role.FINANCE), finalize=True)
    owner_client = sign_in(market, owner)  # the clock moved past the period's end, and past the session's life
    invoice_id = market.client.get("/v1/invoices", headers=owner.headers).json()["items"][0]["id"]
    intruder = sign_in(market, market.actor(Role.BUYER))
    for path in (
        f"/console/invoices/{invoice_id}",
        f"/console/invoices/{invoice_id}/document",
        f"/console/agreements/{agreement}/odrl",
    ):
        response = intruder.get(path)
        assert response.status_code == 404, path
    assert "qry_" not in intruder.get("/console/usage.csv").text
    assert owner_client.get(f"/console/agreements/{agreement}/odrl").status_code == 200


def test_signed_out_visitors_are_sent_to_sign_in_and_other_roles_are_refused(market: Market) -> None:
    client = browser(market)
    response = client.get("/console/usage")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/console/usage"
    operator = sign_in(market, market.actor(Role.OPERATOR))
    refused = operator.get("/console/usage")
    assert refused.status_code == 403 and "forbidden_role" in refused.text


def test_the_dcat_export_needs_no_key_and_lists_listed_products_only(market: Market) -> None:
    listed_product(market, slug="people-trips")
    create_product(market, market.actor(Role.OPERATOR), "secret-draft")
    exported = browser(market).get("/v1/catalogue.jsonld")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/ld+json")
    identifiers = [d["dct:identifier"] for d in exported.json()["dcat:dataset"]]
    assert identifiers == ["people-trips"]

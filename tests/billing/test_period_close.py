"""Closing a period needs zero open mismatches, or finance's acknowledgement of each with a reason;
acknowledgements are recorded, exported (CSV, XLSX) and shown to the regulator (issue 15)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from openpyxl import load_workbook
from typer.testing import CliRunner

from market import clock
from market.accounts.models import Role
from tests.billing.helpers import SQL, invoices_of, run, scene
from tests.conftest import Market
from tests.factories import query

PERIOD = "2026-03"


def _billed_past_period(market: Market):  # type: ignore[no-untyped-def]
    """Usage in March 2026, billed and finalized afterwards: one unpaid commercial invoice."""
    with clock.travel_to(datetime(2026, 3, 10, tzinfo=UTC)):
        s = scene(market, commercial_queries=2, public_queries=1)
        assert query(market, s.commercial, s.listed.slug, SQL).status_code == 200
    with clock.travel_to(datetime(2026, 4, 2, tzinfo=UTC)):
        run(market, s.finance, PERIOD, finalize=True)
    return s


def _close(market: Market, finance_headers: dict[str, str]):  # type: ignore[no-untyped-def]
    with clock.travel_to(datetime(2026, 4, 3, tzinfo=UTC)):
        return market.client.post(f"/v1/billing/periods/{PERIOD}/close", headers=finance_headers)


def _report(market: Market, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return market.client.get("/v1/reconciliation", headers=headers, params={"period": PERIOD}).json()


def test_a_period_with_an_open_mismatch_does_not_close_until_finance_acknowledges_it(market: Market) -> None:
    s = _billed_past_period(market)
    report = _report(market, s.finance.headers)
    assert [m["reason"] for m in report["mismatches"]] == ["unpaid"] and report["open_mismatches"] == 1
    unpaid = report["mismatches"][0]

    refused = _close(market, s.finance.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "period_has_open_mismatches"
    assert "unpaid" in refused.json()["error"]["message"]

    ack_url = f"/v1/billing/periods/{PERIOD}/acknowledgements"
    body = {"mismatch_key": unpaid["key"], "note": "buyer pays on 30-day terms; chased on 2026-04-03"}
    assert market.client.post(ack_url, headers=s.commercial.headers, json=body).status_code == 403
    blank = market.client.post(ack_url, headers=s.finance.headers, json={**body, "note": "  "})
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "acknowledgement_note_required"
    unknown = market.client.post(ack_url, headers=s.finance.headers, json={**body, "mismatch_key": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "mismatch_not_found"
    acked = market.client.post(ack_url, headers=s.finance.headers, json=body)
    assert acked.status_code == 200, acked.text
    assert acked.json()["reason"] == "unpaid" and acked.json()["amount_minor"] == unpaid["amount_minor"]

    report = _report(market, s.finance.headers)
    assert report["open_mismatches"] == 0
    assert report["mismatches"][0]["acknowledgement"]["note"] == body["note"]
    for fmt in ("csv", "xlsx"):
        export = market.client.get(
            "/v1/reconciliation/export", headers=s.finance.headers, params={"period": PERIOD, "format": fmt}
        )
        assert export.status_code == 200
        if fmt == "csv":
            assert body["note"] in export.text and unpaid["key"] in export.text
        else:
            sheet = load_workbook(io.BytesIO(export.content)).active
            assert sheet is not None
            assert body["note"] in [c.value for row in sheet.iter_rows() for c in row]

    closed = _close(market, s.finance.headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"

    regulator = market.actor(Role.REGULATOR)
    view = market.client.get(ack_url, headers=regulator.headers)
    assert view.status_code == 200, view.text
    seen = view.json()
    assert seen["status"] == "closed" and seen["closed_at"] is not None
    assert [(a["reason"], a["note"], a["acknowledged_by"]) for a in seen["acknowledgements"]] == [
        ("unpaid", body["note"], s.finance.principal.user_id)
    ]
    assert market.client.get(ack_url, headers=s.commercial.headers).status_code == 403


def test_an_acknowledgement_lapses_when_the_mismatch_changes(market: Market) -> None:
    s = _billed_past_period(market)
    unpaid = _report(market, s.finance.headers)["mismatches"][0]
    market.client.post(
        f"/v1/billing/periods/{PERIOD}/acknowledgements",
        headers=s.finance.headers,
        json={"mismatch_key": unpaid["key"], "note": "accepted at this amount"},
    )
    invoice = invoices_of(market, s.commercial)[0]
    paid = market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.finance.headers,
        json={"amount_minor": 1, "reference": "BOC-partial"},
    )
    assert paid.status_code == 201, paid.text
    report = _report(market, s.finance.headers)
    assert report["open_mismatches"] == 1 and report["mismatches"][0]["acknowledgement"] is None
    assert _close(market, s.finance.headers).status_code == 409


def test_a_clean_period_closes_without_acknowledgements(market: Market) -> None:
    s = _billed_past_period(market)
    invoice = invoices_of(market, s.commercial)[0]
    market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.finance.headers,
        json={"amount_minor": invoice["total_minor"], "reference": "BOC-full"},
    )
    assert _report(market, s.finance.headers)["mismatches"] == []
    assert _close(market, s.finance.headers).status_code == 200


def test_cli_close_refuses_then_acknowledge_and_close(market: Market, cli_env: None) -> None:
    from market.cli import app

    s = _billed_past_period(market)
    runner = CliRunner()
    refused = runner.invoke(app, ["billing", "close", "--period", PERIOD])
    assert refused.exit_code == 1 and "period_has_open_mismatches" in refused.output
    report = json.loads(runner.invoke(app, ["billing", "reconcile", "--period", PERIOD, "--json"]).stdout)
    key = report["mismatches"][0]["key"]
    acked = runner.invoke(app, ["billing", "acknowledge", "--period", PERIOD, "--key", key, "--note", "terms"])
    assert acked.exit_code == 0, acked.output
    assert runner.invoke(app, ["billing", "close", "--period", PERIOD]).exit_code == 0
    del s

"""Done-when: a year walked with the clock, through every public-data rule, over HTTP and the upkeep job.

Grant, allowed revenue, registration with notice and an objection, a product under a fee standard,
paid and free use, revenue over the allowed figure and its carry-forward, an overdue review, due and
overdue invoice notices reaching a real SMTP server, agreement expiry, grant expiry delisting, and
the disclosure and operating report generated, checked against the ledger and usage, and published.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from market import clock
from market.accounts.models import Role
from market.compliance.jobs import run_upkeep
from tests.billing.test_documents_i18n import pdf_text
from tests.compliance.conftest import SmtpServer
from tests.compliance.helpers import notifications_of, object_to, registered_resource
from tests.conftest import Actor, Market
from tests.factories import FEE_CAP, Listed, grant, query, upload_version

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"
SLUG = "city-trips"
PLANS = [
    {"code": "public", "title": "Public interest", "kind": "public_interest", "monthly_query_quota": 1000},
    {"code": "standard", "title": "Commercial", "kind": "commercial", "per_query_minor": 150},
]
FIGURES_2027 = {
    "platform_cost_minor": 300,
    "collection_cost_minor": 100,
    "processing_cost_minor": 100,
    "staff_cost_minor": 100,
    "subsidies_minor": 200,
    "profit_minor": 50,
    "taxes_minor": 50,
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def upkeep(market: Market, moment: str) -> dict[str, int]:
    clock.freeze(at(moment))
    return run_upkeep(market.database, market.settings)


def list_product(market: Market, operator: Actor, regulator: Actor, resource_code: str) -> Listed:
    ok(
        market.client.post(
            "/v1/products",
            headers=operator.headers,
            json={
                "slug": SLUG,
                "title": "City trips",
                "zone": "transport",
                "region": "CN-11",
                "resources": [resource_code],
                "plans": PLANS,
            },
        ),
        201,
    )
    ok(upload_version(market, operator, SLUG), 201)
    ok(market.client.post(f"/v1/products/{SLUG}/submit", headers=operator.headers))
    standard = {"max_per_query_minor": 200, "max_per_gb_minor": "0", "max_monthly_fee_minor": 0}
    too_high = market.client.put(
        f"/v1/products/{SLUG}/fee-standard", headers=regulator.headers, json={**standard, "max_per_query_minor": 600}
    )
    assert too_high.status_code == 422 and too_high.json()["error"]["code"] == "fee_standard_above_cap"
    ok(market.client.put(f"/v1/products/{SLUG}/fee-standard", headers=regulator.headers, json=standard))
    ok(
        market.client.post(
            f"/v1/products/{SLUG}/review", headers=regulator.headers, json={"decision": "approve", "comment": "ok"}
        )
    )
    # The zone's cap allows 500 a query, the product's standard 200: the stricter one holds.
    above = market.client.put(
        f"/v1/products/{SLUG}/plans/standard",
        headers=operator.headers,
        json={"code": "standard", "title": "Commercial", "kind": "commercial", "per_query_minor": 250},
    )
    assert above.status_code == 422 and above.json()["error"]["code"] == "fee_above_cap"
    fees = ok(market.client.get(f"/v1/products/{SLUG}/fees", headers=operator.headers))
    assert fees["zone_cap"]["per_query_minor"] == "500" and fees["fee_standard"]["per_query_minor"] == "200"
    assert {p["code"]: p["per_query_minor"] for p in fees["plans"]} == {"public": 0, "standard": 150}
    return Listed(slug=SLUG, operator=operator, regulator=regulator)


def canonical_hash(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_year_of_public_data_rules(mailing_market: Market, smtp_server: SmtpServer) -> None:
    market = mailing_market
    client = market.client
    with clock.travel_to(at("2027-01-04T09:00:00")):  # a Monday
        regulator, operator = market.actor(Role.REGULATOR), market.actor(Role.OPERATOR)
        finance = market.actor(Role.FINANCE)
        commercial, public, latecomer = (market.actor(Role.BUYER) for _ in range(3))
        op_org = operator.principal.org_id

        # -- the grant, and the allowed revenue derived from the regulator's figures -------------
        granted = ok(
            client.post(
                "/v1/authorisations",
                headers=regulator.headers,
                json={
                    "operator": op_org,
                    "zones": ["transport"],
                    "regions": ["CN-11"],
                    "valid_until": "2027-11-30T00:00:00Z",
                    "fee_caps": [{"zone": "transport", **FEE_CAP, "max_per_query_minor": 500}],
                },
            ),
            201,
        )
        typed = client.put(
            f"/v1/allowed-revenue/{op_org}/2027", headers=regulator.headers, json={**FIGURES_2027, "allowed_minor": 9}
        )
        assert typed.status_code == 422  # the allowed revenue is derived, never typed in
        allowed = ok(client.put(f"/v1/allowed-revenue/{op_org}/2027", headers=regulator.headers, json=FIGURES_2027))
        assert allowed["permitted_costs_minor"] == 400 and allowed["allowed_minor"] == 500

        # -- registration with public notice, an objection, confirmation --------------------------
        registration = registered_resource(market, regulator)
        assert registration["status"] == "notice"
        assert registration["notice_ends_at"].startswith("2027-01-11T09:00")  # 5 working days, weekend skipped
        objection = ok(object_to(market, latecomer, registration["id"]), 201)
        early = client.post(f"/v1/registrations/{registration['id']}/confirm", headers=regulator.headers)
        assert early.status_code == 409
        ok(
            client.post(
                f"/v1/registrations/{registration['id']}/objections/{objection['id']}/resolve",
                headers=regulator.headers,
                json={"decision": "dismiss", "resolution": "The source department holds this data."},
            )
        )
        assert upkeep(market, "2027-01-08T09:00:00")["registrations_confirmed"] == 0
        assert upkeep(market, "2027-01-11T09:30:00")["registrations_confirmed"] == 1
        lookup = client.get(f"/registrations/{registration['lookup_code']}", params={"format": "json"})
        assert lookup.status_code == 200 and lookup.json()["status"] == "confirmed"  # no sign-in
        assert registration["registration_code"] in client.get(f"/registrations/{registration['lookup_code']}").text

        # -- listing under a fee standard; paid and free use -------------------------------------
        listed = list_product(market, operator, regulator, registration["registration_code"])
        grant(market, listed, commercial, purpose="commercial", plan="standard", valid_days=60)
        grant(market, listed, public, purpose="public_welfare", plan="public")
        for _ in range(4):
            assert ok(query(market, commercial, SLUG, SQL))["charge"]["amount_minor"] == 150
        for _ in range(2):
            assert ok(query(market, public, SLUG, SQL))["charge"]["charge_type"] == "free_public"
        audited = ok(client.get("/v1/audit/queries", headers=regulator.headers, params={"product": SLUG}))
        flag = ok(
            client.post(
                f"/v1/audit/queries/{audited['items'][0]['id']}/flags",
                headers=regulator.headers,
                json={"reason": "Check the study."},
            ),
            201,
        )
        resolve = f"/v1/audit/flags/{flag['id']}/resolve"
        assert client.post(resolve, headers=operator.headers, json={"resolution": "x"}).status_code == 403
        resolved = ok(client.post(resolve, headers=regulator.headers, json={"resolution": "Study published."}))
        assert resolved["resolved_at"] is not None
        assert client.post(resolve, headers=regulator.headers, json={"resolution": "again"}).status_code == 409

        # -- January billed and paid: revenue passes the allowed figure ---------------------------
        clock.freeze(at("2027-02-01T10:00:00"))
        ok(client.post("/v1/billing/runs", headers=finance.headers, json={"period": "2027-01", "finalize": True}))
        january = ok(client.get("/v1/invoices", headers=commercial.headers))["items"][0]
        assert january["total_minor"] == 600
        clock.freeze(at("2027-02-05T10:00:00"))
        ok(
            client.post(
                f"/v1/invoices/{january['id']}/payments",
                headers=finance.headers,
                json={"amount_minor": 600, "reference": "BOC-20270205-0001"},
            ),
            201,
        )
        assert upkeep(market, "2027-02-05T11:00:00")["revenue_warnings"] >= 3  # operator, finance, regulator
        seen = ok(client.get(f"/v1/allowed-revenue/{op_org}/2027", headers=operator.headers))
        assert (seen["received_minor"], seen["headroom_minor"], seen["warning"]) == (600, -100, "exceeded")
        assert notifications_of(market, operator)["items"][0]["kind"] == "allowed_revenue_exceeded"
        # One rule: the operator's settlement statement holds the same figures against the allowed revenue.
        (statement,) = ok(client.get("/v1/settlements", headers=operator.headers, params={"period": "2027-01"}))[
            "items"
        ]
        assert (statement["year_to_date_minor"], statement["ceiling_minor"]) == (600, 500)
        assert (statement["over_ceiling"], statement["warning"], statement["used_basis_points"]) == (
            True,
            "exceeded",
            seen["used_basis_points"],
        )

        # -- February: more use, and a request left past its review deadline ----------------------
        clock.freeze(at("2027-02-10T10:00:00"))
        for _ in range(2):
            ok(query(market, commercial, SLUG, SQL))
        ok(
            client.post(
                "/v1/access-requests",
                headers=latecomer.headers,
                json={
                    "product": SLUG,
                    "plan": "standard",
                    "purpose": "commercial",
                    "scenario": "analysis",
                    "justification": "Plan routes.",
                },
            ),
            201,
        )
        assert upkeep(market, "2027-02-16T10:00:00")["review_reminders"] == 1
        assert upkeep(market, "2027-02-17T10:00:00")["review_reminders"] == 0  # once
        assert notifications_of(market, operator)["items"][0]["kind"] == "review_overdue"

        clock.freeze(at("2027-03-01T10:00:00"))
        ok(client.post("/v1/billing/runs", headers=finance.headers, json={"period": "2027-02", "finalize": True}))

        # -- the commercial agreement ends; the unpaid invoice falls due, then is overdue ---------
        assert upkeep(market, "2027-03-21T10:00:00")["agreements_expired"] == 1
        mine = ok(client.get("/v1/agreements", headers=commercial.headers))["items"]
        assert [a["status"] for a in mine] == ["expired"]
        refused = query(market, commercial, SLUG, SQL)
        assert refused.status_code == 403
        assert upkeep(market, "2027-03-29T10:00:00")["invoice_due_notices"] >= 2  # buyer and finance
        assert upkeep(market, "2027-04-01T11:00:00")["invoice_overdue_notices"] >= 2
        subjects = smtp_server.mailbox.subjects()
        assert any("falls due on 2027-03-31" in s for s in subjects)
        assert any("is overdue" in s for s in subjects)
        recipients = {str(m["To"]) for m in smtp_server.mailbox.messages if "overdue" in str(m["Subject"])}
        assert len(recipients) == 2  # the buyer's user and the finance clerk

        # -- the grant expires: the product is delisted and its agreements stopped ----------------
        expired = upkeep(market, "2027-12-01T00:30:00")
        assert (expired["grants_expired"], expired["products_delisted"], expired["agreements_stopped"]) == (1, 1, 1)
        assert ok(client.get(f"/v1/products/{SLUG}", headers=operator.headers))["status"] == "delisted"
        events = ok(client.get(f"/v1/products/{SLUG}/events", headers=operator.headers, params={"limit": 500}))["items"]
        assert events[-1]["to_status"] == "delisted" and "expired" in events[-1]["reason"]
        grant_events = ok(client.get(f"/v1/authorisations/{granted['id']}/events", headers=operator.headers))["items"]
        assert grant_events[-1]["to_status"] == "expired"
        assert [a["status"] for a in ok(client.get("/v1/agreements", headers=public.headers))["items"]] == ["revoked"]

        # -- the year closes: the excess is carried into next year's allowed revenue --------------
        assert upkeep(market, "2028-01-02T09:00:00")["years_closed"] == 1
        closed = ok(client.get(f"/v1/allowed-revenue/{op_org}/2027", headers=finance.headers))
        assert closed["carry_forward"]["excess_minor"] == 100
        late = client.put(f"/v1/allowed-revenue/{op_org}/2027", headers=regulator.headers, json=FIGURES_2027)
        assert late.status_code == 409
        next_year = ok(
            client.put(
                f"/v1/allowed-revenue/{op_org}/2028", headers=regulator.headers, json={"platform_cost_minor": 1000}
            )
        )
        assert (next_year["carried_deduction_minor"], next_year["allowed_minor"]) == (100, 900)

        # -- the disclosure and the operating report, checked against ledger and usage -----------
        clock.freeze(at("2028-01-10T09:00:00"))
        status = ok(client.get("/v1/disclosures/status", headers=regulator.headers, params={"year": 2027}))
        assert len(status["missing"]) == 3 and not status["overdue"]
        assert status["deadline"].startswith("2028-03-31T16:00:00")
        reports = [
            ok(
                client.post(
                    "/v1/disclosures", headers=regulator.headers, json={"year": 2027, "kind": "regulator_disclosure"}
                ),
                201,
            ),
            ok(
                client.post(
                    "/v1/disclosures", headers=operator.headers, json={"year": 2027, "kind": "operator_disclosure"}
                ),
                201,
            ),
            ok(
                client.post(
                    "/v1/disclosures", headers=operator.headers, json={"year": 2027, "kind": "operating_report"}
                ),
                201,
            ),
        ]
        regulator_report, operator_report, operating = (r["content"] for r in reports)
        assert regulator_report["authorisations"][0]["fee_caps"][0]["max_per_query_minor"] == 500
        assert regulator_report["fee_standards"][0]["fee_standard"]["per_query_minor"] == "200"
        assert operator_report["resources"][0]["registration_code"] == registration["registration_code"]
        product_fees = operator_report["products"][0]
        assert product_fees["zone_cap"]["per_query_minor"] == "500"  # the cap of the grant that covered it
        assert product_fees["fee_standard"]["per_query_minor"] == "200"
        assert {p["code"]: p["per_query_minor"] for p in product_fees["plans"]}["standard"] == 150

        entries = ok(client.get("/v1/ledger/entries", headers=finance.headers, params={"limit": 500}))["items"]
        distributed = sum(
            line["amount_minor"]
            for e in entries
            if e["kind"] == "distribution" and e["created_at"].startswith("2027")
            for line in e["lines"]
            if line["account"] == "billed_revenue"
        )
        assert operating["revenue"]["received_minor"] == distributed == 600
        assert operating["revenue_by_product"] == [{"product": SLUG, "received_minor": 600}]
        assert operating["revenue"]["allowed"]["allowed_minor"] == 500
        assert operating["revenue"]["allowed"]["excess_minor"] == 100

        def accepted(buyer: Actor) -> list[dict[str, Any]]:
            items = ok(client.get("/v1/usage", headers=buyer.headers, params={"limit": 200}))["items"]
            return [u for u in items if u["charge_type"] != "rejected"]

        paid, free = accepted(commercial), accepted(public)
        assert operating["usage_by_category"]["paid"] == {
            "queries": len(paid),
            "charged_minor": sum(u["amount_minor"] for u in paid),
            "agreements": 1,
        }
        assert operating["usage_by_category"]["public_interest"] == {
            "queries": len(free),
            "charged_minor": 0,
            "agreements": 1,
        }
        assert (len(paid), len(free)) == (6, 2)
        assert operating["buyers_served"] == 2 and operating["audit_flags"] == {"raised": 1, "resolved": 1}

        # drafts are private to their publisher and the regulator; publication freezes them
        other_operator = market.actor(Role.OPERATOR)
        assert client.get(f"/v1/disclosures/{reports[2]['id']}", headers=other_operator.headers).status_code == 404
        assert "Nothing is published yet." in client.get("/disclosures").text
        for report, publisher in zip(reports, (regulator, operator, operator), strict=True):
            published = ok(client.post(f"/v1/disclosures/{report['id']}/publish", headers=publisher.headers))
            assert published["content_hash"] == canonical_hash(published["content"])
        again = client.post(
            "/v1/disclosures", headers=operator.headers, json={"year": 2027, "kind": "operating_report"}
        )
        assert again.status_code == 409
        status = ok(client.get("/v1/disclosures/status", headers=regulator.headers, params={"year": 2027}))
        assert status["missing"] == [] and len(status["published"]) == 3

        index = client.get("/disclosures")  # public, no sign-in
        # HTML, PDF in zh-CN and in en, and JSON for each of the three reports
        assert index.status_code == 200 and index.text.count("/disclosures/dsc_") == 12
        assert "公开" not in index.text and "Public disclosures" in index.text  # the visitor's language (en)
        assert "信息披露" in client.get("/disclosures", params={"lang": "zh-CN"}).text
        public_json = ok(client.get(f"/disclosures/{reports[2]['id']}", params={"format": "json"}))
        assert public_json["content_hash"] == canonical_hash(public_json["content"])
        assert SLUG in client.get(f"/disclosures/{reports[2]['id']}").text
        # The published reports as PDF, in Chinese and in English: the figures read as money, as on the ledger.
        operating_zh = pdf_text(
            client.get(f"/disclosures/{reports[2]['id']}", params={"format": "pdf", "lang": "zh-CN"}).content
        )
        assert "年度运营报告" in operating_zh and "最高准许收入" in operating_zh
        assert (
            "¥6.00" in operating_zh and "¥5.00" in operating_zh and "¥1.00" in operating_zh
        )  # received, allowed, excess
        assert published["content_hash"] in operating_zh
        operating_en = pdf_text(
            client.get(f"/disclosures/{reports[2]['id']}", params={"format": "pdf", "lang": "en"}).content
        )
        assert "Annualoperatingreport" in operating_en and "CN¥6.00" in operating_en
        regulator_zh = pdf_text(
            client.get(f"/disclosures/{reports[0]['id']}", params={"format": "pdf", "lang": "zh-CN"}).content
        )
        assert "数据管理机构年度信息披露" in regulator_zh and "上限收费标准" in regulator_zh
        assert "每次查询¥5.00" in regulator_zh and "每次查询¥2.00" in regulator_zh  # the zone's cap, the standard
        draft_pdf = client.get(
            f"/v1/disclosures/{reports[1]['id']}", headers=operator.headers, params={"format": "pdf"}
        )
        assert draft_pdf.headers["content-type"] == "application/pdf" and "授权运营主体年度信息披露" in pdf_text(
            client.get(
                f"/v1/disclosures/{reports[1]['id']}", headers=operator.headers, params={"format": "pdf", "lang": "zh"}
            ).content
        )
        clock.advance(timedelta(days=1))

"""Tenancy and authorisation, attacked over HTTP: every object-scoped route, tenant against tenant,
and every role against the routes of other roles.

One marketplace ("the world") holds two of everything: operators A and B with a listed product each
(A also has an unlisted draft), buyers A and B with agreements, usage, invoices and payments, source
departments A and B with resources and revenue shares. Each attack in the tables below is one request
by the wrong party; the table says what must come back. The convention (docs/security.md):

- a role that may never call a route gets 403 `forbidden_role`;
- a role that may call it, naming another tenant's object, gets the same 404 as for an id that
  does not exist (no existence oracle);
- the one exception is POST /v1/queries, whose contract is "no agreement, 403": another buyer's
  agreement id gives 403 `agreement_not_yours`, the same as an unknown id.

`test_every_route_is_classified` fails when a route is added without being placed in a table here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from market.accounts.models import Role
from market.app import ROUTERS
from tests.billing.helpers import invoices_of, run, this_period
from tests.conftest import Actor, Market
from tests.factories import (
    PEOPLE_POLICY,
    PLANS,
    Listed,
    create_product,
    grant,
    listed_product,
    people_csv,
    query,
    upload_version,
)

# Billing happens in a past period: usage inside it, finalization after its end (market.clock).
pytestmark = pytest.mark.usefixtures("billed_period_clock")

SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"
SHARED_KEY = "retry-1"
"""The Idempotency-Key both buyers use: a buyer must never get the other's stored answer back."""


@dataclass
class World:
    market: Market
    alpha: Listed
    beta: Listed
    actors: dict[str, Actor]
    ids: dict[str, Any] = field(default_factory=dict)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def build_world(market: Market) -> World:
    client = market.client
    alpha = listed_product(market, "alpha")
    beta = listed_product(market, "beta")
    source_a, source_b = market.actor(Role.SOURCE), market.actor(Role.SOURCE)
    finance = market.actor(Role.FINANCE)
    actors = {
        "operator_a": alpha.operator,
        "operator_b": beta.operator,
        "regulator": alpha.regulator,
        "buyer_a": market.actor(Role.BUYER),
        "buyer_b": market.actor(Role.BUYER),
        "source_a": source_a,
        "source_b": source_b,
        "finance": finance,
        "admin": market.actor(Role.ADMIN),
    }
    world = World(market, alpha, beta, actors)
    ids = world.ids

    # Revenue shares on alpha name source A, so source A (not B) may read them and gets a statement.
    shares = {
        "shares": [
            {"party": "source", "org_id": source_a.principal.org_id, "basis_points": 2_000},
            {"party": "operator", "basis_points": 6_000},
            {"party": "platform", "basis_points": 2_000},
        ]
    }
    _ok(client.put("/v1/products/alpha/revenue-shares", headers=finance.headers, json=shares))
    # Operator A's allowed revenue for 2030, which operator B must not read.
    operator_a_org = alpha.operator.principal.org_id
    figures = {"staff_cost_minor": 1_000}
    _ok(client.put(f"/v1/allowed-revenue/{operator_a_org}/2030", headers=alpha.regulator.headers, json=figures))

    buyer_a, buyer_b = actors["buyer_a"], actors["buyer_b"]
    ids["agreement_a"] = grant(market, alpha, buyer_a, purpose="commercial", plan="standard")["agreement_id"]
    ids["agreement_b"] = grant(market, alpha, buyer_b, purpose="commercial", plan="standard")["agreement_id"]
    ids["query_a"] = _ok(query(market, buyer_a, "alpha", SQL, key=SHARED_KEY))["query_id"]
    ids["query_b"] = _ok(query(market, buyer_b, "alpha", SQL))["query_id"]

    # Pending requests: buyer A's commercial one on beta (operator B reviews), a public one (regulator).
    body = {
        "product": "beta",
        "plan": "standard",
        "purpose": "commercial",
        "scenario": "analysis",
        "justification": "t",
    }
    ids["request_a"] = _ok(client.post("/v1/access-requests", headers=buyer_a.headers, json=body), 201)["id"]
    public = {**body, "plan": "public", "purpose": "public_welfare"}
    ids["public_request_a"] = _ok(client.post("/v1/access-requests", headers=buyer_a.headers, json=public), 201)["id"]

    # Operator A: an unlisted draft, and a stored upload.
    assert create_product(market, alpha.operator, "alpha-draft").status_code == 201
    assert upload_version(market, alpha.operator, "alpha-draft").status_code == 201
    for name in ("a", "b"):
        operator = actors[f"operator_{name}"]
        ids[f"upload_{name}"] = _ok(
            client.post(
                "/v1/uploads",
                headers={**operator.headers, "Idempotency-Key": "upload-1"},
                params={"filename": "people.csv"},
                content=people_csv() + (b"" if name == "a" else b"\n"),
            ),
            201,
        )["id"]
    ids["authorisation_a"] = _ok(client.get("/v1/authorisations", headers=alpha.operator.headers))["items"][0]["id"]

    resource = {"title": "Taps", "zone": "transport", "region": "CN-11", "classification": "general"}
    ids["resource_a"] = _ok(client.post("/v1/resources", headers=source_a.headers, json=resource), 201)["id"]
    ids["resource_b"] = _ok(client.post("/v1/resources", headers=source_b.headers, json=resource), 201)["id"]

    # Billing: both buyers invoiced and finalized; buyer A pays by bank transfer, which is distributed.
    run(market, finance, finalize=True)
    invoice_a = invoices_of(market, buyer_a)[0]
    ids["invoice_a"], ids["line_a"] = invoice_a["id"], invoice_a["lines"][0]["id"]
    invoice_b = invoices_of(market, buyer_b)[0]
    ids["invoice_b"], ids["line_b"] = invoice_b["id"], invoice_b["lines"][0]["id"]
    transfer = {"amount_minor": invoice_a["total_minor"], "reference": "BANK-A-1"}
    ids["payment_a"] = _ok(
        client.post(f"/v1/invoices/{ids['invoice_a']}/payments", headers=finance.headers, json=transfer), 201
    )["id"]
    credit = {"amount_minor": 1, "reason": "goodwill"}
    ids["credit_note_a"] = _ok(
        client.post(f"/v1/invoices/{ids['invoice_a']}/credit-notes", headers=finance.headers, json=credit), 201
    )["id"]
    return world


@pytest.fixture
def world(market: Market) -> World:
    return build_world(market)


@dataclass(frozen=True)
class Attack:
    """One request by the wrong party: who sends it, to which route, and what must come back."""

    who: str
    method: str
    route: str
    status: int
    code: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    """Route parameters as world ids (or literals prefixed '='); default: the parameter's usual target."""
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None

    def label(self) -> str:
        return f"{self.who} {self.method} {self.route} {self.args or ''}"


DEFAULT_ARGS = {
    "invoice_id": "invoice_a",
    "line_id": "line_a",
    "agreement_id": "agreement_a",
    "request_id": "request_a",
    "slug": "=alpha",
    "code": "=standard",
    "number": "=1",
    "table": "=people",
    "finding_id": "=finding-1",
    "resource_id": "resource_a",
    "authorisation_id": "authorisation_a",
    "record_id": "query_a",
    "period": "period",
    "user_id": "user_buyer_a",
    "key_id": "key_buyer_a",
    "operator": "org_operator_a",
    "year": "=2030",
    "registration_id": "=reg_unknown",
    "objection_id": "=obj_unknown",
    "flag_id": "=flg_unknown",
    "note_id": "credit_note_a",
    "org_id": "org_buyer_a",
}

REASON = {"reason": "testing tenancy"}
DRAFT = {"slug": "=alpha-draft"}
NF = 404
FORBIDDEN = (403, "forbidden_role")


def _nf(who: str, method: str, route: str, code: str, **kw: Any) -> Attack:
    return Attack(who, method, route, NF, code, **kw)


def _role(who: str, method: str, route: str, **kw: Any) -> Attack:
    return Attack(who, method, route, *FORBIDDEN, **kw)


INV = "/v1/invoices/{invoice_id}"
AGR = "/v1/agreements/{agreement_id}"
REQ = "/v1/access-requests/{request_id}"
PRODUCT = "/v1/products/{slug}"
VERSION = "/v1/products/{slug}/versions/{number}"
AUTH = "/v1/authorisations/{authorisation_id}"
RES = "/v1/resources/{resource_id}"
NOTE_DOC = "/v1/credit-notes/{note_id}/document"
ORG = "/v1/orgs/{org_id}"
PERIOD = {"period": this_period()}

BUYER_VS_BUYER = [
    _nf("buyer_b", "GET", INV, "invoice_not_found"),
    _nf("buyer_b", "GET", INV + "/lines/{line_id}/usage", "invoice_not_found"),
    # Its own invoice with another buyer's line: the line must belong to the invoice.
    _nf("buyer_a", "GET", INV + "/lines/{line_id}/usage", "invoice_line_not_found", args={"line_id": "line_b"}),
    _nf("buyer_b", "GET", INV + "/document", "invoice_not_found"),
    _nf("buyer_b", "GET", INV + "/document", "invoice_not_found", params={"format": "pdf"}),
    _nf("buyer_b", "POST", INV + "/pay", "invoice_not_found", body={"payment_method": "pm_card_visa"}),
    _nf("buyer_b", "GET", NOTE_DOC, "credit_note_not_found"),
    _nf("buyer_b", "GET", NOTE_DOC, "credit_note_not_found", params={"format": "pdf", "lang": "zh-CN"}),
    _nf("buyer_b", "GET", ORG, "organisation_not_found"),
    _nf("buyer_b", "GET", AGR, "agreement_not_found"),
    _nf("buyer_b", "GET", AGR + "/odrl", "agreement_not_found"),
    _nf("buyer_b", "GET", REQ, "access_request_not_found"),
    _nf("buyer_b", "POST", REQ + "/decision", "access_request_not_found", body={"decision": "approve"}),
    Attack(
        "buyer_b",
        "POST",
        "/v1/queries",
        403,
        "agreement_not_yours",
        body={"product": "alpha", "sql": SQL, "agreement": "{agreement_a}"},
    ),
    # A buyer naming a product it cannot see (another operator's draft) learns nothing from usage filters.
    _nf("buyer_b", "GET", "/v1/usage", "product_not_found", params={"product": "alpha-draft"}),
    _nf("buyer_b", "GET", "/v1/usage/summary", "product_not_found", params={"product": "alpha-draft"}),
    _nf("buyer_b", "GET", "/v1/usage/export", "product_not_found", params={"product": "alpha-draft"}),
]

OPERATOR_VS_OPERATOR = [
    _nf("operator_b", "GET", PRODUCT, "product_not_found", args=DRAFT),
    _nf("operator_b", "PATCH", PRODUCT, "product_not_found", body={"title": "mine now"}),
    _nf("operator_b", "PUT", PRODUCT + "/plans/{code}", "product_not_found", body=PLANS[1]),
    _nf("operator_b", "DELETE", PRODUCT + "/plans/{code}", "product_not_found"),
    _nf("operator_b", "GET", PRODUCT + "/fees", "product_not_found", args=DRAFT),
    # Another operator's allowed revenue answers like one never recorded.
    _nf("operator_b", "GET", "/v1/allowed-revenue/{operator}/{year}", "allowed_revenue_not_found"),
    _nf("operator_b", "GET", PRODUCT + "/events", "product_not_found"),
    _nf("operator_b", "GET", PRODUCT + "/events", "product_not_found", args=DRAFT),
    _nf("operator_b", "POST", PRODUCT + "/versions", "product_not_found", body={"__multipart__": True}),
    _nf("operator_b", "POST", PRODUCT + "/submit", "product_not_found", args=DRAFT),
    _nf("operator_b", "POST", PRODUCT + "/delist", "product_not_found", body=REASON),
    _nf(
        "operator_b",
        "POST",
        PRODUCT + "/builds",
        "product_not_found",
        body={"tables": {"people": "{upload_b}"}, "policy": PEOPLE_POLICY},
    ),
    _nf(
        "operator_b",
        "POST",
        PRODUCT + "/builds",
        "upload_not_found",
        args={"slug": "=beta"},
        body={"tables": {"people": "{upload_a}"}, "policy": PEOPLE_POLICY},
    ),
    _nf("operator_b", "GET", PRODUCT + "/versions", "product_not_found"),
    _nf("operator_b", "GET", VERSION, "product_not_found"),
    _nf("operator_b", "GET", VERSION, "product_not_found", args=DRAFT),
    _nf("operator_b", "POST", VERSION + "/rebuild", "product_not_found", body={}),
    _nf("operator_b", "GET", VERSION + "/quarantine/{table}", "product_not_found"),
    _nf(
        "operator_b",
        "POST",
        VERSION + "/findings/{finding_id}/resolve",
        "product_not_found",
        body={"justification": "not a risk, trust me"},
    ),
    _nf("operator_b", "GET", PRODUCT + "/access-settings", "product_not_found"),
    _nf("operator_b", "PUT", PRODUCT + "/access-settings", "product_not_found", body={"auto_approve_commercial": True}),
    _nf("operator_b", "GET", PRODUCT + "/revenue-shares", "product_not_found"),
    _nf("operator_b", "GET", "/v1/usage", "product_not_found", params={"product": "alpha"}),
    _nf("operator_b", "GET", "/v1/usage/summary", "product_not_found", params={"product": "alpha"}),
    _nf("operator_b", "GET", "/v1/usage/export", "product_not_found", params={"product": "alpha"}),
    _nf("operator_b", "GET", AGR, "agreement_not_found"),
    _nf("operator_b", "GET", AGR + "/odrl", "agreement_not_found"),
    _nf("operator_b", "POST", AGR + "/revoke", "agreement_not_found", body=REASON),
    _nf("operator_b", "GET", AUTH, "authorisation_not_found"),
    _nf("operator_b", "GET", ORG, "organisation_not_found", args={"org_id": "org_operator_a"}),
    _nf("operator_b", "GET", AUTH + "/events", "authorisation_not_found"),
    # Operator A may not see or decide a request operator B reviews, nor one the regulator reviews.
    _nf("operator_a", "GET", REQ, "access_request_not_found"),
    _nf("operator_a", "POST", REQ + "/decision", "access_request_not_found", body={"decision": "approve"}),
    _nf("operator_b", "GET", REQ, "access_request_not_found", args={"request_id": "public_request_a"}),
    _nf(
        "operator_a",
        "POST",
        REQ + "/decision",
        "access_request_not_found",
        args={"request_id": "public_request_a"},
        body={"decision": "approve"},
    ),
]

SOURCE_VS_SOURCE = [
    _nf("source_b", "GET", RES, "resource_not_found"),
    _nf(
        "source_b",
        "PUT",
        RES,
        "resource_not_found",
        body={"title": "x", "zone": "transport", "region": "CN-11", "classification": "general"},
    ),
    _nf("source_b", "GET", PRODUCT + "/revenue-shares", "product_not_found"),
    _nf("source_b", "GET", ORG, "organisation_not_found", args={"org_id": "org_source_a"}),
]

TRANSFER = {"amount_minor": 1, "reference": "X-1"}
CROSS_ROLE = [
    # Only a buyer cancels its own queries.
    Attack("operator_a", "POST", "/v1/queries/{key}/cancel", *FORBIDDEN, args={"key": "=some-key"}),
    Attack("finance", "POST", "/v1/queries/{key}/cancel", *FORBIDDEN, args={"key": "=some-key"}),
    # Buyers: no finance, regulator, operator, source or admin work.
    *(
        _role("buyer_a", method, route, body=body, params=params)
        for method, route, body, params in [
            ("POST", "/v1/billing/runs", PERIOD, None),
            ("GET", "/v1/billing/periods", None, None),
            ("POST", "/v1/billing/periods/{period}/finalize", None, None),
            ("POST", "/v1/billing/periods/{period}/close", None, None),
            ("GET", "/v1/billing/periods/{period}/acknowledgements", None, None),
            ("POST", "/v1/billing/periods/{period}/acknowledgements", {"mismatch_key": "k", "note": "n"}, None),
            ("GET", "/v1/reconciliation", None, PERIOD),
            ("GET", "/v1/reconciliation/export", None, PERIOD),
            ("GET", "/v1/ledger/balances", None, None),
            ("GET", "/v1/ledger/entries", None, None),
            ("GET", "/v1/settlements", None, PERIOD),
            ("GET", "/v1/settlements/document", None, PERIOD),
            ("PATCH", ORG, {"address": "x"}, None),
            ("POST", "/v1/payments", {**TRANSFER, "buyer_org_id": "{org_buyer_a}"}, None),
            ("POST", INV + "/payments", TRANSFER, None),
            ("POST", INV + "/finalize", None, None),
            ("POST", INV + "/void", REASON, None),
            ("POST", INV + "/uncollectible", REASON, None),
            ("POST", INV + "/credit-notes", {"amount_minor": 1, "reason": "x"}, None),
            ("GET", "/v1/audit/queries", None, None),
            ("POST", "/v1/audit/queries/{record_id}/flags", REASON, None),
            ("POST", "/v1/audit/flags/{flag_id}/resolve", {"resolution": "x"}, None),
            ("POST", AUTH + "/suspend", REASON, None),
            ("POST", AUTH + "/reinstate", REASON, None),
            ("POST", AUTH + "/revoke", REASON, None),
            ("GET", "/v1/authorisations", None, None),
            ("POST", PRODUCT + "/review", {"decision": "approve"}, None),
            ("PUT", PRODUCT + "/revenue-shares", {"shares": [{"party": "platform", "basis_points": 10_000}]}, None),
            ("GET", PRODUCT + "/access-settings", None, None),
            ("POST", AGR + "/revoke", REASON, None),
            ("POST", REQ + "/decision", {"decision": "approve"}, None),
            (
                "POST",
                "/v1/resources",
                {"title": "x", "zone": "transport", "region": "CN-11", "classification": "general"},
                None,
            ),
            ("GET", "/v1/resources", None, None),
            ("POST", RES + "/review", {"decision": "register"}, None),
            ("POST", "/v1/orgs", {"name": "evil", "kind": "buyer"}, None),
            ("PUT", "/v1/allowed-revenue/{operator}/{year}", {"staff_cost_minor": 1}, None),
            ("POST", "/v1/allowed-revenue/{operator}/{year}/close", None, None),
            (
                "PUT",
                PRODUCT + "/fee-standard",
                {"max_per_query_minor": 1, "max_per_gb_minor": "0", "max_monthly_fee_minor": 0},
                None,
            ),
            ("POST", PRODUCT + "/registration", {}, None),
            (
                "POST",
                "/v1/registrations/{registration_id}/objections/{objection_id}/resolve",
                {"decision": "dismiss", "resolution": "x"},
                None,
            ),
            ("POST", "/v1/registrations/{registration_id}/confirm", None, None),
            ("POST", "/v1/disclosures", {"year": 2030, "kind": "operating_report"}, None),
            ("GET", "/v1/disclosures/status", None, {"year": "2030"}),
            ("POST", "/v1/users", {"org_id": "{org_buyer_a}", "name": "x", "email": "x@y.z", "role": "buyer"}, None),
            ("POST", "/v1/users/{user_id}/keys", {"label": "x"}, None),
            ("PUT", "/v1/users/{user_id}/password", {"password": "a long new password"}, None),
            ("GET", "/v1/uploads", None, None),
            (
                "POST",
                "/v1/products",
                {"slug": "mine", "title": "x", "zone": "transport", "region": "CN-11", "plans": []},
                None,
            ),
        ]
    ),
    # Operators: not the audit log, not money other than their own statements, not queries.
    *(
        _role("operator_a", method, route, body=body, params=params)
        for method, route, body, params in [
            ("GET", "/v1/audit/queries", None, None),
            ("POST", "/v1/audit/queries/{record_id}/flags", REASON, None),
            ("GET", "/v1/invoices", None, None),
            ("GET", INV, None, None),
            ("GET", "/v1/payments", None, None),
            ("GET", "/v1/credit-notes", None, None),
            ("GET", NOTE_DOC, None, None),
            ("PATCH", ORG, {"address": "x"}, None),
            ("GET", "/v1/reconciliation", None, PERIOD),
            ("GET", "/v1/ledger/entries", None, None),
            ("POST", "/v1/queries", {"product": "alpha", "sql": SQL}, None),
            (
                "POST",
                "/v1/access-requests",
                {"product": "beta", "plan": "standard", "purpose": "commercial", "scenario": "a", "justification": "t"},
                None,
            ),
            ("PUT", PRODUCT + "/revenue-shares", {"shares": [{"party": "operator", "basis_points": 10_000}]}, None),
        ]
    ),
    # The product's own operator may not decide a public-interest request: that is the regulator's.
    Attack(
        "operator_b",
        "POST",
        REQ + "/decision",
        *FORBIDDEN,
        args={"request_id": "public_request_a"},
        body={"decision": "approve"},
    ),
    # Source departments: only their resources and statements.
    *(
        _role("source_a", method, route, body=body, params=params)
        for method, route, body, params in [
            ("GET", "/v1/usage", None, None),
            ("GET", "/v1/invoices", None, None),
            ("GET", "/v1/audit/queries", None, None),
            ("GET", "/v1/agreements", None, None),
            ("GET", "/v1/access-requests", None, None),
            ("POST", "/v1/uploads", None, {"filename": "x.csv"}),
        ]
    ),
    # Finance: money, not the audit log or queries.
    *(
        _role("finance", method, route, body=body, params=params)
        for method, route, body, params in [
            ("GET", "/v1/audit/queries", None, None),
            ("POST", "/v1/queries", {"product": "alpha", "sql": SQL}, None),
            ("GET", "/v1/usage", None, None),
            ("POST", "/v1/orgs", {"name": "evil", "kind": "buyer"}, None),
            ("PATCH", ORG, {"bank_account": "12345678"}, None),
        ]
    ),
    # The platform admin manages organisations, users and keys: no invoices, money or audit log.
    *(
        _role("admin", method, route, body=body, params=params)
        for method, route, body, params in [
            ("GET", "/v1/invoices", None, None),
            ("GET", INV, None, None),
            ("GET", INV + "/document", None, None),
            ("GET", "/v1/payments", None, None),
            ("GET", "/v1/credit-notes", None, None),
            ("GET", "/v1/settlements", None, PERIOD),
            ("GET", "/v1/settlements/document", None, PERIOD),
            ("GET", NOTE_DOC, None, None),
            ("GET", "/v1/agreements", None, None),
            ("GET", AGR, None, None),
            ("GET", "/v1/audit/queries", None, None),
            ("GET", "/v1/usage", None, None),
        ]
    ),
    # The regulator supervises queries and products; buyers' invoices and payments are finance's.
    *(
        _role("regulator", method, route, body=body, params=params)
        for method, route, body, params in [
            ("GET", "/v1/invoices", None, None),
            ("GET", INV, None, None),
            ("GET", "/v1/payments", None, None),
            ("GET", "/v1/credit-notes", None, None),
            ("GET", NOTE_DOC, None, None),
            ("PATCH", ORG, {"address": "x"}, None),
            ("GET", "/v1/usage", None, None),
            ("POST", "/v1/queries", {"product": "alpha", "sql": SQL}, None),
            ("GET", "/v1/uploads", None, None),
            ("GET", "/v1/ledger/balances", None, None),
        ]
    ),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """Replace '{name}' placeholders in a body with world ids."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _path(attack: Attack, ids: dict[str, Any]) -> str:
    args = {**DEFAULT_ARGS, **attack.args}
    values = {}
    for name, ref in args.items():
        values[name] = ref[1:] if ref.startswith("=") else ids[ref]
    return attack.route.format(**values)


def _send(world: World, attack: Attack) -> Any:
    ids = world.ids
    actor = world.actors[attack.who]
    kwargs: dict[str, Any] = {"headers": actor.headers, "params": attack.params or {}}
    if attack.body and attack.body.get("__multipart__"):
        kwargs["files"] = {"files": ("people.csv", people_csv(), "text/csv")}
        kwargs["data"] = {"policy": json.dumps(PEOPLE_POLICY)}
    elif attack.body is not None:
        kwargs["json"] = _fill(attack.body, ids)
    elif attack.route == "/v1/uploads" and attack.method == "POST":
        kwargs["content"] = b"a,b\n1,2\n"
    return world.market.client.request(attack.method, _path(attack, ids), **kwargs)


def _with_actor_ids(world: World) -> None:
    for name, actor in world.actors.items():
        world.ids[f"org_{name}"] = actor.principal.org_id
        world.ids[f"user_{name}"] = actor.principal.user_id
    keys = world.market.client.get("/v1/keys", headers=world.actors["buyer_a"].headers).json()["items"]
    world.ids["key_buyer_a"] = keys[0]["id"]
    world.ids["period"] = this_period()


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def _failures(world: World, attacks: list[Attack]) -> list[str]:
    _with_actor_ids(world)
    failed = []
    for attack in attacks:
        response = _send(world, attack)
        code = _error_code(response)
        if response.status_code != attack.status or (attack.code and code != attack.code):
            failed.append(f"{attack.label()}: got {response.status_code} {code}, want {attack.status} {attack.code}")
    return failed


@pytest.mark.parametrize(
    "attacks",
    [BUYER_VS_BUYER, OPERATOR_VS_OPERATOR, SOURCE_VS_SOURCE, CROSS_ROLE],
    ids=["buyer-vs-buyer", "operator-vs-operator", "source-vs-source", "cross-role"],
)
def test_no_party_reaches_anothers_objects_or_another_roles_routes(world: World, attacks: list[Attack]) -> None:
    """Buyers, operators and sources cannot reach each other's objects; every role is kept to its own routes."""
    failed = _failures(world, attacks)
    assert not failed, "\n".join(failed)


def test_attacks_are_not_refused_for_another_reason(world: World) -> None:
    """The same requests by the rightful party succeed, so the tables above test tenancy, not typos."""
    rightful = {"buyer_b": "buyer_a", "operator_b": "operator_a", "source_b": "source_a"}
    skip = {
        "/v1/queries",
        INV + "/pay",
        REQ + "/decision",
        PRODUCT + "/versions",
        PRODUCT + "/builds",
        VERSION + "/rebuild",
    }
    skip |= {VERSION + "/quarantine/{table}", VERSION + "/findings/{finding_id}/resolve", RES, PRODUCT + "/delist"}
    checked = [
        Attack(rightful[a.who], a.method, a.route, 200, None, a.args, a.body, a.params)
        for a in BUYER_VS_BUYER + OPERATOR_VS_OPERATOR + SOURCE_VS_SOURCE
        if a.who in rightful and a.route not in skip and not a.args and not (a.params or {}).get("product")
    ]
    assert len(checked) > 15
    failed = _failures(world, checked)
    assert not failed, "\n".join(failed)


# -- lists: each tenant sees only its own -----------------------------------------------------------


def _get(world: World, who: str, path: str, **params: Any) -> Any:
    """The object at `path`, or the items of the list at `path` (one page of up to 500)."""
    response = world.market.client.get(path, headers=world.actors[who].headers, params=params)
    assert response.status_code == 200, f"{who} {path}: {response.text}"
    body = response.json()
    return body["items"] if isinstance(body, dict) and set(body) == {"items", "next_cursor"} else body


def test_lists_hold_only_the_callers_own_objects(world: World) -> None:
    ids = world.ids
    _with_actor_ids(world)
    org = {name: actor.principal.org_id for name, actor in world.actors.items()}

    usage = _get(world, "buyer_b", "/v1/usage")
    assert {u["id"] for u in usage} == {ids["query_b"]}
    summary = _get(world, "buyer_b", "/v1/usage/summary")
    assert sum(row["queries"] for row in summary) == 1
    export = world.market.client.get("/v1/usage/export", headers=world.actors["buyer_b"].headers).text
    assert ids["query_b"] in export and ids["query_a"] not in export and org["buyer_a"] not in export

    assert [i["id"] for i in _get(world, "buyer_b", "/v1/invoices")] == [ids["invoice_b"]]
    asked_for_a = _get(world, "buyer_b", "/v1/invoices", buyer=org["buyer_a"])
    assert [i["id"] for i in asked_for_a] == [ids["invoice_b"]]  # a buyer's ?buyer= is ignored
    assert _get(world, "buyer_b", "/v1/payments") == []
    assert _get(world, "buyer_b", "/v1/credit-notes") == []
    assert {p["id"] for p in _get(world, "buyer_a", "/v1/payments")} == {ids["payment_a"]}
    assert [a["id"] for a in _get(world, "buyer_b", "/v1/agreements")] == [ids["agreement_b"]]
    assert {r["buyer_org_id"] for r in _get(world, "buyer_b", "/v1/access-requests")} == {org["buyer_b"]}

    # Operator B: no agreements, requests other than its own, no usage of alpha, only its uploads.
    assert _get(world, "operator_b", "/v1/agreements") == []
    assert {r["id"] for r in _get(world, "operator_b", "/v1/access-requests")} == {ids["request_a"]}
    assert {r["product"] for r in _get(world, "operator_a", "/v1/access-requests")} == {"alpha"}
    assert _get(world, "operator_b", "/v1/usage") == []
    assert _get(world, "operator_b", "/v1/usage/summary") == []
    assert [u["id"] for u in _get(world, "operator_b", "/v1/uploads")] == [ids["upload_b"]]
    mine = {p["slug"] for p in _get(world, "operator_b", "/v1/products", mine="true")}
    assert mine == {"beta"}
    assert "alpha-draft" not in {p["slug"] for p in _get(world, "operator_b", "/v1/products")}
    assert [a["operator"] for a in _get(world, "operator_b", "/v1/authorisations")] == [org["operator_b"]]

    # Operator A sees its buyers' usage, without their SQL.
    seen = _get(world, "operator_a", "/v1/usage")
    assert {u["id"] for u in seen} == {ids["query_a"], ids["query_b"]} and all(u["sql"] is None for u in seen)

    # Statements: each party its own; finance and the regulator all of them.
    period = this_period()
    for who in ("operator_a", "operator_b", "source_a", "source_b"):
        statements = _get(world, who, "/v1/settlements", period=period)
        assert {s["org_id"] for s in statements} <= {org[who]}, who
    assert {s["org_id"] for s in _get(world, "operator_a", "/v1/settlements", period=period)} == {org["operator_a"]}
    assert {s["org_id"] for s in _get(world, "source_a", "/v1/settlements", period=period)} == {org["source_a"]}
    # The statement document holds the same: source B's names no other party, finance's names them all.
    names = {who: f">{world.actors[who].principal.org_name}<" for who in ("source_a", "operator_a")}
    for who, shown in (("source_b", set()), ("source_a", {"source_a"}), ("finance", {"source_a", "operator_a"})):
        page = world.market.client.get(
            "/v1/settlements/document", headers=world.actors[who].headers, params={"period": period}
        ).text
        assert {name for name, cell in names.items() if cell in page} == shown, who
    everyone = {s["org_id"] for s in _get(world, "finance", "/v1/settlements", period=period)}
    assert {org["operator_a"], org["source_a"]} <= everyone
    assert _get(world, "regulator", "/v1/settlements", period=period)

    # Resources: a source its own; shares: only the parties named.
    assert [r["id"] for r in _get(world, "source_b", "/v1/resources")] == [ids["resource_b"]]
    assert _get(world, "source_a", "/v1/products/alpha/revenue-shares")["shares"]

    # Finance sees every invoice; the regulator reads every query.
    assert {ids["invoice_a"], ids["invoice_b"]} <= {i["id"] for i in _get(world, "finance", "/v1/invoices")}
    audited = {r["id"] for r in _get(world, "regulator", "/v1/audit/queries")}
    assert {ids["query_a"], ids["query_b"]} <= audited


def test_listed_product_hides_its_operators_drafts_from_others(world: World) -> None:
    """A new version of a listed product under review is the operator's draft: others see the listed one only."""
    client, operator = world.market.client, world.actors["operator_a"]
    assert upload_version(world.market, operator, "alpha").status_code == 201
    assert client.post("/v1/products/alpha/submit", headers=operator.headers).json()["pending_version"] == 2
    for who in ("buyer_a", "operator_b"):
        seen = _get(world, who, "/v1/products/alpha")
        assert seen["version"] == 1 and seen["pending_version"] is None and seen["review_due_at"] is None, who
        listed = {p["slug"]: p for p in _get(world, who, "/v1/products")}
        assert listed["alpha"]["pending_version"] is None, who
    assert _get(world, "operator_a", "/v1/products/alpha")["pending_version"] == 2
    assert _get(world, "regulator", "/v1/products/alpha")["pending_version"] == 2
    assert len(_get(world, "regulator", "/v1/products/alpha/events")) >= 3


def test_idempotency_key_of_another_buyer_is_not_replayed(world: World) -> None:
    """Buyer B reusing buyer A's Idempotency-Key runs its own query; it never gets A's stored answer."""
    response = query(world.market, world.actors["buyer_b"], "alpha", SQL, key=SHARED_KEY)
    body = _ok(response)
    assert body["query_id"] != world.ids["query_a"]
    assert body["agreement_id"] == world.ids["agreement_b"]
    again = query(world.market, world.actors["buyer_b"], "alpha", SQL, key=SHARED_KEY)
    assert _ok(again)["query_id"] == body["query_id"]
    usage_a = _get(world, "buyer_a", "/v1/usage")
    assert [u["id"] for u in usage_a] == [world.ids["query_a"]]


def test_upload_idempotency_keys_are_per_organisation(world: World) -> None:
    """Both operators used Idempotency-Key 'upload-1' with different bytes: each got its own upload."""
    assert world.ids["upload_a"] != world.ids["upload_b"]


# -- coverage: every route is placed in a table, or listed here as not object-scoped ---------------

LIST_OR_OPEN_ROUTES = {
    ("GET", "/"),  # the public catalogue page: listed products only, by design
    ("GET", "/v1/me"),
    ("GET", "/v1/orgs"),
    ("GET", "/v1/keys"),
    ("DELETE", "/v1/keys/{key_id}"),  # tests/test_keys_security.py
    ("GET", "/v1/products"),
    ("GET", "/v1/catalogue.jsonld"),
    ("POST", "/v1/access-requests"),
    ("GET", "/v1/access-requests"),
    ("GET", "/v1/agreements"),
    ("GET", "/v1/invoices"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/credit-notes"),
    ("GET", "/v1/settlements"),
    ("GET", "/v1/settlements/document"),  # the caller's own statements, as GET /v1/settlements
    ("GET", "/v1/usage"),
    ("GET", "/v1/usage/summary"),
    ("GET", "/v1/usage/export"),
    ("POST", "/v1/queries"),
    # Keys are per organisation: another buyer's cancel names nothing of this buyer's
    # (tests/metering/test_query_cancel_http.py); other roles are refused (CROSS_ROLE).
    ("POST", "/v1/queries/{key}/cancel"),
    ("GET", "/v1/uploads"),
    ("POST", "/v1/uploads"),
    ("POST", "/v1/authorisations"),
    ("GET", "/v1/authorisations"),
    ("GET", "/v1/resources"),
    ("POST", "/v1/resources"),
    ("POST", "/v1/stripe/webhook"),  # signature-checked: tests/billing/test_webhook_forgery.py
    # The public register and disclosures: public information by law (公示, 信息披露).
    ("GET", "/v1/registrations"),
    ("GET", "/v1/registrations/{registration_id}"),
    ("POST", "/v1/registrations/{registration_id}/objections"),  # any signed-in organisation may object
    ("GET", "/registrations"),  # the notice board
    ("GET", "/registrations/{code}"),
    ("GET", "/disclosures"),
    ("GET", "/disclosures/{report_id}"),  # published reports only
    ("GET", "/v1/allowed-revenue"),  # filtered to the operator's own
    ("GET", "/v1/disclosures"),  # published, plus the caller's own drafts
    # Drafts of other publishers answer 404: tests/compliance/test_year_walk.py and test_disclosure_http.py.
    ("GET", "/v1/disclosures/{report_id}"),
    ("POST", "/v1/disclosures/{report_id}/publish"),
    # The caller's own notifications; another user's id is 404: tests/compliance/test_notifications_smtp.py.
    ("GET", "/v1/notifications"),
    ("POST", "/v1/notifications/read-all"),
    ("GET", "/v1/notifications/unread"),
    ("POST", "/v1/notifications/{notification_id}/read"),
}


def test_every_route_is_classified() -> None:
    attacked = {(a.method, a.route) for a in BUYER_VS_BUYER + OPERATOR_VS_OPERATOR + SOURCE_VS_SOURCE + CROSS_ROLE}
    routes = {(m, r.path) for router in ROUTERS for r in router.routes for m in getattr(r, "methods", ()) or ()}
    unclassified = sorted(routes - attacked - LIST_OR_OPEN_ROUTES)
    assert unclassified == [], "add an attack (or a reason) for each new route"


def test_a_refused_upload_never_reaches_the_disk(market: Market) -> None:
    """Only operators upload; anyone else is refused before a byte is written (no filling the disk)."""
    for role in (Role.BUYER, Role.SOURCE, Role.FINANCE):
        actor = market.actor(role)
        response = market.client.post(
            "/v1/uploads", headers=actor.headers, params={"filename": "x.csv"}, content=b"a\n1\n" * 1000
        )
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden_role"
        assert not (market.settings.uploads_dir / actor.principal.org_id).exists(), role


def test_a_query_cannot_reach_another_products_files(world: World) -> None:
    """Under its agreement on alpha, buyer A names beta's Parquet file in every way DuckDB allows: refused."""
    from sqlalchemy import text

    with world.market.database.engine.connect() as connection:
        beta_id = connection.execute(text("SELECT id FROM products WHERE slug = 'beta'")).scalar_one()
    path = world.market.settings.products_dir / beta_id / "v1" / "people.parquet"
    assert path.exists()
    attempts = [
        f"SELECT region, count(*) AS n FROM read_parquet('{path}') GROUP BY region",
        f"SELECT region, count(*) AS n FROM '{path}' GROUP BY region",
        f"SELECT region, count(*) AS n FROM parquet_scan(['{path}']) GROUP BY region",
        f"SELECT region, count(*) AS n FROM people, read_parquet('{path}') AS b GROUP BY region",
        "SELECT region, count(*) AS n FROM beta.people GROUP BY region",
    ]
    for sql in attempts:
        response = query(world.market, world.actors["buyer_a"], "alpha", sql)
        assert 400 <= response.status_code < 500, (sql, response.text)

"""Tenancy of the operator's console pages, in tests/test_tenancy.py's style: operator B, signed in, names each of
operator A's objects (draft and listed product, version, finding, upload, access request, agreement) on every
operator page route; each answers as not found, exactly as an id that does not exist. The rightful operator gets
the same requests through, so the table tests tenancy, not typos. A new operator page route fails
the test until it is added here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from market.accounts.models import Role
from market.console import operator, operator_access, operator_build
from tests.conftest import Market
from tests.console.helpers import csrf_of, sign_in
from tests.factories import create_product, listed_product, people_csv, upload_version


@dataclass
class Attack:
    method: str
    route: str
    path: str
    data: dict[str, str] | None = None
    rightful: int = 200
    """What operator A itself gets (a redirect after a change is 303)."""
    code: str = ""
    """The error code operator B's 404 page names, where operator A's answer is a 404 too (for another reason)."""
    json: bool = False
    """A route the page's script calls: its 404 is the JSON error shape naming `code`."""
    headers: dict[str, str] | None = None
    content: bytes | None = None


@pytest.fixture
def world(market: Market) -> dict[str, Any]:
    alpha = listed_product(market, "alpha")
    beta = listed_product(market, "beta")
    assert create_product(market, alpha.operator, "alpha-draft").status_code == 201
    assert upload_version(market, alpha.operator, "alpha-draft").status_code == 201
    upload = market.client.post(
        "/v1/uploads", headers=alpha.operator.headers, params={"filename": "people.csv"}, content=people_csv()
    ).json()["id"]
    buyer = market.actor(Role.BUYER)
    body = {"product": "alpha", "plan": "standard", "purpose": "commercial", "scenario": "s", "justification": "j"}
    pending = market.client.post("/v1/access-requests", headers=buyer.headers, json=body).json()["id"]
    other = market.actor(Role.BUYER)
    made = market.client.post("/v1/access-requests", headers=other.headers, json=body).json()["id"]
    decided = market.client.post(
        f"/v1/access-requests/{made}/decision", headers=alpha.operator.headers, json={"decision": "approve"}
    ).json()
    finding = "people.name.identifier_name"
    a = sign_in(market, alpha.operator)
    token = csrf_of(a.get("/console/products").text)
    started = a.post(
        "/console/uploads/sessions", params={"filename": "people.csv", "size": 10}, headers={"X-CSRF-Token": token}
    )
    assert started.status_code == 201, started.text
    session = started.json()["id"]
    form = {"upload": upload, "action": "build", "action_0": "pseudonymise", "role_0": "privacy_unit"}
    built = a.post("/console/products/alpha-draft/build", data={**form, "csrf_token": token})
    assert built.status_code == 303, built.text
    job = built.headers["location"]
    while a.get(f"{job}/state").json()["state"] == "running":
        time.sleep(0.05)
    return {
        "a": a,
        "b": sign_in(market, beta.operator),
        "attacks": [
            Attack("GET", "/console/products/{slug}", "/console/products/alpha-draft"),
            Attack("GET", "/console/products/{slug}", "/console/products/alpha"),
            Attack("GET", "/console/products/{slug}/build", "/console/products/alpha-draft/build"),
            Attack("GET", "/console/products/{slug}/build", f"/console/products/beta/build?upload={upload}"),
            Attack("GET", "/console/products/{slug}/versions/{number}", "/console/products/alpha-draft/versions/1"),
            Attack(
                "GET",
                "/console/products/{slug}/versions/{number}/quarantine/{table}",
                "/console/products/alpha-draft/versions/1/quarantine/people",
                rightful=404,  # built without a recipe, nothing was quarantined: quarantine_not_found
                code="product_not_found",
            ),
            Attack(
                "POST",
                "/console/products/{slug}/build",
                "/console/products/alpha-draft/build",
                {"upload": upload, "action": "preview", "action_0": "pseudonymise", "role_0": "privacy_unit"},
            ),
            Attack(
                "POST",
                "/console/products/{slug}/versions/{number}/findings/{finding_id}/resolve",
                f"/console/products/alpha-draft/versions/1/findings/{finding}/resolve",
                {"justification": "Names were checked by hand."},
                303,
            ),
            Attack("GET", "/console/products/{slug}/builds/{job_id}", job),
            Attack("GET", "/console/products/{slug}/builds/{job_id}/state", f"{job}/state", json=True),
            Attack(
                "GET",
                "/console/uploads/sessions/{session_id}",
                f"/console/uploads/sessions/{session}",
                json=True,
                code="upload_session_not_found",
            ),
            Attack(
                "PUT",
                "/console/uploads/sessions/{session_id}",
                f"/console/uploads/sessions/{session}",
                json=True,
                code="upload_session_not_found",
                headers={"Content-Range": "bytes 0-9/10"},
                content=b"person_id\n",
            ),
            Attack(
                "POST", "/console/products/{slug}/plans", "/console/products/alpha/plans", {"plan_code_0": "x"}, 303
            ),
            Attack("POST", "/console/products/{slug}/submit", "/console/products/alpha-draft/submit", {}, 303),
            Attack("POST", "/console/products/{slug}/delist", "/console/products/alpha/delist", {"reason": "r"}, 303),
            Attack(
                "POST", "/console/products/{slug}/access-settings", "/console/products/alpha/access-settings", {}, 303
            ),
            Attack(
                "POST",
                "/console/requests/{request_id}/decision",
                f"/console/requests/{pending}/decision",
                {"decision": "approve"},
                303,
            ),
            Attack(
                "POST",
                "/console/agreements/{agreement_id}/revoke",
                f"/console/agreements/{decided['agreement_id']}/revoke",
                {"reason": "r"},
                303,
            ),
        ],
    }


def send(client: TestClient, attack: Attack) -> Any:
    if attack.method == "GET":
        return client.get(attack.path)
    token = csrf_of(client.get("/console/products").text)
    if attack.content is not None:
        headers = {**(attack.headers or {}), "X-CSRF-Token": token}
        return client.request(attack.method, attack.path, content=attack.content, headers=headers)
    return client.post(attack.path, data={**(attack.data or {}), "csrf_token": token})


OPEN = {
    ("GET", "/console/products"),
    ("GET", "/console/products/new"),
    ("POST", "/console/products/new"),
    ("GET", "/console/requests"),
    ("GET", "/console/sales"),
    ("POST", "/console/uploads"),
    ("POST", "/console/uploads/sessions"),
}
"""Routes naming no object: they show or make the caller's own (lists, the wizard, the upload)."""


def test_another_operators_objects_answer_not_found_on_every_page(world: dict[str, Any]) -> None:
    failed = []
    for attack in world["attacks"]:
        response = send(world["b"], attack)
        kind = "application/json" if attack.json else "text/html"
        shaped = response.headers["content-type"].startswith(kind)
        if attack.json and shaped:
            shaped = response.json()["error"]["code"] == (attack.code or "product_not_found")
        if response.status_code != 404 or not shaped or attack.code not in response.text:
            failed.append(f"{attack.method} {attack.path}: {response.status_code}")
    assert not failed, "\n".join(failed)

    # The same requests by the rightful operator succeed, so the table tests tenancy, not typos (routes exist).
    preview = next(a for a in world["attacks"] if a.data and a.data.get("action") == "preview")
    for attack in world["attacks"]:
        if attack is preview or (attack.route == "/console/products/{slug}/build" and "upload" in attack.path):
            continue  # a one-column recipe and operator B's product: their refusals are not about tenancy
        response = send(world["a"], attack)
        if response.status_code != attack.rightful:
            failed.append(f"rightful {attack.method} {attack.path}: {response.status_code} {response.text[:300]}")
    assert not failed, "\n".join(failed)

    # Every operator page route naming an object is in the table.
    routes = {
        (method, route.path)
        for module in (operator, operator_build, operator_access)
        for route in module.router.routes
        for method in getattr(route, "methods", ()) or ()
    }
    attacked = {(a.method, a.route) for a in world["attacks"]}
    assert sorted(routes - attacked - OPEN) == [], "add an attack (or a reason in OPEN) for each new page route"

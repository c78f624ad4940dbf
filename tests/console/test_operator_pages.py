"""The operator's pages over HTTP: the wizard inside the grant and under the fee cap, upload, recipe, preview after
desensitisation, build, audit findings resolved, submission, the access queue and the money pages."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.console.helpers import csrf_of, post_form, sign_in
from tests.factories import PEOPLE_POLICY, authorise, create_product, upload_version

EN = {"Accept-Language": "en"}
PHONES = "person_id,name,phone,region,amount\n" + "".join(
    f"P{i:04d},Person {i},138{i:08d},{['north', 'south'][i % 2]},{i % 50}\n" for i in range(60)
)


def operator_client(market: Market, **cap: object) -> tuple[Actor, TestClient]:
    operator = market.actor(Role.OPERATOR)
    assert authorise(market, operator, zones=("transport",), regions=("CN-11",), **cap).status_code == 201
    client = sign_in(market, operator)
    client.headers.update(EN)
    return operator, client


def upload(client: TestClient, content: bytes, filename: str = "people.csv") -> dict[str, object]:
    token = csrf_of(client.get("/console/products").text)
    response = client.post(
        "/console/uploads",
        params={"filename": filename},
        content=content,
        headers={"X-CSRF-Token": token, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def finished_build(client: TestClient, job_page: str) -> str:
    """Follow a background build's progress page until it ends; the version's path (without the query)."""
    assert re.fullmatch(r"/console/products/[\w-]+/builds/bld_\w+", job_page), job_page
    shown = client.get(job_page)
    assert shown.status_code == 200 and 'id="build-stages"' in shown.text
    for _ in range(1200):
        state = client.get(f"{job_page}/state").json()
        if state["state"] != "running":
            break
        time.sleep(0.05)
    assert state["state"] == "done", state
    assert [s["stage"] for s in state["stages"]][-1] == "done"
    return str(state["version_url"]).split("?")[0]


def test_wizard_offers_the_grant_only_and_refuses_a_price_over_the_cap(market: Market) -> None:
    operator, client = operator_client(market, max_per_query_minor=200)
    step1 = client.get("/console/products/new")
    assert step1.status_code == 200
    assert re.findall(r'<option value="(\w+)"', step1.text.split('id="zone"')[1].split("</select>")[0]) == ["transport"]
    step2 = client.get("/console/products/new", params={"zone": "transport"})
    assert 'id="plan_per_query_minor_0"' in step2.text and 'max="2"' in step2.text
    assert '<option value="CN-11"' in step2.text
    fields = {
        "zone": "transport",
        "slug": "bus-trips",
        "title": "Bus trips",
        "region": "CN-11",
        "plan_code_0": "standard",
        "plan_title_0": "Standard",
        "plan_kind_0": "commercial",
        "plan_per_query_minor_0": "3.00",
    }
    over = post_form(client, "/console/products/new?zone=transport", "/console/products/new", fields)
    assert over.status_code == 422  # type: ignore[attr-defined]
    assert 'id="plans-error"' in over.text and "fee cap" in over.text  # type: ignore[attr-defined]
    assert 'value="bus-trips"' in over.text  # type: ignore[attr-defined]
    outside = post_form(
        client, "/console/products/new", "/console/products/new", {**fields, "region": "CN-31", "slug": "x-trips"}
    )
    assert outside.status_code == 403 and 'id="region-error"' in outside.text  # type: ignore[attr-defined]
    made = post_form(
        client, "/console/products/new", "/console/products/new", {**fields, "plan_per_query_minor_0": "1.50"}
    )
    assert made.status_code == 303  # type: ignore[attr-defined]
    assert made.headers["location"] == "/console/products/bus-trips?created=1"  # type: ignore[attr-defined]
    listed = client.get("/console/products")
    assert "bus-trips" in listed.text
    shown = client.get("/console/products/bus-trips")
    assert "1.50" in shown.text and "cap" in shown.text and "draft" in shown.text
    plan = market.client.get("/v1/products/bus-trips", headers=operator.headers).json()["plans"][0]
    assert plan["per_query_minor"] == 150


def test_upload_preview_build_resolve_and_submit(market: Market) -> None:
    operator, client = operator_client(market)
    assert create_product(market, operator, "phone-book").status_code == 201
    stored = upload(client, PHONES.encode(), "contacts.csv")
    editor = client.get(f"/console/products/phone-book/build?upload={stored['id']}")
    assert editor.status_code == 200
    assert "<code>phone</code>" in editor.text and 'name="action_1"' in editor.text
    recipe = {
        "upload": str(stored["id"]),
        "table": "contacts",
        "k": "5",
        "action_0": "pseudonymise",
        "out_0": "person",
        "role_0": "privacy_unit",
        "action_1": "drop",
        "action_2": "keep",
        "out_2": "phone",
        "type_2": "varchar",
        "role_2": "hidden",
        "action_3": "keep",
        "out_3": "region",
        "role_3": "dimension",
        "action_4": "keep",
        "out_4": "amount",
        "type_4": "integer",
        "role_4": "measure",
        "min_4": "0",
        "max_4": "100",
    }
    page = f"/console/products/phone-book/build?upload={stored['id']}"
    preview = post_form(client, page, "/console/products/phone-book/build", {**recipe, "action": "preview"})
    assert preview.status_code == 200, preview.text  # type: ignore[attr-defined]
    table = preview.text.split('id="preview"')[1].split("</table>")[0]  # type: ignore[attr-defined]
    assert "Person 1" not in table and "P0001" not in table, "raw values of dropped or pseudonymised columns"
    assert re.search(r"<td>[0-9a-f]{32}</td>", table), "the pseudonyms"
    assert '<th scope="col">person</th>' in table and ">name<" not in table

    built = post_form(client, page, "/console/products/phone-book/build", {**recipe, "action": "build"})
    assert built.status_code == 303, built.text  # type: ignore[attr-defined]
    version = finished_build(client, built.headers["location"])  # type: ignore[attr-defined]
    assert version == "/console/products/phone-book/versions/1"
    shown = client.get(version)
    assert "phone_number" in shown.text and 'id="open-findings">1<' in shown.text
    refused = post_form(client, version, "/console/products/phone-book/submit", {})
    assert refused.status_code == 422 and "audit finding" in refused.text  # type: ignore[attr-defined]
    finding = "contacts.phone.phone_number"
    resolve = f"{version}/findings/{finding}/resolve"
    short = post_form(client, version, resolve, {"justification": "fine"})
    assert short.status_code == 422 and f'id="{finding}-error"' in short.text  # type: ignore[attr-defined]
    done = post_form(client, version, resolve, {"justification": "Phones are hidden: buyers can never select them."})
    assert done.status_code == 303  # type: ignore[attr-defined]
    assert 'id="open-findings">0<' in client.get(version).text
    sent = post_form(client, version, "/console/products/phone-book/submit", {})
    assert sent.status_code == 303  # type: ignore[attr-defined]
    product = client.get("/console/products/phone-book")
    assert "submitted" in product.text and "Phones are hidden" not in product.text

    # A second version quarantines small amounts: its quality is compared with v1, the rows can be downloaded.
    again = {**recipe, "action": "build", "min_4": "5", "invalid_4": "quarantine"}
    second = post_form(client, page, "/console/products/phone-book/build", again)
    assert second.status_code == 303, second.text  # type: ignore[attr-defined]
    assert finished_build(client, second.headers["location"]) == "/console/products/phone-book/versions/2"  # type: ignore[attr-defined]
    v2 = client.get("/console/products/phone-book/versions/2")
    assert "Compared with v1: rows out -" in v2.text and "amount: below 5" in v2.text
    rows = client.get("/console/products/phone-book/versions/2/quarantine/contacts")
    assert rows.status_code == 200 and rows.content[:4] == b"PAR1"


def test_upload_refuses_a_missing_csrf_header_and_other_roles(market: Market) -> None:
    _, client = operator_client(market)
    assert client.post("/console/uploads", params={"filename": "a.csv"}, content=b"a\n1\n").status_code == 403
    buyer = sign_in(market, market.actor(Role.BUYER))
    token = csrf_of(buyer.get("/").text)
    refused = buyer.post(
        "/console/uploads", params={"filename": "a.csv"}, content=b"a\n1\n", headers={"X-CSRF-Token": token}
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden_role"


def test_access_queue_approve_reject_revoke_and_money_pages(market: Market) -> None:
    operator, client = operator_client(market)
    assert create_product(market, operator, "people-trips").status_code == 201
    assert upload_version(market, operator, "people-trips", policy=PEOPLE_POLICY).status_code == 201
    assert market.client.post("/v1/products/people-trips/submit", headers=operator.headers).status_code == 200
    regulator = market.actor(Role.REGULATOR)
    reviewed = market.client.post(
        "/v1/products/people-trips/review", headers=regulator.headers, json={"decision": "approve"}
    )
    assert reviewed.status_code == 200
    ids = []
    for n in range(2):
        buyer = market.actor(Role.BUYER, org=f"Buyer {n}")
        body = {
            "product": "people-trips",
            "plan": "standard",
            "purpose": "commercial",
            "scenario": "analysis",
            "justification": f"Route planning {n}",
        }
        made = market.client.post("/v1/access-requests", headers=buyer.headers, json=body)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    queue = client.get("/console/requests")
    assert "Route planning 0" in queue.text and "Route planning 1" in queue.text
    decision = f"/console/requests/{ids[0]}/decision"
    approved = post_form(
        client, "/console/requests", decision, {"decision": "approve", "monthly_query_quota": "40", "valid_days": "30"}
    )
    assert approved.status_code == 303  # type: ignore[attr-defined]
    bad = post_form(client, "/console/requests", f"/console/requests/{ids[1]}/decision", {"decision": "reject"})
    assert bad.status_code == 422  # type: ignore[attr-defined]  # a rejection needs a reason
    rejected = post_form(
        client,
        "/console/requests",
        f"/console/requests/{ids[1]}/decision",
        {"decision": "reject", "reason": "Not a transport use"},
    )
    assert rejected.status_code == 303  # type: ignore[attr-defined]
    agreement = market.client.get("/v1/agreements", headers=operator.headers).json()["items"][0]
    assert agreement["monthly_query_quota"] == 40
    revoked = post_form(client, "/console/requests", f"/console/agreements/{agreement['id']}/revoke", {"reason": "x"})
    assert revoked.status_code == 303  # type: ignore[attr-defined]
    after = market.client.get(f"/v1/agreements/{agreement['id']}", headers=operator.headers).json()
    assert after["status"] == "revoked"
    assert "Not a transport use" in client.get("/console/requests").text
    settings = post_form(
        client,
        "/console/products/people-trips",
        "/console/products/people-trips/access-settings",
        {"auto_approve": "on"},
    )
    assert settings.status_code == 303  # type: ignore[attr-defined]
    shown = market.client.get("/v1/products/people-trips/access-settings", headers=operator.headers).json()
    assert shown["auto_approve_commercial"] is True
    sales = client.get("/console/sales")
    assert sales.status_code == 200 and "Revenue statement" in sales.text
    assert client.get("/console/sales", params={"period": "2030-13"}).status_code == 200


def test_other_roles_cannot_open_the_operators_pages(market: Market) -> None:
    buyer = sign_in(market, market.actor(Role.BUYER))
    for path in ("/console/products", "/console/products/new", "/console/requests", "/console/sales"):
        assert buyer.get(path).status_code == 403, path

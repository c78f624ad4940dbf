"""The conventions of docs/api.md, checked on the OpenAPI document, so that a new route cannot drift.

- No response is a bare JSON array; every page is exactly {items, next_cursor}, from a GET that takes
  `limit` (1..500) and `cursor` and nothing like `offset`.
- Every query parameter name is one of the names docs/api.md lists.
- Paging through a list with limit=1 gives each item once, in the order of one big page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import Listed, authorise, create_product, grant, query, upload_version

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def _json_success_schemas(doc: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for status, response in op["responses"].items():
        if status.startswith("2"):
            for media, content in (response.get("content") or {}).items():
                if media.endswith("json") and "schema" in content:
                    found.append(_resolve(doc, content["schema"]))
    return found


def _is_page(schema: dict[str, Any]) -> bool:
    return "items" in schema.get("properties", {})


def _query_params(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}


def _documented_parameter_names() -> set[str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Query parameters", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M))


def test_no_response_is_a_bare_array(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    arrays = [
        f"{method} {path}"
        for method, path, op in _operations(doc)
        for schema in _json_success_schemas(doc, op)
        if schema.get("type") == "array"
    ]
    assert arrays == []


def test_every_list_route_pages_the_same_way(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    pages = 0
    for method, path, op in _operations(doc):
        params = _query_params(op)
        assert not {"offset", "page", "page_size", "skip"} & set(params), f"{method} {path}"
        for schema in _json_success_schemas(doc, op):
            if not _is_page(schema):
                assert "limit" not in params and "cursor" not in params, f"{method} {path} takes limit but is no page"
                continue
            pages += 1
            where = f"{method} {path}"
            assert method == "GET", where
            assert set(schema["properties"]) == {"items", "next_cursor"}, where
            assert set(schema["required"]) == {"items", "next_cursor"}, where
            assert schema["properties"]["items"]["type"] == "array", where
            assert {"type": "null"} in schema["properties"]["next_cursor"]["anyOf"], where
            limit = params.get("limit")
            assert limit is not None and limit["required"] is False, where
            assert (limit["schema"]["minimum"], limit["schema"]["maximum"], limit["schema"]["default"]) == (1, 500, 50)
            assert "cursor" in params and params["cursor"]["required"] is False, where
    assert pages >= 20


def test_query_parameters_are_named_as_docs_api_lists_them(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    documented = _documented_parameter_names()
    assert {"limit", "cursor", "product", "from", "to"} <= documented
    used = {name: f"{method} {path}" for method, path, op in _operations(doc) for name in _query_params(op)}
    undocumented = {name: where for name, where in used.items() if name not in documented}
    assert undocumented == {}


def test_paging_with_limit_one_gives_every_item_once_in_order(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    for index in range(5):
        market.client.post("/v1/orgs", headers=admin.headers, json={"name": f"Org {index}", "kind": "buyer"})
    whole = market.client.get("/v1/orgs?limit=500", headers=admin.headers).json()
    assert whole["next_cursor"] is None and len(whole["items"]) >= 6
    walked, cursor = [], None
    while True:
        page = market.client.get("/v1/orgs", headers=admin.headers, params={"limit": 1, "cursor": cursor}).json()
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [o["id"] for o in walked] == [o["id"] for o in whole["items"]]
    assert [o["name"] for o in walked] == sorted(o["name"] for o in walked)


def test_a_foreign_cursor_is_a_400(market: Market) -> None:
    admin = market.actor(Role.ADMIN)
    for cursor in ("not-a-cursor", "W10=", "WzEsMl0="):  # garbage, [], [1, 2]
        answer = market.client.get("/v1/orgs", headers=admin.headers, params={"cursor": cursor})
        assert answer.status_code == 400, cursor
        assert answer.json()["error"]["code"] == "invalid_cursor"


HUMAN_NAMES = {
    "product_id": "product",
    "buyer_org_id": "buyer",
    "invoice_id": "invoice_number",
    "source_org_id": "source",
    "operator_org_id": "operator",
}
"""An id of another object, and the field that must stand beside it with the name people use for it."""


def test_ids_of_other_objects_come_with_the_names_people_use(market: Market) -> None:
    doc = market.client.get("/openapi.json").json()
    missing = [
        f"{name}.{id_field} without {human}"
        for name, schema in doc["components"]["schemas"].items()
        if name.endswith("Out")
        for id_field, human in HUMAN_NAMES.items()
        if id_field in schema.get("properties", {}) and human not in schema["properties"]
    ]
    assert missing == []
    assert {"id", "slug"} <= set(doc["components"]["schemas"]["ProductOut"]["properties"])


def test_changes_answer_the_full_object_a_get_answers(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    assert authorise(market, operator, regulator=regulator).status_code == 201
    steps = [
        lambda: create_product(market, operator, "full-object"),
        lambda: upload_version(market, operator, "full-object"),
        lambda: market.client.post("/v1/products/full-object/submit", headers=operator.headers),
        lambda: market.client.post(
            "/v1/products/full-object/review", headers=regulator.headers, json={"decision": "approve", "comment": "ok"}
        ),
    ]
    for step in steps:
        answer = step()
        assert answer.status_code in (200, 201), answer.text
        assert answer.json() == market.client.get("/v1/products/full-object", headers=operator.headers).json()
    approved = answer.json()
    assert approved["documentation"] is not None and approved["audit_clean"] is True and approved["quality"]
    assert approved["id"].startswith("prd_") and approved["slug"] == "full-object"

    buyer = market.actor(Role.BUYER, org="Named Buyer Co.")
    decided = grant(market, Listed("full-object", operator, regulator), buyer, purpose="commercial", plan="standard")
    agreement = market.client.get(f"/v1/agreements/{decided['agreement_id']}", headers=buyer.headers).json()
    assert (agreement["product"], agreement["product_id"]) == ("full-object", approved["id"])
    assert agreement["buyer"] == "Named Buyer Co."
    assert query(market, buyer, "full-object", "SELECT region, count(*) AS n FROM people GROUP BY region").is_success
    (record,) = market.client.get("/v1/usage", headers=buyer.headers).json()["items"]
    assert (record["product"], record["buyer"]) == ("full-object", "Named Buyer Co.")
    exported = market.client.get("/v1/usage/export", headers=buyer.headers).text.splitlines()
    header = exported[0].split(",")
    assert exported[1].split(",")[header.index("product")] == "full-object"
    revoked = market.client.post(
        f"/v1/agreements/{agreement['id']}/revoke", headers=operator.headers, json={"reason": "Contract ended."}
    )
    again = market.client.get(f"/v1/agreements/{agreement['id']}", headers=buyer.headers).json()
    assert revoked.json() == again and again["status"] == "revoked"


def _walk(market: Market, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = market.client.get(path, headers=headers, params={"limit": 1, "cursor": cursor})
        assert page.status_code == 200, page.text
        walked += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return walked


def test_lists_paged_in_sql_walk_the_same_order(market: Market) -> None:
    """Invoices, the journal and usage page in SQL, by keys that include timestamps: one item per page
    gives the same items, in the same order, as one big page."""
    from tests.billing.helpers import run, scene

    s = scene(market)
    run(market, s.finance, finalize=True)
    (invoice,) = market.client.get("/v1/invoices", headers=s.commercial.headers).json()["items"]
    paid = market.client.post(
        f"/v1/invoices/{invoice['id']}/payments",
        headers=s.finance.headers,
        json={"amount_minor": 1, "reference": "B-1"},
    )
    assert paid.status_code == 201, paid.text
    for path, headers in (
        ("/v1/invoices", s.finance.headers),
        ("/v1/ledger/entries", s.finance.headers),
        ("/v1/usage", s.commercial.headers),
    ):
        whole = market.client.get(path, headers=headers, params={"limit": 500}).json()["items"]
        assert len(whole) >= 2, path
        assert [i["id"] for i in _walk(market, path, headers)] == [i["id"] for i in whole], path

"""Products over HTTP: upload to immutable Parquet, policy checks, review lifecycle, catalogue visibility."""

from __future__ import annotations

import io

import duckdb
import pytest

from market.accounts.models import Role
from tests.conftest import Market
from tests.factories import PEOPLE_POLICY, UNITS, create_product, listed_product, people_csv, upload_version


def test_an_operator_takes_a_csv_to_a_listed_product(market: Market) -> None:
    listed = listed_product(market)
    buyer = market.actor(Role.BUYER)
    catalogue = market.client.get("/v1/products", headers=buyer.headers).json()["items"]
    product = next(p for p in catalogue if p["slug"] == listed.slug)
    assert product["status"] == "listed" and product["version"] == 1
    table = product["tables"][0]
    assert table["row_count"] == UNITS * 3
    assert {c["name"]: c["role"] for c in table["columns"]} == {
        "person_id": "privacy_unit",
        "name": "hidden",
        "region": "dimension",
        "category": "dimension",
        "month": "dimension",
        "amount": "measure",
        "trips": "measure",
    }
    events = market.client.get(f"/v1/products/{listed.slug}/events", headers=listed.operator.headers).json()["items"]
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "draft"),
        ("draft", "submitted"),
        ("submitted", "listed"),
    ]
    assert events[-1]["actor_user_id"] == listed.regulator.principal.user_id


def test_unreviewed_products_are_invisible_to_buyers_and_other_operators(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "draft-one").status_code == 201
    assert upload_version(market, operator, "draft-one").status_code == 201
    buyer = market.actor(Role.BUYER)
    rival = market.actor(Role.OPERATOR)
    assert all(
        p["slug"] != "draft-one" for p in market.client.get("/v1/products", headers=buyer.headers).json()["items"]
    )
    assert market.client.get("/v1/products/draft-one", headers=buyer.headers).status_code == 404
    assert market.client.get("/v1/products/draft-one", headers=rival.headers).status_code == 404
    mine = market.client.get("/v1/products?mine=true", headers=operator.headers).json()["items"]
    assert [p["slug"] for p in mine] == ["draft-one"] and mine[0]["status"] == "draft"
    assert market.client.get("/v1/products?mine=true", headers=rival.headers).json()["items"] == []


def test_review_is_the_regulators_and_returns_carry_comments(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    create_product(market, operator, "needs-work")
    assert market.client.post("/v1/products/needs-work/submit", headers=operator.headers).json()["error"]["code"] == (
        "no_version"
    )
    upload_version(market, operator, "needs-work")
    market.client.post("/v1/products/needs-work/submit", headers=operator.headers)
    self_approval = market.client.post(
        "/v1/products/needs-work/review", headers=operator.headers, json={"decision": "approve"}
    )
    assert self_approval.status_code == 403
    returned = market.client.post(
        "/v1/products/needs-work/review",
        headers=regulator.headers,
        json={"decision": "return", "comment": "Generalise the region column."},
    )
    assert returned.json()["status"] == "returned"
    events = market.client.get("/v1/products/needs-work/events", headers=operator.headers).json()["items"]
    assert events[-1]["reason"] == "Generalise the region column."
    again = market.client.post(
        "/v1/products/needs-work/review", headers=regulator.headers, json={"decision": "approve"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"


def test_versions_are_immutable_parquet_with_only_policy_columns(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "immutable")
    extra = people_csv().replace(b"person_id,", b"secret_note,person_id,", 1)
    extra = b"\n".join([extra.split(b"\n")[0]] + [b"confidential," + line for line in extra.split(b"\n")[1:] if line])
    first = upload_version(market, operator, "immutable", content=extra)
    assert first.status_code == 201, first.text
    second = upload_version(market, operator, "immutable")
    assert second.json()["version"] == 2
    # Each version's table, beside it its unit summary (branch pre16, read by the sandbox only).
    files = sorted(
        p for p in market.settings.products_dir.rglob("*.parquet") if not p.name.endswith(".summary.parquet")
    )
    assert len(files) == 2
    assert len(list(market.settings.products_dir.rglob("*.summary.parquet"))) == 2
    columns = duckdb.sql(f"SELECT * FROM read_parquet('{files[0]}')").columns
    assert "secret_note" not in columns and "person_id" in columns


@pytest.mark.parametrize(
    ("policy_change", "code"),
    [
        (
            {"tables": {"people": {**PEOPLE_POLICY["tables"]["people"], "measures": ["salary"], "bounds": {}}}},
            "policy_column_unknown",
        ),
        (
            {"tables": {"people": {**PEOPLE_POLICY["tables"]["people"], "bounds": {"amount": {"min": 0, "max": 50}}}}},
            "measure_out_of_bounds",
        ),
        (
            {"tables": {"people": {**PEOPLE_POLICY["tables"]["people"], "bounds": {"region": {"min": 0, "max": 5}}}}},
            "invalid_request",
        ),
        ({"tables": {"trips": PEOPLE_POLICY["tables"]["people"]}}, "policy_table_unknown"),
        ({"min_group_size": 1}, "invalid_request"),
        (
            {"tables": {"people": {**PEOPLE_POLICY["tables"]["people"], "hidden": ["name", "region"]}}},
            "invalid_request",
        ),
    ],
)
def test_policy_mistakes_are_422_with_a_precise_code(market: Market, policy_change: dict, code: str) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "bad-policy")
    response = upload_version(market, operator, "bad-policy", policy={**PEOPLE_POLICY, **policy_change})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert list(market.settings.products_dir.rglob("*.parquet")) == []


def test_unreadable_and_unsupported_files_are_refused(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "bad-files")
    json_file = upload_version(market, operator, "bad-files", content=b"{}", filename="people.json")
    assert json_file.status_code == 422 and json_file.json()["error"]["code"] == "unsupported_file"
    broken = upload_version(market, operator, "bad-files", content=b"\x00\x01garbage", filename="people.parquet")
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "invalid_upload"
    not_json = market.client.post(
        "/v1/products/bad-files/versions",
        headers=operator.headers,
        files={"files": ("people.csv", io.BytesIO(people_csv()), "text/csv")},
        data={"policy": "{nope"},
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["code"] == "invalid_request"


def test_slugs_are_unique_and_validated(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "dup").status_code == 201
    assert create_product(market, operator, "dup").json()["error"]["code"] == "duplicate_product"
    assert create_product(market, operator, "Not A Slug!").status_code == 422

"""Uploads and the recipe pipeline over HTTP: streaming, retries, cleaning counts, desensitising, audit."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import duckdb

from market.accounts.models import Role
from tests.conftest import Actor, Market
from tests.factories import create_product
from tests.products.pipeline_data import DISTRICTS, POLICY, RECIPE, csv_bytes, id_number


def _upload(market: Market, operator: Actor, content: bytes, key: str | None = None, name: str = "payments.csv"):
    headers = dict(operator.headers)
    if key:
        headers["Idempotency-Key"] = key
    return market.client.post(f"/v1/uploads?filename={name}", headers=headers, content=content)


def _build(market: Market, operator: Actor, slug: str, upload_id: str, recipe=None, policy=None):
    return market.client.post(
        f"/v1/products/{slug}/builds",
        headers=operator.headers,
        json={"tables": {"payments": upload_id}, "recipe": recipe or RECIPE, "policy": policy or POLICY},
    )


def test_uploads_are_safe_to_retry(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    first = _upload(market, operator, csv_bytes(), key="u-1")
    assert first.status_code == 201, first.text
    assert first.json()["sha256"] == hashlib.sha256(csv_bytes()).hexdigest()
    retry = _upload(market, operator, csv_bytes(), key="u-1")
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    clash = _upload(market, operator, b"a,b\n1,2\n", key="u-1")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"
    assert _upload(market, operator, b"", name="x.csv").json()["error"]["code"] == "upload_empty"
    assert _upload(market, operator, b"x", name="x.json").json()["error"]["code"] == "unsupported_file"
    stored = list((market.settings.uploads_dir / operator.principal.org_id).iterdir())
    assert [p.name for p in stored] == [f"{first.json()['sha256']}.csv"]
    rival = market.actor(Role.OPERATOR)
    assert market.client.get("/v1/uploads", headers=rival.headers).json()["items"] == []
    assert _build(market, rival, "nothing", first.json()["id"]).status_code == 404


def test_a_recipe_cleans_desensitises_and_reports(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "payments").status_code == 201
    upload = _upload(market, operator, csv_bytes()).json()
    built = _build(market, operator, "payments", upload["id"])
    assert built.status_code == 201, built.text
    version = built.json()
    quality = version["quality"]["tables"]["payments"]
    assert (quality["rows_in"], quality["rejected"], quality["quarantined"], quality["duplicates_removed"]) == (
        164,
        2,
        1,
        1,
    )
    assert quality["rows_out"] == 160
    assert quality["broken_rules"] == {
        "amount: below 0": 1,
        "amount: not a decimal(10,2)": 1,
        "district: not an allowed value": 1,
    }
    assert sorted(quality["dropped_columns"]) == ["full_name"]
    assert version["audit"]["clean"] is True, version["audit"]
    assert version["audit"]["k_anonymity"]["payments"]["groups_below_k"] == 0
    assert version["recipe_hash"] and version["sources"]["payments"]["sha256"] == upload["sha256"]

    files = sorted(market.settings.products_dir.glob("*/v*/payments.parquet"))
    assert len(files) == 1
    table = duckdb.sql(f"SELECT * FROM read_parquet('{files[0]}')")
    assert table.columns == ["person", "id_region", "birth_year", "phone_hint", "district", "month", "amount"]
    key = next((market.settings.data_dir / "keys").iterdir()).read_bytes()
    expected = hmac.new(key, id_number(7).encode(), hashlib.sha256).hexdigest()[:32]
    person = duckdb.sql(f"SELECT count(*) FROM read_parquet('{files[0]}') WHERE person = '{expected}'").fetchall()[0]
    assert person == (2,)  # the same person links across rows within the product
    values = duckdb.sql(
        f"SELECT DISTINCT id_region, strftime(birth_year, '%m-%d'), district FROM read_parquet('{files[0]}')"
    ).fetchall()
    assert {v[0] for v in values} == {"110105"} and {v[1] for v in values} == {"01-01"}
    assert {v[2] for v in values} == set(DISTRICTS)  # trimmed
    masked = duckdb.sql(f"SELECT DISTINCT phone_hint FROM read_parquet('{files[0]}') LIMIT 3").fetchall()
    assert all(m[0].startswith("*********") and len(m[0]) == 11 for m in masked)
    raw = csv_bytes()
    assert all(id_number(p).encode() not in files[0].read_bytes() for p in range(5)) and b"Wang" in raw
    assert list(market.settings.products_dir.rglob("quarantine/payments.parquet"))

    # The same data through another product gets different pseudonyms: no linking across products.
    create_product(market, operator, "payments-two")
    _build(market, operator, "payments-two", upload["id"])
    other = next(p for p in market.settings.products_dir.glob("*/v*/payments.parquet") if p != files[0])
    shared = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{files[0]}') a JOIN read_parquet('{other}') b USING (person)"
    ).fetchall()[0]
    assert shared == (0,)


def test_audit_findings_block_submission_until_fixed_or_resolved(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    create_product(market, operator, "leaky")
    upload = _upload(market, operator, csv_bytes()).json()
    leaky = copy.deepcopy(RECIPE)
    columns = leaky["tables"]["payments"]["columns"]
    columns["id_number"] = {}
    columns["phone"] = {}
    policy = copy.deepcopy(POLICY)
    policy["tables"]["payments"]["hidden"] += ["id_number", "phone"]
    built = _build(market, operator, "leaky", upload["id"], leaky, policy)
    assert built.status_code == 201, built.text
    audit = built.json()["audit"]
    kinds = {(f["column"], f["kind"]) for f in audit["findings"] if f["blocking"]}
    assert kinds == {("id_number", "id_card_number"), ("phone", "phone_number")}
    refused = market.client.post("/v1/products/leaky/submit", headers=operator.headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "audit_findings_open"
    assert "id_number" in refused.json()["error"]["message"]

    # The regulator sees the report in review.
    seen = market.client.get("/v1/products/leaky/versions/1", headers=regulator.headers).json()
    assert seen["audit"]["blocking_findings"] == 2

    # A coarse k-anonymity violation also blocks: birth dates as quasi-identifiers are too fine.
    strict = copy.deepcopy(RECIPE)
    strict["tables"]["payments"]["columns"]["birth_year"]["transform"] = {"kind": "keep"}
    strict["tables"]["payments"]["quasi_identifiers"] = ["district", "birth_year"]
    k_version = _build(market, operator, "leaky", upload["id"], strict).json()
    assert [f["kind"] for f in k_version["audit"]["findings"] if f["blocking"]] == ["k_anonymity"]

    # Fixed by a new version through the proper recipe.
    fixed = _build(market, operator, "leaky", upload["id"]).json()
    assert fixed["number"] == 3 and fixed["audit"]["clean"]
    assert market.client.post("/v1/products/leaky/submit", headers=operator.headers).status_code == 200


def test_findings_can_be_resolved_with_a_justification(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "justified")
    upload = _upload(market, operator, csv_bytes()).json()
    recipe = copy.deepcopy(RECIPE)
    recipe["tables"]["payments"]["columns"]["phone"] = {}
    policy = copy.deepcopy(POLICY)
    policy["tables"]["payments"]["hidden"].append("phone")
    _build(market, operator, "justified", upload["id"], recipe, policy)
    too_short = market.client.post(
        "/v1/products/justified/versions/1/findings/payments.phone.phone_number/resolve",
        headers=operator.headers,
        json={"justification": "no"},
    )
    assert too_short.status_code == 422
    unknown = market.client.post(
        "/v1/products/justified/versions/1/findings/nope/resolve",
        headers=operator.headers,
        json={"justification": "Service hotline numbers, not people."},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "finding_not_found"
    resolved = market.client.post(
        "/v1/products/justified/versions/1/findings/payments.phone.phone_number/resolve",
        headers=operator.headers,
        json={"justification": "Service hotline numbers, not people."},
    )
    assert resolved.status_code == 200 and resolved.json()["audit"]["blocking_findings"] == 0
    assert market.client.post("/v1/products/justified/submit", headers=operator.headers).status_code == 200


def test_recipe_mistakes_are_422_with_codes(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "mistakes")
    upload = _upload(market, operator, csv_bytes()).json()
    cases = [
        ({"tables": {"payments": {"columns": {"x": {"source": "nope"}}}}}, POLICY, "policy_column_not_produced"),
        (
            {"tables": {"payments": {"columns": {**RECIPE["tables"]["payments"]["columns"], "x": {"source": "nope"}}}}},
            POLICY,
            "recipe_column_unknown",
        ),
        ({"tables": {"other": RECIPE["tables"]["payments"]}}, POLICY, "recipe_table_mismatch"),
        ({"tables": {"payments": {"columns": {"a": {"type": "blob"}}}}}, POLICY, "invalid_request"),
        ({"tables": {"payments": {"columns": {"a": {"transform": {"kind": "bin"}}}}}}, POLICY, "invalid_request"),
    ]
    for recipe, policy, code in cases:
        response = _build(market, operator, "mistakes", upload["id"], recipe, policy)
        assert response.status_code == 422, (code, response.text)
        assert response.json()["error"]["code"] == code, response.text
    assert list(market.settings.products_dir.rglob("*.parquet")) == []


def test_a_recipe_over_clean_data_counts_nothing_rejected(market: Market) -> None:
    from tests.factories import PEOPLE_POLICY, people_csv

    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "clean")
    upload = _upload(market, operator, people_csv(), name="people.csv").json()
    recipe = {
        "tables": {
            "people": {
                "columns": {
                    "person_id": {},
                    "name": {"transform": {"kind": "mask", "keep_first": 1}},
                    "region": {},
                    "category": {},
                    "month": {"type": "integer"},
                    "amount": {"type": "double", "transform": {"kind": "bin", "width": 10}},
                    "trips": {"type": "integer"},
                }
            }
        }
    }
    built = market.client.post(
        "/v1/products/clean/builds",
        headers=operator.headers,
        json={"tables": {"people": upload["id"]}, "recipe": recipe, "policy": PEOPLE_POLICY},
    )
    assert built.status_code == 201, built.text
    quality = built.json()["quality"]["tables"]["people"]
    assert (quality["rejected"], quality["quarantined"], quality["duplicates_removed"], quality["rows_out"]) == (
        0,
        0,
        0,
        180,
    )
    amounts = {c["name"]: c for c in quality["columns"]}["amount"]
    assert amounts["min"] == "0.0" and amounts["distinct"] <= 11
    findings = built.json()["audit"]["findings"]
    assert [(f["column"], f["blocking"]) for f in findings] == [("name", False)]  # advisory: the column's name


def test_the_multipart_upload_route_takes_a_recipe_too(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "multipart")
    response = market.client.post(
        "/v1/products/multipart/versions",
        headers=operator.headers,
        files={"files": ("payments.csv", csv_bytes(), "text/csv")},
        data={"policy": json.dumps(POLICY), "recipe": json.dumps(RECIPE)},
    )
    assert response.status_code == 201, response.text
    versions = market.client.get("/v1/products/multipart/versions", headers=operator.headers).json()["items"]
    assert versions[0]["quality"]["tables"]["payments"]["rows_out"] == 160 and versions[0]["audit"]["clean"]
    broken = market.client.post(
        "/v1/products/multipart/versions",
        headers=operator.headers,
        files={"files": ("payments.csv", csv_bytes(), "text/csv")},
        data={"policy": json.dumps(POLICY), "recipe": "[1]"},
    )
    assert broken.status_code == 422 and "recipe must be a JSON object" in broken.json()["error"]["message"]


def test_emails_and_personal_names_are_flagged_by_value(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "contacts")
    lines = ["person,contact,owner,district,amount"]
    for i in range(120):
        first = ["Wang", "Li", "Zhang", "Chen", "Yang", "Zhao"][i % 6]
        last = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Qiang", "Xiu", "Hao", "Lin", "Tao", "Yu"][i // 6 % 12]
        lines.append(f"p{i},user{i}@example.cn,{first} {last} {['Ma', 'Xu'][i // 72]}ling,Chaoyang District,{i}")
    upload = _upload(market, operator, ("\n".join(lines) + "\n").encode(), name="contacts.csv").json()
    recipe = {
        "tables": {
            "contacts": {
                "columns": {
                    "person": {"transform": {"kind": "pseudonymise"}},
                    "contact": {},
                    "owner": {},
                    "district": {},
                    "amount": {"type": "integer"},
                }
            }
        }
    }
    policy = {
        "min_group_size": 5,
        "tables": {
            "contacts": {
                "privacy_unit": "person",
                "dimensions": ["district"],
                "measures": ["amount"],
                "hidden": ["contact", "owner"],
            }
        },
    }
    built = market.client.post(
        "/v1/products/contacts/builds",
        headers=operator.headers,
        json={"tables": {"contacts": upload["id"]}, "recipe": recipe, "policy": policy},
    )
    assert built.status_code == 201, built.text
    blocking = {(f["column"], f["kind"]) for f in built.json()["audit"]["findings"] if f["blocking"]}
    # "Chaoyang District" looks like a name but has one distinct value: cardinality keeps it out.
    assert blocking == {("contact", "email"), ("owner", "personal_name")}


def test_a_version_can_be_rebuilt_and_its_quarantine_downloaded(market: Market, tmp_path) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "rebuilt")
    upload = _upload(market, operator, csv_bytes()).json()
    first = _build(market, operator, "rebuilt", upload["id"]).json()
    again = market.client.post("/v1/products/rebuilt/versions/1/rebuild", headers=operator.headers)
    assert again.status_code == 201, again.text
    assert again.json()["number"] == 2 and again.json()["recipe_hash"] == first["recipe_hash"]
    assert again.json()["quality"]["tables"]["payments"]["rows_out"] == 160
    stricter = copy.deepcopy(RECIPE)
    stricter["tables"]["payments"]["columns"]["month"]["max"] = 1
    changed = market.client.post(
        "/v1/products/rebuilt/versions/1/rebuild", headers=operator.headers, json={"recipe": stricter}
    ).json()
    assert changed["recipe_hash"] != first["recipe_hash"]
    assert changed["quality"]["tables"]["payments"]["broken_rules"]["month: above 1"] == 82

    quarantine = market.client.get("/v1/products/rebuilt/versions/1/quarantine/payments", headers=operator.headers)
    assert quarantine.status_code == 200
    path = tmp_path / "q.parquet"
    path.write_bytes(quarantine.content)
    rows = duckdb.sql(f"SELECT district, broken_rules FROM read_parquet('{path}')").fetchall()
    assert rows == [("Atlantis", ["district: not an allowed value"])]
    rival = market.actor(Role.OPERATOR)
    assert (
        market.client.get("/v1/products/rebuilt/versions/1/quarantine/payments", headers=rival.headers).status_code
        == 404
    )
    none = market.client.get("/v1/products/rebuilt/versions/3/quarantine/payments", headers=operator.headers)
    assert none.status_code == 404 and none.json()["error"]["code"] == "quarantine_not_found"

    from tests.factories import upload_version

    create_product(market, operator, "multipart-only")
    upload_version(market, operator, "multipart-only")
    refused = market.client.post("/v1/products/multipart-only/versions/1/rebuild", headers=operator.headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "not_rebuildable"


def test_files_left_by_a_rolled_back_build_do_not_block_or_leak_into_the_next(market: Market) -> None:
    operator = market.actor(Role.OPERATOR)
    create_product(market, operator, "orphans")
    upload = _upload(market, operator, csv_bytes()).json()
    _build(market, operator, "orphans", upload["id"])
    (first,) = market.settings.products_dir.glob("*/v1/payments.parquet")
    before = first.read_bytes()
    orphan = first.parent.parent / "v2"
    orphan.mkdir()
    (orphan / "stale.parquet").write_bytes(b"left over")
    second = _build(market, operator, "orphans", upload["id"])
    assert second.status_code == 201 and second.json()["number"] == 2
    assert sorted(p.name for p in orphan.iterdir()) == ["payments.parquet", "payments.summary.parquet", "quarantine"]
    assert first.read_bytes() == before
    assert not list(first.parent.parent.glob(".building-*"))


def test_quality_distinct_counts_agree_with_the_data(market: Market) -> None:
    """The README tour's CSV: 600 trips by 60 riders in 3 districts over 12 months; the report says so exactly."""
    operator = market.actor(Role.OPERATOR)
    assert create_product(market, operator, "trips").status_code == 201
    lines = ["rider_id,district,month,fare"]
    lines += [f"R{i % 60:04d},D{i % 3},{i % 12 + 1},{i % 17 + 2}" for i in range(1, 601)]
    upload = _upload(market, operator, ("\n".join(lines) + "\n").encode(), name="trips.csv").json()
    recipe = {
        "tables": {
            "trips": {
                "columns": {
                    "rider": {"source": "rider_id", "transform": {"kind": "pseudonymise"}},
                    "district": {},
                    "month": {"type": "integer"},
                    "fare": {"type": "integer"},
                }
            }
        }
    }
    policy = {
        "min_group_size": 5,
        "tables": {"trips": {"privacy_unit": "rider", "dimensions": ["district", "month"], "measures": ["fare"]}},
    }
    built = market.client.post(
        "/v1/products/trips/builds",
        headers=operator.headers,
        json={"tables": {"trips": upload["id"]}, "recipe": recipe, "policy": policy},
    )
    assert built.status_code == 201, built.text
    columns = {c["name"]: c for c in built.json()["quality"]["tables"]["trips"]["columns"]}
    assert {name: c["distinct"] for name, c in columns.items()} == {"rider": 60, "district": 3, "month": 12, "fare": 17}

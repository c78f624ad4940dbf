"""Small builders for test data, driven through the public HTTP API."""

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from market.accounts.models import Role
from tests.conftest import Actor, Market

K = 10
UNITS = 60
MONTHS = 3


def people_rows() -> list[dict[str, Any]]:
    """A deterministic person-level table: 60 people x 3 months.

    By category, 'common' covers 50 people and 'rare' and 'tiny' 5 each, so with k=10 the last two
    groups are suppressed. By region every group has 15 people.
    """
    rows = []
    for unit in range(UNITS):
        category = "common" if unit < 50 else ("rare" if unit < 55 else "tiny")
        for month in range(1, MONTHS + 1):
            rows.append(
                {
                    "person_id": f"P{unit:04d}",
                    "name": f"Person {unit}",
                    "region": ["north", "south", "east", "west"][unit % 4],
                    "category": category,
                    "month": month,
                    "amount": (unit * 7 + month * 3) % 100 + 1,
                    "trips": unit % 5 + month,
                }
            )
    return rows


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """`rows` as a CSV file with a header line (the keys of the first row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def people_csv() -> bytes:
    return csv_bytes(people_rows())


PEOPLE_POLICY: dict[str, Any] = {
    "min_group_size": K,
    "tables": {
        "people": {
            "privacy_unit": "person_id",
            "dimensions": ["region", "category", "month"],
            "measures": ["amount", "trips"],
            "hidden": ["name"],
            "bounds": {"amount": {"min": 0, "max": 10_000}, "trips": {"min": 0, "max": 100}},
        }
    },
}


def dp_policy(**params: Any) -> dict[str, Any]:
    """PEOPLE_POLICY in differential-privacy mode (natural persons; public keys for `region`), `params` overriding
    its DP parameters: delta 1e-7, epsilon 10 per agreement and 50 per version, 0.1 to 2 (default 1) per query."""
    policy = copy.deepcopy(PEOPLE_POLICY)
    policy["mode"] = "dp"
    policy["privacy_unit_kind"] = "natural_person"
    policy["dp"] = {
        "max_groups_per_unit": 3,
        "max_rows_per_group": 3,
        "public_keys": {"region": ["north", "south", "east", "west"]},
        "delta": 1e-7,
        "agreement_epsilon": 10.0,
        "version_epsilon_cap": 50.0,
        "query_epsilon": 1.0,
        "min_query_epsilon": 0.1,
        "max_query_epsilon": 2.0,
        **params,
    }
    return policy


JOIN_SQL = (
    "SELECT people.region, count(*) AS n, sum(shops.rent) AS rent "
    "FROM people JOIN shops ON people.region = shops.region GROUP BY people.region"
)
"""A heavy query on `joined_tables`: rows x rows / len(regions) joined rows, seconds of work for ~10,000 rows."""
SMALL_SQL = "SELECT region, count(*) AS n FROM people GROUP BY region"
"""A light query on `joined_tables` (milliseconds)."""
JOINED_POLICY: dict[str, Any] = {
    "min_group_size": K,
    "tables": {
        **PEOPLE_POLICY["tables"],
        "shops": {
            "privacy_unit": "owner_id",
            "dimensions": ["region", "kind"],
            "measures": ["rent"],
            "hidden": [],
            "bounds": {"rent": {"min": 0, "max": 10_000}},
        },
    },
}


def joined_tables(rows: int, regions: tuple[str, ...]) -> dict[str, bytes]:
    """people.csv and shops.csv, `rows` rows each, spread evenly over `regions` (JOINED_POLICY, JOIN_SQL)."""
    people = [
        {
            "person_id": f"P{i:06d}",
            "name": f"Person {i}",
            "region": regions[i % len(regions)],
            "category": "common",
            "month": i % 3 + 1,
            "amount": i % 100 + 1,
            "trips": i % 5 + 1,
        }
        for i in range(rows)
    ]
    shops = [
        {
            "owner_id": f"O{i // 4:06d}",
            "region": regions[i % len(regions)],
            "kind": ("food", "tools")[i % 2],
            "rent": 1000 + i % 500,
        }
        for i in range(rows)
    ]
    return {"people.csv": csv_bytes(people), "shops.csv": csv_bytes(shops)}


PLANS: list[dict[str, Any]] = [
    {"code": "public", "title": "Public interest", "kind": "public_interest", "monthly_query_quota": 1000},
    {
        "code": "standard",
        "title": "Commercial",
        "kind": "commercial",
        "per_query_minor": 150,
        "per_gb_minor": "1000",
        "monthly_cap_minor": 100_000,
    },
]


@dataclass
class Listed:
    slug: str
    operator: Actor
    regulator: Actor


FEE_CAP: dict[str, Any] = {
    "max_per_query_minor": 100_000,
    "max_per_gb_minor": "1000000",
    "max_monthly_fee_minor": 100_000_000,
    "max_per_tenth_epsilon_minor": 100_000,
}
"""Generous caps, so that tests about other things never hit them; fee-cap tests set their own."""


def authorise(
    market: Market,
    operator: Actor,
    *,
    regulator: Actor | None = None,
    zones: tuple[str, ...] = ("transport",),
    regions: tuple[str, ...] = ("CN-11",),
    scenarios: tuple[str, ...] = (),
    days: int = 365,
    dp_required_for: tuple[str, ...] = (),
    cap_without: tuple[str, ...] = (),
    **cap: Any,
) -> Any:
    """The regulator grants `operator` a scope with the same fee cap in every zone; returns the response.

    `cap_without` leaves those fields out of each cap (as an older client would); `dp_required_for` lists the
    zones whose products must use DP mode."""
    from datetime import UTC, datetime, timedelta

    regulator = regulator or market.actor(Role.REGULATOR)
    fee_cap = {k: v for k, v in {**FEE_CAP, **cap}.items() if k not in cap_without}
    body: dict[str, Any] = {
        "operator": operator.principal.org_id,
        "zones": list(zones),
        "regions": list(regions),
        "scenarios": list(scenarios),
        "valid_until": (datetime.now(UTC) + timedelta(days=days)).isoformat(),
        "fee_caps": [{"zone": zone, **fee_cap} for zone in zones],
    }
    if dp_required_for:
        body["dp_required_for"] = list(dp_required_for)
    return market.client.post("/v1/authorisations", headers=regulator.headers, json=body)


def ensure_authorised(market: Market, operator: Actor) -> None:
    """Grant the operator the default scope (transport in CN-11) unless it already holds a grant."""
    if not market.client.get("/v1/authorisations", headers=operator.headers).json()["items"]:
        granted = authorise(market, operator)
        assert granted.status_code == 201, granted.text


def create_product(market: Market, operator: Actor, slug: str, plans: list[dict[str, Any]] | None = None) -> Any:
    """Create a draft product over HTTP, first authorising the operator for transport in CN-11 if needed."""
    ensure_authorised(market, operator)
    return market.client.post(
        "/v1/products",
        headers=operator.headers,
        json={
            "slug": slug,
            "title": f"Product {slug}",
            "zone": "transport",
            "region": "CN-11",
            "plans": PLANS if plans is None else plans,
        },
    )


def upload_version(
    market: Market,
    operator: Actor,
    slug: str,
    *,
    policy: dict[str, Any] | None = None,
    content: bytes | None = None,
    filename: str = "people.csv",
    tables: dict[str, bytes] | None = None,
) -> Any:
    """Upload a version: `tables` maps file names to CSV contents; default one file, people.csv."""
    uploads = tables or {filename: content if content is not None else people_csv()}
    return market.client.post(
        f"/v1/products/{slug}/versions",
        headers=operator.headers,
        files=[("files", (name, data, "text/csv")) for name, data in uploads.items()],
        data={"policy": json.dumps(policy or PEOPLE_POLICY)},
    )


def listed_product(
    market: Market,
    slug: str = "people-trips",
    plans: list[dict[str, Any]] | None = None,
    *,
    tables: dict[str, bytes] | None = None,
    policy: dict[str, Any] | None = None,
    cap: dict[str, Any] | None = None,
) -> Listed:
    """A product created, uploaded, submitted and approved over HTTP, by an operator authorised for it
    (under FEE_CAP, or with `cap`'s fields in its place)."""
    operator = market.actor(Role.OPERATOR)
    regulator = market.actor(Role.REGULATOR)
    assert authorise(market, operator, regulator=regulator, **(cap or {})).status_code == 201
    assert create_product(market, operator, slug, plans).status_code == 201
    uploaded = upload_version(market, operator, slug, tables=tables, policy=policy)
    assert uploaded.status_code == 201, uploaded.text
    assert market.client.post(f"/v1/products/{slug}/submit", headers=operator.headers).status_code == 200
    reviewed = market.client.post(
        f"/v1/products/{slug}/review",
        headers=regulator.headers,
        json={"decision": "approve", "comment": "ok"},
    )
    assert reviewed.status_code == 200, reviewed.text
    return Listed(slug=slug, operator=operator, regulator=regulator)


def grant(market: Market, listed: Listed, buyer: Actor, *, purpose: str, plan: str, **decision: Any) -> Any:
    """A buyer requests access and the right reviewer approves it; returns the decided request."""
    created = market.client.post(
        "/v1/access-requests",
        headers=buyer.headers,
        json={
            "product": listed.slug,
            "plan": plan,
            "purpose": purpose,
            "scenario": "analysis",
            "justification": "t",
        },
    )
    assert created.status_code == 201, created.text
    reviewer = listed.regulator if purpose in ("public_governance", "public_welfare") else listed.operator
    decided = market.client.post(
        f"/v1/access-requests/{created.json()['id']}/decision",
        headers=reviewer.headers,
        json={"decision": "approve", "reason": "fine", **decision},
    )
    assert decided.status_code == 200, decided.text
    return decided.json()


def query(market: Market, buyer: Actor, slug: str, sql: str, key: str | None = None) -> Any:
    headers = dict(buyer.headers)
    if key:
        headers["Idempotency-Key"] = key
    return market.client.post("/v1/queries", headers=headers, json={"product": slug, "sql": sql})


def bypass_append_only(market: Market) -> None:
    """Remove the database's append-only guard on usage_records (metering), as an attacker with
    database access could; for tests that must edit or delete usage records."""
    from sqlalchemy import text

    with market.database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE usage_records DISABLE TRIGGER usage_records_append_only"))
        else:
            connection.execute(text("DROP TRIGGER IF EXISTS usage_records_no_update"))
            connection.execute(text("DROP TRIGGER IF EXISTS usage_records_no_delete"))


def queried_product(market: Market, directory: Any, table: str, rows_sql: str, policy: dict[str, Any]) -> Actor:
    """A product of one table, `rows_sql`'s rows written by DuckDB to `<table>.parquet` in `directory`, listed under
    `policy` (slug `table`); returns a buyer granted commercial access on the standard plan."""
    import duckdb

    path = directory / f"{table}.parquet"
    with duckdb.connect() as connection:
        connection.execute(f"COPY ({rows_sql}) TO '{path}' (FORMAT parquet)")
    listed = listed_product(market, table, tables={f"{table}.parquet": path.read_bytes()}, policy=policy)
    buyer = market.actor(Role.BUYER)
    grant(market, listed, buyer, purpose="commercial", plan="standard")
    return buyer

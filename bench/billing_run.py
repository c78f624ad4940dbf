"""Benchmark: rate 1,000,000 usage records of 1,000 buyers into invoices, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.billing_run [--records 1000000] [--buyers 1000] [--postgres URL]

The synthetic usage is bulk-loaded (executemany on SQLite, COPY on PostgreSQL) and not timed. The
timed part is one `market billing run` of the period (set-based SQL), then a second run of the same
period, which must link nothing and change nothing; then, after finalizing every invoice, one full
reconciliation of the period (every check of the books), which must find nothing but `unpaid`.
"""

from __future__ import annotations

import argparse
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text

from bench.databases import on_both_databases
from billing import invoices as invoice_service
from billing import rating, reconciliation
from billing.config import Period
from billing.models import Invoice, InvoiceLineUsage
from market.accounts.models import Organisation, User
from market.db import Database, migrate
from metering.models import AccessRequest, Agreement
from products.models import PricePlan, Product, ProductVersion

PERIOD = "2026-10"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _seed_parties(database: Database, buyers: int) -> list[tuple[str, str, str]]:
    """Orgs, users, a product with a commercial plan, and one agreement per buyer."""
    now = datetime(2026, 9, 1, tzinfo=UTC)
    with database.transaction() as session:
        operator = Organisation(name="Bench Operator", kind="operator")
        session.add(operator)
        session.flush()
        op_user = User(org_id=operator.id, name="op", email="op@bench", role="operator")
        session.add(op_user)
        session.flush()
        product = Product(
            slug="bench", title="Bench", operator_org_id=operator.id, zone="transport", region="CN-11", status="listed"
        )
        session.add(product)
        session.flush()
        version = ProductVersion(
            product_id=product.id, number=1, policy={}, tables=[], content_hash="0" * 64, created_by=op_user.id
        )
        plan = PricePlan(
            product_id=product.id,
            code="standard",
            title="Commercial",
            kind="commercial",
            currency="CNY",
            monthly_fee_minor=10_000,
            per_query_minor=150,
            per_gb_minor=Decimal("1000"),
        )
        session.add_all([version, plan])
        session.flush()
        out = []
        for n in range(buyers):
            org = Organisation(name=f"Bench buyer {n}", kind="buyer")
            session.add(org)
            session.flush()
            user = User(org_id=org.id, name=f"b{n}", email=f"b{n}@bench", role="buyer")
            session.add(user)
            session.flush()
            request = AccessRequest(
                buyer_org_id=org.id,
                requested_by=user.id,
                product_id=product.id,
                plan_id=plan.id,
                purpose="commercial" if n % 10 else "public_welfare",
                scenario="bench",
                reviewer_role="operator",
                status="approved",
            )
            session.add(request)
            session.flush()
            agreement = Agreement(
                request_id=request.id,
                buyer_org_id=org.id,
                product_id=product.id,
                product_version_id=version.id,
                purpose=request.purpose,
                scenario="bench",
                plan={"currency": "CNY", "monthly_fee_minor": 10_000, "per_query_minor": 150, "per_gb_minor": "1000"},
                policy={},
                currency="CNY",
                valid_from=now,
                valid_until=now + timedelta(days=365),
            )
            session.add(agreement)
            session.flush()
            out.append((agreement.id, org.id, user.id))
        return [(a, o, u, product.id, version.id) for a, o, u in out]  # type: ignore[misc]


COLUMNS = (
    "id, agreement_id, buyer_org_id, user_id, product_id, product_version_id, purpose, sql, sql_run, "
    "rows_scanned, bytes_scanned, cpu_ms, result_rows, result_columns, suppressed_groups, charge_type, "
    "amount_minor, currency, month, created_at, chain_seq"
)


def _rows(parties: list[Any], records: int, first: int = 0):  # type: ignore[no-untyped-def]
    start = datetime(2026, 10, 1, tzinfo=UTC)
    prefix = secrets.token_hex(4)
    for i in range(first, first + records):
        agreement, org, user, product, version = parties[i % len(parties)]
        public = (i % len(parties)) % 10 == 0
        charge = "free_public" if public else ("billable" if i % 7 else "trial")
        yield (
            f"qry_{prefix}{i:012d}",
            agreement,
            org,
            user,
            product,
            version,
            "public_welfare" if public else "commercial",
            "SELECT 1",
            "",
            1000,
            (i % 50) * 10_000_000,
            3,
            5,
            "[]",
            0,
            charge,
            150 + i % 50 * 10 if charge == "billable" else 0,
            "CNY",
            PERIOD,
            start + timedelta(seconds=i % 2_500_000),
            i,  # chain_seq, unique per buyer (synthetic records are not a verifiable hash chain)
        )


def _load_usage(database: Database, parties: list[Any], records: int, first: int = 0) -> None:
    """Bulk-load `records` usage records, numbered from `first` (ids and chain positions stay unique)."""
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if database.is_sqlite:
            placeholders = ", ".join("?" for _ in COLUMNS.split(","))
            rows = ((*r[:-2], r[-2].isoformat(sep=" "), r[-1]) for r in _rows(parties, records, first))
            cursor.executemany(f"INSERT INTO usage_records ({COLUMNS}) VALUES ({placeholders})", rows)
        else:
            with cursor.copy(f"COPY usage_records ({COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in _rows(parties, records, first):
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def bench(database: Database, label: str, records: int, buyers: int) -> dict[str, Any]:
    migrate(database)
    started = time.perf_counter()
    parties = _seed_parties(database, buyers)
    _load_usage(database, parties, records)
    if not database.is_sqlite:
        with database.engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    loaded = time.perf_counter() - started
    period = Period.parse(PERIOD, 1)
    started = time.perf_counter()
    with database.transaction() as session:
        first = rating.run_period(session, period, now=datetime(2026, 11, 1, 1, tzinfo=UTC))
    run_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with database.transaction() as session:
        second = rating.run_period(session, period, now=datetime(2026, 11, 1, 2, tzinfo=UTC))
    rerun_seconds = time.perf_counter() - started
    with database.transaction() as session:
        linked = session.scalar(select(func.count()).select_from(InvoiceLineUsage))
        invoices = session.scalar(select(func.count()).select_from(Invoice))
    assert linked == records and invoices == buyers, (linked, invoices)
    assert second.usage_linked == 0 and second.draft_total_minor == first.draft_total_minor
    with database.transaction() as session:
        invoice_service.finalize_period(session, None, period)
    started = time.perf_counter()
    with database.transaction() as session:
        report = reconciliation.reconcile(session, None, period)
    reconcile_seconds = time.perf_counter() - started
    assert {m.reason for m in report.mismatches} <= {"unpaid"}, report.mismatches[:5]
    return {
        "database": label,
        "records": records,
        "buyers": buyers,
        "load_s": round(loaded, 2),
        "run_s": round(run_seconds, 2),
        "rerun_s": round(rerun_seconds, 2),
        "reconcile_s": round(reconcile_seconds, 2),
        "invoices": invoices,
        "lines": first.lines_created,
        "total_minor": first.draft_total_minor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--buyers", type=int, default=1_000)
    parser.add_argument(
        "--postgres", default=DEFAULT_PG, help="A PostgreSQL server URL; a scratch database is made there."
    )
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results = on_both_databases(
        lambda database, name: bench(database, name, args.records, args.buyers),
        args.postgres,
        skip_postgres=args.skip_postgres,
    )
    print(
        f"{'database':<11} {'records':>9} {'buyers':>6} {'load s':>7} {'run s':>6} {'rerun s':>7} "
        f"{'recon s':>7} {'lines':>6} total"
    )
    for r in results:
        print(
            f"{r['database']:<11} {r['records']:>9} {r['buyers']:>6} {r['load_s']:>7} {r['run_s']:>6} "
            f"{r['rerun_s']:>7} {r['reconcile_s']:>7} {r['lines']:>6} {r['total_minor']}"
        )


if __name__ == "__main__":
    main()

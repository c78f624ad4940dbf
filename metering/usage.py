"""Usage views: a buyer's own records, an operator's products' records (without buyers' SQL), summaries, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.errors import NotFound
from metering import repository
from metering.models import UsageRecord
from metering.repository import UsageFilter
from metering.schemas import DailyUsageOut, UsageOut
from products import repository as products_repo
from products import service as products
from products.models import Product, ProductStatus

CSV_COLUMNS = (
    "id",
    "created_at",
    "finished_at",
    "buyer_org_id",
    "buyer",
    "agreement_id",
    "product_id",
    "product",
    "product_version_id",
    "purpose",
    "charge_type",
    "amount_minor",
    "currency",
    "rows_scanned",
    "bytes_scanned",
    "cpu_ms",
    "result_rows",
    "privacy_rho_nano",
    "privacy_delta_atto",
    "error_code",
    "sql",
)
CSV_LIMIT = 100_000
"""Most records one CSV export holds; narrow the dates for more."""


def scope(
    session: Session,
    actor: Principal,
    *,
    product_slug: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageFilter:
    """The records the caller may see: a buyer its own; an operator those on its products."""
    actor.require(Role.BUYER, Role.OPERATOR)
    product_ids: list[str] | None = None
    if product_slug is not None:
        product = products_repo.by_slug(session, product_slug)
        if product is None or not _may_filter_by(session, actor, product):
            raise NotFound("product_not_found", slug=product_slug)
        product_ids = [product.id]
    if actor.role == Role.BUYER:
        return UsageFilter(buyer_org_id=actor.org_id, product_ids=product_ids, since=since, until=until)
    own = [p.id for p in products.catalogue(session, actor, mine=True)]
    return UsageFilter(
        product_ids=[p for p in own if product_ids is None or p in product_ids], since=since, until=until
    )


def _may_filter_by(session: Session, actor: Principal, product: Product) -> bool:
    """An operator names its own products; a buyer listed ones or those it holds an agreement on, so
    that naming another operator's draft answers like a slug that does not exist."""
    if actor.role == Role.OPERATOR:
        return product.operator_org_id == actor.org_id
    if product.status == ProductStatus.LISTED:
        return True
    return repository.latest_agreement(session, actor.org_id, product.id) is not None


def shows_sql(actor: Principal) -> bool:
    """Only the buyer who sent a query sees its SQL here (the regulator reads it in the audit log)."""
    return actor.role == Role.BUYER


def present(session: Session, actor: Principal, records: Sequence[UsageRecord]) -> list[UsageOut]:
    """Usage records as the API shows them: the product's slug and buyer's name beside ids; SQL to its buyer only."""
    slugs = {p.id: p.slug for p in repository.products_by_id(session, [r.product_id for r in records]).values()}
    buyers = repository.org_names(session, [r.buyer_org_id for r in records])
    out = []
    for record in records:
        item = UsageOut.model_validate(record)
        item.product = slugs.get(record.product_id, "")
        item.buyer = buyers.get(record.buyer_org_id, "")
        if not shows_sql(actor):
            item.sql = None
        if actor.role == Role.BUYER:
            item.cpu_ms = 0  # a precise clock on work hidden rows still move; kept for the operator and audit
        out.append(item)
    return out


def page(
    session: Session, actor: Principal, where: UsageFilter, *, limit: int, before: tuple[datetime, str] | None
) -> Sequence[UsageRecord]:
    """A page of visible usage records, newest first."""
    return repository.usage_page(session, where, limit=limit, before=before)


def daily_summary(session: Session, where: UsageFilter) -> list[DailyUsageOut]:
    """Per UTC day, product and charge type: queries, scanned volume and amount."""
    rows = repository.daily_summary(session, where)
    slugs = {p.id: p.slug for p in repository.products_by_id(session, [r.product_id for r in rows]).values()}
    return [
        DailyUsageOut(
            day=row.day if isinstance(row.day, date) else date.fromisoformat(str(row.day)),
            product=slugs.get(row.product_id, row.product_id),
            charge_type=row.charge_type,
            currency=row.currency,
            queries=int(row.queries),
            rows_scanned=int(row.rows_scanned or 0),
            bytes_scanned=int(row.bytes_scanned or 0),
            amount_minor=int(row.amount_minor or 0),
            privacy_rho_nano=int(row.privacy_rho_nano or 0),
            privacy_delta_atto=int(row.privacy_delta_atto or 0),
        )
        for row in rows
    ]


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # keeps spreadsheets from running a cell as a formula
    return "" if value is None else value


def to_csv(session: Session, actor: Principal, where: UsageFilter) -> str:
    """The visible records as CSV, newest first; the `sql` column is empty for operators."""
    records = repository.usage_page(session, where, limit=CSV_LIMIT, before=None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in present(session, actor, records):
        row = item.model_dump()
        writer.writerow([_cell(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()

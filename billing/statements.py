"""Settlement statements: what each party (source department, operator, platform) received for a
period, and an operator's revenue against its allowed revenue (最高准许收入).

One rule for the operator's revenue, the compliance one (market/compliance/allowed_revenue.py): revenue
received in the period's year from paid use of its products (all parties' parts, by the day the money was
received), against the allowed revenue the regulator's figures derive, with its 80% and 100% warnings.
The grants' older `revenue_ceiling_minor` is no longer read (deprecated)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy.orm import Session

from billing import finance_repository, repository
from billing.config import Period
from market.accounts.models import Role
from market.accounts.service import Principal
from market.errors import Forbidden


@dataclass
class Statement:
    period: str
    party_kind: str
    party_org_id: str | None
    party_name: str
    currency: str
    amount_minor: int
    payments: int
    year_to_date_minor: int | None = None
    """Operators: revenue received so far in the period's year, as the allowed revenue counts it."""
    ceiling_minor: int | None = None
    """Operators: the year's allowed revenue (最高准许收入); None until the regulator records the figures."""
    over_ceiling: bool = False
    used_basis_points: int | None = None
    warning: str | None = None
    """`none`, `approaching` (from 80%) or `exceeded` (from 100%), as on the allowed-revenue page."""


def statements(session: Session, actor: Principal, period: Period) -> list[Statement]:
    """Finance and the regulator see every party's statement; operators and source departments their own."""
    if actor.role in (Role.FINANCE, Role.REGULATOR):
        rows = finance_repository.distributions(session, period=period.key)
    elif actor.role in (Role.OPERATOR, Role.SOURCE):
        rows = finance_repository.distributions(session, period=period.key, party_org_id=actor.org_id)
    else:
        raise Forbidden("forbidden_role", needed="finance, regulator, operator or source", role=actor.role.value)
    totals: dict[tuple[str, str | None, str], int] = defaultdict(int)
    payments: dict[tuple[str, str | None, str], set[str]] = defaultdict(set)
    for row in rows:
        key = (row.party_kind, row.party_org_id, row.currency)
        totals[key] += row.amount_minor
        payments[key].add(row.payment_id)
    names = repository.org_names(session, {k[1] for k in totals if k[1]})
    out = []
    for (kind, org_id, currency), amount in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        statement = Statement(
            period=period.key,
            party_kind=kind,
            party_org_id=org_id,
            party_name=names.get(org_id or "", "Platform"),
            currency=currency,
            amount_minor=amount,
            payments=len(payments[(kind, org_id, currency)]),
        )
        if kind == "operator" and org_id:
            _against_allowed_revenue(session, statement, org_id, period.year)
        out.append(statement)
    return out


def _against_allowed_revenue(session: Session, statement: Statement, org_id: str, year: int) -> None:
    """The operator's revenue this year against its allowed revenue: the allowed-revenue page's figures."""
    from market.compliance import allowed_revenue

    row = allowed_revenue.figures_row(session, org_id, year)
    if row is None:
        statement.year_to_date_minor = allowed_revenue.received_minor(session, org_id, year)
        return
    shown = allowed_revenue.present(session, row)
    statement.year_to_date_minor = shown.received_minor
    statement.ceiling_minor = shown.allowed_minor
    statement.used_basis_points = shown.used_basis_points
    statement.warning = shown.warning
    statement.over_ceiling = shown.warning == "exceeded"

"""Settlement statements: what each party (source department, operator, platform) received for a
period, and an operator's revenue against the ceiling of its authorisation."""

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
    ceiling_minor: int | None = None
    over_ceiling: bool = False


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
            statement.year_to_date_minor = finance_repository.operator_distributed_in_year(session, org_id, period.year)
            statement.ceiling_minor = repository.operator_revenue_ceiling_minor(session, org_id, period.year)
            statement.over_ceiling = (
                statement.ceiling_minor is not None and statement.year_to_date_minor > statement.ceiling_minor
            )
        out.append(statement)
    return out

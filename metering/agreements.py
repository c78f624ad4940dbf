"""Agreements after they are made: who sees them, revocation with a reason, and their effective state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, Unprocessable
from market.notifications import service as notifications
from metering import odrl, privacy, repository
from metering.attempts import month_of
from metering.models import Agreement, AgreementStatus, PrivacyBudget
from metering.schemas import AgreementOut
from products import service as products
from products.models import Product
from sandbox import dp


def _own_product_ids(session: Session, actor: Principal) -> list[str]:
    return [p.id for p in products.catalogue(session, actor, mine=True)]


def visible_agreements(session: Session, actor: Principal) -> Sequence[Agreement]:
    """Buyers see their own agreements, operators those on their products, the regulator and finance all."""
    if actor.role == Role.BUYER:
        return repository.agreements_where(session, Agreement.buyer_org_id == actor.org_id)
    if actor.role in (Role.REGULATOR, Role.FINANCE):
        return repository.agreements_where(session)
    if actor.role == Role.OPERATOR:
        return repository.agreements_where(session, Agreement.product_id.in_(_own_product_ids(session, actor)))
    raise Forbidden("forbidden_role", needed="buyer, operator, regulator or finance", role=actor.role.value)


def visible_agreement(session: Session, actor: Principal, agreement_id: str) -> Agreement:
    """One agreement, if the caller may see it; otherwise 404 (never a hint that it exists)."""
    actor.require(Role.BUYER, Role.OPERATOR, Role.REGULATOR, Role.FINANCE)
    agreement = session.get(Agreement, agreement_id)
    if agreement is None:
        raise NotFound("agreement_not_found", agreement=agreement_id)
    if actor.role in (Role.REGULATOR, Role.FINANCE):
        return agreement
    if actor.role == Role.BUYER and agreement.buyer_org_id == actor.org_id:
        return agreement
    if actor.role == Role.OPERATOR:
        product = session.get(Product, agreement.product_id)
        if product is not None and product.operator_org_id == actor.org_id:
            return agreement
    raise NotFound("agreement_not_found", agreement=agreement_id)


def revocable(session: Session, actor: Principal, agreement_id: str) -> Agreement:
    """An agreement the caller may revoke (the regulator any, an operator those on its products); 404 otherwise.

    The console's confirmation page reads it before the revocation, through the same check."""
    actor.require(Role.REGULATOR, Role.OPERATOR)
    return visible_agreement(session, actor, agreement_id)


def revoke(session: Session, actor: Principal, agreement_id: str, reason: str) -> Agreement:
    """The regulator, or the operator of the product, ends an agreement now, with a reason.

    The revocation (who, which role, when, why) stays on the agreement, and the buyer's users are notified."""
    agreement = revocable(session, actor, agreement_id)
    if not reason.strip():
        raise Unprocessable("reason_required")
    now = utcnow()
    status = agreement.effective_status(now)
    if status != AgreementStatus.ACTIVE:
        raise Conflict("agreement_not_active", agreement=agreement.id, status=status.value)
    agreement.status = AgreementStatus.REVOKED.value
    agreement.revoked_at = now
    agreement.revoked_by = actor.user_id
    agreement.revoked_by_role = actor.role.value
    agreement.revoked_reason = reason.strip()
    session.flush()
    notifications.notify(
        session,
        notifications.users_of_orgs(session, [agreement.buyer_org_id]),
        "agreement_stopped",
        f"agreement-stopped:{agreement.id}",
        {"agreement": agreement.id, "reason": agreement.revoked_reason},
    )
    return agreement


@dataclass(frozen=True)
class AgreementBudget:
    """One DP agreement's lifetime privacy budget, as epsilon at its policy's delta."""

    agreement: AgreementOut
    epsilon: Decimal
    delta: Decimal
    spent: Decimal
    left: Decimal
    capped_by_version: bool
    """True when the version's cap, not the agreement's own budget, is what limits it now."""


@dataclass(frozen=True)
class VersionCap:
    """The regulator's cap on one DP product version, across all its agreements."""

    product: str
    product_version_id: str
    version: int | None
    delta: Decimal
    cap: Decimal
    spent: Decimal
    left: Decimal
    agreements: int


EPSILON_SHOWN = Decimal("0.0001")
"""Spent and left epsilons are shown to four decimals (they are square roots: never exact)."""


def shown_epsilon(rho: Decimal, delta: Decimal) -> Decimal:
    """The epsilon of `rho` at `delta`, to EPSILON_SHOWN, as a Decimal (0.3, never 0.30000000000000004)."""
    return dp.epsilon_of(max(Decimal(0), rho), delta).quantize(EPSILON_SHOWN)


def _eps(rho_nano: int, delta: Decimal) -> Decimal:
    return shown_epsilon(Decimal(rho_nano) / dp.NANO, delta)


def privacy_overview(session: Session, actor: Principal) -> tuple[list[AgreementBudget], list[VersionCap]]:
    """The regulator's view of DP budgets: each agreement's budget, spent and left, and each version's cap.

    Spent counts committed costs; left also sets aside what running queries have reserved."""
    actor.require(Role.REGULATOR)
    found = [a for a in repository.agreements_where(session) if (a.policy or {}).get("mode") == "dp"]
    shown = present(session, found)
    ids = [f"agreement:{a.id}" for a in found] + sorted({f"version:{a.product_version_id}" for a in found})
    rows = {b.id: b for b in session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.in_(ids)))}
    caps: dict[str, VersionCap] = {}
    budgets = []
    for agreement, out in zip(found, shown, strict=True):
        statement = out.privacy_budget
        if statement is None:
            continue
        delta = dp.decimal_of(statement["delta"])
        own = rows.get(f"agreement:{agreement.id}")
        total = own.budget_nano if own else dp.rho_nano(float(statement["rho"]))
        used = (own.spent_nano + own.reserved_nano) if own else 0
        version = rows.get(f"version:{agreement.product_version_id}")
        cap_total = version.budget_nano if version else dp.rho_nano(dp.rho_of(statement["version_cap_epsilon"], delta))
        cap_used = (version.spent_nano + version.reserved_nano) if version else 0
        budgets.append(
            AgreementBudget(
                agreement=out,
                epsilon=dp.decimal_of(statement["epsilon"]),
                delta=delta,
                spent=_eps(own.spent_nano if own else 0, delta),
                left=_eps(total - used, delta),
                capped_by_version=total - used > cap_total - cap_used,
            )
        )
        cap = caps.get(agreement.product_version_id)
        caps[agreement.product_version_id] = VersionCap(
            product=out.product,
            product_version_id=agreement.product_version_id,
            version=out.product_version_number,
            delta=delta,
            cap=dp.decimal_of(statement["version_cap_epsilon"]),
            spent=_eps(version.spent_nano if version else 0, delta),
            left=_eps(cap_total - cap_used, delta),
            agreements=(cap.agreements if cap else 0) + 1,
        )
    return budgets, sorted(caps.values(), key=lambda c: (c.product, c.version or 0))


def present(session: Session, found: Sequence[Agreement]) -> list[AgreementOut]:
    """Agreements as the API shows them: effective status, and the product's slug and buyer's name beside ids."""
    now = utcnow()
    slugs = {p.id: p.slug for p in repository.products_by_id(session, [a.product_id for a in found]).values()}
    buyers = repository.org_names(session, [a.buyer_org_id for a in found])
    spent = privacy.spent_by_agreement(session, [a.id for a in found])
    out = []
    for agreement in found:
        item = AgreementOut.model_validate(agreement)
        item.status = agreement.effective_status(now).value
        item.product = slugs.get(agreement.product_id, "")
        item.buyer = buyers.get(agreement.buyer_org_id, "")
        budget = privacy.budget_statement(agreement.policy)
        if budget is not None:
            own = spent.get(agreement.id)
            used = Decimal(own.rho_nano if own else 0) / dp.NANO
            budget["spent"] = {
                "rho": round(float(used), 9),
                "epsilon": round(float(dp.epsilon_of(used, budget["delta"])), 6),
                "delta": float(privacy.total_delta(budget["delta"], own)),
            }
            item.privacy_budget = budget
        out.append(item)
    return out


def odrl_document(session: Session, actor: Principal, agreement_id: str) -> dict[str, Any]:
    """A visible agreement as an ODRL policy (JSON-LD)."""
    agreement = visible_agreement(session, actor, agreement_id)
    product = session.get(Product, agreement.product_id)
    return odrl.export(
        agreement,
        product_slug=product.slug if product else agreement.product_id,
        operator_org_id=product.operator_org_id if product else "",
        status=agreement.effective_status(utcnow()).value,
    )


@dataclass(frozen=True)
class Standing:
    """An agreement's current month: what was used, and what is left of its quotas and cap (None = no limit)."""

    month: str
    queries_used: int
    charged_minor: int
    queries_left: int | None
    rows_left: int | None
    bytes_left: int | None
    cap_minor: int | None
    cap_left_minor: int | None


def standing(session: Session, agreement: Agreement) -> Standing:
    """The quota and cap remaining this month (UTC) on a visible agreement."""
    month = month_of(utcnow())
    counter = repository.month_counter(session, agreement.id, month)
    used, charged = (counter.accepted_queries, counter.charged_minor) if counter else (0, 0)
    rows, scanned = (counter.rows_scanned, counter.bytes_scanned) if counter else (0, 0)
    cap = agreement.plan.get("monthly_cap_minor")

    def left(quota: int | None, spent: int) -> int | None:
        return None if quota is None else max(0, quota - spent)

    return Standing(
        month=month,
        queries_used=used,
        charged_minor=charged,
        queries_left=left(agreement.monthly_query_quota, used),
        rows_left=left(agreement.monthly_row_quota, rows),
        bytes_left=left(agreement.monthly_byte_quota, scanned),
        cap_minor=None if cap is None else int(cap),
        cap_left_minor=None if cap is None else max(0, int(cap) - charged),
    )

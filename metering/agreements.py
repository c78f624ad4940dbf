"""Agreements after they are made: who sees them, revocation with a reason, and their effective state."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, Unprocessable
from metering import repository
from metering.models import Agreement, AgreementStatus
from metering.schemas import AgreementOut
from products import service as products
from products.models import Product


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


def revoke(session: Session, actor: Principal, agreement_id: str, reason: str) -> Agreement:
    """The regulator, or the operator of the product, ends an agreement now, with a reason."""
    actor.require(Role.REGULATOR, Role.OPERATOR)
    agreement = visible_agreement(session, actor, agreement_id)
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
    return agreement


def present(session: Session, found: Sequence[Agreement]) -> list[AgreementOut]:
    """Agreements as the API shows them: effective status, and the product's slug and buyer's name beside ids."""
    now = utcnow()
    slugs = {p.id: p.slug for p in repository.products_by_id(session, [a.product_id for a in found]).values()}
    buyers = repository.org_names(session, [a.buyer_org_id for a in found])
    out = []
    for agreement in found:
        item = AgreementOut.model_validate(agreement)
        item.status = agreement.effective_status(now).value
        item.product = slugs.get(agreement.product_id, "")
        item.buyer = buyers.get(agreement.buyer_org_id, "")
        out.append(item)
    return out

"""Authorisations (授权): the regulator decides which operator may list what, where, for how long, at what price.

Every product rule that depends on the grant lives here: the scope check on create, submit and
listing; the fee cap check on plans; and delisting when a grant is suspended or revoked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, OrgKind, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, Unprocessable
from products.governance import repository
from products.governance.models import Authorisation, AuthorisationEvent, AuthorisationStatus, FeeCap
from products.governance.schemas import AuthorisationIn, AuthorisationOut, FeeCapOut
from products.models import Product, ProductEvent, ProductStatus

TRANSITIONS: dict[str, tuple[set[AuthorisationStatus], AuthorisationStatus]] = {
    "suspend": ({AuthorisationStatus.ACTIVE}, AuthorisationStatus.SUSPENDED),
    "reinstate": ({AuthorisationStatus.SUSPENDED}, AuthorisationStatus.ACTIVE),
    "revoke": ({AuthorisationStatus.ACTIVE, AuthorisationStatus.SUSPENDED}, AuthorisationStatus.REVOKED),
}


def region_covers(granted: str, region: str) -> bool:
    """A granted division code covers itself and its sub-divisions: CN-11 covers CN-11 and CN-11-05."""
    return region == granted or region.startswith(granted + "-")


def in_force(authorisation: Authorisation, now: datetime) -> bool:
    return (
        authorisation.status == AuthorisationStatus.ACTIVE
        and authorisation.valid_from <= now < authorisation.valid_until
    )


def covers(authorisation: Authorisation, zone: str, region: str, scenarios: Iterable[str] = ()) -> bool:
    if zone not in authorisation.zones or not any(region_covers(r, region) for r in authorisation.regions):
        return False
    return not authorisation.scenarios or set(scenarios) <= set(authorisation.scenarios)


def covering(
    session: Session, operator_org_id: str, zone: str, region: str, scenarios: Iterable[str] = ()
) -> Authorisation | None:
    """The operator's authorisation in force now that covers the zone, region and scenarios, if any."""
    now = utcnow()
    wanted = list(scenarios)
    for authorisation in repository.active_authorisations(session, operator_org_id):
        if in_force(authorisation, now) and covers(authorisation, zone, region, wanted):
            return authorisation
    return None


def require_scope(
    session: Session, operator_org_id: str, zone: str, region: str, scenarios: Sequence[str] = ()
) -> Authorisation:
    """The covering authorisation, or a 403 that says which part of the scope is missing."""
    found = covering(session, operator_org_id, zone, region, scenarios)
    if found is not None:
        return found
    now = utcnow()
    grants = [a for a in repository.active_authorisations(session, operator_org_id) if in_force(a, now)]
    if not grants:
        expired = [a for a in repository.authorisations(session, operator_org_id) if a.valid_until <= now]
        raise Forbidden("authorisation_expired" if expired else "no_authorisation")
    place = [a for a in grants if covers(a, zone, region)]
    if not place:
        scope = "; ".join(f"zones {', '.join(a.zones)} in {', '.join(a.regions)}" for a in grants)
        raise Forbidden("outside_authorisation", zone=zone, region=region, scope=scope)
    allowed = sorted({s for a in place for s in a.scenarios})
    outside = sorted(set(scenarios) - set(allowed))
    raise Forbidden("scenario_outside_authorisation", scenarios=", ".join(outside), allowed=", ".join(allowed))


def cap_for(session: Session, authorisation: Authorisation, zone: str) -> FeeCap:
    caps = {c.zone: c for c in repository.fee_caps(session, [authorisation.id])[authorisation.id]}
    cap = caps.get(zone)
    if cap is None:  # pragma: no cover - grants carry one cap per zone by validation
        raise Forbidden("outside_authorisation", zone=zone, region="", scope=", ".join(authorisation.zones))
    return cap


def _fee(source: Any, field: str) -> Decimal:
    value = source.get(field) if isinstance(source, dict) else getattr(source, field, None)
    return Decimal(str(value or 0))


def _plan_fees(plan: Any) -> dict[str, Decimal]:
    """The highest fee of each kind a plan can charge, counting graduated tiers if the plan has them."""
    tiers = (plan.get("tiers") if isinstance(plan, dict) else getattr(plan, "tiers", None)) or []
    return {
        "per_query_minor": max([_fee(plan, "per_query_minor"), *(_fee(t, "per_query_minor") for t in tiers)]),
        "per_gb_minor": max([_fee(plan, "per_gb_minor"), *(_fee(t, "per_gb_minor") for t in tiers)]),
        "monthly_fee_minor": _fee(plan, "monthly_fee_minor"),
        "per_tenth_epsilon_minor": _fee(plan, "per_tenth_epsilon_minor"),
    }


def cap_limits(cap: FeeCap | Any) -> dict[str, Decimal]:
    """The limits of a fee cap, or of a product's fee standard (same fields).

    The privacy fee (per 0.1 epsilon of a DP query): a zone's cap always has one (0: no privacy fee
    allowed); a fee standard may leave it unset (None), and then only the zone's cap limits it."""
    limits = {
        "per_query_minor": Decimal(cap.max_per_query_minor),
        "per_gb_minor": Decimal(cap.max_per_gb_minor),
        "monthly_fee_minor": Decimal(cap.max_monthly_fee_minor),
    }
    privacy = getattr(cap, "max_per_tenth_epsilon_minor", None)
    if privacy is not None:
        limits["per_tenth_epsilon_minor"] = Decimal(privacy)
    return limits


def over_cap(plan: Any, limits: dict[str, Decimal]) -> tuple[str, Decimal, Decimal] | None:
    """The first fee of `plan` above its limit, as (field, amount, limit); None when the plan is within the cap."""
    for field, amount in _plan_fees(plan).items():
        limit = limits.get(field, Decimal(0))
        if amount > limit:
            return field, amount, limit
    return None


def product_limits(
    session: Session, authorisation: Authorisation, zone: str, product_id: str | None
) -> dict[str, Decimal]:
    """The stricter, fee by fee, of the zone's cap and the product's upper fee standard (if the regulator set one)."""
    from market.compliance.models import FeeStandard

    limits = cap_limits(cap_for(session, authorisation, zone))
    standard = session.get(FeeStandard, product_id) if product_id else None
    if standard is not None:
        own = cap_limits(standard)
        limits = {field: min(limit, own.get(field, limit)) for field, limit in limits.items()}
    return limits


def fee_limits_view(session: Session, product: Product) -> dict[str, Any]:
    """The zone's fee cap and the product's upper fee standard, as the catalogue and disclosures show them.

    The cap is the one of the grant covering the product now or, if none is in force (expired,
    suspended), of the covering grant that was valid last."""
    from market.compliance.models import FeeStandard

    grant = covering(session, product.operator_org_id, product.zone, product.region, product.scenarios or ())
    if grant is None:
        past = [
            a
            for a in repository.authorisations(session, product.operator_org_id)
            if covers(a, product.zone, product.region, product.scenarios or ())
        ]
        grant = max(past, key=lambda a: a.valid_until, default=None)
    standard = session.get(FeeStandard, product.id)
    return {
        "zone_cap": {k: str(v) for k, v in cap_limits(cap_for(session, grant, product.zone)).items()}
        if grant
        else None,
        "fee_standard": {k: str(v) for k, v in cap_limits(standard).items()} if standard else None,
    }


def check_plans(
    session: Session, authorisation: Authorisation, zone: str, plans: Iterable[Any], product_id: str | None = None
) -> None:
    """Refuse any plan priced above the zone's fee cap (政府指导价), or above the product's upper fee
    standard when stricter, or in another currency."""
    limits = product_limits(session, authorisation, zone, product_id)
    for plan in plans:
        if (
            any(_plan_fees(plan).values())
            and getattr(plan, "currency", authorisation.currency) != authorisation.currency
        ):
            raise Unprocessable(
                "plan_currency_mismatch", plan=plan.code, currency=plan.currency, allowed=authorisation.currency
            )
        excess = over_cap(plan, limits)
        if excess is not None:
            field, amount, limit = excess
            raise Unprocessable("fee_above_cap", plan=plan.code, field=field, amount=amount, cap=limit, zone=zone)


# -- the regulator's actions ----------------------------------------------------------------------


def grant(session: Session, actor: Principal, data: AuthorisationIn) -> Authorisation:
    """The regulator authorises an operator organisation for a scope, a period and fee caps."""
    actor.require(Role.REGULATOR)
    operator = session.get(Organisation, data.operator)
    if operator is None or operator.kind != OrgKind.OPERATOR:
        raise NotFound("operator_not_found", org=data.operator)
    now = utcnow()
    valid_from = data.valid_from or now
    authorisation = Authorisation(
        operator_org_id=operator.id,
        zones=sorted(set(data.zones)),
        regions=sorted(set(data.regions)),
        scenarios=sorted(set(data.scenarios)),
        valid_from=valid_from,
        valid_until=data.valid_until,
        currency=data.currency,
        revenue_ceiling_minor=data.revenue_ceiling_minor,
        note=data.note,
        dp_required_for=sorted(set(data.dp_required_for)),
        granted_by=actor.user_id,
    )
    session.add(authorisation)
    session.flush()
    for cap in data.fee_caps:
        session.add(FeeCap(authorisation_id=authorisation.id, **cap.model_dump()))
    session.add(
        AuthorisationEvent(
            authorisation_id=authorisation.id,
            from_status=None,
            to_status=AuthorisationStatus.ACTIVE.value,
            actor_user_id=actor.user_id,
            reason=data.note,
        )
    )
    session.flush()
    return authorisation


def visible(session: Session, actor: Principal) -> Sequence[Authorisation]:
    """The regulator (and admin) see every grant; an operator sees its own."""
    if actor.role in (Role.REGULATOR, Role.ADMIN):
        return repository.authorisations(session)
    actor.require(Role.OPERATOR, Role.REGULATOR)
    return repository.authorisations(session, actor.org_id)


def get_visible(session: Session, actor: Principal, authorisation_id: str) -> Authorisation:
    authorisation = session.get(Authorisation, authorisation_id)
    if authorisation is None or (
        actor.role not in (Role.REGULATOR, Role.ADMIN) and authorisation.operator_org_id != actor.org_id
    ):
        raise NotFound("authorisation_not_found", authorisation=authorisation_id)
    return authorisation


def change_status(session: Session, actor: Principal, authorisation_id: str, action: str, reason: str) -> Authorisation:
    """Suspend, reinstate or revoke; products no longer covered by any grant in force are delisted."""
    actor.require(Role.REGULATOR)
    authorisation = get_visible(session, actor, authorisation_id)
    allowed_from, target = TRANSITIONS[action]
    if authorisation.status not in allowed_from:
        raise Conflict("authorisation_transition", status=authorisation.status, action=action)
    session.add(
        AuthorisationEvent(
            authorisation_id=authorisation.id,
            from_status=authorisation.status,
            to_status=target.value,
            actor_user_id=actor.user_id,
            reason=reason,
        )
    )
    authorisation.status = target.value
    authorisation.updated_at = utcnow()
    session.flush()
    if target != AuthorisationStatus.ACTIVE:
        delist_uncovered(session, actor, authorisation.operator_org_id, f"Authorisation {target.value}: {reason}")
    return authorisation


def delist_uncovered(session: Session, actor: Principal, operator_org_id: str, reason: str) -> list[Product]:
    """Delist the operator's listed products that no grant in force covers any more; each is logged."""
    delisted: list[Product] = []
    listed = session.scalars(
        select(Product).where(Product.operator_org_id == operator_org_id, Product.status == ProductStatus.LISTED.value)
    ).all()
    for product in listed:
        if covering(session, operator_org_id, product.zone, product.region, product.scenarios or ()) is None:
            session.add(
                ProductEvent(
                    product_id=product.id,
                    version_id=product.listed_version_id,
                    from_status=product.status,
                    to_status=ProductStatus.DELISTED.value,
                    actor_user_id=actor.user_id,
                    reason=reason,
                )
            )
            product.status = ProductStatus.DELISTED.value
            product.updated_at = utcnow()
            delisted.append(product)
    session.flush()
    return delisted


def present(session: Session, grants: Sequence[Authorisation]) -> list[AuthorisationOut]:
    caps = repository.fee_caps(session, [a.id for a in grants])
    now = utcnow()
    out = []
    for a in grants:
        org = session.get(Organisation, a.operator_org_id)
        out.append(
            AuthorisationOut(
                id=a.id,
                operator=a.operator_org_id,
                operator_name=org.name if org else "",
                zones=list(a.zones),
                regions=list(a.regions),
                scenarios=list(a.scenarios),
                valid_from=a.valid_from,
                valid_until=a.valid_until,
                status=a.status,
                in_force=in_force(a, now),
                currency=a.currency,
                fee_caps=[FeeCapOut.model_validate(c) for c in caps[a.id]],
                revenue_ceiling_minor=a.revenue_ceiling_minor,
                note=a.note,
                dp_required_for=list(a.dp_required_for or []),
                created_at=a.created_at,
            )
        )
    return out

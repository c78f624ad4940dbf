"""Access-request review rules: who reviews, by when (SLA), which scenarios, auto-approval; request views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Forbidden, NotFound
from metering import repository
from metering.models import AccessRequest, ProductAccessSettings, RequestStatus
from metering.schemas import AccessRequestOut, AccessSettingsOut
from products import repository as products_repo
from products import service as products
from products.models import Product

REVIEW_SLA: dict[Role, timedelta] = {
    Role.REGULATOR: timedelta(days=10),
    Role.OPERATOR: timedelta(days=5),
}
"""How long each reviewer has to decide a request (development first: reviews have a deadline)."""


def review_sla(reviewer: Role) -> timedelta:
    return REVIEW_SLA[reviewer]


def allowed_scenarios(session: Session, product: Product) -> frozenset[str] | None:
    """The scenarios a request for `product` may name (its own list, each inside the operator's
    authorisation); None, for a product that names none, accepts any non-empty scenario."""
    if not product.scenarios:
        return None
    return frozenset(str(s) for s in product.scenarios)


def auto_approves_commercial(session: Session, product_id: str) -> bool:
    settings = repository.access_settings(session, product_id)
    return bool(settings and settings.auto_approve_commercial)


def _own_product(session: Session, actor: Principal, slug: str) -> Product:
    product = products_repo.by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    if actor.role == Role.REGULATOR:
        return product
    actor.require(Role.OPERATOR)
    if product.operator_org_id != actor.org_id:
        raise NotFound("product_not_found", slug=slug)
    return product


def _settings_out(product: Product, settings: ProductAccessSettings | None) -> AccessSettingsOut:
    return AccessSettingsOut(
        product=product.slug,
        auto_approve_commercial=bool(settings and settings.auto_approve_commercial),
        operator_review_days=REVIEW_SLA[Role.OPERATOR].days,
        regulator_review_days=REVIEW_SLA[Role.REGULATOR].days,
        updated_at=settings.updated_at if settings else None,
    )


def get_settings(session: Session, actor: Principal, slug: str) -> AccessSettingsOut:
    """The product's access settings: its operator and the regulator may read them."""
    product = _own_product(session, actor, slug)
    return _settings_out(product, repository.access_settings(session, product.id))


def set_settings(session: Session, actor: Principal, slug: str, *, auto_approve_commercial: bool) -> AccessSettingsOut:
    """The operator chooses whether commercial requests for its product are approved at once."""
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    settings = repository.access_settings(session, product.id)
    if settings is None:
        settings = ProductAccessSettings(product_id=product.id, updated_by=actor.user_id)
        session.add(settings)
    settings.auto_approve_commercial = auto_approve_commercial
    settings.updated_by = actor.user_id
    settings.updated_at = utcnow()
    session.flush()
    return _settings_out(product, settings)


def visible_requests(session: Session, actor: Principal, status: str | None = None) -> Sequence[AccessRequest]:
    """Buyers see their own requests, operators those they review, the regulator public-interest ones."""
    where = [] if status is None else [AccessRequest.status == status]
    if actor.role == Role.BUYER:
        return repository.requests_where(session, AccessRequest.buyer_org_id == actor.org_id, *where)
    if actor.role == Role.REGULATOR:
        return repository.requests_where(session, AccessRequest.reviewer_role == Role.REGULATOR.value, *where)
    if actor.role == Role.OPERATOR:
        own = [p.id for p in products.catalogue(session, actor, mine=True)]
        return repository.requests_where(
            session, AccessRequest.product_id.in_(own), AccessRequest.reviewer_role == Role.OPERATOR.value, *where
        )
    raise Forbidden("forbidden_role", needed="buyer, operator or regulator", role=actor.role.value)


def visible_request(session: Session, actor: Principal, request_id: str) -> AccessRequest:
    """One request, if the caller may see it (same rules as `visible_requests`)."""
    request = session.get(AccessRequest, request_id)
    visible = request is not None and (
        (actor.role == Role.BUYER and request.buyer_org_id == actor.org_id)
        or (actor.role == Role.REGULATOR and request.reviewer_role == Role.REGULATOR)
        or (
            actor.role == Role.OPERATOR
            and request.reviewer_role == Role.OPERATOR
            and (product := session.get(Product, request.product_id)) is not None
            and product.operator_org_id == actor.org_id
        )
    )
    if request is None or not visible:
        raise NotFound("access_request_not_found", request=request_id)
    return request


def present(session: Session, requests: Sequence[AccessRequest]) -> list[AccessRequestOut]:
    """Requests as both sides see them: state, age, review deadline and whether it is overdue."""
    now = utcnow()
    product_by_id = repository.products_by_id(session, [r.product_id for r in requests])
    plan_by_id = repository.plans_by_id(session, [r.plan_id for r in requests])
    buyers = repository.org_names(session, [r.buyer_org_id for r in requests])
    agreements = repository.agreements_of_requests(session, [r.id for r in requests])
    out = []
    for request in requests:
        product = product_by_id.get(request.product_id)
        plan = plan_by_id.get(request.plan_id)
        pending = request.status == RequestStatus.PENDING
        end = now if pending or request.decided_at is None else request.decided_at
        out.append(
            AccessRequestOut(
                id=request.id,
                product=product.slug if product else "",
                product_id=request.product_id,
                plan=plan.code if plan else "",
                plan_id=request.plan_id,
                buyer_org_id=request.buyer_org_id,
                buyer=buyers.get(request.buyer_org_id, ""),
                purpose=request.purpose,
                scenario=request.scenario,
                justification=request.justification,
                status=request.status,
                reviewer_role=request.reviewer_role,
                auto_approved=request.status == RequestStatus.APPROVED and request.decided_by is None,
                decision_reason=request.decision_reason,
                created_at=request.created_at,
                decided_at=request.decided_at,
                review_due_at=request.review_due_at,
                age_seconds=max(int((end - request.created_at).total_seconds()), 0),
                overdue=bool(pending and request.review_due_at is not None and now > request.review_due_at),
                agreement_id=agreements.get(request.id),
            )
        )
    return out

"""Products: create, add immutable versions, submit, review, delist, and show the catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, Forbidden, MarketError, NotFound, Unprocessable
from market.i18n import Msg
from market.settings import Settings
from products import repository
from products.catalogue import served
from products.governance import authorisations, resources
from products.governance import repository as governance_repo
from products.models import PlanKind, PricePlan, Product, ProductEvent, ProductStatus, ProductVersion
from products.schemas import ColumnOut, PlanIn, PlanOut, ProductIn, ProductOut, ProductUpdate, TableOut
from products.versions import Upload as Upload  # re-exported: the demo and endpoints build versions here
from products.versions import add_version as add_version
from sandbox.policy import PrivacyUnitKind, ProtectionPolicy
from sandbox.service import TableFile


def _record(
    session: Session,
    product: Product,
    actor: Principal,
    to: ProductStatus,
    reason: str = "",
    version_id: str | None = None,
) -> None:
    session.add(
        ProductEvent(
            product_id=product.id,
            version_id=version_id,
            from_status=product.status,
            to_status=to.value,
            actor_user_id=actor.user_id,
            reason=reason,
        )
    )
    product.status = to.value
    product.updated_at = utcnow()


def _add_plans(session: Session, product: Product, plans: Sequence[PlanIn]) -> None:
    for plan in plans:
        session.add(PricePlan(product_id=product.id, **plan.model_dump()))


def create_product(session: Session, actor: Principal, data: ProductIn) -> Product:
    """Create a draft product owned by the operator's organisation."""
    actor.require(Role.OPERATOR)
    grant = authorisations.require_scope(session, actor.org_id, data.zone, data.region, data.scenarios)
    authorisations.check_plans(session, grant, data.zone, data.plans)
    if repository.by_slug(session, data.slug) is not None:
        raise Conflict("duplicate_product", slug=data.slug)
    product = Product(
        slug=data.slug,
        title=data.title,
        description=data.description,
        zone=data.zone,
        region=data.region,
        operator_org_id=actor.org_id,
        scenarios=sorted(set(data.scenarios)),
        documentation=data.documentation,
    )
    session.add(product)
    session.flush()
    session.add(
        ProductEvent(
            product_id=product.id,
            from_status=None,
            to_status=ProductStatus.DRAFT.value,
            actor_user_id=actor.user_id,
        )
    )
    _add_plans(session, product, data.plans)
    resources.link(session, product, data.resources)
    session.flush()
    return product


def update_product(session: Session, actor: Principal, slug: str, data: ProductUpdate) -> Product:
    """Change an own product's title, description, documentation, scenarios or lineage."""
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    if data.scenarios is not None:
        authorisations.require_scope(session, actor.org_id, product.zone, product.region, data.scenarios)
        product.scenarios = sorted(set(data.scenarios))
    for field in ("title", "description", "documentation"):
        value = getattr(data, field)
        if value is not None:
            setattr(product, field, value)
    if data.resources:
        resources.link(session, product, data.resources)
    product.updated_at = utcnow()
    session.flush()
    return product


def put_plan(session: Session, actor: Principal, slug: str, plan: PlanIn) -> PricePlan:
    """Add or change a plan, within the fee cap. Existing agreements keep the terms they snapshotted."""
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    grant = authorisations.require_scope(session, actor.org_id, product.zone, product.region, product.scenarios)
    authorisations.check_plans(session, grant, product.zone, [plan], product.id)
    existing = repository.plan_by_code(session, product.id, plan.code)
    if existing is None:
        existing = PricePlan(product_id=product.id, **plan.model_dump())
        session.add(existing)
    else:
        for field, value in plan.model_dump().items():
            setattr(existing, field, value)
        existing.active = True
    product.updated_at = utcnow()
    session.flush()
    return existing


def retire_plan(session: Session, actor: Principal, slug: str, code: str) -> PricePlan:
    """Stop offering a plan to new requests; agreements already made on it are unaffected."""
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    plan = plan_for(session, product, code)
    plan.active = False
    product.updated_at = utcnow()
    session.flush()
    return plan


def servable_product(session: Session, actor: Principal, slug: str) -> Product:
    """The product a query runs on, read once: 403 when it was listed but its operator lost the
    authorisation or it was delisted (its agreements stop being served), else as visible_product."""
    product = repository.by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    if product.listed_version_id is not None:
        scenarios = product.scenarios or ()
        if authorisations.covering(session, product.operator_org_id, product.zone, product.region, scenarios) is None:
            raise Forbidden("authorisation_inactive", slug=slug)
        if product.status != ProductStatus.LISTED:
            raise Forbidden("product_delisted", slug=slug)
    return _visible(actor, product, slug)


def _own_product(session: Session, actor: Principal, slug: str) -> Product:
    product = repository.by_slug(session, slug)
    if product is None or product.operator_org_id != actor.org_id:
        raise NotFound("product_not_found", slug=slug)
    return product


def parse_policy(raw: dict[str, Any]) -> ProtectionPolicy:
    try:
        return ProtectionPolicy.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unprocessable("invalid_request", detail=f"policy.{where}: {first['msg']}") from error


REVIEW_PERIOD = timedelta(days=15)
"""How long the regulator has to decide on a submitted version; shown to the operator as `review_due_at`."""


def _check_listable(session: Session, product: Product) -> None:
    """The operator's authorisation in force covers the product, and every active plan is within the cap."""
    grant = authorisations.require_scope(
        session, product.operator_org_id, product.zone, product.region, product.scenarios or ()
    )
    plans = repository.plans_of(session, [product.id])[product.id]
    authorisations.check_plans(session, grant, product.zone, plans, product.id)


def dp_gate(session: Session, product: Product, version: ProductVersion) -> None:
    """Refuse a version that must be in DP mode and is not: its privacy unit is a natural person
    (DOMAIN.md), or the operator's authorisation requires DP for its zone or for the classification
    of a resource it derives from."""
    policy = ProtectionPolicy.model_validate(version.policy)
    if policy.is_dp:
        return
    if policy.privacy_unit_kind == PrivacyUnitKind.NATURAL_PERSON:
        raise Unprocessable("dp_required", reason=Msg("a natural person"))
    grant = authorisations.covering(
        session, product.operator_org_id, product.zone, product.region, product.scenarios or ()
    )
    required = set(grant.dp_required_for or []) if grant is not None else set()
    if product.zone in required:
        raise Unprocessable("dp_required_by_authorisation", what=product.zone)
    for resource in governance_repo.lineage(session, [product.id])[product.id]:
        if str(resource.classification) in required:
            raise Unprocessable("dp_required_by_authorisation", what=str(resource.classification))


def submit(session: Session, actor: Principal, slug: str) -> Product:
    """Send the latest version to the regulator for review; a listed product stays listed meanwhile."""
    actor.require(Role.OPERATOR)
    product = _own_product(session, actor, slug)
    if product.latest_version_id is None:
        raise Unprocessable("no_version", slug=slug)
    listed = product.status == ProductStatus.LISTED
    if listed and product.latest_version_id in (product.listed_version_id, product.pending_version_id):
        raise Conflict(
            "invalid_transition",
            current=product.status,
            action="submitted",
            hint=Msg("Upload a new version first; the listed version is already reviewed."),
        )
    if not listed and product.status not in (ProductStatus.DRAFT, ProductStatus.RETURNED, ProductStatus.DELISTED):
        raise Conflict(
            "invalid_transition",
            current=product.status,
            action="submitted",
            hint=Msg("Wait for the review decision."),
        )
    _check_listable(session, product)
    version = session.get(ProductVersion, product.latest_version_id)
    assert version is not None
    audit_gate(version)
    dp_gate(session, product, version)
    product.pending_version_id = version.id
    product.review_due_at = utcnow() + REVIEW_PERIOD
    if listed:
        _record(
            session, product, actor, ProductStatus.LISTED, f"version {version.number} submitted for review", version.id
        )
    else:
        _record(session, product, actor, ProductStatus.SUBMITTED, version_id=version.id)
    return product


def audit_gate(version: ProductVersion) -> None:
    """Refuse submission while the version's irreversibility audit has open blocking findings."""
    findings = [f for f in (version.audit or {}).get("findings", []) if f.get("blocking") and not f.get("resolution")]
    if findings:
        raise Unprocessable(
            "audit_findings_open",
            count=len(findings),
            findings="; ".join(f"{f['table']}.{f['column']}: {f['kind']}" for f in findings[:5]),
            number=version.number,
        )


def review(session: Session, actor: Principal, slug: str, decision: str, comment: str) -> Product:
    """The regulator's decision on the version under review: approve (list it) or return it with comments."""
    actor.require(Role.REGULATOR)
    product = repository.by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    pending = product.pending_version_id
    if pending is None or product.status not in (ProductStatus.SUBMITTED, ProductStatus.LISTED):
        raise Conflict(
            "invalid_transition",
            current=product.status,
            action="reviewed",
            hint=Msg("Only submitted products and versions are reviewed."),
        )
    version = session.get(ProductVersion, pending)
    assert version is not None
    if decision == "approve":
        try:
            _check_listable(session, product)
        except MarketError as error:
            raise Conflict("review_outside_authorisation", detail=error.message) from error
        audit_gate(version)
        dp_gate(session, product, version)
    product.pending_version_id = None
    product.review_due_at = None
    if product.status == ProductStatus.LISTED:
        verdict = "approved" if decision == "approve" else "returned"
        if decision == "approve":
            product.listed_version_id = version.id
        reason = f"version {version.number} {verdict}" + (f": {comment}" if comment else "")
        _record(session, product, actor, ProductStatus.LISTED, reason, version.id)
    elif decision == "approve":
        product.listed_version_id = version.id
        _record(session, product, actor, ProductStatus.LISTED, comment, version.id)
    else:
        _record(session, product, actor, ProductStatus.RETURNED, comment, version.id)
    return product


def delist(session: Session, actor: Principal, slug: str, reason: str) -> Product:
    """Take a listed product off the catalogue: its operator or the regulator."""
    actor.require(Role.OPERATOR, Role.REGULATOR)
    product = repository.by_slug(session, slug)
    if product is None or (actor.role == Role.OPERATOR and product.operator_org_id != actor.org_id):
        raise NotFound("product_not_found", slug=slug)
    if product.status != ProductStatus.LISTED:
        raise Conflict(
            "invalid_transition", current=product.status, action="delisted", hint=Msg("Only listed products.")
        )
    _record(session, product, actor, ProductStatus.DELISTED, reason)
    return product


def governs(actor: Principal, product: Product) -> bool:
    """The product's own operator, or the regulator who reviews it: who may see its drafts and history."""
    return actor.role == Role.REGULATOR or (actor.role == Role.OPERATOR and product.operator_org_id == actor.org_id)


def visible_product(session: Session, actor: Principal, slug: str) -> Product:
    """A product the actor may see: listed ones, its own (operator), or any (regulator)."""
    product = repository.by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    return _visible(actor, product, slug)


def _visible(actor: Principal, product: Product, slug: str) -> Product:
    if product.status == ProductStatus.LISTED or governs(actor, product):
        return product
    raise NotFound("product_not_found", slug=slug)


def history(session: Session, actor: Principal, slug: str) -> Sequence[ProductEvent]:
    """The product's lifecycle log, with review comments and versions in review: its operator and the
    regulator only (to anyone else another operator's drafts do not exist)."""
    product = repository.by_slug(session, slug)
    if product is None or not governs(actor, product):
        raise NotFound("product_not_found", slug=slug)
    return repository.events_of(session, product.id)


def catalogue(session: Session, actor: Principal, *, mine: bool = False) -> Sequence[Product]:
    """Listed products; with `mine`, an operator's own products in every state (the regulator sees all)."""
    if mine and actor.role == Role.OPERATOR:
        return repository.of_operator(session, actor.org_id)
    if mine and actor.role == Role.REGULATOR:
        return repository.all_products(session)
    return public_catalogue(session)


def public_catalogue(session: Session) -> Sequence[Product]:
    """Listed products whose operator's authorisation is in force: what anyone, without a key, may know exists."""
    return served(session, repository.listed(session))


def public_product(session: Session, slug: str) -> Product:
    """A product of the public catalogue (listed and served), or NotFound: what a signed-out visitor may open."""
    product = repository.by_slug(session, slug)
    if product is None or product not in public_catalogue(session):
        raise NotFound("product_not_found", slug=slug)
    return product


def present(
    session: Session, products: Sequence[Product], *, detail: bool = False, viewer: Principal | None = None
) -> list[ProductOut]:
    """Products as the API shows them, with their current version's tables, policy and plans.

    The detail view adds documentation, the quality summary and whether the audit was clean. A version
    in review is the operator's draft: it is shown only when `viewer` governs the product.
    """
    from market.accounts.models import Organisation
    from products.pipeline.assess import buyer_summary

    ids = [p.id for p in products]
    plans = repository.plans_of(session, ids)
    lineage = governance_repo.lineage(session, ids)
    version_ids = [v for p in products for v in (p.listed_version_id or p.latest_version_id, p.pending_version_id) if v]
    versions = repository.versions_by_id(session, version_ids)
    out: list[ProductOut] = []
    for product in products:
        version = versions.get(product.listed_version_id or product.latest_version_id or "")
        operator = session.get(Organisation, product.operator_org_id)
        out.append(
            ProductOut(
                id=product.id,
                slug=product.slug,
                title=product.title,
                description=product.description,
                zone=product.zone,
                region=product.region,
                status=product.status,
                operator=operator.name if operator else "",
                version=version.number if version else None,
                tables=[
                    TableOut(
                        name=t["name"],
                        row_count=t["row_count"],
                        columns=[ColumnOut(name=c["name"], type=c["type"], role=c["role"]) for c in t["columns"]],
                    )
                    for t in (version.tables if version else [])
                ],
                policy=version.policy if version else None,
                plans=[PlanOut.model_validate(p) for p in plans[product.id]],
                updated_at=product.updated_at,
                scenarios=list(product.scenarios or []),
                pricing=sorted({"free" if p.kind == PlanKind.PUBLIC_INTEREST else "paid" for p in plans[product.id]}),
                resources=[
                    {"id": r.id, "registration_code": r.registration_code, "title": r.title}
                    for r in lineage[product.id]
                ],
                pending_version=pending.number
                if (pending := versions.get(product.pending_version_id or "")) and viewer and governs(viewer, product)
                else None,
                review_due_at=product.review_due_at if viewer and governs(viewer, product) else None,
                documentation=product.documentation if detail else None,
                # A DP product publishes no statistic of its data outside the budget: the summary's
                # distinct counts, ranges and null shares are exact over values k units hold, and exact
                # k-suppression is not DP (docs/privacy.md).
                quality=buyer_summary(version.quality, int(version.policy["min_group_size"]))
                if detail and version and not ProtectionPolicy.model_validate(version.policy).is_dp
                else None,
                audit_clean=(version.audit or {}).get("blocking_findings") == 0
                if detail and version and version.audit
                else None,
                fee_limits=authorisations.fee_limits_view(session, product),
            )
        )
    return out


def plan_for(session: Session, product: Product, code: str) -> PricePlan:
    plan = repository.plan_by_code(session, product.id, code)
    if plan is None or not plan.active:
        codes = ", ".join(p.code for p in repository.plans_of(session, [product.id])[product.id])
        raise NotFound("plan_not_found", plan=code, slug=product.slug, plans=codes or "none")
    return plan


def version_tables(settings: Settings, version: ProductVersion) -> dict[str, TableFile]:
    """The sandbox's view of a version: each table's Parquet file, row count and column sizes."""
    base = settings.products_dir / version.product_id / f"v{version.number}"
    return {
        t["name"]: TableFile(
            name=t["name"],
            path=base / t["file"],
            row_count=int(t["row_count"]),
            column_bytes={c["name"]: int(c["bytes"]) for c in t["columns"]},
            # A DP product publishes no quality summary to buyers: its queries read none of it either.
            statistics=_statistics(t, None if (version.policy or {}).get("mode") == "dp" else version.quality),
        )
        for t in version.tables
    }


def _statistics(table: dict[str, Any], quality: dict[str, Any] | None) -> dict[str, Any]:
    """The table's build-time statistics, with `distinct` and `range`: per dimension, the distinct count
    and the range buyers see in the quality summary (over values at least k units hold;
    products.pipeline.assess.held_by_k), which the sandbox's cost estimate reads
    (sandbox.service.strategy)."""
    statistics = dict(table.get("statistics") or {})
    assessed = ((quality or {}).get("tables") or {}).get(table["name"]) or {}
    distinct = {
        str(c["name"]): int(c["held_by_k"]["distinct"])
        for c in assessed.get("columns") or []
        if c.get("role") == "dimension" and isinstance(c.get("held_by_k"), dict)
    }
    if distinct:
        statistics["distinct"] = distinct
        statistics["range"] = {
            str(c["name"]): [c["held_by_k"]["min"], c["held_by_k"]["max"]]
            for c in assessed.get("columns") or []
            if str(c["name"]) in distinct and c["held_by_k"].get("min") is not None
        }
    return statistics

"""Access requests and agreements, and the metered query: the one path every buyer query takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from billing import revenue as billing_revenue
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, Forbidden, MarketError, NotFound, TooManyRequests, Unprocessable
from market.settings import Settings
from metering import repository
from metering.models import (
    AccessRequest,
    Agreement,
    ChargeType,
    Purpose,
    RequestStatus,
    UsageRecord,
)
from metering.pricing import PlanTerms, rate_query
from products import service as products
from products.models import PlanKind, PricePlan, Product, ProductStatus, ProductVersion
from products.schemas import PlanOut
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import Measurements, QueryResult
from sandbox.service import run_query as sandbox_run

DEFAULT_VALIDITY = timedelta(days=365)


# -- access requests and agreements ---------------------------------------------------------------


def request_access(
    session: Session,
    actor: Principal,
    *,
    product_slug: str,
    plan_code: str,
    purpose: Purpose,
    scenario: str,
    justification: str,
) -> AccessRequest:
    """A buyer asks for access to a listed product under a plan that fits its purpose."""
    actor.require(Role.BUYER)
    product = products.visible_product(session, actor, product_slug)
    if product.status != ProductStatus.LISTED:
        raise NotFound("product_not_found", slug=product_slug)
    plan = products.plan_for(session, product, plan_code)
    needed = PlanKind.PUBLIC_INTEREST if purpose.is_public_interest else PlanKind.COMMERCIAL
    if plan.kind != needed:
        raise Unprocessable(
            "plan_purpose_mismatch",
            plan=plan.code,
            plan_purpose=plan.kind,
            purpose=purpose.value,
            needed=needed.value,
        )
    request = AccessRequest(
        buyer_org_id=actor.org_id,
        requested_by=actor.user_id,
        product_id=product.id,
        plan_id=plan.id,
        purpose=purpose.value,
        scenario=scenario,
        justification=justification,
        reviewer_role=(Role.REGULATOR if purpose.is_public_interest else Role.OPERATOR).value,
    )
    session.add(request)
    session.flush()
    return request


def _reviewable(session: Session, actor: Principal, request: AccessRequest) -> Product:
    product = session.get(Product, request.product_id)
    if product is None:
        raise NotFound("access_request_not_found", request=request.id)
    if request.reviewer_role == Role.REGULATOR:
        actor.require(Role.REGULATOR)
    else:
        actor.require(Role.OPERATOR)
        if product.operator_org_id != actor.org_id:
            raise NotFound("access_request_not_found", request=request.id)
    return product


def decide_request(
    session: Session,
    actor: Principal,
    request_id: str,
    *,
    approve: bool,
    reason: str,
    monthly_query_quota: int | None = None,
    valid_days: int | None = None,
) -> AccessRequest:
    """The reviewer approves (creating a frozen agreement) or rejects a pending request."""
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound("access_request_not_found", request=request_id)
    product = _reviewable(session, actor, request)
    if request.status != RequestStatus.PENDING:
        raise Conflict("request_not_pending", status=request.status)
    request.status = (RequestStatus.APPROVED if approve else RequestStatus.REJECTED).value
    request.decided_by = actor.user_id
    request.decision_reason = reason
    request.decided_at = utcnow()
    if approve:
        _freeze_agreement(session, request, product, monthly_query_quota, valid_days)
    return request


def _freeze_agreement(
    session: Session, request: AccessRequest, product: Product, quota: int | None, valid_days: int | None
) -> Agreement:
    version_id = product.listed_version_id
    version = session.get(ProductVersion, version_id) if version_id else None
    if version is None:
        raise NotFound("product_not_found", slug=product.slug)
    plan = session.get(PricePlan, request.plan_id)
    if plan is None:
        raise NotFound("plan_not_found", plan=request.plan_id, slug=product.slug, plans="")
    now = utcnow()
    agreement = Agreement(
        request_id=request.id,
        buyer_org_id=request.buyer_org_id,
        product_id=product.id,
        product_version_id=version.id,
        purpose=request.purpose,
        scenario=request.scenario,
        plan=PlanOut.model_validate(plan).model_dump(mode="json"),
        policy=dict(version.policy),
        monthly_query_quota=quota if quota is not None else plan.monthly_query_quota,
        currency=plan.currency,
        valid_from=now,
        valid_until=now + (timedelta(days=valid_days) if valid_days else DEFAULT_VALIDITY),
    )
    session.add(agreement)
    session.flush()
    billing_revenue.snapshot_shares(session, agreement)
    return agreement


def visible_requests(session: Session, actor: Principal) -> Sequence[AccessRequest]:
    """Buyers see their own requests, operators those they review, the regulator public-interest ones."""
    if actor.role == Role.BUYER:
        return repository.requests_where(session, AccessRequest.buyer_org_id == actor.org_id)
    if actor.role == Role.REGULATOR:
        return repository.requests_where(session, AccessRequest.reviewer_role == Role.REGULATOR.value)
    if actor.role == Role.OPERATOR:
        own = [p.id for p in products.catalogue(session, actor, mine=True)]
        return repository.requests_where(
            session, AccessRequest.product_id.in_(own), AccessRequest.reviewer_role == Role.OPERATOR.value
        )
    raise Forbidden("forbidden_role", needed="buyer, operator or regulator", role=actor.role.value)


def visible_agreements(session: Session, actor: Principal) -> Sequence[Agreement]:
    """Buyers see their own agreements, operators those on their products, the regulator all."""
    if actor.role == Role.BUYER:
        return repository.agreements_of_buyer(session, actor.org_id)
    if actor.role in (Role.REGULATOR, Role.ADMIN, Role.FINANCE):
        return repository.all_agreements(session)
    if actor.role == Role.OPERATOR:
        return repository.agreements_for_products(
            session, [p.id for p in products.catalogue(session, actor, mine=True)]
        )
    raise Forbidden("forbidden_role", needed="buyer, operator or regulator", role=actor.role.value)


# -- the metered query ----------------------------------------------------------------------------


@dataclass
class QueryOutcome:
    """What a query attempt produced: an HTTP status and body, already recorded as usage."""

    status_code: int
    body: dict[str, Any]


def _month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _record(
    session: Session,
    actor: Principal,
    agreement: Agreement,
    *,
    sql: str,
    key: str | None,
    now: datetime,
    charge_type: ChargeType,
    amount_minor: int = 0,
    result: QueryResult | None = None,
    error: MarketError | None = None,
) -> UsageRecord:
    measured = result.measurements if result else Measurements(0, 0, 0, 0, 0)
    record = UsageRecord(
        agreement_id=agreement.id,
        buyer_org_id=actor.org_id,
        user_id=actor.user_id,
        product_id=agreement.product_id,
        product_version_id=agreement.product_version_id,
        purpose=agreement.purpose,
        idempotency_key=key,
        sql=sql,
        sql_run=result.sql_run if result else "",
        error_code=error.code if error else None,
        rows_scanned=measured.rows_scanned,
        bytes_scanned=measured.bytes_scanned,
        cpu_ms=measured.cpu_ms,
        result_rows=measured.result_rows,
        result_columns=list(result.columns) if result else [],
        suppressed_groups=measured.suppressed_groups,
        charge_type=charge_type.value,
        amount_minor=amount_minor,
        currency=agreement.currency,
        month=_month_of(now),
        created_at=now,
    )
    session.add(record)
    session.flush()
    return record


def _refuse(
    session: Session,
    actor: Principal,
    agreement: Agreement,
    error: MarketError,
    *,
    sql: str,
    key: str | None,
    now: datetime,
    result: QueryResult | None = None,
) -> QueryOutcome:
    record = _record(
        session,
        actor,
        agreement,
        sql=sql,
        key=key,
        now=now,
        charge_type=ChargeType.REJECTED,
        error=error,
        result=result,
    )
    body = error.to_body()
    body["error"]["query_id"] = record.id
    outcome = QueryOutcome(status_code=error.status_code, body=body)
    record.response = {"status_code": outcome.status_code, "body": body}
    return outcome


def run_metered_query(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    product_slug: str,
    sql: str,
    idempotency_key: str | None,
) -> QueryOutcome:
    """Run a buyer's query under its agreement and record exactly one usage record for the attempt.

    Refused and failed queries are recorded as `rejected`, never charged, and returned as a 4xx
    outcome rather than raised, so the record commits with the request. A retry with the same
    Idempotency-Key gets the stored outcome back and records nothing new.
    """
    actor.require(Role.BUYER)
    if idempotency_key:
        previous = repository.by_idempotency_key(session, actor.org_id, idempotency_key)
        if previous is not None:
            product = session.get(Product, previous.product_id)
            if previous.sql != sql or product is None or product.slug != product_slug or previous.response is None:
                raise Conflict("idempotency_conflict", key=idempotency_key)
            return QueryOutcome(int(previous.response["status_code"]), dict(previous.response["body"]))

    product = products.visible_product(session, actor, product_slug)
    now = utcnow()
    agreement = repository.active_agreement(session, actor.org_id, product.id, now)
    if agreement is None:
        raise Forbidden("no_agreement", slug=product_slug)
    month = _month_of(now)
    quota = agreement.monthly_query_quota

    counter = repository.month_counter(session, agreement.id, month)
    if quota is not None and counter is not None and counter.accepted_queries >= quota:
        return _refuse(
            session,
            actor,
            agreement,
            TooManyRequests("quota_exhausted", quota=quota),
            sql=sql,
            key=idempotency_key,
            now=now,
        )

    version = session.get(ProductVersion, agreement.product_version_id)
    if version is None:  # pragma: no cover - agreements reference versions by foreign key
        raise NotFound("product_not_found", slug=product_slug)
    try:
        result = sandbox_run(
            sql,
            ProtectionPolicy.model_validate(agreement.policy),
            products.version_tables(settings, version),
            EngineLimits(
                memory_limit=settings.sandbox_memory_limit,
                threads=settings.sandbox_threads,
                timeout_seconds=settings.sandbox_timeout_seconds,
            ),
            settings.sandbox_max_result_rows,
        )
    except (QueryRefused, QueryFailed) as error:
        return _refuse(session, actor, agreement, error, sql=sql, key=idempotency_key, now=now)

    # The quota and cap are decided under the counter's lock, in the transaction that writes the record.
    counter = repository.lock_month(session, agreement.id, month)
    if quota is not None and counter.accepted_queries >= quota:
        return _refuse(
            session,
            actor,
            agreement,
            TooManyRequests("quota_exhausted", quota=quota),
            sql=sql,
            key=idempotency_key,
            now=now,
            result=result,
        )
    charge = rate_query(
        PlanTerms.from_snapshot(agreement.plan),
        public_interest=Purpose(agreement.purpose).is_public_interest,
        accepted_before=counter.accepted_queries,
        charged_before=counter.charged_minor,
        bytes_scanned=result.measurements.bytes_scanned,
    )
    counter.accepted_queries += 1
    counter.charged_minor += charge.amount_minor
    record = _record(
        session,
        actor,
        agreement,
        sql=sql,
        key=idempotency_key,
        now=now,
        charge_type=charge.charge_type,
        amount_minor=charge.amount_minor,
        result=result,
    )
    body = {
        "query_id": record.id,
        "columns": result.columns,
        "rows": result.rows,
        "suppressed_groups": result.measurements.suppressed_groups,
        "usage": result.measurements.as_dict(),
        "charge": {
            "amount_minor": charge.amount_minor,
            "currency": charge.currency,
            "charge_type": charge.charge_type.value,
        },
        "agreement_id": agreement.id,
    }
    if idempotency_key:
        record.response = {"status_code": 200, "body": body}
    return QueryOutcome(200, body)


def usage_page(
    session: Session, actor: Principal, *, limit: int, before: tuple[datetime, str] | None
) -> Sequence[UsageRecord]:
    """The caller organisation's own usage records, newest first."""
    actor.require(Role.BUYER)
    return repository.usage_page(session, actor.org_id, limit=limit, before=before)

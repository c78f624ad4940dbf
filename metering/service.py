"""Access requests and agreements, and the metered query: the one path every buyer query takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import new_id, utcnow
from market.errors import Conflict, Forbidden, MarketError, NotFound, TooManyRequests, Unprocessable
from market.settings import Settings
from metering import access, chain, repository
from metering.models import (
    AccessRequest,
    Agreement,
    AgreementMonth,
    AgreementStatus,
    ChargeType,
    Purpose,
    RequestStatus,
    UsageChainHead,
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
AUTO_APPROVAL_REASON = "Auto-approved: the operator approves commercial requests for this product automatically."


@dataclass(frozen=True)
class Quotas:
    """Monthly quotas of an agreement; None means unlimited."""

    queries: int | None = None
    rows: int | None = None
    bytes: int | None = None

    @property
    def any(self) -> bool:
        return any(q is not None for q in (self.queries, self.rows, self.bytes))


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
    """A buyer asks for access to a listed product under a plan that fits its purpose.

    Public-interest requests wait for the regulator, commercial ones for the operator, unless the
    operator auto-approves commercial requests, in which case the agreement is made at once.
    """
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
    scenario = scenario.strip()
    if not scenario:
        raise Unprocessable("scenario_required")
    allowed = access.allowed_scenarios(session, product)
    if allowed is not None and scenario not in allowed:
        raise Unprocessable("scenario_not_allowed", scenario=scenario, allowed=", ".join(sorted(allowed)) or "none")
    if repository.pending_request(session, actor.org_id, product.id, purpose.value) is not None:
        raise Conflict("duplicate_request", slug=product.slug)
    reviewer = Role.REGULATOR if purpose.is_public_interest else Role.OPERATOR
    now = utcnow()
    request = AccessRequest(
        buyer_org_id=actor.org_id,
        requested_by=actor.user_id,
        product_id=product.id,
        plan_id=plan.id,
        purpose=purpose.value,
        scenario=scenario,
        justification=justification,
        reviewer_role=reviewer.value,
        created_at=now,
        review_due_at=now + access.review_sla(reviewer),
    )
    session.add(request)
    session.flush()
    if reviewer == Role.OPERATOR and access.auto_approves_commercial(session, product.id):
        request.status = RequestStatus.APPROVED.value
        request.decision_reason = AUTO_APPROVAL_REASON
        request.decided_at = now
        _freeze_agreement(session, request, product, Quotas(), None)
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
    monthly_row_quota: int | None = None,
    monthly_byte_quota: int | None = None,
    valid_days: int | None = None,
) -> AccessRequest:
    """The reviewer approves (creating a frozen agreement) or rejects a pending request.

    A rejection needs a reason. A public-interest approval needs a quota: the reviewer's, or the
    plan's when the reviewer gives none. The period is `valid_days` (default a year).
    """
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound("access_request_not_found", request=request_id)
    product = _reviewable(session, actor, request)
    if request.status != RequestStatus.PENDING:
        raise Conflict("request_not_pending", status=request.status)
    if not approve and not reason.strip():
        raise Unprocessable("reason_required")
    quotas = Quotas(monthly_query_quota, monthly_row_quota, monthly_byte_quota)
    if approve and Purpose(request.purpose).is_public_interest and not quotas.any:
        plan = session.get(PricePlan, request.plan_id)
        if plan is None or not _plan_quotas(plan).any:
            raise Unprocessable("quota_required")
    request.status = (RequestStatus.APPROVED if approve else RequestStatus.REJECTED).value
    request.decided_by = actor.user_id
    request.decision_reason = reason
    request.decided_at = utcnow()
    if approve:
        _freeze_agreement(session, request, product, quotas, valid_days)
    return request


def _plan_quotas(plan: PricePlan) -> Quotas:
    return Quotas(plan.monthly_query_quota, plan.monthly_row_quota, plan.monthly_byte_quota)


def _freeze_agreement(
    session: Session, request: AccessRequest, product: Product, quotas: Quotas, valid_days: int | None
) -> Agreement:
    """Snapshot the listed version, its policy, the plan and the quotas into an agreement."""
    version_id = product.listed_version_id
    version = session.get(ProductVersion, version_id) if version_id else None
    if version is None:
        raise NotFound("product_not_found", slug=product.slug)
    plan = session.get(PricePlan, request.plan_id)
    if plan is None:
        raise NotFound("plan_not_found", plan=request.plan_id, slug=product.slug, plans="")
    defaults = _plan_quotas(plan)
    now = utcnow()
    agreement = Agreement(
        request_id=request.id,
        buyer_org_id=request.buyer_org_id,
        product_id=product.id,
        product_version_id=version.id,
        product_version_number=version.number,
        zone=product.zone,
        region=product.region,
        purpose=request.purpose,
        scenario=request.scenario,
        plan=PlanOut.model_validate(plan).model_dump(mode="json"),
        policy=dict(version.policy),
        monthly_query_quota=quotas.queries if quotas.queries is not None else defaults.queries,
        monthly_row_quota=quotas.rows if quotas.rows is not None else defaults.rows,
        monthly_byte_quota=quotas.bytes if quotas.bytes is not None else defaults.bytes,
        currency=plan.currency,
        valid_from=now,
        valid_until=now + (timedelta(days=valid_days) if valid_days else DEFAULT_VALIDITY),
        created_at=now,
    )
    session.add(agreement)
    session.flush()
    return agreement


# -- the metered query ----------------------------------------------------------------------------


@dataclass
class QueryOutcome:
    """What a query attempt produced: an HTTP status and body, already recorded as usage."""

    status_code: int
    body: dict[str, Any]


def _month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _replay(session: Session, actor: Principal, key: str | None, product_slug: str, sql: str) -> QueryOutcome | None:
    """The stored outcome of an earlier attempt with this Idempotency-Key, if there was one."""
    if not key:
        return None
    previous = repository.by_idempotency_key(session, actor.org_id, key)
    if previous is None:
        return None
    product = session.get(Product, previous.product_id)
    if previous.sql != sql or product is None or product.slug != product_slug or previous.response is None:
        raise Conflict("idempotency_conflict", key=key)
    return QueryOutcome(int(previous.response["status_code"]), dict(previous.response["body"]))


@dataclass
class _Attempt:
    """One query attempt in progress: who, under which agreement, what SQL, when."""

    actor: Principal
    agreement: Agreement
    product_slug: str
    sql: str
    key: str | None
    now: datetime


def _append(
    session: Session,
    attempt: _Attempt,
    head: UsageChainHead,
    *,
    status_code: int,
    body: dict[str, Any],
    record_id: str,
    charge_type: ChargeType,
    amount_minor: int = 0,
    result: QueryResult | None = None,
    error: MarketError | None = None,
) -> QueryOutcome:
    """Write the attempt's one usage record, linked into the buyer's hash chain (whose head is locked)."""
    measured = result.measurements if result else Measurements(0, 0, 0, 0, 0)
    agreement = attempt.agreement
    record = UsageRecord(
        id=record_id,
        agreement_id=agreement.id,
        buyer_org_id=attempt.actor.org_id,
        user_id=attempt.actor.user_id,
        product_id=agreement.product_id,
        product_version_id=agreement.product_version_id,
        purpose=agreement.purpose,
        idempotency_key=attempt.key,
        sql=attempt.sql,
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
        month=_month_of(attempt.now),
        response={"status_code": status_code, "body": body} if attempt.key else None,
        created_at=attempt.now,
        finished_at=utcnow(),
    )
    chain.link(head, record)
    session.add(record)
    session.flush()
    return QueryOutcome(status_code, body)


def _lock_chain(session: Session, attempt: _Attempt) -> UsageChainHead | QueryOutcome:
    """Lock the buyer's chain head; a concurrent duplicate of this Idempotency-Key is visible from here on."""
    head = chain.lock_head(session, attempt.actor.org_id)
    replay = _replay(session, attempt.actor, attempt.key, attempt.product_slug, attempt.sql)
    return replay if replay is not None else head


def _refuse(
    session: Session,
    attempt: _Attempt,
    error: MarketError,
    *,
    result: QueryResult | None = None,
    head: UsageChainHead | None = None,
) -> QueryOutcome:
    """Record a refused attempt as `rejected`, for 0, and return its 4xx outcome."""
    if head is None:
        locked = _lock_chain(session, attempt)
        if isinstance(locked, QueryOutcome):
            return locked
        head = locked
    record_id = new_id("qry")
    body = error.to_body()
    body["error"]["query_id"] = record_id
    return _append(
        session,
        attempt,
        head,
        status_code=error.status_code,
        body=body,
        record_id=record_id,
        charge_type=ChargeType.REJECTED,
        result=result,
        error=error,
    )


def _agreement_for_query(
    session: Session, actor: Principal, product: Product, now: datetime, agreement_id: str | None
) -> Agreement:
    """The agreement a query runs under, or 403.

    With `agreement_id`, that agreement of the caller on this product (a buyer holding, say, a
    public-interest and a commercial agreement chooses). Otherwise the newest active one, or the
    newest of any state, so that a revoked or expired agreement is refused with its own code.
    """
    if agreement_id is not None:
        chosen = session.get(Agreement, agreement_id)
        if chosen is None or chosen.buyer_org_id != actor.org_id or chosen.product_id != product.id:
            raise Forbidden("agreement_not_yours", agreement=agreement_id, slug=product.slug)
        return chosen
    agreement = repository.active_agreement(session, actor.org_id, product.id, now)
    if agreement is not None:
        return agreement
    latest = repository.latest_agreement(session, actor.org_id, product.id)
    if latest is None:
        raise Forbidden("no_agreement", slug=product.slug)
    return latest


def _agreement_refusal(agreement: Agreement, now: datetime) -> MarketError | None:
    status = agreement.effective_status(now)
    if status == AgreementStatus.REVOKED:
        return Forbidden("agreement_revoked", agreement=agreement.id, reason=agreement.revoked_reason or "-")
    if status == AgreementStatus.EXPIRED:
        return Forbidden("agreement_expired", agreement=agreement.id, until=agreement.valid_until.date().isoformat())
    if now < agreement.valid_from:
        return Forbidden("agreement_not_started", agreement=agreement.id, since=agreement.valid_from.isoformat())
    return None


def _quota_refusal(agreement: Agreement, counter: AgreementMonth | None, measured: Measurements) -> MarketError | None:
    """The quota this query would break, if any, given this month's totals so far."""
    if counter is None:
        return None
    if agreement.monthly_query_quota is not None and counter.accepted_queries >= agreement.monthly_query_quota:
        return TooManyRequests("quota_exhausted", quota=agreement.monthly_query_quota)
    if agreement.monthly_row_quota is not None and (
        counter.rows_scanned + measured.rows_scanned > agreement.monthly_row_quota
        or counter.rows_scanned >= agreement.monthly_row_quota
    ):
        return TooManyRequests(
            "row_quota_exhausted",
            quota=agreement.monthly_row_quota,
            used=counter.rows_scanned,
            needed=measured.rows_scanned,
        )
    if agreement.monthly_byte_quota is not None and (
        counter.bytes_scanned + measured.bytes_scanned > agreement.monthly_byte_quota
        or counter.bytes_scanned >= agreement.monthly_byte_quota
    ):
        return TooManyRequests(
            "byte_quota_exhausted",
            quota=agreement.monthly_byte_quota,
            used=counter.bytes_scanned,
            needed=measured.bytes_scanned,
        )
    return None


def run_metered_query(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    product_slug: str,
    sql: str,
    idempotency_key: str | None,
    agreement_id: str | None = None,
) -> QueryOutcome:
    """Run a buyer's query under its agreement and record exactly one usage record for the attempt.

    Refused and failed queries are recorded as `rejected`, never charged, and returned as a 4xx
    outcome rather than raised, so the record commits with the request. A retry with the same
    Idempotency-Key gets the stored outcome back and records nothing new, also when the retry
    races the original: the key is checked again under the buyer's chain lock.

    Locks, always in this order: the agreement's month counter, then the buyer's chain head.
    """
    actor.require(Role.BUYER)
    replay = _replay(session, actor, idempotency_key, product_slug, sql)
    if replay is not None:
        return replay

    product = products.visible_product(session, actor, product_slug)
    now = utcnow()
    agreement = _agreement_for_query(session, actor, product, now, agreement_id)
    attempt = _Attempt(actor, agreement, product_slug, sql, idempotency_key, now)
    refusal = _agreement_refusal(agreement, now)
    if refusal is not None:
        return _refuse(session, attempt, refusal)
    month = _month_of(now)

    # A cheap early refusal when the quota is already used up; the binding decision is below, locked.
    early = _quota_refusal(
        agreement, repository.month_counter(session, agreement.id, month), Measurements(0, 0, 0, 0, 0)
    )
    if early is not None:
        return _refuse(session, attempt, early)

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
        return _refuse(session, attempt, error)

    # The quota and cap are decided under the counter's lock, in the transaction that writes the record.
    counter = repository.lock_month(session, agreement.id, month)
    locked = _lock_chain(session, attempt)
    if isinstance(locked, QueryOutcome):
        return locked
    over = _quota_refusal(agreement, counter, result.measurements)
    if over is not None:
        return _refuse(session, attempt, over, result=result, head=locked)
    charge = rate_query(
        PlanTerms.from_snapshot(agreement.plan),
        public_interest=Purpose(agreement.purpose).is_public_interest,
        accepted_before=counter.accepted_queries,
        charged_before=counter.charged_minor,
        bytes_scanned=result.measurements.bytes_scanned,
    )
    counter.accepted_queries += 1
    counter.charged_minor += charge.amount_minor
    counter.rows_scanned += result.measurements.rows_scanned
    counter.bytes_scanned += result.measurements.bytes_scanned
    record_id = new_id("qry")
    body = {
        "query_id": record_id,
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
    return _append(
        session,
        attempt,
        locked,
        status_code=200,
        body=body,
        record_id=record_id,
        charge_type=charge.charge_type,
        amount_minor=charge.amount_minor,
        result=result,
    )

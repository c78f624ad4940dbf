"""Access requests and agreements, and the metered query: the one path every buyer query takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

from billing import revenue as billing_revenue
from market import access_cache, messages, phases
from market.accounts.models import Role
from market.accounts.service import Principal, key_refusal
from market.clock import new_id, utcnow
from market.db import Database
from market.errors import (
    Conflict,
    Forbidden,
    MarketError,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unprocessable,
)
from market.settings import Settings
from metering import access, attempts, group_commit, privacy, repository
from metering.attempts import QueryOutcome
from metering.models import (
    AccessRequest,
    Agreement,
    Purpose,
    RequestStatus,
    UsageRecord,
)
from products import service as products
from products.governance import authorisations
from products.models import PlanKind, PricePlan, Product, ProductStatus, ProductVersion
from products.schemas import PlanOut
from sandbox import cache
from sandbox.admission import Admission
from sandbox.cancellation import Cancellations
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import shared_pool
from sandbox.service import (
    Measurements,
    QueryResult,
    TableFile,
    cached_result,
    plan_query,
    result_key,
    row_counts,
)
from sandbox.service import execute as sandbox_execute

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
    # Another tenant's request is 404, as if it did not exist: another operator's product, another
    # buyer's request. Only then does the role decide (403): the product's operator on a
    # public-interest request, a buyer on its own.
    if (
        product is None
        or (actor.role == Role.OPERATOR and product.operator_org_id != actor.org_id)
        or (actor.role == Role.BUYER and request.buyer_org_id != actor.org_id)
    ):
        raise NotFound("access_request_not_found", request=request.id)
    if request.reviewer_role == Role.REGULATOR:
        actor.require(Role.REGULATOR)
    else:
        actor.require(Role.OPERATOR)
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
    billing_revenue.snapshot_shares(session, agreement)
    return agreement


# -- the metered query ----------------------------------------------------------------------------


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


def sandbox_limits(settings: Settings) -> EngineLimits:
    """The per-query limits and the (machine-wide) number of sandbox workers the settings ask for."""
    return EngineLimits(
        memory_limit=settings.sandbox_memory_limit,
        threads=settings.sandbox_threads,
        timeout_seconds=settings.sandbox_timeout_seconds,
        workers=settings.workers,
        fixed_timing=settings.sandbox_fixed_timing,
        max_join_fanout=settings.sandbox_max_join_fanout,
    )


def sandbox_admission(settings: Settings) -> Admission:
    """The admission rules (per-organisation limit, workers, queue) shared by every API process.

    Kept per set of values (`_ADMISSIONS`): building one creates its directory, two system calls that each
    let the GIL go, on every query (branch dash-p99)."""
    key = (
        settings.run_dir,
        settings.workers,
        settings.org_concurrency,
        settings.queue_size,
        settings.sandbox_queue_timeout_seconds,
        settings.sandbox_fair_queue,
    )
    found = _ADMISSIONS.get(key)
    if found is None:
        found = _ADMISSIONS[key] = Admission(
            settings.run_dir / "sandbox",
            workers=settings.workers,
            per_org=settings.org_concurrency,
            queue_size=settings.queue_size,
            queue_timeout=settings.sandbox_queue_timeout_seconds,
            fair=settings.sandbox_fair_queue,
        )
    return found


def query_cancellations(settings: Settings) -> Cancellations:
    """Where cancel requests and running queries meet, shared by every API process (sandbox.cancellation)."""
    found = _CANCELLATIONS.get(settings.run_dir)
    if found is None:
        found = _CANCELLATIONS[settings.run_dir] = Cancellations(settings.run_dir / "sandbox" / "cancel")
    return found


_ADMISSIONS: dict[tuple[object, ...], Admission] = {}
_CANCELLATIONS: dict[Path, Cancellations] = {}


def prestart_sandbox(settings: Settings) -> None:
    """Start this process's sandbox workers now rather than at the first queries."""
    shared_pool(sandbox_limits(settings)).prestart()


@dataclass(frozen=True)
class _Prepared:
    """What the first transaction decided: the attempt, and what the sandbox needs to run it."""

    attempt: attempts.Attempt
    policy: ProtectionPolicy
    tables: dict[str, TableFile]
    quota_deferred: bool = False
    """The early quota check was left to transaction 3 (`_record`), because the answer is in the result
    cache: no sandbox run to spare, so the counter is read once, under its lock, instead of twice."""


@dataclass(frozen=True)
class _Refused:
    """A refusal transaction 1 decided; recorded after it, in a write transaction (group_commit.write).

    Transaction 1 only reads: on SQLite a refusal written there (a deferred transaction) waited for the
    write lock in SQLite's busy handler, which sleeps and retries, instead of queueing for it in the
    kernel as every other write of the query path does (market.db.begin_write; branch audit9)."""

    attempt: attempts.Attempt
    error: MarketError


class _OnDemand:
    """Transaction 1's session, begun at its first use, inside `stack` (committed or rolled back with it).

    A buyer whose key and agreement are cached (market.access_cache), sending a query whose answer is cached,
    reads nothing in transaction 1: an unused session still cost 0.1-0.3 ms of CPU per request to make, begin,
    commit and close (branch pg-dash, docs/benchmarks.md)."""

    def __init__(self, database: Database, stack: ExitStack) -> None:
        self._database = database
        self._stack = stack
        self._session: Session | None = None

    def __call__(self) -> Session:
        if self._session is None:
            self._session = self._stack.enter_context(self._database.transaction())
        return self._session


def _prepare(
    reads: Callable[[], Session],
    settings: Settings,
    actor: Principal,
    *,
    database: Database | None = None,
    product_slug: str,
    sql: str,
    idempotency_key: str | None,
    agreement_id: str | None,
    over_limit: TooManyRequests | None,
    max_rows: int = 0,
    plain: bool = False,
) -> _Prepared | _Refused | QueryOutcome:
    """Transaction 1: replay, product, agreement, the early quota check and the organisation's limit;
    a refusal is decided here and recorded after it (one over the limit not under its Idempotency-Key:
    it is transient). `reads()`: the transaction's session, begun when first asked for (`_OnDemand`)."""
    replay = attempts.replay(reads(), actor, idempotency_key, product_slug, sql) if idempotency_key else None
    if replay is not None:
        return replay
    now = utcnow()
    key = (actor.org_id, product_slug, agreement_id)
    refresh = (lambda: _refresh_runs(database, settings, actor, key)) if database is not None else None
    cached = access_cache.prepared(settings.run_dir, key, now, refresh)
    if isinstance(cached, _Runs):
        runs = cached
    else:
        generation = access_cache.generation(settings.run_dir)
        product = products.servable_product(reads(), actor, product_slug)
        agreement = _agreement_for_query(reads(), actor, product, now, agreement_id)
        runs = _Runs(agreement, None, {})
    agreement = runs.agreement
    attempt = attempts.Attempt(actor, agreement, product_slug, sql, idempotency_key, now)
    refusal = attempts.agreement_refusal(agreement, now)
    if refusal is not None:
        return _Refused(attempt, refusal)
    # A cheap early refusal when the quota is already used up; the binding decision is in transaction 3.
    # Without any quota there is nothing to refuse early: the counter is not even read.
    quotas = (agreement.monthly_query_quota, agreement.monthly_row_quota, agreement.monthly_byte_quota)
    deferred = (
        any(quota is not None for quota in quotas)
        and over_limit is None  # its refusal comes after the quota's: keep that order
        and plain
        and _cached_answer(sql, runs, max_rows)
    )
    if any(quota is not None for quota in quotas) and not deferred:
        counter = repository.month_counter(reads(), agreement.id, attempts.month_of(now))
        early = attempts.quota_refusal(agreement, counter, Measurements(0, 0, 0, 0, 0))
        if early is not None:
            return _Refused(attempt, early)
    if over_limit is not None:
        return _Refused(replace(attempt, key=None), over_limit)
    if runs.policy is None:
        runs, valid = _runs_of(reads(), settings, product, agreement)
        access_cache.remember_prepared(settings.run_dir, key, runs, generation, valid)
    assert runs.policy is not None
    return _Prepared(attempt, runs.policy, runs.tables, quota_deferred=bool(deferred))


def _runs_of(
    session: Session, settings: Settings, product: Product, agreement: Agreement
) -> tuple[_Runs, tuple[datetime, datetime]]:
    """What a query under `agreement` runs under, and while it holds (`_validity`)."""
    version = session.get(ProductVersion, agreement.product_version_id)
    if version is None:  # pragma: no cover - agreements reference versions by foreign key
        raise NotFound("product_not_found", slug=product.slug)
    policy = ProtectionPolicy.model_validate(agreement.policy)
    runs = _Runs(agreement, policy, products.version_tables(settings, version))
    return runs, _validity(session, product, agreement)


def _refresh_runs(database: Database, settings: Settings, actor: Principal, key: tuple[str, str, str | None]) -> None:
    """Read a cached `_Runs` again and keep it (market.access_cache's refresh ahead, in a background thread):
    the same reads as `_prepare`'s miss; raises, and so drops the entry, when its query would be refused."""
    _, product_slug, agreement_id = key
    generation = access_cache.generation(settings.run_dir)
    now = utcnow()
    with database.transaction() as session:
        product = products.servable_product(session, actor, product_slug)
        agreement = _agreement_for_query(session, actor, product, now, agreement_id)
        refusal = attempts.agreement_refusal(agreement, now)
        if refusal is not None:
            raise refusal
        runs, valid = _runs_of(session, settings, product, agreement)
    access_cache.remember_prepared(settings.run_dir, key, runs, generation, valid)


def _cached_answer(sql: str, runs: _Runs, max_rows: int) -> bool:
    """Whether the sandbox's result cache holds this query's answer already (threshold mode)."""
    if runs.policy is None or runs.policy.is_dp:
        return False
    try:
        plan = plan_query(sql, runs.policy, row_counts(runs.tables))
        return cached_result(plan, runs.tables, max_rows) is not None
    except (QueryRefused, QueryFailed):
        return False


@dataclass(frozen=True)
class _Runs:
    """What a buyer's query on a product runs under, kept in market.access_cache between queries."""

    agreement: Agreement
    policy: ProtectionPolicy | None
    tables: dict[str, TableFile]


def _validity(session: Session, product: Product, agreement: Agreement) -> tuple[datetime, datetime]:
    """When the product and agreement checks above keep their outcome: inside the agreement's period
    and, for a listed product, its operator's covering authorisation's."""
    start, end = agreement.valid_from, agreement.valid_until
    if product.listed_version_id is not None:
        scenarios = product.scenarios or ()
        covering = authorisations.covering(session, product.operator_org_id, product.zone, product.region, scenarios)
        if covering is None:  # pragma: no cover - servable_product refused already
            return start, start
        start, end = max(start, covering.valid_from), min(end, covering.valid_until)
    return start, end


def run_metered_query(
    database: Database,
    settings: Settings,
    actor: Principal,
    *,
    product_slug: str,
    sql: str,
    idempotency_key: str | None,
    agreement_id: str | None = None,
    epsilon: Decimal | float | None = None,
    dry_run: bool = False,
) -> QueryOutcome:
    """Run a buyer's query under its agreement and record exactly one usage record for the attempt.

    On a DP product (or with `epsilon` or `dry_run`) the query takes metering.privacy's path instead:
    noisy answers, privacy budget, stored repeats.

    Three short transactions, and none is open (no session, no pooled connection) while the query
    waits for a sandbox worker or runs in one: (1) replay, agreement and early refusals; then
    validation, admission (per-organisation limit, queue) and the run, outside any transaction;
    (3) the binding quota and cap decision, rating and the usage record, committed before the
    answer is returned.

    Refused and failed queries are recorded as `rejected`, never charged, and returned as a 4xx
    outcome rather than raised. Overload refusals (429 `too_many_queries`, 503 `sandbox_busy`) are
    recorded the same way but not under the Idempotency-Key: they are transient, so a retry with
    the key runs the query. A retry with the same Idempotency-Key gets the stored outcome back and
    records nothing new, also when the retry races the original: the key is checked again under the
    buyer's chain lock.

    A query sent with an Idempotency-Key can be cancelled by it (`cancel_query`) while it waits for a
    worker or runs: it is recorded as `rejected` (`query_cancelled`), never charged, under its key.

    Locks, always in this order: the agreement's month counter, then the buyer's chain head.
    """
    actor.require(Role.BUYER)
    admission = sandbox_admission(settings)
    cancellations = query_cancellations(settings)
    token = Cancellations.token(actor.org_id, idempotency_key) if idempotency_key else None
    cancelled = cancellations.checker(token)
    # Read before transaction 1 reads the agreement: a revocation committed on this machine after that
    # read moves it (market.access_cache), and then transaction 3 reads the agreement again (_record).
    generation = access_cache.generation(settings.run_dir)
    with admission.organisation(actor.org_id) as over_limit, cancellations.running(token):
        with phases.phase("1 transaction 1 (prepare)"), ExitStack() as stack:
            prepared = _prepare(
                _OnDemand(database, stack),
                settings,
                actor,
                database=database,
                product_slug=product_slug,
                sql=sql,
                idempotency_key=idempotency_key,
                agreement_id=agreement_id,
                over_limit=over_limit,
                max_rows=settings.sandbox_max_result_rows,
                plain=epsilon is None and not dry_run,
            )
        if isinstance(prepared, QueryOutcome):
            return prepared
        if isinstance(prepared, _Refused):
            refused = prepared
            # Its chain head named, so that a PostgreSQL batch takes it with its other locks, in the global order;
            # taken in the middle of the batch, it deadlocked with another process's batch (red team red16m).
            return group_commit.write(
                database,
                settings,
                lambda session: attempts.refuse(session, refused.attempt, refused.error),
                attempts.row_locks(refused.attempt, month=False),
            )
        attempt = prepared.attempt
        if prepared.policy.is_dp or epsilon is not None or dry_run:
            return privacy.run(
                database,
                settings,
                admission,
                attempt,
                prepared.policy,
                prepared.tables,
                sandbox_limits(settings),
                epsilon=epsilon,
                dry_run=dry_run,
            )
        try:
            with phases.phase("2 plan"):
                plan = plan_query(sql, prepared.policy, row_counts(prepared.tables))
            if cancelled is not None and cancelled():
                raise QueryFailed("query_cancelled", status_code=409)
            cache.configure(settings.sandbox_result_cache_entries, settings.sandbox_result_cache_bytes)
            # An identical query on the same version already answered: no worker needed, but it is
            # still metered, audited and charged below exactly like one that ran.
            max_rows = settings.sandbox_max_result_rows
            with phases.phase("3 result cache lookup"):
                found = cached_result(plan, prepared.tables, max_rows)
            if found is None:
                # The same query already running in this process: wait for its answer (sandbox.cache).
                with cache.flight(result_key(plan, prepared.tables, max_rows), cancelled) as leader:
                    if not leader:
                        found = cached_result(plan, prepared.tables, max_rows)
                    if found is None:
                        if cancelled is not None and cancelled():
                            raise QueryFailed("query_cancelled", status_code=409)
                        waiting = time.perf_counter()
                        with admission.worker(actor.org_id, cancelled):
                            phases.add("4 admission (worker slot wait)", time.perf_counter() - waiting)
                            with phases.phase("5 sandbox execute (hop + worker)"):
                                found = sandbox_execute(
                                    plan, prepared.tables, sandbox_limits(settings), max_rows, cancelled=cancelled
                                )
                            phases.add("5a worker cpu (inside 5)", found.measurements.cpu_ms / 1000)
            result = found
        except ServiceUnavailable as busy:
            unkeyed, overload = replace(attempt, key=None), busy
            return group_commit.write(
                database,
                settings,
                lambda session: attempts.refuse(session, unkeyed, overload),
                attempts.row_locks(attempt, month=False),
            )
        except (QueryRefused, QueryFailed) as error:
            failed = error
            return group_commit.write(
                database,
                settings,
                lambda session: attempts.refuse(session, attempt, failed),
                attempts.row_locks(attempt, month=False),
            )
    run_dir = settings.run_dir
    deferred = prepared.quota_deferred

    def changed() -> bool:
        # Asked by transaction 3 under its row locks, not here: a revocation answered while this write waits
        # for its group commit batch (or for the locks) must be seen (red team red15).
        return access_cache.generation(run_dir) != generation

    # Committed before the answer leaves; on SQLite together with concurrent queries' writes (group commit).
    with phases.phase("6 transaction 3 (record)"):
        return group_commit.write(
            database,
            settings,
            lambda session: _record(session, attempt, result, quota_deferred=deferred, recheck=changed),
            attempts.row_locks(attempt),
            lean=True,  # it locks its rows through attempts.lock_month_and_chain and writes only those
        )


def _record(
    session: Session,
    attempt: attempts.Attempt,
    result: QueryResult,
    *,
    quota_deferred: bool = False,
    recheck: Callable[[], bool] | None = None,
) -> QueryOutcome:
    """Transaction 3: decide quota and cap under the counter's lock, rate, and write the usage record.

    With `quota_deferred`, first the early check transaction 1 left to it: a quota already used up is
    refused and recorded exactly as there (no result, nothing scanned)."""
    agreement = attempt.agreement
    # The month counter's lock, then the chain head's (one round trip on PostgreSQL, with the BEGIN).
    with phases.phase("6a lock month counter and chain head (in 6)"):
        counter, locked = attempts.lock_month_and_chain(session, attempt)
    if isinstance(locked, QueryOutcome):  # a concurrent duplicate of the Idempotency-Key was recorded
        return locked
    # Revoked while the query waited or ran (the access cache stops only the queries that start after):
    # read the agreement again, so that no answer leaves after its revocation was answered. Only when an
    # access-relevant row changed on this machine since transaction 1 (`recheck()`, asked now, under the row
    # locks; None: always): otherwise nothing could have revoked it here, and the lean path keeps its
    # statements (other machines: the cache's TTL).
    # The API key too (red14): a key revoked while its query waited answers nothing more.
    if recheck is None or recheck():
        revoked = key_refusal(session, attempt.actor) or attempts.agreement_refusal(
            session.get(Agreement, agreement.id) or agreement, attempt.now
        )
        if revoked is not None:
            return attempts.refuse(session, attempt, revoked, head=locked)
    if quota_deferred:
        early = attempts.quota_refusal(agreement, counter, Measurements(0, 0, 0, 0, 0))
        if early is not None:
            return attempts.refuse(session, attempt, early, head=locked)
    over = attempts.quota_refusal(agreement, counter, result.measurements)
    if over is not None:
        return attempts.refuse(session, attempt, over, result=result, head=locked)
    charge = attempts.rate_and_count(agreement, counter, result.measurements)
    record_id = new_id("qry")
    body = {
        "query_id": record_id,
        "columns": result.columns,
        "rows": result.rows,
        # The rule, never the count: how many groups fell under k depends on hidden rows (audit log only).
        "suppression": {
            "min_group_size": agreement.policy.get("min_group_size"),
            "rule": messages.render("groups_under_k_omitted", k=agreement.policy.get("min_group_size")),
        },
        "usage": result.measurements.buyer_dict(),
        "charge": {
            "amount_minor": charge.amount_minor,
            "currency": charge.currency,
            "charge_type": charge.charge_type.value,
        },
        "agreement_id": agreement.id,
    }
    with phases.phase("6c append the usage record (in 6)"):
        return attempts.append(
            session,
            attempt,
            locked,
            counter=counter,
            status_code=200,
            body=body,
            record_id=record_id,
            charge_type=charge.charge_type,
            amount_minor=charge.amount_minor,
            result=result,
        )


CANCEL_WAIT_SECONDS = 10.0
"""How long a cancel request waits for the query to stop (a worker that ignores it is killed sooner)."""


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request found: the query's usage record once it has one, and whether it was cancelled."""

    state: str
    """`cancelled`; `finished` (it ended before the request reached it); `requested` (not running yet)."""
    record: UsageRecord | None


def cancel_query(database: Database, settings: Settings, actor: Principal, key: str) -> CancelOutcome:
    """The buyer cancels its query sent with Idempotency-Key `key`, waiting or running, from any API process.

    A query already recorded is left as it is (`finished`). A running one is stopped and its record
    (rejected, `query_cancelled`, never charged) is returned once committed. A query not running yet
    is cancelled as soon as it starts (`requested`).
    """
    actor.require(Role.BUYER)
    with database.transaction() as session:
        done = repository.by_idempotency_key(session, actor.org_id, key)
        if done is not None:
            session.expunge(done)
            return CancelOutcome("finished", done)
    cancellations = query_cancellations(settings)
    token = Cancellations.token(actor.org_id, key)
    cancellations.request(token)
    if not cancellations.is_running(token):
        return CancelOutcome("requested", None)
    cancellations.wait_until_stopped(token, CANCEL_WAIT_SECONDS)
    with database.transaction() as session:
        record = repository.by_idempotency_key(session, actor.org_id, key)
        if record is None:
            return CancelOutcome("requested", None)
        session.expunge(record)
    return CancelOutcome("cancelled" if record.error_code == "query_cancelled" else "finished", record)

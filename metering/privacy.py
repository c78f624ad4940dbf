"""The metered DP query: privacy budgets (reserve, commit, refund), stored noisy answers, dry runs.

Budgets are rho-zCDP in integer nano-units (metering.models.PrivacyBudget): one per agreement
(lifetime, on the agreement's product version) and one per product version across all agreements
(the regulator's cap, so buyers cannot pool budgets). A query:

1. plans (sandbox.dp) and calibrates its noise for the epsilon it chose; a dry run stops here;
2. returns the stored answer of the same canonical query under the same agreement, at no cost;
3. reserves its cost on both budgets with conditional UPDATEs (`spent + reserved + cost <= budget`),
   each its transaction's first statement (on SQLite a write from the start, like BEGIN IMMEDIATE;
   on PostgreSQL a row lock), always the agreement's first, then the version's;
4. runs in a sandbox worker, adds OpenDP's noise, then in one transaction commits the cost, stores
   the answer and writes the usage record; any failure in between refunds the reservation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from market.clock import new_id, utcnow
from market.db import Database, insert_ignore
from market.errors import MarketError, ServiceUnavailable, TooManyRequests, Unprocessable
from market.i18n import Msg
from market.settings import Settings
from metering import attempts, repository
from metering.attempts import QueryOutcome
from metering.models import Agreement, PrivacyBudget, PrivateAnswer, Purpose
from metering.pricing import PlanTerms, rate_query
from sandbox import dp, dp_run
from sandbox.admission import Admission
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import DifferentialPrivacy, ProtectionPolicy
from sandbox.service import Measurements, QueryResult, TableFile


@dataclass(frozen=True)
class Budgets:
    """What is left of an agreement's budget and of its version's cap, in rho nano-units."""

    agreement_left: int
    version_left: int
    agreement_budget: int
    agreement_spent: int

    def left_epsilon(self, delta: float) -> float:
        return dp.epsilon_of(min(self.agreement_left, self.version_left) / dp.NANO, delta)


SCOPES = (Msg("the agreement's privacy budget"), Msg("the product version's privacy cap across all agreements"))


def _ids(agreement: Agreement) -> tuple[str, str]:
    return f"agreement:{agreement.id}", f"version:{agreement.product_version_id}"


def agreement_budget(params: DifferentialPrivacy) -> int:
    """An agreement's lifetime budget in rho nano-units (its epsilon at the policy's delta)."""
    return dp.rho_nano(dp.rho_of(params.agreement_epsilon, params.delta))


def _ensure(session: Session, agreement: Agreement, params: DifferentialPrivacy) -> None:
    own, version = _ids(agreement)
    rows = [
        (own, agreement.id, agreement_budget(params)),
        (version, None, dp.rho_nano(dp.rho_of(params.version_epsilon_cap, params.delta))),
    ]
    for budget_id, agreement_id, amount in rows:
        insert_ignore(
            session,
            PrivacyBudget.__table__,
            {
                "id": budget_id,
                "product_version_id": agreement.product_version_id,
                "agreement_id": agreement_id,
                "budget_nano": amount,
                "spent_nano": 0,
                "reserved_nano": 0,
                "created_at": utcnow(),
            },
            ["id"],
        )


def budgets(session: Session, agreement: Agreement, params: DifferentialPrivacy) -> Budgets:
    """The agreement's and its version's budgets now (created on first use)."""
    own_id, version_id = _ids(agreement)
    found = {b.id: b for b in session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.in_([own_id, version_id])))}
    own, version = found.get(own_id), found.get(version_id)
    own_budget = own.budget_nano if own else agreement_budget(params)
    version_budget = (
        version.budget_nano if version else dp.rho_nano(dp.rho_of(params.version_epsilon_cap, params.delta))
    )
    own_used = (own.spent_nano + own.reserved_nano) if own else 0
    version_used = (version.spent_nano + version.reserved_nano) if version else 0
    return Budgets(
        agreement_left=max(0, own_budget - own_used),
        version_left=max(0, version_budget - version_used),
        agreement_budget=own_budget,
        agreement_spent=own.spent_nano if own else 0,
    )


def reserve(session: Session, agreement: Agreement, params: DifferentialPrivacy, cost: int) -> MarketError | None:
    """Reserve `cost` on the agreement's budget, then on the version's cap, atomically.

    Returns the refusal when either is short (and then nothing is reserved)."""
    _ensure(session, agreement, params)
    for budget_id, scope in zip(_ids(agreement), SCOPES, strict=True):
        result: Any = session.execute(
            update(PrivacyBudget)
            .where(
                PrivacyBudget.id == budget_id,
                PrivacyBudget.spent_nano + PrivacyBudget.reserved_nano + cost <= PrivacyBudget.budget_nano,
            )
            .values(reserved_nano=PrivacyBudget.reserved_nano + cost)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            session.rollback()
            left = budgets(session, agreement, params)
            remaining = left.agreement_left if scope is SCOPES[0] else left.version_left
            return TooManyRequests(
                "privacy_budget_exhausted",
                scope=scope,
                cost=f"{dp.epsilon_of(cost / dp.NANO, params.delta):.4g}",
                left=f"{dp.epsilon_of(remaining / dp.NANO, params.delta):.4g}",
            )
    return None


def settle(session: Session, agreement: Agreement, cost: int, *, spend: bool) -> None:
    """Move a reservation to spent (`spend`), or give it back (a refund)."""
    for budget_id in _ids(agreement):
        values: dict[str, Any] = {"reserved_nano": PrivacyBudget.reserved_nano - cost}
        if spend:
            values["spent_nano"] = PrivacyBudget.spent_nano + cost
        session.execute(
            update(PrivacyBudget)
            .where(PrivacyBudget.id == budget_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def stored_answer(session: Session, agreement_id: str, key: str) -> PrivateAnswer | None:
    return session.scalars(
        select(PrivateAnswer).where(PrivateAnswer.agreement_id == agreement_id, PrivateAnswer.query_key == key)
    ).first()


def spent_by_agreement(session: Session, agreement_ids: list[str]) -> dict[str, tuple[int, int]]:
    """(spent, budget) in rho nano-units per agreement that has used DP mode."""
    ids = [f"agreement:{a}" for a in agreement_ids]
    rows = session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.in_(ids)))
    return {b.agreement_id or "": (b.spent_nano, b.budget_nano) for b in rows}


# -- the query --------------------------------------------------------------------------------------


def _query_key(plan: dp.DPPlan, cost: int) -> str:
    return hashlib.sha256(f"{plan.canonical}|{cost}".encode()).hexdigest()


def budget_statement(policy: dict[str, Any]) -> dict[str, Any] | None:
    """An agreement's privacy budget as its policy snapshot states it, or None in threshold mode."""
    parsed = ProtectionPolicy.model_validate(policy)
    if not parsed.is_dp or parsed.dp is None:
        return None
    params = parsed.dp
    return {
        "epsilon": params.agreement_epsilon,
        "delta": params.delta,
        "rho": round(dp.rho_of(params.agreement_epsilon, params.delta), 9),
        "scope": "lifetime of the agreement, on its product version",
        "per_query_epsilon": {
            "default": params.query_epsilon,
            "min": params.min_query_epsilon,
            "max": params.max_query_epsilon,
        },
        "version_cap_epsilon": params.version_epsilon_cap,
    }


def run(
    database: Database,
    settings: Settings,
    admission: Admission,
    attempt: attempts.Attempt,
    policy: ProtectionPolicy,
    tables: dict[str, TableFile],
    limits: EngineLimits,
    *,
    epsilon: float | None,
    dry_run: bool,
) -> QueryOutcome:
    """A query on a DP product (or one that asked for DP features): plan, dry run or repeat, reserve, run, record."""
    agreement = attempt.agreement
    if not policy.is_dp or policy.dp is None:
        with database.transaction() as session:
            return attempts.refuse(session, attempt, Unprocessable("not_dp_product", slug=attempt.product_slug))
    params = policy.dp
    chosen = params.query_epsilon if epsilon is None else epsilon
    try:
        if not params.min_query_epsilon <= chosen <= params.max_query_epsilon:
            raise Unprocessable(
                "privacy_epsilon_out_of_range",
                epsilon=chosen,
                low=params.min_query_epsilon,
                high=params.max_query_epsilon,
            )
        plan = dp.plan(attempt.sql, policy, seed=agreement.product_version_id)
    except (QueryRefused, Unprocessable) as error:
        with database.transaction() as session:
            return attempts.refuse(session, attempt, error)
    calibration = dp.calibrate(plan, params, chosen)
    cost = dp.rho_nano(calibration.rho)
    key = _query_key(plan, cost)
    if dry_run:
        with database.transaction() as session:
            left = budgets(session, agreement, params)
        return QueryOutcome(
            200,
            {
                "dry_run": True,
                "columns": plan.columns,
                "noise": True,
                "privacy": dp.privacy_summary(plan, calibration, None, left_epsilon=left.left_epsilon(params.delta)),
                "agreement_id": agreement.id,
            },
        )
    with database.transaction() as session:
        earlier = stored_answer(session, agreement.id, key)
    if earlier is None:
        with database.transaction() as session:
            refusal = reserve(session, agreement, params, cost)
            if refusal is not None:
                return attempts.refuse(session, attempt, refusal)
        try:
            with admission.worker():
                execution, rows_scanned, bytes_scanned = dp_run.run(plan, tables, limits)
            released = dp.release(plan, execution.rows, calibration, settings.sandbox_max_result_rows)
        except (ServiceUnavailable, QueryRefused, QueryFailed) as error:
            with database.transaction() as session:
                settle(session, agreement, cost, spend=False)
                busy = isinstance(error, ServiceUnavailable)
                return attempts.refuse(session, attempt if not busy else _without_key(attempt), error)
        except BaseException:
            with database.transaction() as session:
                settle(session, agreement, cost, spend=False)
            raise
        # No CPU time: it depends on the rows (a filter matching one hidden row ran ~2 ms longer than one
        # matching none), and the buyer sees it in the answer and the usage views (docs/privacy.md).
        measurements = Measurements(rows_scanned, bytes_scanned, 0, len(released.rows), 0)
        result = QueryResult(plan.columns, released.rows, ";\n".join(execution.statements), measurements)
        privacy = dp.privacy_summary(plan, calibration, released, left_epsilon=None)
    else:
        result = QueryResult(list(earlier.columns), list(earlier.rows), "", Measurements(0, 0, 0, len(earlier.rows), 0))
        privacy = dict(earlier.privacy)
        cost = 0
    with database.transaction() as session:
        return _record(session, attempt, params, result, privacy, key, cost, repeat_of=earlier)


def _without_key(attempt: attempts.Attempt) -> attempts.Attempt:
    """An overload refusal is transient: not recorded under the Idempotency-Key, so a retry runs."""
    return replace(attempt, key=None)


def _record(
    session: Session,
    attempt: attempts.Attempt,
    params: DifferentialPrivacy,
    result: QueryResult,
    privacy: dict[str, Any],
    key: str,
    cost: int,
    *,
    repeat_of: PrivateAnswer | None,
) -> QueryOutcome:
    """The last transaction: quota, the stored answer (a concurrent twin's wins), the cost, the usage record."""
    agreement = attempt.agreement
    counter = repository.lock_month(session, agreement.id, attempts.month_of(attempt.now))
    locked = attempts.lock_chain(session, attempt)
    if isinstance(locked, QueryOutcome):
        if cost:
            settle(session, agreement, cost, spend=False)
        return locked
    over = attempts.quota_refusal(agreement, counter, result.measurements)
    if over is not None:
        if cost:
            settle(session, agreement, cost, spend=False)
        return attempts.refuse(session, attempt, over, result=result, head=locked)
    record_id = new_id("qry")
    stored_of = repeat_of.usage_record_id if repeat_of is not None else None
    if repeat_of is None:
        insert_ignore(
            session,
            PrivateAnswer.__table__,
            {
                "agreement_id": agreement.id,
                "query_key": key,
                "columns": result.columns,
                "rows": result.rows,
                "privacy": privacy,
                "usage_record_id": record_id,
                "created_at": utcnow(),
            },
            ["agreement_id", "query_key"],
        )
        twin = stored_answer(session, agreement.id, key)
        assert twin is not None
        if twin.usage_record_id != record_id:  # a concurrent identical query stored first: its answer, our refund
            settle(session, agreement, cost, spend=False)
            cost = 0
            stored_of = twin.usage_record_id
            result = QueryResult(list(twin.columns), list(twin.rows), result.sql_run, result.measurements)
            privacy = dict(twin.privacy)
        else:
            settle(session, agreement, cost, spend=True)
    if stored_of is not None:
        privacy = {**privacy, "cost": {"epsilon": 0.0, "delta": 0.0, "rho": 0.0}, "stored_answer_of": stored_of}
    left = budgets(session, agreement, params)
    privacy["budget_left"] = {
        "epsilon": round(left.left_epsilon(params.delta), 6),
        "rho": round(min(left.agreement_left, left.version_left) / dp.NANO, 9),
    }
    charge = rate_query(
        PlanTerms.from_snapshot(agreement.plan),
        public_interest=Purpose(agreement.purpose).is_public_interest,
        accepted_before=counter.accepted_queries,
        charged_before=counter.charged_minor,
        bytes_scanned=result.measurements.bytes_scanned,
        per_gb_carry=Decimal(counter.per_gb_carry or "0"),
        privacy_epsilon=Decimal(str(privacy["cost"]["epsilon"])) if cost else Decimal(0),
    )
    counter.per_gb_carry = str(charge.per_gb_carry)
    counter.accepted_queries += 1
    counter.charged_minor += charge.amount_minor
    counter.rows_scanned += result.measurements.rows_scanned
    counter.bytes_scanned += result.measurements.bytes_scanned
    body = {
        "query_id": record_id,
        "columns": result.columns,
        "rows": result.rows,
        "noise": True,
        "privacy": privacy,
        "usage": {**result.measurements.buyer_dict(), "privacy_rho": cost / dp.NANO},
        "charge": {
            "amount_minor": charge.amount_minor,
            "currency": charge.currency,
            "charge_type": charge.charge_type.value,
        },
        "agreement_id": agreement.id,
    }
    return attempts.append(
        session,
        attempt,
        locked,
        status_code=200,
        body=body,
        record_id=record_id,
        charge_type=charge.charge_type,
        amount_minor=charge.amount_minor,
        result=result,
        privacy_rho_nano=cost,
    )

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from market.accounts.service import key_refusal
from market.clock import new_id, utcnow
from market.db import Database, insert_ignore
from market.errors import MarketError, ServiceUnavailable, TooManyRequests, Unprocessable
from market.i18n import Msg
from market.settings import Settings
from metering import attempts, repository
from metering.attempts import QueryOutcome
from metering.models import Agreement, PrivacyBudget, PrivateAnswer
from sandbox import dp, dp_run
from sandbox.admission import Admission
from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import DifferentialPrivacy, ProtectionPolicy
from sandbox.service import Measurements, QueryResult, TableFile

ATTO = 10**18
"""Selection delta is kept in integer units of 1e-18, exact on both databases, like rho in nano-units."""


def delta_atto(delta: Decimal | float) -> int:
    """delta in atto-units, rounded up (never under-counted)."""
    return int((dp.decimal_of(delta) * ATTO).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Cost:
    """What one query spends: rho (nano-units) and selection delta (atto-units, noisy-threshold groups only)."""

    rho: int
    delta: int = 0


@dataclass(frozen=True)
class Budgets:
    """What is left of an agreement's budget and of its version's cap, in rho nano-units and delta atto-units."""

    agreement_left: int
    version_left: int
    agreement_budget: int
    agreement_spent: int
    agreement_delta_left: int = 0
    version_delta_left: int = 0

    def left_epsilon(self, delta: float) -> Decimal:
        return dp.epsilon_of(Decimal(min(self.agreement_left, self.version_left)) / dp.NANO, delta)

    def delta_left(self) -> float:
        """Selection delta left, the smaller of the agreement's and the version's (JSON number)."""
        return float(Decimal(min(self.agreement_delta_left, self.version_delta_left)) / ATTO)


SCOPES = (Msg("the agreement's privacy budget"), Msg("the product version's privacy cap across all agreements"))


def _ids(agreement: Agreement) -> tuple[str, str]:
    return f"agreement:{agreement.id}", f"version:{agreement.product_version_id}"


def agreement_budget(params: DifferentialPrivacy) -> int:
    """An agreement's lifetime budget in rho nano-units (its epsilon at the policy's delta)."""
    return dp.rho_nano(dp.rho_of(dp.decimal_of(params.agreement_epsilon), params.delta))


def _version_budget(params: DifferentialPrivacy) -> int:
    return dp.rho_nano(dp.rho_of(dp.decimal_of(params.version_epsilon_cap), params.delta))


def delta_rooms(params: DifferentialPrivacy) -> tuple[int, int]:
    """The selection delta the agreement's budget and the version's cap may spend, atto-units: each total
    delta less the `delta` at which the epsilon budget is stated (docs/privacy.md)."""
    stated = dp.decimal_of(params.delta)
    return (
        delta_atto(params.agreement_delta_total - stated),
        delta_atto(params.version_delta_total - stated),
    )


def _ensure(session: Session, agreement: Agreement, params: DifferentialPrivacy) -> None:
    own, version = _ids(agreement)
    rows = [(own, agreement.id, agreement_budget(params)), (version, None, _version_budget(params))]
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
                "delta_spent_atto": 0,
                "delta_reserved_atto": 0,
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
    version_budget = version.budget_nano if version else _version_budget(params)
    own_used = (own.spent_nano + own.reserved_nano) if own else 0
    version_used = (version.spent_nano + version.reserved_nano) if version else 0
    own_room, version_room = delta_rooms(params)
    own_delta = (own.delta_spent_atto + own.delta_reserved_atto) if own else 0
    version_delta = (version.delta_spent_atto + version.delta_reserved_atto) if version else 0
    return Budgets(
        agreement_left=max(0, own_budget - own_used),
        version_left=max(0, version_budget - version_used),
        agreement_budget=own_budget,
        agreement_spent=own.spent_nano if own else 0,
        agreement_delta_left=max(0, own_room - own_delta),
        version_delta_left=max(0, version_room - version_delta),
    )


def reserve(session: Session, agreement: Agreement, params: DifferentialPrivacy, cost: Cost) -> MarketError | None:
    """Reserve `cost` (rho and selection delta) on the agreement's budget, then on the version's cap, atomically.

    Returns the refusal when either is short (and then nothing is reserved)."""
    _ensure(session, agreement, params)
    rooms = delta_rooms(params)
    for budget_id, scope, room in zip(_ids(agreement), SCOPES, rooms, strict=True):
        result: Any = session.execute(
            update(PrivacyBudget)
            .where(
                PrivacyBudget.id == budget_id,
                PrivacyBudget.spent_nano + PrivacyBudget.reserved_nano + cost.rho <= PrivacyBudget.budget_nano,
                PrivacyBudget.delta_spent_atto + PrivacyBudget.delta_reserved_atto + cost.delta <= room,
            )
            .values(
                reserved_nano=PrivacyBudget.reserved_nano + cost.rho,
                delta_reserved_atto=PrivacyBudget.delta_reserved_atto + cost.delta,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            session.rollback()
            left = budgets(session, agreement, params)
            first = scope is SCOPES[0]
            remaining = left.agreement_left if first else left.version_left
            if remaining >= cost.rho:  # the rho fits: the selection delta is what ran out
                delta_left = left.agreement_delta_left if first else left.version_delta_left
                return TooManyRequests(
                    "privacy_delta_exhausted",
                    scope=scope,
                    cost=f"{Decimal(cost.delta) / ATTO:.4g}",
                    left=f"{Decimal(delta_left) / ATTO:.4g}",
                )
            return TooManyRequests(
                "privacy_budget_exhausted",
                scope=scope,
                cost=f"{dp.epsilon_of(Decimal(cost.rho) / dp.NANO, params.delta):.4g}",
                left=f"{dp.epsilon_of(Decimal(remaining) / dp.NANO, params.delta):.4g}",
            )
    return None


def settle(session: Session, agreement: Agreement, cost: Cost, *, spend: bool) -> None:
    """Move a reservation to spent (`spend`), or give it back (a refund)."""
    if not cost.rho and not cost.delta:
        return
    for budget_id in _ids(agreement):
        values: dict[str, Any] = {
            "reserved_nano": PrivacyBudget.reserved_nano - cost.rho,
            "delta_reserved_atto": PrivacyBudget.delta_reserved_atto - cost.delta,
        }
        if spend:
            values["spent_nano"] = PrivacyBudget.spent_nano + cost.rho
            values["delta_spent_atto"] = PrivacyBudget.delta_spent_atto + cost.delta
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


@dataclass(frozen=True)
class Spent:
    """What an agreement has spent: rho (nano-units, and its budget) and selection delta (atto-units)."""

    rho_nano: int
    budget_nano: int
    delta_atto: int


def spent_by_agreement(session: Session, agreement_ids: list[str]) -> dict[str, Spent]:
    """What each agreement that has used DP mode spent."""
    ids = [f"agreement:{a}" for a in agreement_ids]
    rows = session.scalars(select(PrivacyBudget).where(PrivacyBudget.id.in_(ids)))
    return {b.agreement_id or "": Spent(b.spent_nano, b.budget_nano, b.delta_spent_atto) for b in rows}


def total_delta(params_delta: float, spent: Spent | None) -> Decimal:
    """The delta of everything an agreement learnt: the epsilon statement's delta once it spent anything,
    plus the selection delta of its noisy-threshold queries."""
    if spent is None or (spent.rho_nano == 0 and spent.delta_atto == 0):
        return Decimal(0)
    return dp.decimal_of(params_delta) + Decimal(spent.delta_atto) / ATTO


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
        "rho": round(float(dp.rho_of(params.agreement_epsilon, params.delta)), 9),
        "total_delta": float(params.agreement_delta_total),
        "selection_delta_per_query": float(dp.decimal_of(params.delta) * dp.SELECTION_DELTA_SHARE),
        "scope": "lifetime of the agreement, on its product version",
        "per_query_epsilon": {
            "default": params.query_epsilon,
            "min": params.min_query_epsilon,
            "max": params.max_query_epsilon,
        },
        "version_cap_epsilon": params.version_epsilon_cap,
        "version_cap_delta": float(params.version_delta_total),
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
    epsilon: Decimal | float | None,
    dry_run: bool,
) -> QueryOutcome:
    """A query on a DP product (or one that asked for DP features): plan, dry run or repeat, reserve, run, record."""
    agreement = attempt.agreement
    if not policy.is_dp or policy.dp is None:
        with _writing(database) as session:
            return attempts.refuse(session, attempt, Unprocessable("not_dp_product", slug=attempt.product_slug))
    params = policy.dp
    chosen = dp.decimal_of(params.query_epsilon if epsilon is None else epsilon)
    try:
        if not dp.decimal_of(params.min_query_epsilon) <= chosen <= dp.decimal_of(params.max_query_epsilon):
            raise Unprocessable(
                "privacy_epsilon_out_of_range",
                epsilon=chosen,
                low=params.min_query_epsilon,
                high=params.max_query_epsilon,
            )
        plan = dp.plan(attempt.sql, policy, seed=agreement.product_version_id)
    except (QueryRefused, Unprocessable) as error:
        with _writing(database) as session:
            return attempts.refuse(session, attempt, error)
    calibration = dp.calibrate(plan, params, chosen)
    cost = Cost(dp.rho_nano(calibration.rho), delta_atto(calibration.selection_delta))
    key = _query_key(plan, cost.rho)
    if dry_run:
        with database.transaction() as session:
            left = budgets(session, agreement, params)
        summary = dp.privacy_summary(plan, calibration, None, left_epsilon=left.left_epsilon(params.delta))
        summary["budget_left"]["delta"] = left.delta_left()
        return QueryOutcome(
            200,
            {"dry_run": True, "columns": plan.columns, "noise": True, "privacy": summary, "agreement_id": agreement.id},
        )
    with database.transaction() as session:
        earlier = stored_answer(session, agreement.id, key)
    if earlier is None:
        with _writing(database) as session:
            refusal = reserve(session, agreement, params, cost)
            if refusal is not None:
                return attempts.refuse(session, attempt, refusal)
        try:
            with admission.worker(attempt.actor.org_id):
                execution, rows_scanned, bytes_scanned = dp_run.run(plan, tables, limits)
            released = dp.release(plan, execution.rows, calibration, settings.sandbox_max_result_rows)
            # No CPU time: it depends on the rows (a filter matching one hidden row ran ~2 ms longer than one
            # matching none), and the buyer sees it in the answer and the usage views (docs/privacy.md).
            measurements = Measurements(rows_scanned, bytes_scanned, 0, len(released.rows), 0)
            result = QueryResult(plan.columns, released.rows, ";\n".join(execution.statements), measurements)
            privacy = dp.privacy_summary(plan, calibration, released, left_epsilon=None)
        except (ServiceUnavailable, QueryRefused, QueryFailed) as error:
            with _writing(database) as session:
                settle(session, agreement, cost, spend=False)
                busy = isinstance(error, ServiceUnavailable)
                return attempts.refuse(session, attempt if not busy else _without_key(attempt), error)
        except BaseException:
            with _writing(database) as session:
                settle(session, agreement, cost, spend=False)
            raise
    else:
        result = QueryResult(list(earlier.columns), list(earlier.rows), "", Measurements(0, 0, 0, len(earlier.rows), 0))
        privacy = dict(earlier.privacy)
        cost = Cost(0)
    try:
        with _writing(database) as session:
            return _record(session, attempt, params, result, privacy, key, cost, repeat_of=earlier)
    except BaseException:
        # Rolled back, the settlement with it (say `idempotency_conflict`: a concurrent request with the same
        # key and other SQL recorded first): give the reservation back, or it stays reserved for good (red13).
        with _writing(database) as session:
            settle(session, agreement, cost, spend=False)
        raise


@contextmanager
def _writing(database: Database) -> Iterator[Session]:
    """A transaction that writes: on SQLite it queues for the write lock in the kernel and begins with it
    (market.db.begin_write), as the threshold path's writes do, never in SQLite's sleeping busy handler.
    A writer session (busy-writers): after `reserve`'s rollback, the refusal's transaction takes the lock too."""
    with database.transaction(write=True) as session:
        yield session


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
    cost: Cost,
    *,
    repeat_of: PrivateAnswer | None,
) -> QueryOutcome:
    """The last transaction: quota, the stored answer (a concurrent twin's wins), the cost, the usage record."""
    agreement = attempt.agreement
    counter = repository.lock_month(session, agreement.id, attempts.month_of(attempt.now))
    # Key or agreement revoked while the query waited or ran: refused, its reservation given back
    # (as metering.service).
    revoked = key_refusal(session, attempt.actor) or attempts.agreement_refusal(
        session.get(Agreement, agreement.id) or agreement, attempt.now
    )
    # The chain head's lock before the budgets' (the settlement), on every branch: a refusal that gave the
    # reservation back first deadlocked with the buyer's DP query on another agreement on the version (red16m).
    locked = attempts.lock_chain(session, attempt)
    if revoked is not None:
        settle(session, agreement, cost, spend=False)
        if isinstance(locked, QueryOutcome):
            return locked
        return attempts.refuse(session, attempt, revoked, head=locked)
    if isinstance(locked, QueryOutcome):
        settle(session, agreement, cost, spend=False)
        return locked
    over = attempts.quota_refusal(agreement, counter, result.measurements)
    if over is not None:
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
            cost = Cost(0)
            stored_of = twin.usage_record_id
            result = QueryResult(list(twin.columns), list(twin.rows), result.sql_run, result.measurements)
            privacy = dict(twin.privacy)
        else:
            settle(session, agreement, cost, spend=True)
    if stored_of is not None:
        privacy = {**privacy, "cost": {"epsilon": 0.0, "delta": 0.0, "rho": 0.0}, "stored_answer_of": stored_of}
    left = budgets(session, agreement, params)
    privacy["budget_left"] = {
        "epsilon": round(float(left.left_epsilon(params.delta)), 6),
        "rho": round(min(left.agreement_left, left.version_left) / dp.NANO, 9),
        "delta": left.delta_left(),
    }
    charge = attempts.rate_and_count(
        agreement,
        counter,
        result.measurements,
        privacy_epsilon=dp.decimal_of(privacy["cost"]["epsilon"]) if cost.rho else Decimal(0),
    )
    body = {
        "query_id": record_id,
        "columns": result.columns,
        "rows": result.rows,
        "noise": True,
        "privacy": privacy,
        "usage": {
            **result.measurements.buyer_dict(),
            "privacy_rho": cost.rho / dp.NANO,
            "privacy_delta": float(Decimal(cost.delta) / ATTO),
        },
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
        counter=counter,
        status_code=200,
        body=body,
        record_id=record_id,
        charge_type=charge.charge_type,
        amount_minor=charge.amount_minor,
        result=result,
        privacy_rho_nano=cost.rho,
        privacy_delta_atto=cost.delta,
    )

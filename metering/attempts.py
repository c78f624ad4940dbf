"""One query attempt's bookkeeping: Idempotency-Key replay, refusal rules, and the one usage record it writes.

Used by metering.service.run_metered_query, which owns the order of the steps and the locks.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from market.accounts.service import Principal
from market.clock import new_id, utcnow
from market.db import Upsert
from market.errors import Conflict, Forbidden, MarketError, TooManyRequests
from metering import chain, group_commit, repository
from metering.models import (
    Agreement,
    AgreementMonth,
    AgreementStatus,
    ChargeType,
    Purpose,
    UsageRecord,
)
from metering.pricing import Charge, PlanTerms, rate_query
from metering.repository import MonthCounter
from products.models import Product
from sandbox.service import Measurements, QueryResult


@dataclass
class QueryOutcome:
    """What a query attempt produced: an HTTP status and body, already recorded as usage."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers beside the body: Retry-After on an overload refusal."""


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def rate_and_count(
    agreement: Agreement,
    counter: MonthCounter,
    measured: Measurements,
    *,
    privacy_epsilon: Decimal = Decimal(0),
) -> Charge:
    """Rate an accepted query against the month so far and add it to the month's counter (held locked).

    The one place both the threshold and the DP paths turn an accepted query into its charge."""
    charge = rate_query(
        PlanTerms.from_snapshot(agreement.plan),
        public_interest=Purpose(agreement.purpose).is_public_interest,
        accepted_before=counter.accepted_queries,
        charged_before=counter.charged_minor,
        bytes_scanned=measured.bytes_scanned,
        per_gb_carry=Decimal(counter.per_gb_carry or "0"),
        privacy_epsilon=privacy_epsilon,
    )
    counter.per_gb_carry = str(charge.per_gb_carry)
    counter.accepted_queries += 1
    counter.charged_minor += charge.amount_minor
    counter.rows_scanned += measured.rows_scanned
    counter.bytes_scanned += measured.bytes_scanned
    return charge


def replay(session: Session, actor: Principal, key: str | None, product_slug: str, sql: str) -> QueryOutcome | None:
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
class Attempt:
    """One query attempt in progress: who, under which agreement, what SQL, when."""

    actor: Principal
    agreement: Agreement
    product_slug: str
    sql: str
    key: str | None
    now: datetime


def append(
    session: Session,
    attempt: Attempt,
    head: chain.Head,
    *,
    counter: MonthCounter | None = None,
    status_code: int,
    body: dict[str, Any],
    record_id: str,
    charge_type: ChargeType,
    amount_minor: int = 0,
    result: QueryResult | None = None,
    error: MarketError | None = None,
    privacy_rho_nano: int = 0,
    privacy_delta_atto: int = 0,
) -> QueryOutcome:
    """Write the attempt's one usage record, linked into the buyer's hash chain (whose head is locked),
    with the moved head and, when given, the month's `counter` as `rate_and_count` advanced it.

    Core statements, no ORM unit of work: on PostgreSQL one statement (the two UPDATEs as data-modifying
    CTEs of the INSERT, one round trip; both rows are already locked, so their order does not matter),
    on SQLite the same three statements one after the other inside the write lock."""
    measured = result.measurements if result else Measurements(0, 0, 0, 0, 0)
    agreement = attempt.agreement
    record = _record(
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
        privacy_rho_nano=privacy_rho_nano,
        privacy_delta_atto=privacy_delta_atto,
        charge_type=charge_type.value,
        amount_minor=amount_minor,
        currency=agreement.currency,
        month=month_of(attempt.now),
        response={"status_code": status_code, "body": body} if attempt.key else None,
        created_at=attempt.now,
        finished_at=utcnow(),
    )
    chain.link(session, head, record)
    _write(session, record, head, counter)
    return QueryOutcome(status_code, body)


_RECORDS = cast(Table, UsageRecord.__table__)
_MONTHS = cast(Table, AgreementMonth.__table__)
_RECORD_COLUMNS = [(attribute.key, attribute.columns[0]) for attribute in UsageRecord.__mapper__.column_attrs]
_INSERT_RECORD = insert(_RECORDS).values(
    {column: bindparam(f"r_{key}", type_=column.type) for key, column in _RECORD_COLUMNS}
)
_COUNT = (
    update(_MONTHS)
    .where(_MONTHS.c.id == bindparam("month_id"))
    .values(
        accepted_queries=bindparam("month_queries"),
        charged_minor=bindparam("month_charged"),
        rows_scanned=bindparam("month_rows"),
        bytes_scanned=bindparam("month_bytes"),
        per_gb_carry=bindparam("month_carry"),
    )
)
_INSERT_MOVING_HEAD = _INSERT_RECORD.add_cte(chain.MOVE_HEAD.cte("moved_head"))
_INSERT_MOVING_HEAD_COUNTING = _INSERT_MOVING_HEAD.add_cte(_COUNT.cte("counted"))


_UNSET = dict.fromkeys(key for key, _ in _RECORD_COLUMNS)


def _record(**values: Any) -> SimpleNamespace:
    """The usage record `append` writes: a plain object with an attribute per column (None where not given),
    not an ORM instance. It is never added to a session (`_write` inserts it with a Core statement), and an
    ORM instance cost some 50 us more to build and read, inside the writer lock (docs/benchmarks.md "lean13")."""
    return SimpleNamespace(**(_UNSET | values))


def _write(session: Session, record: Any, head: chain.Head, counter: MonthCounter | None) -> None:
    parameters = {f"r_{key}": getattr(record, key) for key, _ in _RECORD_COLUMNS} | chain.head_parameters(head)
    if counter is not None:
        parameters |= {
            "month_id": counter.id,
            "month_queries": counter.accepted_queries,
            "month_charged": counter.charged_minor,
            "month_rows": counter.rows_scanned,
            "month_bytes": counter.bytes_scanned,
            "month_carry": counter.per_gb_carry,
        }
    # In a group commit batch: written with the other members' writes, at the end of the batch.
    if not group_commit.defer(session, _write_many, parameters):
        _write_many(session, [parameters])


def _write_many(session: Session, writes: list[dict[str, Any]]) -> None:
    """Write `_write`'s rows (records, moved heads, counters), in order. Alone: the statements above. Many (a
    group commit batch): on PostgreSQL the same statement per write, sent together (psycopg's executemany,
    one pipeline); on SQLite three statements in all, whatever their number: the records in one multi-row
    INSERT, and each head and counter set once to its last value (both hold totals, not increments)
    with one `UPDATE ... FROM (VALUES ...)` each; every statement is a call into SQLite that lets the GIL go
    while the batch holds the machine-wide writer lock."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        start = 0
        for end in range(1, len(writes) + 1):  # runs of writes of one shape, in order
            if end == len(writes) or ("month_id" in writes[end]) != ("month_id" in writes[start]):
                run = writes[start:end]
                statement = _INSERT_MOVING_HEAD_COUNTING if "month_id" in run[0] else _INSERT_MOVING_HEAD
                connection.execute(statement, run if len(run) > 1 else run[0])
                start = end
        return
    if len(writes) == 1:
        parameters = writes[0]
        if "month_id" in parameters:
            _execute_sqlite(connection, _COUNT, parameters)
        _execute_sqlite(connection, chain.MOVE_HEAD, parameters)
        _execute_sqlite(connection, _INSERT_RECORD, parameters)
        return
    counters = {p["month_id"]: p for p in writes if "month_id" in p}  # the last write of each row
    if counters:
        connection.exec_driver_sql(_COUNT_MANY.format(_values(len(counters), 6)), _flat(counters.values(), _COUNTED))
    heads = {p["head_buyer"]: p for p in writes}
    connection.exec_driver_sql(_MOVE_HEADS.format(_values(len(heads), 3)), _flat(heads.values(), _MOVED))
    group_commit.insert_rows(connection, _INSERT_RECORD, writes)


_SQLITE_COMPILED: weakref.WeakKeyDictionary[Dialect, dict[int, tuple[str, tuple[tuple[str, Any], ...]]]] = (
    weakref.WeakKeyDictionary()
)


def _execute_sqlite(connection: Connection, statement: Any, parameters: dict[str, Any]) -> None:
    """`connection.execute(statement, parameters)` for one of this module's fixed statements on SQLite, at about
    half the CPU: compiled once per dialect, its parameters converted by the statement's own bind processors
    (JSON, UTC datetimes) and sent with `exec_driver_sql` (which still wraps database errors in DBAPIError and
    fires the engine's events), instead of SQLAlchemy looking up its compiled form and converting them per call.
    Inside the writer lock, on every query (docs/benchmarks.md "lean13")."""
    dialect = connection.dialect
    compiled_here = _SQLITE_COMPILED.get(dialect)
    if compiled_here is None:
        compiled_here = _SQLITE_COMPILED.setdefault(dialect, {})
    found = compiled_here.get(id(statement))
    if found is None:
        compiled = statement.compile(dialect=dialect)
        processors = compiled._bind_processors
        assert compiled.positiontup is not None  # SQLite's paramstyle is positional (qmark)
        found = compiled_here[id(statement)] = (
            compiled.string,
            tuple((name, processors.get(name)) for name in compiled.positiontup),
        )
    sql, binds = found
    connection.exec_driver_sql(
        sql, tuple(parameters[name] if process is None else process(parameters[name]) for name, process in binds)
    )


_COUNTED = ("month_id", "month_queries", "month_charged", "month_rows", "month_bytes", "month_carry")
_COUNT_MANY = (
    "UPDATE agreement_months SET accepted_queries = v.column2, charged_minor = v.column3, rows_scanned = v.column4,"
    " bytes_scanned = v.column5, per_gb_carry = v.column6 FROM (VALUES {}) AS v WHERE agreement_months.id = v.column1"
)
_MOVED = ("head_buyer", "head_seq", "head_hash")
_MOVE_HEADS = (
    "UPDATE usage_chain_heads SET last_seq = v.column2, last_hash = v.column3"
    " FROM (VALUES {}) AS v WHERE usage_chain_heads.buyer_org_id = v.column1"
)


def _values(rows: int, columns: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def _flat(writes: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(p[name] for p in writes for name in names)


def row_locks(attempt: Attempt, *, month: bool = True) -> list[Upsert]:
    """The rows the attempt's record locks, in lock order: its month counter (unless `month` is False: a
    refusal), then its buyer's chain head (metering.group_commit takes them up front, in a batch)."""
    head = chain.head_upsert(attempt.actor.org_id)
    return [repository.month_upsert(attempt.agreement.id, month_of(attempt.now)), head] if month else [head]


def lock_month_and_chain(session: Session, attempt: Attempt) -> tuple[MonthCounter, chain.Head | QueryOutcome]:
    """`repository.lock_month` of the attempt's agreement, then `lock_chain`, in that lock order; on
    PostgreSQL the transaction's BEGIN and both upserts go in one round trip (market.db.upsert_locked_rows).
    In a group commit batch, rows the batch locked and read up front are taken from there (group_commit.locked_rows)."""
    month_row, head_row = group_commit.locked_rows(session, row_locks(attempt))
    head = chain.head_of(attempt.actor.org_id, head_row)
    if attempt.key:  # the replay reads usage records: a batch's deferred writes first (group_commit.flush)
        group_commit.flush(session)
    earlier = replay(session, attempt.actor, attempt.key, attempt.product_slug, attempt.sql)
    return MonthCounter(*month_row), (earlier if earlier is not None else head)


def lock_chain(session: Session, attempt: Attempt) -> chain.Head | QueryOutcome:
    """Lock the buyer's chain head; a concurrent duplicate of this Idempotency-Key is visible from here on."""
    head = chain.lock_head(session, attempt.actor.org_id)
    earlier = replay(session, attempt.actor, attempt.key, attempt.product_slug, attempt.sql)
    return earlier if earlier is not None else head


def refuse(
    session: Session,
    attempt: Attempt,
    error: MarketError,
    *,
    result: QueryResult | None = None,
    head: chain.Head | None = None,
) -> QueryOutcome:
    """Record a refused attempt as `rejected`, for 0, and return its 4xx outcome."""
    if head is None:
        locked = lock_chain(session, attempt)
        if isinstance(locked, QueryOutcome):
            return locked
        head = locked
    record_id = new_id("qry")
    body = error.to_body()
    body["error"]["query_id"] = record_id
    outcome = append(
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
    outcome.headers = error.headers
    return outcome


def agreement_refusal(agreement: Agreement, now: datetime) -> MarketError | None:
    status = agreement.effective_status(now)
    if status == AgreementStatus.REVOKED:
        return Forbidden("agreement_revoked", agreement=agreement.id, reason=agreement.revoked_reason or "-")
    if status == AgreementStatus.EXPIRED:
        return Forbidden("agreement_expired", agreement=agreement.id, until=agreement.valid_until.date().isoformat())
    if now < agreement.valid_from:
        return Forbidden("agreement_not_started", agreement=agreement.id, since=agreement.valid_from.isoformat())
    return None


def quota_refusal(
    agreement: Agreement, counter: AgreementMonth | MonthCounter | None, measured: Measurements
) -> MarketError | None:
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

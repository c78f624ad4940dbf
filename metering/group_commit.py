"""Group commit: the bookkeeping writes of concurrent metered queries, batched into one transaction.

On SQLite every metered query ends with a short write transaction (transaction 3 of
metering.service.run_metered_query: the month counter, the buyer's chain head, the usage record),
and SQLite has one writer at a time. Under load the requests queue for the writer lock, one
`BEGIN IMMEDIATE ... COMMIT` each, and the hand-offs between them (a kernel wake-up, a thread
switch under the GIL, a WAL append per commit) cost more than the statements.

Here a request's write is handed to `GroupCommit.run`. Writes that arrive while a batch is being
written wait, and the next batch takes up to `MAX_BATCH` of them together: one writer lock, one
`BEGIN IMMEDIATE`, every member's statements one after the other, one `COMMIT`. Leader and
followers, no thread of its own: the first caller to find no batch in progress writes the batch
(its own write and whatever has queued), then hands the lead to the first write still waiting.

The rules that keep it exact:

- A member's result is handed back only after the COMMIT of the transaction that holds its writes:
  no answer (2xx or 4xx) leaves for a write that is not durable. A process killed mid-batch has
  answered none of the batch's members.
- Members run one after the other on the same connection, inside the one transaction: each sees
  the writes of those before it (the month counter, the chain head, an Idempotency-Key's record),
  exactly as if they had committed one by one in that order. Quota and cap decisions, and the
  replay of a key sent twice, stay exact.
- Each member runs in a savepoint. If one raises, its savepoint alone is rolled back, the others
  commit, and it then runs again alone, in a transaction of its own (the path without group commit),
  after the batch: one bad member cannot fail the others, nor make them run again (a buyer can send a
  conflicting Idempotency-Key at will), and its own error reaches its own caller only. If the
  savepoint cannot be rolled back, or the commit fails, the whole batch is rolled back and every
  member runs again alone.

Lean members (branch dash-p99; transaction 3, `write(..., lean=True)`) make no statement of their own in
the common case: the batch first locks and reads every lean member's rows (`_prefetch`: one multi-row upsert
per table on SQLite, the ordered locks below on PostgreSQL), each member takes its rows from there
(`locked_rows`), and its writes are kept aside (`defer`) and written with the others' at the end of the
batch (`flush`: three statements on SQLite, one executemany pipeline on PostgreSQL), or sooner, before any
read that may need them. A lean member that raises has written nothing: it needs no savepoint.

On PostgreSQL writers do not serialise on one lock (row locks do), and a batch that locks the rows
of several agreements, member after member, could deadlock with another process's batch that met
the same rows in another order. So each write names the rows it will lock (`locks`: its month
counter and its chain head, as market.db.Upsert), and on PostgreSQL a batch first takes every
member's locks at once, in one global order (`lock_order`: every month counter before every chain
head, each kind sorted by its key), in one round trip with the transaction's BEGIN; the members'
own upserts then find their rows already held. Two batches, or a batch and a single write (which
locks a month counter, then a chain head), therefore always meet the rows in the same order and can
wait for each other but never deadlock. Should one still fail (a lock timeout), the batch is rolled
back and its members rerun alone, as above.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from market import phases
from market.db import Database, Upsert, begin_write, upsert_locked_rows, upsert_locked_rows_by_table
from market.settings import Settings

T = TypeVar("T")

MAX_BATCH = 64
"""Most writes one transaction holds."""


LOCK_ORDER = ("agreement_months", "usage_chain_heads")
"""Tables whose rows a batch locks up front on PostgreSQL, in this order (the metered path's own order:
the month counter, then the chain head)."""


def _lock_key(upsert: Upsert) -> tuple[int, tuple[str, ...]]:
    return LOCK_ORDER.index(upsert.table.name), tuple(str(upsert.values[c]) for c in upsert.conflict_columns)


def lock_order(upserts: Sequence[Upsert]) -> list[Upsert]:
    """`upserts` without repeats (one per row), in the global lock order: by table (LOCK_ORDER), then key."""
    unique = {_lock_key(u): u for u in upserts}
    return [unique[key] for key in sorted(unique)]


@dataclass
class _Member(Generic[T]):
    work: Callable[[Session], T]
    locks: Sequence[Upsert] = ()
    """The rows its work will lock (market.db.Upsert): taken up front, in lock_order, by a PostgreSQL batch."""
    lean: bool = False
    """Its work reads its `locks` through `locked_rows`, and writes no row it did not lock: it may be handed the
    rows the batch read up front (see `_prefetch`)."""
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    """The caller's context (its request's locale, its phases), in which its work runs, whoever leads."""
    event: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    value: Any = None
    error: BaseException | None = None


@dataclass
class Stats:
    """What a committer has done since it was made (for tests and the bench)."""

    batches: int = 0
    members: int = 0
    largest: int = 0
    failed_batches: int = 0
    alone_after_batch: int = 0


class GroupCommit:
    """Batches write transactions of one Database in this process (see the module doc)."""

    def __init__(self, database: Database, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self.max_batch = max_batch
        self.stats = Stats()
        self._lock = threading.Lock()
        self._pending: list[_Member[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Session], T], locks: Sequence[Upsert] = (), *, lean: bool = False) -> T:
        """Run `work(session)` inside a write transaction (begun with market.db.begin_write), possibly
        together with other callers' work, and return its value once that transaction has committed.
        `locks`: the rows `work` locks (see the module doc). `lean`: see `_Member.lean`."""
        member: _Member[T] = _Member(work, locks, lean)
        with self._lock:
            self._pending.append(member)
            lead = not self._leading
            if lead:
                self._leading = True
        while not lead:
            member.event.wait()
            member.event.clear()
            if member.done:
                break
            lead = member.lead  # handed the lead: our write is first in the queue
        if lead:
            self._lead(member)
        if member.error is not None:
            raise member.error
        return member.value  # type: ignore[no-any-return]

    def _lead(self, own: _Member[Any]) -> None:
        """Write batches until our own member's is done, then hand the lead on (or give it up)."""
        while not own.done:
            with self._lock:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
            try:
                self._write(batch)
            finally:
                for member in batch:
                    member.done = True
                    if member is not own:
                        member.event.set()
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.event.set()
            else:
                self._leading = False

    def _write(self, batch: list[_Member[Any]]) -> None:
        self.stats.batches += 1
        self.stats.members += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        if len(batch) == 1:
            _alone(self.database, batch[0])
            return
        values: list[Any] = []
        committing = False
        try:
            with phases.phase("6 group commit batch"), self.database.transaction() as session:
                begin_write(session)
                with phases.phase("6 group commit: batch locks (in 6)"):
                    rows = _prefetch(session, batch)
                session.info[_PREFETCHED] = rows
                session.info[_DEFERRED] = []
                for member in batch:
                    # Nothing an earlier member loaded is taken for the row as it is now (red15: a revoked agreement).
                    session.expire_all()
                    if member.lean:
                        values.append(_lean(session, member))
                        continue
                    # It may read or write rows of the deferred writes, or rows handed to later members.
                    flush(session)
                    rows.clear()
                    values.append(_in_savepoint(session, member))
                with phases.phase("6 group commit: deferred writes (in 6)"):
                    flush(session)
                session.info.pop(_PREFETCHED, None)
                session.info.pop(_DEFERRED, None)
                committing = True
        except Exception as error:
            self.stats.failed_batches += 1
            if committing:
                # The COMMIT itself failed (a connection lost while committing, say): whether the batch was
                # written is unknown, so running its members again could record and charge them twice (red15).
                # Each fails as a write of its own would when its COMMIT fails; a retry with its
                # Idempotency-Key is answered once.
                for member in batch:
                    member.error = error
                return
            # Rolled back before its COMMIT: nothing of the batch was written. Every member runs again on its own.
            for member in batch:
                _alone(self.database, member)
            return
        for member, value in zip(batch, values, strict=True):
            if value is _FAILED:
                # Its savepoint was rolled back and the others committed: it runs again on its own, after them.
                self.stats.alone_after_batch += 1
                _alone(self.database, member)
            else:
                member.value = value


_PREFETCHED = "group_commit_prefetched_rows"


def _prefetch(session: Session, batch: list[_Member[Any]]) -> dict[tuple[int, tuple[str, ...]], Any]:
    """Lock and read the rows the batch's members will lock, up front, and return them by `_lock_key`.

    PostgreSQL: every member's rows, in `lock_order`, in one round trip (what makes batches deadlock-free).
    SQLite (its writer lock already orders everything): the lean members' rows, with ONE multi-row upsert
    per table, instead of two statements per member, each a call into SQLite that gives up the GIL while
    the batch holds the machine-wide writer lock (docs/benchmarks.md "dash-p99").

    Each row is handed to the first member that asks for it (`locked_rows`), and only once: a second member
    locking the same row reads it again, after the first one's writes."""
    if session.get_bind().dialect.name != "sqlite":
        ordered = lock_order([u for member in batch for u in member.locks])
        locked = upsert_locked_rows_by_table(session, ordered)  # one statement per table (branch pg-dash)
        return {_lock_key(u): row for u, row in zip(ordered, locked, strict=True)}
    ordered = lock_order([u for member in batch if member.lean for u in member.locks])
    rows: dict[tuple[int, tuple[str, ...]], Any] = {}
    connection = session.connection()
    for name in LOCK_ORDER:
        upserts = [u for u in ordered if u.table.name == name]
        if not upserts:
            continue
        first = upserts[0]
        width = len(first.conflict_columns)
        for row in insert_rows(connection, _returning_upsert(first), [_named(u.values) for u in upserts]):
            rows[(LOCK_ORDER.index(name), tuple(str(v) for v in row[:width]))] = tuple(row[width:])
    return rows


_RETURNING_UPSERTS: dict[tuple[Any, ...], Any] = {}


def _named(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{column}": value for column, value in values.items()}


def _returning_upsert(u: Upsert) -> Any:
    """SQLite's `upsert_locked_row` statement for `u`'s table, returning the conflict key's columns first."""
    key = (u.table.name, tuple(u.values), tuple(u.conflict_columns), u.touch, tuple(c.key for c in u.columns))
    found = _RETURNING_UPSERTS.get(key)
    if found is None:
        table = u.table
        found = _RETURNING_UPSERTS[key] = (
            sqlite.insert(table)
            .values({column: bindparam(f"v_{column}") for column in u.values})
            .on_conflict_do_update(index_elements=u.conflict_columns, set_={u.touch: table.c[u.touch]})
            .returning(*(table.c[k] for k in u.conflict_columns), *u.columns)
        )
    return found


_COMPILED: dict[int, tuple[Any, str, str, str, list[Any]]] = {}


def insert_rows(connection: Connection, statement: Any, rows: list[dict[str, Any]]) -> Any:
    """SQLite: `statement`, a one-row INSERT of bound parameters (perhaps with ON CONFLICT and RETURNING),
    for every row of `rows` in ONE statement (a multi-row VALUES), compiled once (SQLAlchemy would compile
    a multi-row `values()` again for each batch). Parameters go through the columns' bind processors as in
    `connection.execute(statement, row)`; the statement's listeners see it. Returns the cursor result."""
    found = _COMPILED.get(id(statement))
    if found is None or found[0] is not statement:
        compiled = statement.compile(dialect=connection.dialect)
        sql = compiled.string
        start = sql.index(" VALUES (") + len(" VALUES ")
        end = sql.index(")", start) + 1
        processors = compiled._bind_processors
        names = list(compiled.positiontup or ())
        found = _COMPILED[id(statement)] = (
            statement,
            sql[:end],
            sql[start:end],
            sql[end:],
            [(name, processors.get(name)) for name in names],
        )
    _, head, group, tail, binds = found
    sql = head + (", " + group) * (len(rows) - 1) + tail
    parameters = tuple(
        process(row[name]) if process is not None else row[name] for row in rows for name, process in binds
    )
    return connection.exec_driver_sql(sql, parameters)


def locked_rows(session: Session, upserts: list[Upsert]) -> list[Any]:
    """`market.db.upsert_locked_rows(session, upserts)`: the rows locked and read, each one taken from what
    the batch read up front when it is there (and then removed from it), the others read now, in order
    (after the batch's deferred writes, which they may hold: `flush`)."""
    prefetched = session.info.get(_PREFETCHED)
    if not prefetched:
        flush(session)
        return upsert_locked_rows(session, upserts)
    found = [prefetched.pop(_lock_key(u), None) for u in upserts]
    missing = [u for u, row in zip(upserts, found, strict=True) if row is None]
    if missing:
        flush(session)
    read = iter(upsert_locked_rows(session, missing) if missing else [])
    return [row if row is not None else next(read) for row in found]


_DEFERRED = "group_commit_deferred_writes"
_STAGED = "group_commit_staged_writes"

Writer = Callable[[Session, list[Any]], None]
"""Writes a list of deferred writes' parameters, in order, in as few statements as it can."""


def defer(session: Session, writer: Writer, parameters: Any) -> bool:
    """In a lean member of a batch: keep a write (`writer` will be called with it and the others like it) for
    the end of the batch, or for the first read that may need it (`flush`), and return True. Elsewhere
    return False: the caller writes now.

    A lean member's writes are its last work (metering.attempts.append): kept aside while it runs, they join
    the batch's only if it returns, so a member that raises has written nothing and needs no savepoint."""
    staged = session.info.get(_STAGED)
    if staged is None:
        return False
    staged.append((writer, parameters))
    return True


def flush(session: Session) -> None:
    """Write the batch's deferred writes now: consecutive writes of one writer in one call, in order."""
    deferred = session.info.get(_DEFERRED)
    if not deferred:
        return
    pending = list(deferred)
    deferred.clear()
    start = 0
    for end in range(1, len(pending) + 1):
        if end == len(pending) or pending[end][0] is not pending[start][0]:
            pending[start][0](session, [parameters for _, parameters in pending[start:end]])
            start = end


def _lean(session: Session, member: _Member[Any]) -> Any:
    """A lean member's work, without a savepoint: what it reads it reads through the batch (`locked_rows`,
    which only creates a missing row, as its rerun would), and what it writes is deferred (`defer`), so a
    member that raises leaves nothing to roll back. A database error (PostgreSQL aborts the transaction on
    one) fails the whole batch, whose members then run again alone."""
    staged: list[Any] = []
    session.info[_STAGED] = staged
    try:
        value = member.context.run(member.work, session)
    except DBAPIError:
        raise
    except Exception:
        return _FAILED
    finally:
        session.info.pop(_STAGED, None)
    session.info[_DEFERRED].extend(staged)
    return value


_FAILED: Any = object()
"""A member whose work raised inside the batch (its savepoint rolled back)."""


def _in_savepoint(session: Session, member: _Member[Any]) -> Any:
    """The member's work in a savepoint of the batch's transaction: if it raises, only its own writes are
    rolled back (an Idempotency-Key conflict a buyer can cause at will must not roll back up to
    MAX_BATCH - 1 other buyers' writes and make them run again one by one). A failure of the savepoint
    itself (the transaction no longer usable) propagates: the whole batch is rolled back, as before."""
    savepoint = session.begin_nested()
    try:
        value = member.context.run(member.work, session)
    except Exception:
        savepoint.rollback()
        return _FAILED
    savepoint.commit()
    return value


def _alone(database: Database, member: _Member[Any]) -> None:
    try:
        with database.transaction() as session:
            begin_write(session)
            member.value = member.context.run(member.work, session)
    except BaseException as error:  # handed to its own caller
        member.error = error


_COMMITTERS: dict[int, tuple[Database, GroupCommit]] = {}
_COMMITTERS_LOCK = threading.Lock()


def committer(database: Database) -> GroupCommit:
    """The group committer of `database` in this process (made at first use)."""
    found = _COMMITTERS.get(id(database))
    if found is not None and found[0] is database:
        return found[1]
    with _COMMITTERS_LOCK:
        found = _COMMITTERS.get(id(database))
        if found is None or found[0] is not database:
            found = _COMMITTERS[id(database)] = (database, GroupCommit(database))
        return found[1]


ON_POSTGRESQL = True
"""Group commit's default on PostgreSQL (on SQLite it is on by default). On since branch dash-p99: a batch's
lean members (transaction 3) run no statement of their own, their rows taken from the batch's ordered locks
and their writes sent at the end in one pipeline (psycopg's executemany), so a batch costs about three round
trips whatever its size: at 16 connections 0.76x main's CPU per request (main: off; docs/benchmarks.md
"dash-p99"). Before (perf-p99), each member made its own round trips one after the other in the batch,
where alone they would run side by side: 0.75x the requests per second, so it was off."""


def enabled(database: Database, settings: Settings) -> bool:
    """The setting, or by default: on for SQLite, ON_POSTGRESQL for PostgreSQL."""
    chosen = settings.metering_group_commit
    if chosen is not None:
        return chosen
    return database.is_sqlite or ON_POSTGRESQL


def write(
    database: Database,
    settings: Settings,
    work: Callable[[Session], T],
    locks: Sequence[Upsert] = (),
    *,
    lean: bool = False,
) -> T:
    """`work(session)` in a write transaction begun with market.db.begin_write, committed before this
    returns: grouped with concurrent writes when group commit is on, alone otherwise. `locks`: the rows
    `work` will lock (a month counter, a chain head), which a batch takes up front (in order on PostgreSQL).
    `lean`: `work` reads them through `locked_rows` and writes no other row of those tables."""
    if enabled(database, settings):
        return committer(database).run(work, locks, lean=lean)
    with database.transaction() as session:
        begin_write(session)
        return work(session)

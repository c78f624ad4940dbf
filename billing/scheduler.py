"""The billing cycle under APScheduler, with its jobs in the marketplace database.

The job store is persistent (SQLAlchemyJobStore on the marketplace database), so a restart keeps
the schedule, and a missed run is coalesced into one run at start-up. Several replicas may each run
the scheduler: a period is billed by the scheduler only while holding the period's row lock, and
only if `scheduled_run_at` is still empty, so it is billed once. A restart misses nothing: each run
bills every ended period since the earliest unbilled usage.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, event, func, select

from billing import card_payments, rating, repository
from billing.config import Period
from billing.models import InvoiceLineUsage
from market.clock import utcnow
from market.db import Database, make_engine
from market.locks import lock, release, try_lock
from market.settings import Settings, get_settings
from metering.models import UsageRecord

log = logging.getLogger("market.billing")

CYCLE_JOB = "billing-cycle"
RECHECK_JOB = "stripe-recheck"
UPKEEP_JOB = "compliance-upkeep"
"""Expiry, reminders, notices, registrations and e-mail: market/compliance/jobs.py."""
CHECKPOINT_JOB = "usage-checkpoint"
MAX_CATCH_UP = 24


def _earliest_unbilled_month(database: Database) -> str | None:
    with database.transaction() as session:
        return session.scalar(
            select(func.min(UsageRecord.month)).where(
                UsageRecord.charge_type != "rejected",
                ~select(InvoiceLineUsage.usage_record_id)
                .where(InvoiceLineUsage.usage_record_id == UsageRecord.id)
                .exists(),
            )
        )


def run_cycle(database: Database, now: datetime | None = None) -> list[str]:
    """Bill every ended period not yet billed by the scheduler; returns the periods billed now."""
    now = now or utcnow()
    last_ended = Period.containing(now).previous()
    earliest = _earliest_unbilled_month(database)
    period = Period.containing(datetime.fromisoformat(f"{earliest}-01T00:00:00+00:00")) if earliest else last_ended
    candidates: list[Period] = []
    while period.key <= last_ended.key and len(candidates) < MAX_CATCH_UP:
        candidates.append(period)
        period = period.next()
    if last_ended not in candidates:
        candidates.append(last_ended)
    billed = []
    for candidate in candidates:
        with database.transaction(write=True) as session:
            row = repository.lock_for_change(session, candidate)  # the same lock order as every change
            if row.scheduled_run_at is not None or row.status == "closed":
                continue
            rating.run_period(session, candidate, now=now)
            row.scheduled_run_at = now
            billed.append(candidate.key)
    return billed


def billing_cycle_job() -> None:
    """The scheduled job (referenced by name, so the persistent store keeps no pickled objects)."""
    settings = get_settings()
    database = Database.from_settings(settings)
    try:
        billed = run_cycle(database)
        if billed:
            log.info("billed periods %s", ", ".join(billed))
    finally:
        database.dispose()


def stripe_recheck_job() -> None:
    """Re-check card payments left pending (a webhook may never come)."""
    settings = get_settings()
    database = Database.from_settings(settings)
    try:
        card_payments.recheck_pending(database, settings)
    finally:
        database.dispose()


def usage_checkpoint_job() -> None:
    """Append a signed checkpoint of the usage chains' heads to the anchor file (metering.anchors)."""
    from metering import anchors

    database = Database.from_settings(get_settings())
    try:
        with database.transaction(write=True) as session:
            anchors.write_checkpoint(session)
    finally:
        database.dispose()


def _job_store_engine(database: Database) -> Engine:
    """The engine APScheduler's job store runs its own statements on. On SQLite, one of its own whose every
    transaction takes the writer lock first (the kernel's queue on `<db>.writer-lock`, then BEGIN IMMEDIATE,
    as market.db.begin_write), so that the store's writes (a job's next run time after each run) never wait
    in SQLite's busy handler, nor make the marketplace's writers wait in theirs."""
    if not database.is_sqlite:
        return database.engine
    url = database.engine.url.render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=1, max_overflow=1)
    path = Path(f"{database.engine.url.database}.writer-lock")

    def begin(connection: Any) -> None:
        if _STORE_FD not in connection.info:
            connection.info[_STORE_FD] = lock(path)
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:  # after the pool's rollback-on-return: the transaction has ended
            release(record.info.pop(_STORE_FD, None))

    event.listen(engine, "begin", begin)
    event.listen(engine, "checkin", checkin)
    return engine


_STORE_FD = "job_store_writer_fd"


def start_scheduler(database: Database, settings: Settings) -> BackgroundScheduler:
    """Start the billing scheduler with its jobs stored in the marketplace database."""
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=_job_store_engine(database), tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    # Started paused so that the stored jobs are loaded first: a job already in the store keeps its
    # next run time (a restart never postpones it); a new one runs at once, then hourly.
    scheduler.start(paused=True)
    if scheduler.get_job(CYCLE_JOB) is None:
        scheduler.add_job(
            "billing.scheduler:billing_cycle_job", "interval", hours=1, id=CYCLE_JOB, next_run_time=utcnow()
        )
    if scheduler.get_job(UPKEEP_JOB) is None:
        scheduler.add_job(
            "market.compliance.jobs:upkeep_job", "interval", minutes=15, id=UPKEEP_JOB, next_run_time=utcnow()
        )
    if scheduler.get_job(CHECKPOINT_JOB) is None:
        scheduler.add_job(
            "billing.scheduler:usage_checkpoint_job", "interval", hours=1, id=CHECKPOINT_JOB, next_run_time=utcnow()
        )
    if settings.stripe_api_key is not None and scheduler.get_job(RECHECK_JOB) is None:
        scheduler.add_job(
            "billing.scheduler:stripe_recheck_job", "interval", minutes=15, id=RECHECK_JOB, next_run_time=utcnow()
        )
    scheduler.resume()
    return scheduler


SCHEDULER_LOCK = "scheduler.lock"
TAKE_OVER_SECONDS = 30.0
"""How often an API process without the scheduler checks whether the one that ran it has gone."""


@dataclass
class SchedulerRole:
    """Whether this API process runs the scheduler: now, or later if it takes over."""

    scheduler: BackgroundScheduler | None = None

    @property
    def running(self) -> bool:
        return self.scheduler is not None


@contextlib.contextmanager
def scheduler_if_first(
    database: Database, settings: Settings, *, take_over_seconds: float = TAKE_OVER_SECONDS
) -> Iterator[SchedulerRole]:
    """Run the scheduler in exactly one API process of this machine (`market serve --workers N`).

    The process holding `<data_dir>/run/scheduler.lock` runs it; the others check every
    `take_over_seconds` and take over if that process has gone (the kernel then releases its lock).
    Across machines, billing stays once-only by the period row lock (see the module docstring).
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = settings.run_dir / SCHEDULER_LOCK
    role = SchedulerRole()
    stop = threading.Event()
    held: list[int] = []

    def take(fd: int) -> None:
        held.append(fd)
        role.scheduler = start_scheduler(database, settings)

    def take_when_free() -> None:
        while not stop.wait(take_over_seconds):
            fd = try_lock(lock_path)
            if fd is not None:
                take(fd)
                return

    first = try_lock(lock_path)
    watcher: threading.Thread | None = None
    if first is not None:
        take(first)
    else:
        watcher = threading.Thread(target=take_when_free, name="scheduler-takeover", daemon=True)
        watcher.start()
    try:
        yield role
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
        if role.scheduler is not None:
            role.scheduler.shutdown(wait=False)
            role.scheduler = None
        for fd in held:
            release(fd)

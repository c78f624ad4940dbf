"""The billing cycle under APScheduler, with its jobs in the marketplace database.

The job store is persistent (SQLAlchemyJobStore on the marketplace database), so a restart keeps
the schedule, and a missed run is coalesced into one run at start-up. Several replicas may each run
the scheduler: a period is billed by the scheduler only while holding the period's row lock, and
only if `scheduled_run_at` is still empty, so it is billed once. A restart misses nothing: each run
bills every ended period since the earliest unbilled usage.
"""

from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from billing import payments, rating, repository
from billing.config import Period
from billing.models import InvoiceLineUsage
from market.clock import utcnow
from market.db import Database
from market.settings import Settings, get_settings
from metering.models import UsageRecord

log = logging.getLogger("market.billing")

CYCLE_JOB = "billing-cycle"
RECHECK_JOB = "stripe-recheck"
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
        with database.transaction() as session:
            rating.acquire_billing_lock(session)  # the same lock order as every other run
            row = repository.lock_period(session, candidate)
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
        with database.transaction() as session:
            payments.recheck_pending(session, settings)
    finally:
        database.dispose()


def usage_checkpoint_job() -> None:
    """Append a signed checkpoint of the usage chains' heads to the anchor file (metering.anchors)."""
    from metering import anchors

    database = Database.from_settings(get_settings())
    try:
        with database.transaction() as session:
            anchors.write_checkpoint(session)
    finally:
        database.dispose()


def start_scheduler(database: Database, settings: Settings) -> BackgroundScheduler:
    """Start the billing scheduler with its jobs stored in the marketplace database."""
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=database.engine, tablename="apscheduler_jobs")},
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

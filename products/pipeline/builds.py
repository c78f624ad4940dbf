"""Builds in the background: a job row with its stage, one running build per product, crash-safe.

`start` checks the request (the product is the operator's own, the uploads too, the recipe and policy
parse), then claims the product's build slot: `BuildJob.active` is unique and holds the product's id
while a build runs, so a second click, or a second API process, finds the running job instead of
starting another. The build runs in a thread of the process that started it, in its own transaction
(products.versions.build_from_uploads, the same code as the synchronous POST /v1/products/{slug}/builds);
every stage it reaches is written to the job row in a short transaction of its own, and a heartbeat
renews `heartbeat_at` every few seconds while a long DuckDB statement runs. A process killed mid-build
(kill -9, a crash, a restart) stops renewing it: whoever next reads the product's jobs (the page polling,
the next build) finds the heartbeat older than the lease and marks the job failed, which frees the slot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import Database, begin_write_now
from market.errors import MarketError, NotFound
from market.settings import Settings
from products import repository
from products.pipeline import uploads
from products.pipeline.models import BuildJob
from products.schemas import BuildIn

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
"""A running job whose heartbeat is older than this belongs to a process that died."""
HEARTBEAT_SECONDS = 5.0

STAGES = ("queued", "reading", "cleaning", "desensitising", "statistics", "audit", "saving", "done")
"""The stages a build goes through, in order (per table for reading, cleaning and desensitising)."""


def _own_product_id(session: Session, actor: Principal, slug: str) -> str:
    actor.require(Role.OPERATOR)
    product = repository.by_slug(session, slug)
    if product is None or product.operator_org_id != actor.org_id:
        raise NotFound("product_not_found", slug=slug)
    return product.id


def sweep(session: Session, product_id: str) -> None:
    """Mark the product's running jobs whose heartbeat stopped (their process died) failed; frees the slot.

    Read first: a page polling a build's progress only reads, and writes (under the SQLite writer lock,
    market.db.begin_write_now) only when a job is found stale."""
    stale = (
        BuildJob.product_id == product_id,
        BuildJob.state == "running",
        BuildJob.heartbeat_at < utcnow() - LEASE,
    )
    if session.scalar(select(BuildJob.id).where(*stale).limit(1)) is None:
        return
    begin_write_now(session)
    session.execute(
        update(BuildJob)
        .where(*stale)
        .values(
            state="failed",
            active=None,
            error_code="build_interrupted",
            error_params={},
            finished_at=utcnow(),
        )
    )


def _active(session: Session, product_id: str) -> BuildJob | None:
    return session.scalars(select(BuildJob).where(BuildJob.active == product_id)).one_or_none()


def start(database: Database, settings: Settings, actor: Principal, slug: str, body: BuildIn) -> tuple[str, bool]:
    """Start building the product's next version in the background; (job id, started).

    When a build of the product is already running, nothing starts and its job's id is returned.
    The request is checked first, so a bad recipe, policy or upload is refused here, not in the job.
    """
    from products.service import parse_policy
    from products.versions import parse_recipe

    with database.transaction(write=True) as session:
        product_id = _own_product_id(session, actor, slug)
        parse_policy(body.policy)
        if body.recipe is not None:
            parse_recipe(body.recipe)
        for upload_id in body.tables.values():
            uploads.own_upload(session, actor, upload_id)
        sweep(session, product_id)
    try:
        with database.transaction(write=True) as session:
            running = _active(session, product_id)
            if running is not None:
                return running.id, False
            job = BuildJob(product_id=product_id, org_id=actor.org_id, active=product_id, created_by=actor.user_id)
            session.add(job)
            session.flush()
            job_id = job.id
    except IntegrityError:
        with database.transaction() as session:
            running = _active(session, product_id)
            if running is None:  # it ended in between: the caller may click again
                raise
            return running.id, False
    threading.Thread(
        target=run, args=(database, settings, actor, slug, body, job_id), name=f"build-{job_id}", daemon=True
    ).start()
    return job_id, True


def _set(database: Database, job_id: str, **values: Any) -> None:
    """Write to a running job in a short transaction of its own (never the build's)."""
    try:
        with database.transaction(write=True) as session:
            session.execute(update(BuildJob).where(BuildJob.id == job_id, BuildJob.state == "running").values(**values))
    except Exception:  # a missed progress write must not fail the build; the next one catches up
        log.warning("could not record the progress of build %s", job_id, exc_info=True)


def run(database: Database, settings: Settings, actor: Principal, slug: str, body: BuildIn, job_id: str) -> None:
    """The job's body: build the version, recording each stage, then done (with its number) or failed."""
    from products.versions import build_from_uploads

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            _set(database, job_id, heartbeat_at=utcnow())

    def progress(
        stage: str, table: str | None = None, rows_done: int | None = None, rows_total: int | None = None
    ) -> None:
        _set(
            database,
            job_id,
            stage=stage,
            table_name=table,
            rows_done=rows_done,
            rows_total=rows_total,
            heartbeat_at=utcnow(),
        )

    heart = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    heart.start()
    end: dict[str, Any]
    try:
        # A reader while DuckDB works: add_version takes the SQLite writer lock only for its final writes.
        with database.transaction() as session:
            if database.engine.dialect.name == "postgresql":
                # The build holds the product's row lock while DuckDB works for minutes on a large file;
                # the job slot and heartbeat, not the idle-in-transaction timeout, guard against a lost build.
                session.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            version = build_from_uploads(session, settings, actor, slug, body, progress)
            number = version.number
        end = {"state": "done", "stage": "done", "version_number": number}
    except MarketError as error:
        end = {"state": "failed", "error_code": error.code, "error_params": _plain(error.params)}
    except Exception:
        log.exception("build %s failed", job_id)
        end = {"state": "failed", "error_code": "build_failed", "error_params": {}}
    finally:
        stop.set()
    with database.transaction(write=True) as session:
        session.execute(update(BuildJob).where(BuildJob.id == job_id).values(active=None, finished_at=utcnow(), **end))


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, bool)) or v is None else str(v) for k, v in params.items()}


def job_of(session: Session, actor: Principal, slug: str, job_id: str) -> BuildJob:
    """One of the operator's own build jobs (stale ones are marked failed first); 404 otherwise."""
    product_id = _own_product_id(session, actor, slug)
    sweep(session, product_id)
    job = session.get(BuildJob, job_id)
    if job is None or job.product_id != product_id:
        raise NotFound("build_not_found", build=job_id)
    return job


def jobs_of(session: Session, actor: Principal, slug: str, limit: int = 10) -> Sequence[BuildJob]:
    """The product's latest build jobs, newest first."""
    product_id = _own_product_id(session, actor, slug)
    sweep(session, product_id)
    return session.scalars(
        select(BuildJob).where(BuildJob.product_id == product_id).order_by(BuildJob.created_at.desc()).limit(limit)
    ).all()

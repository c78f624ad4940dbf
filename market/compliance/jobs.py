"""Jobs that keep states true without waiting for a request to touch them (the upkeep job).

Run every 15 minutes by the scheduler that bills (billing/scheduler.py), and by `market upkeep`.
Safe with several replicas: each step runs in its own transaction that first takes the `upkeep`
row lock (the same sequence-row lock billing uses), every state change is guarded by the state it
changes from, and every notification carries a dedupe key, unique per user.

- grants past `valid_until` become `expired` (logged); products no grant covers any more are
  delisted (logged, on behalf of the regulator who granted) and their agreements stopped;
- agreements past `valid_until` become `expired`;
- access requests past their review deadline remind the reviewer, once;
- finalized invoices with money due notify the buyer and finance 3 days before the due date, and
  again once overdue;
- registrations whose notice ended with no open objection are confirmed;
- allowed revenue: warnings at 80% and 100%; ended years closed with their carry-forward;
- privacy budgets (DP mode) at 80% and 100% notify the buyer, and a version's cap across agreements
  the regulators and the operator, once per threshold (market/compliance/privacy_budgets.py);
- resumable uploads no part has touched for `MARKET_UPLOAD_SESSION_TTL_HOURS` (default 24) are removed,
  their bytes and their session (products/pipeline/resumable.py);
- pending e-mails are sent (market/notifications/delivery.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import repository as billing_repo
from billing.models import Invoice, InvoiceStatus
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.compliance import allowed_revenue, privacy_budgets, registration
from market.db import Database
from market.notifications import delivery
from market.notifications import service as notifications
from market.settings import Settings, get_settings
from metering.models import AccessRequest, Agreement, AgreementStatus, RequestStatus
from products.governance.authorisations import delist_uncovered
from products.governance.models import Authorisation, AuthorisationEvent, AuthorisationStatus
from products.models import Product
from products.pipeline import resumable

log = logging.getLogger("market.upkeep")

DUE_SOON = timedelta(days=3)
SYSTEM = "system"


def _lock(session: Session) -> None:
    billing_repo.next_number(session, "upkeep", 0)


def stop_agreements(session: Session, product_ids: list[str], reason: str, now: datetime) -> int:
    """End the active agreements on `product_ids` (revoked by the system, with `reason`); notify buyers."""
    if not product_ids:
        return 0
    rows = session.scalars(
        select(Agreement).where(
            Agreement.product_id.in_(product_ids),
            Agreement.status == AgreementStatus.ACTIVE.value,
            Agreement.valid_until > now,
        )
    ).all()
    for agreement in rows:
        agreement.status = AgreementStatus.REVOKED.value
        agreement.revoked_at = now
        agreement.revoked_by_role = SYSTEM
        agreement.revoked_reason = reason
        notifications.notify(
            session,
            notifications.users_of_orgs(session, [agreement.buyer_org_id]),
            "agreement_stopped",
            f"agreement-stopped:{agreement.id}",
            {"agreement": agreement.id, "reason": reason},
        )
    session.flush()
    return len(rows)


def expire_grants(session: Session, now: datetime) -> dict[str, int]:
    """Grants past their validity become `expired`; products they no longer cover are delisted, agreements stopped."""
    counts = {"grants_expired": 0, "products_delisted": 0, "agreements_stopped": 0}
    due = session.scalars(
        select(Authorisation).where(
            Authorisation.status.in_([AuthorisationStatus.ACTIVE.value, AuthorisationStatus.SUSPENDED.value]),
            Authorisation.valid_until <= now,
        )
    ).all()
    for grant in due:
        reason = f"Authorisation {grant.id} expired on {grant.valid_until:%Y-%m-%d}."
        session.add(
            AuthorisationEvent(
                authorisation_id=grant.id,
                from_status=grant.status,
                to_status=AuthorisationStatus.EXPIRED.value,
                actor_user_id=grant.granted_by,
                reason=reason,
                at=now,
            )
        )
        grant.status = AuthorisationStatus.EXPIRED.value
        grant.updated_at = now
        session.flush()
        on_behalf = Principal(user_id=grant.granted_by, org_id="", org_name="", role=Role.REGULATOR)
        delisted = delist_uncovered(session, on_behalf, grant.operator_org_id, reason)
        counts["grants_expired"] += 1
        counts["products_delisted"] += len(delisted)
        counts["agreements_stopped"] += stop_agreements(session, [p.id for p in delisted], reason, now)
        notifications.notify(
            session,
            notifications.users_of_orgs(session, [grant.operator_org_id]),
            "authorisation_expired",
            f"authorisation-expired:{grant.id}",
            {"authorisation": grant.id, "delisted": ", ".join(p.slug for p in delisted) or "-"},
        )
    return counts


def expire_agreements(session: Session, now: datetime) -> dict[str, int]:
    """Agreements past `valid_until` become `expired`, and their buyers are told."""
    due = session.scalars(
        select(Agreement).where(Agreement.status == AgreementStatus.ACTIVE.value, Agreement.valid_until <= now)
    ).all()
    for agreement in due:
        agreement.status = AgreementStatus.EXPIRED.value
        notifications.notify(
            session,
            notifications.users_of_orgs(session, [agreement.buyer_org_id]),
            "agreement_expired",
            f"agreement-expired:{agreement.id}",
            {"agreement": agreement.id, "valid_until": f"{agreement.valid_until:%Y-%m-%d}"},
        )
    session.flush()
    return {"agreements_expired": len(due)}


def remind_overdue_reviews(session: Session, now: datetime) -> dict[str, int]:
    """Remind the reviewer, once, of each access request past its review deadline."""
    due = session.scalars(
        select(AccessRequest).where(
            AccessRequest.status == RequestStatus.PENDING.value,
            AccessRequest.review_due_at.is_not(None),
            AccessRequest.review_due_at < now,
        )
    ).all()
    sent = 0
    for request in due:
        product = session.get(Product, request.product_id)
        if request.reviewer_role == Role.REGULATOR.value:
            reviewers = notifications.users_with_roles(session, Role.REGULATOR)
        else:
            reviewers = notifications.users_of_orgs(session, [product.operator_org_id] if product else [])
        sent += notifications.notify(
            session,
            reviewers,
            "review_overdue",
            f"review-overdue:{request.id}",
            {
                "request": request.id,
                "product": product.slug if product else "",
                "due": f"{request.review_due_at:%Y-%m-%d}",
            },
        )
    return {"review_reminders": sent}


def invoice_notices(session: Session, now: datetime) -> dict[str, int]:
    """Finalized invoices with money due: a notice 3 days before the due date and one once overdue."""
    counts = {"invoice_due_notices": 0, "invoice_overdue_notices": 0}
    rows = session.scalars(
        select(Invoice).where(
            Invoice.status == InvoiceStatus.FINALIZED.value,
            Invoice.due_at.is_not(None),
            Invoice.due_at <= now + DUE_SOON,
        )
    ).all()
    finance = notifications.users_with_roles(session, Role.FINANCE)
    for invoice in rows:
        due_minor = invoice.total_minor - invoice.credited_minor - invoice.paid_minor
        if due_minor <= 0 or invoice.due_at is None:
            continue
        kind = "invoice_overdue" if now >= invoice.due_at else "invoice_due"
        counts[f"{kind}_notices"] += notifications.notify(
            session,
            [*notifications.users_of_orgs(session, [invoice.buyer_org_id]), *finance],
            kind,
            f"{kind}:{invoice.id}",
            {
                "invoice": invoice.number or invoice.id,
                "amount": due_minor,
                "currency": invoice.currency,
                "due": f"{invoice.due_at:%Y-%m-%d}",
            },
        )
    return counts


def _confirm_registrations(session: Session, now: datetime) -> dict[str, int]:
    return {"registrations_confirmed": registration.confirm_due(session, now)}


Step = Callable[[Session, datetime], dict[str, int]]
STEPS: tuple[Step, ...] = (
    expire_grants,
    expire_agreements,
    remind_overdue_reviews,
    invoice_notices,
    _confirm_registrations,
    allowed_revenue.watch,
    privacy_budgets.watch,
)


def run_upkeep(database: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Run every upkeep step once (each in its own locked transaction), then send due e-mails."""
    now = now or utcnow()
    totals: dict[str, int] = {}
    steps: tuple[Step, ...] = (*STEPS, partial(resumable.sweep_abandoned, settings=settings))
    for step in steps:
        with database.transaction(write=True) as session:
            _lock(session)
            for name, count in step(session, now).items():
                totals[name] = totals.get(name, 0) + count
    report = delivery.deliver_due(database, settings, now)
    totals["emails_sent"] = len(report.sent)
    totals["emails_failed"] = len(report.failed) + len(report.gave_up)
    return totals


def upkeep_job() -> None:
    """The scheduled job (referenced by name, so the persistent store keeps no pickled objects)."""
    settings = get_settings()
    database = Database.from_settings(settings)
    try:
        done = {k: v for k, v in run_upkeep(database, settings).items() if v}
        if done:
            log.info("upkeep: %s", done)
    finally:
        database.dispose()

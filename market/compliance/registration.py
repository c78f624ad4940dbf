"""Registration (登记) with public notice (公示).

When the regulator registers a resource (or a product, where required), the registration enters a
notice period of N working days (MARKET_REGISTRATION_NOTICE_WORKING_DAYS, default 5; Monday to
Friday count, weekends do not, public holidays are not modelled). During the notice any signed-in
organisation may object; the regulator dismisses or upholds each objection. Upholding withdraws the
registration and returns a resource to its source department. A notice that ends with no open
objection is confirmed (by the upkeep job, or the regulator at once) with its registration code
and a lookup code; anyone can look a registration up by either code, without signing in.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.compliance.models import Objection, Registration, RegistrationStatus
from market.compliance.schemas import ObjectionOut, PublicRegistrationOut, RegistrationOut
from market.errors import Conflict, NotFound
from market.notifications import service as notifications
from market.settings import Settings
from products import service as products
from products.governance.models import DataResource, ResourceStatus
from products.models import ProductStatus

LOOKUP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""No 0/O or 1/I, so a code read aloud or typed from paper is not mistaken."""


def add_working_days(start: datetime, days: int) -> datetime:
    """`start` moved forward by `days` working days (Monday to Friday), keeping the time of day."""
    moment = start
    left = days
    while left > 0:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            left -= 1
    return moment


def _lookup_code() -> str:
    return "".join(secrets.choice(LOOKUP_ALPHABET) for _ in range(12))


def open_notice(
    session: Session,
    actor: Principal,
    *,
    subject_kind: str,
    subject_id: str,
    title: str,
    owner_org_id: str,
    registration_code: str,
    notice_working_days: int,
) -> Registration:
    """Start the public notice of a subject the regulator has just registered."""
    now = utcnow()
    registration = session.scalars(
        select(Registration).where(Registration.subject_kind == subject_kind, Registration.subject_id == subject_id)
    ).first()
    if registration is not None and registration.status != RegistrationStatus.WITHDRAWN:
        raise Conflict("already_registered", registration_code=registration.registration_code)
    clash = session.scalars(select(Registration).where(Registration.registration_code == registration_code)).first()
    if clash is not None and clash is not registration:
        raise Conflict("duplicate_registration_code", registration_code=registration_code)
    if registration is None:
        registration = Registration(subject_kind=subject_kind, subject_id=subject_id)
        session.add(registration)
    registration.title = title
    registration.owner_org_id = owner_org_id
    registration.registration_code = registration_code
    registration.lookup_code = _lookup_code()
    registration.status = RegistrationStatus.NOTICE.value
    registration.notice_starts_at = now
    registration.notice_ends_at = add_working_days(now, notice_working_days)
    registration.registered_by = actor.user_id
    registration.confirmed_at = None
    registration.withdrawn_reason = ""
    session.flush()
    return registration


def register_product(
    session: Session, settings: Settings, actor: Principal, slug: str, code: str | None
) -> Registration:
    """The regulator registers a submitted or listed product, where registration is required."""
    actor.require(Role.REGULATOR)
    product = products.visible_product(session, actor, slug)
    if product.status not in (ProductStatus.SUBMITTED.value, ProductStatus.LISTED.value):
        raise Conflict("registration_needs_review", status=product.status)
    now = utcnow()
    return open_notice(
        session,
        actor,
        subject_kind="product",
        subject_id=product.id,
        title=product.title,
        owner_org_id=product.operator_org_id,
        registration_code=code or f"{product.region}-P-{now:%Y}-{secrets.token_hex(3).upper()}",
        notice_working_days=settings.registration_notice_working_days,
    )


def listing(session: Session, *, status: str | None = None) -> Sequence[Registration]:
    """Registrations, optionally in one state: public information (the register and its notices)."""
    query = select(Registration)
    if status is not None:
        query = query.where(Registration.status == status)
    return session.scalars(query.order_by(Registration.created_at.desc(), Registration.id)).all()


def get(session: Session, registration_id: str) -> Registration:
    found = session.get(Registration, registration_id)
    if found is None:
        raise NotFound("registration_not_found", registration=registration_id)
    return found


def objections_of(session: Session, registration_id: str) -> Sequence[Objection]:
    return session.scalars(
        select(Objection).where(Objection.registration_id == registration_id).order_by(Objection.created_at)
    ).all()


def object_to(session: Session, actor: Principal, registration_id: str, reason: str) -> Objection:
    """Any signed-in organisation objects to a registration while its notice is open; the regulator and
    the subject's owner are notified."""
    registration = get(session, registration_id)
    if registration.status != RegistrationStatus.NOTICE or utcnow() >= registration.notice_ends_at:
        raise Conflict("notice_closed", registration_code=registration.registration_code)
    objection = Objection(registration_id=registration.id, org_id=actor.org_id, filed_by=actor.user_id, reason=reason)
    session.add(objection)
    session.flush()
    notifications.notify(
        session,
        [
            *notifications.users_with_roles(session, Role.REGULATOR),
            *notifications.users_of_orgs(session, [registration.owner_org_id]),
        ],
        "objection_filed",
        f"objection:{objection.id}",
        {"registration_code": registration.registration_code, "title": registration.title},
    )
    return objection


def objections_by(session: Session, actor: Principal) -> list[tuple[Registration, Objection]]:
    """The objections the caller's organisation filed, newest first, each with its registration."""
    rows = session.execute(
        select(Registration, Objection)
        .join(Objection, Objection.registration_id == Registration.id)
        .where(Objection.org_id == actor.org_id)
        .order_by(Objection.created_at.desc(), Objection.id)
    ).all()
    return [(r, o) for r, o in rows]


def open_to_objections(session: Session) -> list[Registration]:
    """Registrations whose public notice is running now, the soonest to end first."""
    now = utcnow()
    found = [r for r in listing(session, status=RegistrationStatus.NOTICE.value) if now < r.notice_ends_at]
    return sorted(found, key=lambda r: (r.notice_ends_at, r.id))


def resolve(
    session: Session, actor: Principal, registration_id: str, objection_id: str, decision: str, resolution: str
) -> Objection:
    """The regulator dismisses an objection, or upholds it and so withdraws the registration."""
    actor.require(Role.REGULATOR)
    registration = get(session, registration_id)
    objection = session.get(Objection, objection_id)
    if objection is None or objection.registration_id != registration.id:
        raise NotFound("objection_not_found", objection=objection_id)
    if objection.status != "open":
        raise Conflict("objection_resolved", status=objection.status)
    now = utcnow()
    objection.status = "upheld" if decision == "uphold" else "dismissed"
    objection.resolution = resolution
    objection.resolved_by = actor.user_id
    objection.resolved_at = now
    if decision == "uphold" and registration.status == RegistrationStatus.NOTICE:
        registration.status = RegistrationStatus.WITHDRAWN.value
        registration.withdrawn_reason = resolution
        if registration.subject_kind == "resource":
            resource = session.get(DataResource, registration.subject_id)
            if resource is not None:
                resource.status = ResourceStatus.RETURNED.value
                resource.registration_code = None
                resource.review_comment = f"Objection upheld during public notice: {resolution}"
                resource.updated_at = now
    session.flush()
    notifications.notify(
        session,
        [*notifications.users_of_orgs(session, [objection.org_id, registration.owner_org_id])],
        "objection_resolved",
        f"objection-resolved:{objection.id}",
        {"registration_code": registration.registration_code, "decision": objection.status, "resolution": resolution},
    )
    return objection


def confirm(session: Session, registration: Registration, now: datetime) -> bool:
    """Confirm a registration whose notice has ended with no open objection; False if it cannot be yet."""
    if registration.status != RegistrationStatus.NOTICE or now < registration.notice_ends_at:
        return False
    if any(o.status == "open" for o in objections_of(session, registration.id)):
        return False
    registration.status = RegistrationStatus.CONFIRMED.value
    registration.confirmed_at = now
    session.flush()
    notifications.notify(
        session,
        notifications.users_of_orgs(session, [registration.owner_org_id]),
        "registration_confirmed",
        f"registration-confirmed:{registration.id}",
        {
            "registration_code": registration.registration_code,
            "lookup_code": registration.lookup_code,
            "title": registration.title,
        },
    )
    return True


def confirm_by_regulator(session: Session, actor: Principal, registration_id: str) -> Registration:
    """The regulator confirms at once a registration whose notice ended with no open objection."""
    actor.require(Role.REGULATOR)
    registration = get(session, registration_id)
    if not confirm(session, registration, utcnow()):
        raise Conflict("registration_not_confirmable", status=registration.status)
    return registration


def confirm_due(session: Session, now: datetime) -> int:
    """Confirm every registration whose notice has ended without open objections (the upkeep job)."""
    due = session.scalars(
        select(Registration).where(
            Registration.status == RegistrationStatus.NOTICE.value, Registration.notice_ends_at <= now
        )
    ).all()
    return sum(1 for registration in due if confirm(session, registration, now))


def by_code(session: Session, code: str) -> Registration:
    """A registration by its registration code or its lookup code (public, no sign-in)."""
    found = session.scalars(
        select(Registration).where(
            (Registration.registration_code == code) | (Registration.lookup_code == code.upper())
        )
    ).first()
    if found is None:
        raise NotFound("registration_not_found", registration=code)
    return found


def present(session: Session, registration: Registration, viewer: Principal) -> RegistrationOut:
    """A registration with the objections the viewer may read: the regulator and the registered subject's
    owner read all of them, any other organisation only its own."""
    out = RegistrationOut.model_validate(registration)
    sees_all = viewer.role == Role.REGULATOR or viewer.org_id == registration.owner_org_id
    out.objections = [
        ObjectionOut.model_validate(o)
        for o in objections_of(session, registration.id)
        if sees_all or o.org_id == viewer.org_id
    ]
    return out


def notices_of(session: Session, viewer: Principal, subject_kind: str, subject_id: str) -> list[RegistrationOut]:
    """One resource's or product's registrations, newest first, with the objections the viewer may read."""
    found = session.scalars(
        select(Registration)
        .where(Registration.subject_kind == subject_kind, Registration.subject_id == subject_id)
        .order_by(Registration.created_at.desc(), Registration.id)
    ).all()
    return [present(session, r, viewer) for r in found]


def present_public(session: Session, registration: Registration) -> PublicRegistrationOut:
    owner = session.get(Organisation, registration.owner_org_id)
    return PublicRegistrationOut(
        subject_kind=registration.subject_kind,
        title=registration.title,
        owner=owner.name if owner else "",
        registration_code=registration.registration_code,
        status=registration.status,
        notice_starts_at=registration.notice_starts_at,
        notice_ends_at=registration.notice_ends_at,
        confirmed_at=registration.confirmed_at,
        open_objections=sum(1 for o in objections_of(session, registration.id) if o.status == "open"),
    )

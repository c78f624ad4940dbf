"""Annual disclosure (年度信息披露) and operating reports: drafts, publication and the deadline.

A draft can be regenerated as often as needed. Publishing freezes it: its content is never
regenerated again, its SHA-256 content hash (over canonical JSON: sorted keys, no spaces, UTF-8)
is fixed, and it appears on the public disclosure page. Reports for a year are due by 31 March of
the next year (the end of that day, UTC+8, Beijing time).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Organisation, OrgKind, Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.compliance import allowed_revenue, report_content
from market.compliance.models import DisclosureReport
from market.compliance.schemas import DisclosureStatusOut
from market.errors import Conflict, NotFound
from products.governance.models import Authorisation

REGULATOR_KIND = "regulator_disclosure"
OPERATOR_KINDS = ("operator_disclosure", "operating_report")
BEIJING = timedelta(hours=8)


def deadline(year: int) -> datetime:
    """The end of 31 March of the following year, Beijing time, as a UTC instant."""
    return datetime(year + 1, 4, 1, tzinfo=UTC) - BEIJING


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of `content` (sorted keys, compact, UTF-8)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _publisher(session: Session, actor: Principal, kind: str, operator: str | None) -> str:
    """The organisation a report is for: the regulator's own, or the operator's."""
    if kind == REGULATOR_KIND:
        actor.require(Role.REGULATOR)
        return actor.org_id
    actor.require(Role.OPERATOR, Role.REGULATOR)
    if actor.role == Role.OPERATOR:
        return actor.org_id
    org = session.get(Organisation, operator or "")
    if org is None or org.kind != OrgKind.OPERATOR.value:
        raise NotFound("operator_not_found", org=operator or "")
    return org.id


def build(session: Session, year: int, kind: str, org_id: str) -> dict[str, Any]:
    """The report's content, with a header naming publisher, year and kind."""
    if kind == REGULATOR_KIND:
        body = report_content.regulator_disclosure(session, year)
    elif kind == "operator_disclosure":
        body = report_content.operator_disclosure(session, year, org_id)
    else:
        body = report_content.operating_report(session, year, org_id)
    org = session.get(Organisation, org_id)
    return {"kind": kind, "year": year, "publisher": org.name if org else "", **body}


def generate(session: Session, actor: Principal, year: int, kind: str, operator: str | None) -> DisclosureReport:
    """Create or regenerate the draft of a report (the regulator's own, or an operator's)."""
    org_id = _publisher(session, actor, kind, operator)
    report = session.scalars(
        select(DisclosureReport).where(
            DisclosureReport.year == year, DisclosureReport.kind == kind, DisclosureReport.org_id == org_id
        )
    ).first()
    if report is not None and report.status == "published":
        raise Conflict("disclosure_published", year=year, kind=kind)
    content = build(session, year, kind, org_id)
    if report is None:
        report = DisclosureReport(year=year, kind=kind, org_id=org_id, content=content)
        session.add(report)
    report.content = content
    report.content_hash = content_hash(content)
    report.generated_at = utcnow()
    session.flush()
    return report


def _may_read(actor: Principal, report: DisclosureReport) -> bool:
    return report.status == "published" or actor.role == Role.REGULATOR or actor.org_id == report.org_id


def visible(session: Session, actor: Principal, year: int | None = None) -> Sequence[DisclosureReport]:
    """Published reports for everyone; drafts for their publisher and the regulator."""
    query = select(DisclosureReport)
    if year is not None:
        query = query.where(DisclosureReport.year == year)
    rows = session.scalars(query.order_by(DisclosureReport.year.desc(), DisclosureReport.kind)).all()
    return [r for r in rows if _may_read(actor, r)]


def get_visible(session: Session, actor: Principal, report_id: str) -> DisclosureReport:
    report = session.get(DisclosureReport, report_id)
    if report is None or not _may_read(actor, report):
        raise NotFound("disclosure_not_found", report=report_id)
    return report


def publish(session: Session, actor: Principal, report_id: str) -> DisclosureReport:
    """The publisher (the regulator, or the operator for its own) publishes a draft: frozen, hashed, public."""
    report = get_visible(session, actor, report_id)
    owner = report.org_id == actor.org_id and actor.role in (Role.REGULATOR, Role.OPERATOR)
    if not owner:
        raise NotFound("disclosure_not_found", report=report_id)
    if report.status == "published":
        raise Conflict("disclosure_published", year=report.year, kind=report.kind)
    report.content_hash = content_hash(report.content)
    report.status = "published"
    report.published_at = utcnow()
    report.published_by = actor.user_id
    session.flush()
    return report


def published(session: Session) -> Sequence[DisclosureReport]:
    """Every published report, newest year first (the public disclosure page)."""
    return session.scalars(
        select(DisclosureReport)
        .where(DisclosureReport.status == "published")
        .order_by(DisclosureReport.year.desc(), DisclosureReport.kind, DisclosureReport.published_at)
    ).all()


def get_published(session: Session, report_id: str) -> DisclosureReport:
    report = session.get(DisclosureReport, report_id)
    if report is None or report.status != "published":
        raise NotFound("disclosure_not_found", report=report_id)
    return report


def status(session: Session, actor: Principal, year: int) -> DisclosureStatusOut:
    """What is due for `year` by 31 March, what is published and what is still missing.

    The regulator sees every publisher; an operator sees its own reports."""
    actor.require(Role.REGULATOR, Role.OPERATOR)
    start, end = allowed_revenue.year_bounds(year)
    operators = sorted(
        set(
            session.scalars(
                select(Authorisation.operator_org_id).where(
                    Authorisation.valid_from < end, Authorisation.valid_until > start
                )
            ).all()
        )
    )
    expected: list[tuple[str, str]] = []
    if actor.role == Role.REGULATOR:
        authority = actor.org_id
        expected.append((REGULATOR_KIND, authority))
        expected += [(kind, op) for op in operators for kind in OPERATOR_KINDS]
    else:
        expected += [(kind, actor.org_id) for kind in OPERATOR_KINDS]
    reports = {
        (r.kind, r.org_id): r for r in session.scalars(select(DisclosureReport).where(DisclosureReport.year == year))
    }
    done, missing = [], []
    for kind, org_id in expected:
        org = session.get(Organisation, org_id)
        entry: dict[str, Any] = {"kind": kind, "org_id": org_id, "org_name": org.name if org else ""}
        report = reports.get((kind, org_id))
        if report is not None and report.status == "published":
            done.append(
                {**entry, "id": report.id, "published_at": report.published_at, "content_hash": report.content_hash}
            )
        else:
            missing.append({**entry, "draft": report.id if report else None})
    due = deadline(year)
    now = utcnow()
    return DisclosureStatusOut(
        year=year,
        deadline=due,
        days_left=max((due - now).days, 0),
        overdue=now >= due and bool(missing),
        published=done,
        missing=missing,
    )

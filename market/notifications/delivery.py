"""E-mail delivery of the outbox over SMTP: claimed under a guard, retried with backoff, sent once.

A worker claims a row with one conditional UPDATE (still pending, attempt due, the attempt count it
read): only one worker, on any replica, wins each row, on SQLite and PostgreSQL alike. The claim
pushes `next_attempt_at` forward by `CLAIM`, so a crashed worker's row is retried later. After the
SMTP server accepts the message the row is marked sent and never claimed again. Each message
carries a stable Message-ID (the notification id), so in the one window left (a crash after the
server accepted and before the row was marked) a second copy is recognisable as the same message.
"""

from __future__ import annotations

import contextlib
import smtplib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import or_, select, update

from market.clock import utcnow
from market.db import Database
from market.notifications.models import EmailStatus, Notification
from market.settings import Settings

CLAIM = timedelta(minutes=10)
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=6)
MAX_ATTEMPTS = 8
BATCH = 100


def backoff(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failure: 1, 2, 4, ... minutes, at most 6 hours."""
    wait: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(wait, MAX_RETRY)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: str
    to: str
    subject: str
    body: str
    attempts: int


def _claim(database: Database, now: datetime, limit: int) -> list[_Claimed]:
    claimed: list[_Claimed] = []
    with database.transaction(write=True) as session:
        due = session.scalars(
            select(Notification)
            .where(
                Notification.email_status == EmailStatus.PENDING.value,
                or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
            )
            .order_by(Notification.created_at, Notification.id)
            .limit(limit)
        ).all()
        for row in due:
            won = session.execute(
                update(Notification)
                .where(
                    Notification.id == row.id,
                    Notification.email_status == EmailStatus.PENDING.value,
                    Notification.email_attempts == row.email_attempts,
                )
                .values(email_attempts=row.email_attempts + 1, next_attempt_at=now + CLAIM)
                .execution_options(synchronize_session=False)
            )
            if getattr(won, "rowcount", 0) == 1:
                claimed.append(_Claimed(row.id, row.email_to, row.subject, row.body, row.email_attempts + 1))
    return claimed


def _message(settings: Settings, item: _Claimed) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = item.to
    message["Subject"] = item.subject
    message["Message-ID"] = make_msgid(idstring=item.id, domain=settings.smtp_from.rpartition("@")[2] or None)
    message.set_content(item.body)
    return message


def _connect(settings: Settings) -> smtplib.SMTP:
    assert settings.smtp_host is not None
    client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds)
    if settings.smtp_starttls:
        client.starttls()
    if settings.smtp_username and settings.smtp_password is not None:
        client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
    return client


def _record(database: Database, item: _Claimed, error: str | None, now: datetime, report: DeliveryReport) -> None:
    with database.transaction(write=True) as session:
        row = session.get(Notification, item.id)
        if row is None or row.email_status != EmailStatus.PENDING.value:  # pragma: no cover - claimed above
            return
        if error is None:
            row.email_status = EmailStatus.SENT.value
            row.sent_at = now
            row.last_error = ""
            report.sent.append(item.id)
        elif item.attempts >= MAX_ATTEMPTS:
            row.email_status = EmailStatus.FAILED.value
            row.last_error = error[:2000]
            report.gave_up.append(item.id)
        else:
            row.next_attempt_at = now + backoff(item.attempts)
            row.last_error = error[:2000]
            report.failed.append(item.id)


def deliver_due(database: Database, settings: Settings, now: datetime | None = None) -> DeliveryReport:
    """Send every pending e-mail whose attempt is due; nothing happens while SMTP is not configured."""
    report = DeliveryReport()
    if not settings.smtp_host:
        return report
    now = now or utcnow()
    claimed = _claim(database, now, BATCH)
    if not claimed:
        return report
    client: smtplib.SMTP | None = None
    for item in claimed:
        error: str | None = None
        try:
            if client is None:
                client = _connect(settings)
            client.send_message(_message(settings, item))
        except (OSError, smtplib.SMTPException) as failure:
            error = f"{type(failure).__name__}: {failure}"
            client = None
        _record(database, item, error, now, report)
    if client is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):  # the messages were already accepted
            client.quit()
    return report

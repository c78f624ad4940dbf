"""Web sign-in: passwords (argon2id), server-side sessions hashed at rest, and rate-limited attempts.

API keys stay the way programs authenticate; people in a browser sign in here and get a session cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from market.accounts import admin, repository
from market.accounts.models import LoginAttempt, Organisation, Role, User, WebSession
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import NotFound, TooManyRequests, Unauthenticated, Unprocessable

SESSION_LIFETIME = timedelta(hours=12)
ATTEMPT_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
"""Failed sign-ins for one e-mail address within ATTEMPT_WINDOW before it is refused for a while."""
MAX_FAILURES_PER_CLIENT = 30
"""Failed sign-ins from one client address within ATTEMPT_WINDOW, whatever the account."""
MIN_PASSWORD_LENGTH = 12

_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown keeps the answer's timing from telling which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: the clear token goes in the cookie once and is never stored."""

    token: str
    principal: Principal


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted, with the library's recommended costs)."""
    return _hasher.hash(password)


def _token_hash(token: str) -> str:
    # Session tokens carry 256 bits of randomness: a fast hash suffices, as for API keys.
    return hashlib.sha256(token.encode()).hexdigest()


def _failures(session: Session, matches: ColumnElement[bool]) -> tuple[int, int]:
    """How many failed attempts match within the window, and seconds until the oldest leaves it."""
    since = utcnow() - ATTEMPT_WINDOW
    count, oldest = session.execute(
        select(func.count(), func.min(LoginAttempt.created_at)).where(matches, LoginAttempt.created_at >= since)
    ).one()
    wait = int((oldest + ATTEMPT_WINDOW - utcnow()).total_seconds()) + 1 if oldest is not None else 0
    return int(count), wait


def _check_rate(session: Session, email: str, client: str) -> None:
    for matches, limit in (
        (LoginAttempt.email == email, MAX_FAILURES_PER_ACCOUNT),
        (LoginAttempt.client == client, MAX_FAILURES_PER_CLIENT),
    ):
        count, wait = _failures(session, matches)
        if count >= limit:
            raise TooManyRequests("too_many_sign_ins", retry_after=wait, minutes=max(1, wait // 60 + 1))


def sign_in(session: Session, *, email: str, password: str, client: str) -> SignedIn | None:
    """Check an e-mail and password and open a session; None when they do not match (the failure is recorded).

    Raises TooManyRequests while the account or the client address has too many recent failures, even
    for the right password, so guessing cannot go on in the background.
    """
    email = email.strip().lower()[:320]
    client = client[:64]
    _check_rate(session, email, client)
    user = repository.user_by_email(session, email)
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        matches = _hasher.verify(stored, password) and user is not None and user.password_hash is not None
    except (VerificationError, InvalidHashError):
        matches = False
    if not matches or user is None or user.deactivated_at is not None:
        session.add(LoginAttempt(email=email, client=client, created_at=utcnow()))
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = hash_password(password)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        WebSession(user_id=user.id, token_hash=_token_hash(token), created_at=now, expires_at=now + SESSION_LIFETIME)
    )
    org = session.get(Organisation, user.org_id)
    assert org is not None
    return SignedIn(token, Principal(user_id=user.id, org_id=org.id, org_name=org.name, role=Role(user.role)))


def principal_for(session: Session, token: str | None) -> Principal | None:
    """The principal of a live session cookie, or None (unknown, ended or expired)."""
    if not token:
        return None
    row = session.execute(
        select(User, Organisation)
        .join(WebSession, WebSession.user_id == User.id)
        .join(Organisation, Organisation.id == User.org_id)
        .where(
            WebSession.token_hash == _token_hash(token),
            WebSession.ended_at.is_(None),
            WebSession.expires_at > utcnow(),
            User.deactivated_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        return None
    user, org = row
    return Principal(user_id=user.id, org_id=org.id, org_name=org.name, role=Role(user.role))


def sign_out(session: Session, token: str | None) -> None:
    """End the session behind `token`; it stops working at once. Unknown tokens are ignored."""
    if token:
        session.execute(
            update(WebSession)
            .where(WebSession.token_hash == _token_hash(token), WebSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )


def set_password(session: Session, actor: Principal | None, user_id: str, password: str) -> User:
    """An admin sets a user's web password (`actor=None` is the CLI or the demo); the user's sessions end."""
    if actor is not None:
        actor.require(Role.ADMIN)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user_not_found", user=user_id)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Unprocessable("password_too_short", minimum=MIN_PASSWORD_LENGTH)
    user.password_hash = hash_password(password)
    if actor is not None:
        admin.record(session, actor, "password_set", user.id, user.email)
    session.execute(
        update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None)).values(ended_at=utcnow())
    )
    return user


def require_session(principal: Principal | None) -> Principal:
    """The principal, or Unauthenticated for a signed-out browser."""
    if principal is None:
        raise Unauthenticated("sign_in_required")
    return principal

"""Time and identifiers, in one place so tests and billing agree on them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A new opaque identifier such as `prd_3f9c...`, readable in logs and URLs."""
    return f"{prefix}_{secrets.token_hex(10)}"

"""The regulator's review queue, and what a version in review changes against the listed one (tables and
columns, the protection policy and the recipe) as a flat list of (area, item, before, after)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.accounts.models import Role
from market.accounts.service import Principal
from products.models import Product
from products.schemas import VersionOut


def review_queue(session: Session, actor: Principal) -> list[Product]:
    """Products with a version waiting for review (submitted, or a new version of a listed product), the
    earliest deadline first: the regulator's."""
    actor.require(Role.REGULATOR)
    waiting = session.scalars(select(Product).where(Product.pending_version_id.is_not(None))).all()
    return sorted(waiting, key=lambda p: (p.review_due_at is None, p.review_due_at, p.slug))


@dataclass(frozen=True)
class Change:
    """One difference: `before` is empty for an addition, `after` for a removal."""

    area: str
    item: str
    before: str
    after: str


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(sorted(str(v) for v in value))
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested objects as dotted paths to their leaf values (lists of scalars are one leaf, sorted)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: _text(value)} if prefix else {}


def _tables(version: VersionOut) -> dict[str, Any]:
    return {
        t.name: {"row_count": t.row_count, "columns": {c.name: f"{c.type} · {c.role}" for c in t.columns}}
        for t in version.tables
    }


def _compare(area: str, before: dict[str, str], after: dict[str, str]) -> list[Change]:
    return [
        Change(area, key, before.get(key, ""), after.get(key, ""))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def version_diff(listed: VersionOut | None, pending: VersionOut) -> list[Change]:
    """The changes from `listed` (None: the product was never listed, everything is new) to `pending`."""
    old_tables = flatten(_tables(listed)) if listed else {}
    old_policy = flatten(listed.policy) if listed else {}
    old_recipe = flatten(listed.recipe or {}) if listed else {}
    return (
        _compare("tables", old_tables, flatten(_tables(pending)))
        + _compare("policy", old_policy, flatten(pending.policy))
        + _compare("recipe", old_recipe, flatten(pending.recipe or {}))
    )

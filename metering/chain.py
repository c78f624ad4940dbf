"""The tamper-evident usage log: every usage record carries an HMAC-SHA-256 chained to the previous one.

The HMAC's key lives outside the database (`metering.anchors.chain_key`: `MARKET_USAGE_CHAIN_KEY`
or a key file in the data directory), so someone who can rewrite the database but not read the
server's environment or files cannot re-hash an edited chain. Records hashed before the key
existed (plain SHA-256, `legacy_hash`) are re-keyed once by migration 0004, after checking them.

Scope: one chain per buyer organisation. A global chain would make every query on the platform
wait for one lock; a per-buyer chain serializes only one buyer's appends (which its idempotency
keys need anyway) and still covers every record, since every record belongs to exactly one buyer.

Appending takes the buyer's `usage_chain_heads` row lock (one upsert that returns it), links the new
record to the head and moves the head, all in the transaction that writes the record, so two
concurrent appends can never share a `prev_hash` (the unique (buyer, chain_seq) constraint backs
this up). `verify` recomputes every chain and names the first record that does not match.

The hash covers every field that states what happened and what it cost. It leaves out
`response`, the replay copy of the body kept for Idempotency-Key retries.

Append-only is enforced twice: database triggers (migration 0002_metering) refuse UPDATE and
DELETE on usage_records, and the chain reveals any change made by someone who removed them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from market.db import Upsert, upsert_locked_row
from metering import anchors
from metering.models import UsageChainHead, UsageRecord

GENESIS = "0" * 64

HASHED_FIELDS = (
    "id",
    "chain_seq",
    "buyer_org_id",
    "agreement_id",
    "user_id",
    "product_id",
    "product_version_id",
    "purpose",
    "idempotency_key",
    "sql",
    "sql_run",
    "error_code",
    "rows_scanned",
    "bytes_scanned",
    "cpu_ms",
    "result_rows",
    "result_columns",
    "suppressed_groups",
    "charge_type",
    "amount_minor",
    "currency",
    "month",
    "created_at",
    "finished_at",
)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _payload(record: Any, prev_hash: str) -> bytes:
    content = {name: _canonical(getattr(record, name)) for name in HASHED_FIELDS}
    content["prev_hash"] = prev_hash
    spent = getattr(record, "privacy_rho_nano", 0) or 0
    if spent:  # only DP records carry it, so records hashed before DP mode existed verify unchanged
        content["privacy_rho_nano"] = spent
    selection = getattr(record, "privacy_delta_atto", 0) or 0
    if selection:  # likewise: only noisy-threshold DP records carry it
        content["privacy_delta_atto"] = selection
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def legacy_hash(record: Any, prev_hash: str) -> str:
    """The unkeyed SHA-256 (hex) used before the chain was keyed; only migrations use it now."""
    return hashlib.sha256(_payload(record, prev_hash)).hexdigest()


def record_hash(record: Any, prev_hash: str, key: bytes) -> str:
    """HMAC-SHA-256 (hex) under `key` over the record's hashed fields and the previous record's hash."""
    return hmac.new(key, _payload(record, prev_hash), hashlib.sha256).hexdigest()


@dataclass
class Head:
    """A buyer's chain head as read under its lock (`lock_head`); `link` advances it, `store_head` (or
    metering.attempts.append, in the statement that inserts the record) writes it back."""

    buyer_org_id: str
    last_seq: int
    last_hash: str


_HEADS = cast(Table, UsageChainHead.__table__)


def lock_head(session: Session, buyer_org_id: str) -> Head:
    """The buyer's chain head, created if missing and write-locked until the transaction ends (one upsert)."""
    u = head_upsert(buyer_org_id)
    row = upsert_locked_row(session, u.table, u.values, u.conflict_columns, u.touch, u.columns)
    return head_of(buyer_org_id, row)


def head_upsert(buyer_org_id: str) -> Upsert:
    """`lock_head`'s statement, to run with others in one round trip (market.db.upsert_locked_rows)."""
    return Upsert(
        _HEADS,
        {"buyer_org_id": buyer_org_id, "last_seq": 0, "last_hash": GENESIS},
        ["buyer_org_id"],
        "last_seq",
        [_HEADS.c.last_seq, _HEADS.c.last_hash],
    )


def head_of(buyer_org_id: str, row: Any) -> Head:
    """The Head from a row of `head_upsert`'s statement (last_seq, last_hash)."""
    return Head(buyer_org_id, row[0], row[1])


MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.buyer_org_id == bindparam("head_buyer"))
    .values(last_seq=bindparam("head_seq"), last_hash=bindparam("head_hash"))
)
"""Write a locked head back: parameters `head_buyer`, `head_seq`, `head_hash` (`head_parameters`)."""


def head_parameters(head: Head) -> dict[str, Any]:
    return {"head_buyer": head.buyer_org_id, "head_seq": head.last_seq, "head_hash": head.last_hash}


def store_head(session: Session, head: Head) -> None:
    session.connection().execute(MOVE_HEAD, head_parameters(head))


_DEFAULTS = [(column.key, column.default) for column in UsageRecord.__table__.columns if column.default is not None]
"""The usage record's columns that have a default, with it (read once, not per record)."""


def _apply_column_defaults(record: Any) -> None:
    """Fill unset fields with their column defaults now, so the hash covers the values that get stored."""
    for key, default in _DEFAULTS:
        if getattr(record, key) is not None:
            continue
        value = default.arg(None) if callable(default.arg) else default.arg
        setattr(record, key, value)


def link(session: Session, head: Head, record: Any) -> None:
    """Give `record` the next place in the chain whose locked head is `head`, and advance the head.

    `record`: a UsageRecord, or any object with an attribute per column (metering.attempts.append's)."""
    _apply_column_defaults(record)
    record.chain_seq = head.last_seq + 1
    record.prev_hash = head.last_hash
    record.record_hash = record_hash(record, head.last_hash, anchors.chain_key_of(session))
    head.last_seq = record.chain_seq
    head.last_hash = record.record_hash


def append(session: Session, record: UsageRecord) -> UsageRecord:
    """Append a fully built usage record to its buyer's chain (locks the head; flushes).

    The one way to write a usage record outside the metered query path (imports, fixtures):
    the append-only triggers and the unique (buyer, chain_seq) index refuse anything else.
    """
    head = lock_head(session, record.buyer_org_id)
    link(session, head, record)
    session.add(record)
    session.flush()
    store_head(session, head)
    return record


@dataclass(frozen=True)
class Break:
    """The first record of a chain that does not verify, and why."""

    buyer_org_id: str
    record_id: str
    chain_seq: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    chains: int
    records: int
    breaks: list[Break]

    @property
    def ok(self) -> bool:
        return not self.breaks


def _records_by_buyer(session: Session) -> Iterator[UsageRecord]:
    query = select(UsageRecord).order_by(UsageRecord.buyer_org_id, UsageRecord.chain_seq, UsageRecord.id)
    yield from session.scalars(query.execution_options(yield_per=1000))


def verify_records(records: Iterable[UsageRecord], heads: dict[str, UsageChainHead], key: bytes) -> VerifyReport:
    """Check chains given records ordered by (buyer, chain_seq); one Break per broken chain, at its first fault."""
    breaks: list[Break] = []
    chains = 0
    count = 0
    current: str | None = None
    expected_seq = 1
    prev = GENESIS
    broken = False

    def close(buyer: str | None) -> None:
        if buyer is None or broken:
            return
        head = heads.get(buyer)
        if head is not None and (head.last_seq != expected_seq - 1 or head.last_hash != prev):
            breaks.append(Break(buyer, "(chain head)", head.last_seq, "records after the last one are missing"))

    _seen: set[str] = set()
    for record in records:
        count += 1
        _seen.add(record.buyer_org_id)
        if record.buyer_org_id != current:
            close(current)
            current, expected_seq, prev, broken = record.buyer_org_id, 1, GENESIS, False
            chains += 1
        if broken:
            continue
        reason = None
        if record.chain_seq != expected_seq:
            reason = f"expected position {expected_seq}, found {record.chain_seq} (a record is missing or moved)"
        elif record.prev_hash != prev:
            reason = "prev_hash does not match the previous record's hash"
        elif not hmac.compare_digest(record.record_hash, record_hash(record, record.prev_hash, key)):
            reason = "the record's content does not match its keyed hash (edited, or re-hashed without the key)"
        if reason:
            breaks.append(Break(record.buyer_org_id, record.id, record.chain_seq, reason))
            broken = True
            continue
        prev = record.record_hash
        expected_seq += 1
    close(current)
    seen = {b.buyer_org_id for b in breaks} | _seen
    for buyer, head in sorted(heads.items()):
        if buyer not in seen and head.last_seq > 0:
            breaks.append(Break(buyer, "(chain head)", head.last_seq, "the chain's records are missing"))
    return VerifyReport(chains=chains, records=count, breaks=breaks)


def verify(session: Session) -> VerifyReport:
    """Verify every buyer's usage chain in the database under the key kept outside it."""
    heads = {h.buyer_org_id: h for h in session.scalars(select(UsageChainHead))}
    return verify_records(_records_by_buyer(session), heads, anchors.chain_key_of(session))

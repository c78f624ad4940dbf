"""What makes the usage chain evidence against insiders: a key and checkpoints kept outside the database.

- The chain key (HMAC-SHA-256) comes from `MARKET_USAGE_CHAIN_KEY`, or else from the file
  `<data dir>/usage-chain.key`, created once with 32 random bytes and mode 0600. It is never
  stored in the database.
- Checkpoints: signed lines appended to `<data dir>/usage-anchors.jsonl` (or
  `MARKET_USAGE_ANCHOR_FILE`), each naming every chain's head (position and hash) at that moment,
  signed with the same key. An insider who truncates a chain, or rewrites it with the key stolen
  later, cannot make the chain agree with a checkpoint written before. The scheduler writes one
  every hour; `market usage checkpoint` writes one on demand; `market usage verify` checks them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from market.clock import utcnow
from market.db import settings_of
from market.settings import Settings
from metering.models import UsageChainHead, UsageRecord

KEY_FILE = "usage-chain.key"
ANCHOR_FILE = "usage-anchors.jsonl"

_keys: dict[str, bytes] = {}


def _key_file(settings: Settings) -> Path:
    return settings.data_dir.resolve() / KEY_FILE


def chain_key(settings: Settings) -> bytes:
    """The chain's HMAC key: the configured secret, or the data directory's key file (created once)."""
    if settings.usage_chain_key is not None:
        return settings.usage_chain_key.get_secret_value().encode()
    # Found by the data directory as configured, without resolving it (syscalls on the query path, which
    # runs this under the chain's lock): an absolute directory as it is, a relative one with the cwd.
    where = str(settings.data_dir) if settings.data_dir.is_absolute() else f"{os.getcwd()}\0{settings.data_dir}"
    cached = _keys.get(where)
    if cached is not None:
        return cached
    path = _key_file(settings)
    cached = _keys.get(str(path))
    if cached is not None:
        _keys[where] = cached
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    key = path.read_text().strip().encode()
    for _ in range(100):  # another process created the file and is writing it: wait for the key
        if key:
            break
        time.sleep(0.01)
        key = path.read_text().strip().encode()
    if not key:
        raise RuntimeError(f"the usage chain key file {path} is empty")
    _keys[str(path)] = _keys[where] = key
    return key


def chain_key_of(session: Session) -> bytes:
    return chain_key(settings_of(session))


def anchor_file(settings: Settings) -> Path:
    return settings.usage_anchor_file or settings.data_dir.resolve() / ANCHOR_FILE


def _sign(key: bytes, body: dict[str, Any]) -> str:
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def write_checkpoint(session: Session) -> int:
    """Append one signed line with every chain head to the anchor file; returns how many chains it names."""
    settings = settings_of(session)
    heads = {h.buyer_org_id: [h.last_seq, h.last_hash] for h in session.scalars(select(UsageChainHead))}
    body: dict[str, Any] = {"at": utcnow().isoformat(), "heads": heads}
    line = json.dumps({**body, "mac": _sign(chain_key(settings), body)}, sort_keys=True)
    path = anchor_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return len(heads)


@dataclass(frozen=True)
class AnchorBreak:
    buyer_org_id: str
    record_id: str
    chain_seq: int
    reason: str


def check_checkpoints(session: Session) -> tuple[int, list[AnchorBreak]]:
    """Every checkpoint line must carry a valid signature, and each chain must still hold, at each
    buyer's latest checkpointed position, the record hash written down then. Returns (lines, breaks)."""
    settings = settings_of(session)
    path = anchor_file(settings)
    if not path.exists():
        return 0, []
    key = chain_key(settings)
    breaks: list[AnchorBreak] = []
    latest: dict[str, tuple[int, str]] = {}
    lines = 0
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        lines += 1
        try:
            entry = json.loads(text)
            body = {"at": entry["at"], "heads": entry["heads"]}
            valid = hmac.compare_digest(str(entry["mac"]), _sign(key, body))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            breaks.append(AnchorBreak("(checkpoints)", f"line {number}", 0, "checkpoint line is not signed by the key"))
            continue
        for buyer, (seq, digest) in entry["heads"].items():
            if int(seq) >= latest.get(buyer, (0, ""))[0]:
                latest[buyer] = (int(seq), str(digest))
    for buyer, (seq, digest) in sorted(latest.items()):
        if seq == 0:
            continue
        found = session.execute(
            select(UsageRecord.id, UsageRecord.record_hash).where(
                UsageRecord.buyer_org_id == buyer, UsageRecord.chain_seq == seq
            )
        ).first()
        if found is None:
            breaks.append(
                AnchorBreak(buyer, "(checkpoint)", seq, "a checkpointed record is missing (the chain was truncated)")
            )
        elif found[1] != digest:
            breaks.append(
                AnchorBreak(
                    buyer, str(found[0]), seq, "the record differs from its checkpoint (the chain was rewritten)"
                ),
            )
    return lines, breaks

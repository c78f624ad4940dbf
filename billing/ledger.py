"""The double-entry journal. Each money movement is one entry whose lines sum to zero; balances are
always computed from the journal, never stored.

Accounts (debits positive, credits negative):
- `receivable:<buyer org>`: what a buyer owes (debited at finalization, credited by payments).
- `cash:bank_transfer`, `cash:stripe`: money received.
- `billed_revenue`: revenue invoiced and not yet distributed.
- `payable:source:<org>`, `payable:operator:<org>`: what the platform owes each party.
- `platform_revenue`: the platform's own share.
- `credit_notes`: corrections granted to buyers (a contra-revenue account).
- `bad_debt`: invoices written off as uncollectible.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from billing.models import JournalEntry, JournalLine
from market.clock import new_id


class UnbalancedEntry(ValueError):
    """A journal entry whose lines do not sum to zero: a programming error, never user input."""


def record(
    session: Session,
    *,
    kind: str,
    reference: str,
    period: str,
    currency: str,
    lines: list[tuple[str, int]],
    memo: str = "",
    flush: bool = True,
) -> JournalEntry | None:
    """Post one entry; lines are (account, debit positive / credit negative). Zero lines are dropped.
    With `flush=False` the entry is written at the session's next flush (batch posting)."""
    kept = [(account, amount) for account, amount in lines if amount != 0]
    if sum(amount for _, amount in kept) != 0:
        raise UnbalancedEntry(f"{kind} {reference}: lines sum to {sum(a for _, a in kept)}")
    if not kept:
        return None
    entry = JournalEntry(id=new_id("jen"), kind=kind, reference=reference, period=period, currency=currency, memo=memo)
    session.add(entry)
    session.add_all(JournalLine(entry_id=entry.id, account=account, amount_minor=amount) for account, amount in kept)
    if flush:
        session.flush()
    return entry


def receivable(buyer_org_id: str) -> str:
    return f"receivable:{buyer_org_id}"


def cash(method: str) -> str:
    return f"cash:{method}"


def payable(party_kind: str, org_id: str | None) -> str:
    return "platform_revenue" if party_kind == "platform" else f"payable:{party_kind}:{org_id}"


BILLED_REVENUE = "billed_revenue"
CREDIT_NOTES = "credit_notes"
BAD_DEBT = "bad_debt"

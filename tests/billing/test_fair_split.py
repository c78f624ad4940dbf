"""Revenue shares are split cumulatively: however an invoice is paid, in one payment or many, each
party's part is the split of the whole amount received (issue 10 item 6)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from billing import invoices, payments, rating, revenue
from billing.models import Distribution, Invoice
from metering.models import Agreement
from tests.billing.helpers import scene
from tests.billing.test_properties import PROPERTY_SETTINGS, _add_usage, _fresh_period
from tests.conftest import Market


def _invoice_of(market: Market, total: int) -> tuple[str, dict[str, list[revenue.Share]]]:
    """A finalized invoice of `total` for the commercial buyer, in a fresh period; and its agreement's shares."""
    if not hasattr(market, "_scene"):
        market._scene = scene(market, commercial_queries=0, public_queries=0)  # type: ignore[attr-defined]
    s = market._scene  # type: ignore[attr-defined]
    period = _fresh_period()
    buyer = s.commercial.principal.org_id
    with market.database.transaction() as session:
        agreement = session.scalars(select(Agreement).where(Agreement.buyer_org_id == buyer)).one()
        _add_usage(session, agreement, period, [("billable", total)])
    with market.database.transaction() as session:
        rating.run_period(session, period)
        invoices.finalize_period(session, s.finance.principal, period)
        invoice = session.scalars(
            select(Invoice).where(Invoice.period == period.key, Invoice.buyer_org_id == buyer)
        ).one()
        return invoice.id, {agreement.id: revenue.agreement_split(session, agreement.id)}


def _pay(market: Market, invoice_id: str, amounts: list[int]) -> dict[tuple[str, str | None], int]:
    finance = market._scene.finance.principal  # type: ignore[attr-defined]
    for n, amount in enumerate(amounts):
        with market.database.transaction() as session:
            payments.record_bank_transfer(
                session,
                finance,
                invoice_id=invoice_id,
                buyer_org_id=None,
                amount_minor=amount,
                currency=None,
                reference=f"{invoice_id}-{n}",
                received_at=None,
            )
    parts: dict[tuple[str, str | None], int] = defaultdict(int)
    with market.database.transaction() as session:
        for row in session.scalars(select(Distribution).where(Distribution.invoice_id == invoice_id)):
            parts[(row.party_kind, row.party_org_id)] += row.amount_minor
    return {party: amount for party, amount in parts.items() if amount}


def _one_payment_split(shares: dict[str, list[revenue.Share]], total: int) -> dict[tuple[str, str | None], int]:
    split = revenue.split_payment({a: 1 for a in shares}, shares, total)
    return {(share.party_kind, share.party_org_id): amount for _, share, amount in split if amount}


def test_a_hundred_payments_of_33_split_like_one_of_3300(market: Market) -> None:
    invoice_id, shares = _invoice_of(market, 3_300)
    parts = _pay(market, invoice_id, [33] * 100)
    # Default shares: operator 80%, platform 20%; one payment of 3,300 gives [2,640, 660]. Split one
    # payment at a time, each 33 fen gave [26, 7] and the platform drifted to 700.
    assert parts == _one_payment_split(shares, 3_300)
    assert sorted(parts.values()) == [660, 2_640]


@PROPERTY_SETTINGS
@given(amounts=st.lists(st.integers(1, 997), min_size=1, max_size=8))
def test_each_partys_part_is_the_split_of_everything_received(market: Market, amounts: list[int]) -> None:
    invoice_id, shares = _invoice_of(market, sum(amounts))
    assert _pay(market, invoice_id, amounts) == _one_payment_split(shares, sum(amounts))

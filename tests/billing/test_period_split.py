"""Revenue shares are split cumulatively per period and party, across invoices (issue 10 item 6):
however a period's invoices are paid (one payment or a hundred, on one invoice or on several, with
refunds), each party ends within one fen of its exact share, and exactly where one payment per
invoice would have put it."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError

from billing import invoices, payments, rating, reconciliation, repository
from billing.config import Period
from billing.models import AgreementShare, Distribution, Invoice, Payment, PaymentStatus
from billing.revenue import FULL, Received, Share, period_split, round_to_total
from market.accounts.models import Role
from market.db import Database, is_transient
from metering.models import Agreement
from tests.billing.helpers import scene
from tests.billing.test_properties import PROPERTY_SETTINGS, _add_usage, _fresh_period
from tests.conftest import Market
from tests.factories import grant

Party = tuple[str, str | None]

# -- the rule, without a database -----------------------------------------------------------------


def _exact(
    received: dict[str, int], weights: dict[str, dict[str, int]], shares: dict[str, list[Share]]
) -> dict[Party, Fraction]:
    """Each party's exact share of what the invoices received (the oracle, written independently)."""
    out: dict[Party, Fraction] = defaultdict(Fraction)
    for invoice_id, amount in received.items():
        total_weight = sum(weights[invoice_id].values())
        for agreement_id, weight in weights[invoice_id].items():
            for share in shares[agreement_id]:
                out[(share.party_kind, share.party_org_id)] += Fraction(
                    amount * weight * share.basis_points, total_weight * FULL
                )
    return dict(out)


def _by_party(parts: dict[tuple[str, str, str | None], int]) -> dict[Party, int]:
    out: dict[Party, int] = defaultdict(int)
    for (_, kind, org), amount in parts.items():
        out[(kind, org)] += amount
    return {k: v for k, v in out.items() if v}


PARTIES: list[Party] = [
    ("source", "src1"),
    ("source", "src2"),
    ("operator", "op1"),
    ("operator", "op2"),
    ("platform", None),
]


@st.composite
def share_lists(draw: Any) -> list[Share]:
    """One agreement's shares: one to four parties of the pool, basis points adding up to 10,000."""
    chosen = draw(st.lists(st.sampled_from(PARTIES), min_size=1, max_size=4, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, FULL), min_size=len(chosen) - 1, max_size=len(chosen) - 1)))
    bps = [b - a for a, b in zip([0, *cuts], [*cuts, FULL], strict=True)]
    return [Share(kind, org, points) for (kind, org), points in zip(chosen, bps, strict=True)]


@st.composite
def periods(draw: Any) -> tuple[dict[str, dict[str, int]], dict[str, list[Share]], list[tuple[str, int]]]:
    """Invoices (agreement weights), the agreements' shares, and a sequence of payments and refunds."""
    invoice_count = draw(st.integers(1, 5))
    weights: dict[str, dict[str, int]] = {}
    shares: dict[str, list[Share]] = {}
    for i in range(invoice_count):
        agreements = [f"agr{i}-{j}" for j in range(draw(st.integers(1, 3)))]
        weights[f"inv{i}"] = {a: draw(st.integers(1, 10**6)) for a in agreements}
        shares.update({a: draw(share_lists()) for a in agreements})
    steps = draw(
        st.lists(st.tuples(st.integers(0, invoice_count - 1), st.integers(-500, 5_000)), min_size=1, max_size=40)
    )
    received: dict[str, int] = defaultdict(int)
    sequence = []
    for index, amount in steps:
        invoice_id = f"inv{index}"
        amount = max(amount, -received[invoice_id])  # a refund never exceeds what was received
        if amount:
            received[invoice_id] += amount
            sequence.append((invoice_id, amount))
    return weights, shares, sequence


def _distribute_in_sequence(
    weights: dict[str, dict[str, int]], shares: dict[str, list[Share]], sequence: list[tuple[str, int]]
) -> tuple[dict[tuple[str, str, str | None], int], list[int]]:
    """What `billing.revenue.distribute` does, payment after payment: the period's split less what was
    distributed before. Returns the final parts and each payment's sum of parts."""
    received: dict[str, int] = defaultdict(int)
    before: dict[tuple[str, str, str | None], int] = {}
    sums = []
    for invoice_id, amount in sequence:
        received[invoice_id] += amount
        target = period_split((Received(i, a, weights[i]) for i, a in received.items()), shares)
        sums.append(sum(target.get(k, 0) - before.get(k, 0) for k in set(target) | set(before)))
        before = target
    return before, sums


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(periods(), st.randoms(use_true_random=False))
def test_any_sequence_of_payments_splits_like_one_payment_per_invoice(period: Any, rnd: random.Random) -> None:
    weights, shares, sequence = period
    final, sums = _distribute_in_sequence(weights, shares, sequence)
    # Each payment's parts add up to the payment exactly.
    assert sums == [amount for _, amount in sequence]
    received: dict[str, int] = defaultdict(int)
    for invoice_id, amount in sequence:
        received[invoice_id] += amount
    # Every party is within one fen of its exact share of the period, whatever the sequence.
    exact = _exact(received, weights, shares)
    parties = _by_party(final)
    for party in set(exact) | set(parties):
        assert abs(parties.get(party, 0) - exact.get(party, Fraction(0))) < 1, (party, parties, exact)
    assert sum(parties.values()) == sum(received.values())
    # The order of payments does not matter, nor their number: one payment per invoice gives the same.
    shuffled = list(sequence)
    rnd.shuffle(shuffled)
    prefix_ok = all(
        sum(a for i, a in shuffled[: n + 1] if i == inv) >= 0 for n in range(len(shuffled)) for inv in weights
    )
    if prefix_ok:
        assert _distribute_in_sequence(weights, shares, shuffled)[0] == final
    once = period_split((Received(i, a, weights[i]) for i, a in received.items()), shares)
    assert {k: v for k, v in once.items() if v} == {k: v for k, v in final.items() if v}


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.builds(Fraction, st.integers(-(10**7), 10**7), st.integers(1, 10_000)), min_size=1, max_size=8))
def test_round_to_total_stays_within_one_unit(values: list[Fraction]) -> None:
    exact = {str(i): v for i, v in enumerate(values)}
    shift = Fraction(-(sum(values) - int(sum(values))))  # make the exact values add up to an integer
    exact["0"] += shift
    total = int(sum(exact.values()))
    rounded = round_to_total(exact, total)
    assert sum(rounded.values()) == total
    assert all(abs(rounded[k] - exact[k]) < 1 for k in exact)


def test_the_issues_example_across_invoices() -> None:
    """A hundred payments of 33 fen over four invoices, shares 30/50/20: split one invoice at a time,
    source got 992, operator 1,648; per period and party, exactly one payment of 3,300's [990, 1,650, 660]."""
    shares = [Share("source", "s", 3_000), Share("operator", "o", 5_000), Share("platform", None, 2_000)]
    weights = {f"inv{i}": {f"agr{i}": 1} for i in range(4)}
    sequence = [(f"inv{n % 4}", 33) for n in range(100)]
    final, _ = _distribute_in_sequence(weights, {f"agr{i}": shares for i in range(4)}, sequence)
    assert _by_party(final) == {("source", "s"): 990, ("operator", "o"): 1_650, ("platform", None): 660}


# -- the same, through the database: bank transfers and refunds on several invoices ----------------


def _setup(market: Market) -> dict[str, Any]:
    """Once per test database: one product, four commercial buyers with agreements, two source orgs."""
    if hasattr(market, "_split_setup"):
        return market._split_setup  # type: ignore[attr-defined, no-any-return]
    s = scene(market, commercial_queries=0, public_queries=0)
    buyers = [s.commercial]
    for _ in range(3):
        buyer = market.actor(Role.BUYER)
        grant(market, s.listed, buyer, purpose="commercial", plan="standard")
        buyers.append(buyer)
    sources = [market.actor(Role.SOURCE).principal.org_id for _ in range(2)]
    with market.database.transaction() as session:
        agreements = {a.buyer_org_id: a.id for a in session.scalars(select(Agreement))}
    setup = {
        "finance": s.finance.principal,
        "buyers": [b.principal.org_id for b in buyers],
        "agreements": [agreements[b.principal.org_id] for b in buyers],
        "operator": s.listed.operator.principal.org_id,
        "sources": sources,
    }
    market._split_setup = setup  # type: ignore[attr-defined]
    return setup


def _org_of(setup: dict[str, Any], party: Party) -> str | None:
    kind, org = party
    if kind == "platform":
        return None
    if kind == "operator":
        return str(setup["operator"])
    return str(setup["sources"][0 if org == "src1" else 1])


def _set_shares(market: Market, setup: dict[str, Any], agreement_id: str, shares: list[Share]) -> list[Share]:
    """Freeze these shares with the agreement (test set-up: the product's own shares are the API's)."""
    merged: dict[Party, int] = defaultdict(int)
    for share in shares:
        kind = share.party_kind
        merged[(kind, _org_of(setup, (kind, share.party_org_id)))] += share.basis_points
    with market.database.transaction() as session:
        session.execute(delete(AgreementShare).where(AgreementShare.agreement_id == agreement_id))
        session.add_all(
            AgreementShare(agreement_id=agreement_id, party_kind=kind, party_org_id=org, basis_points=bps)
            for (kind, org), bps in merged.items()
        )
    return [Share(kind, org, bps) for (kind, org), bps in merged.items()]


def _invoices(market: Market, setup: dict[str, Any], period: Period, count: int) -> list[str]:
    with market.database.transaction() as session:
        for agreement_id in setup["agreements"][:count]:
            agreement = session.get(Agreement, agreement_id)
            _add_usage(session, agreement, period, [("billable", 200_000)])
    with market.database.transaction() as session:
        rating.run_period(session, period)
        invoices.finalize_period(session, setup["finance"], period)
        buyers = setup["buyers"][:count]
        found = {i.buyer_org_id: i.id for i in session.scalars(select(Invoice).where(Invoice.period == period.key))}
        return [found[b] for b in buyers]


def _pay_in_sequence(
    market: Market, setup: dict[str, Any], invoice_ids: list[str], sequence: list[tuple[int, int]]
) -> None:
    for n, (index, amount) in enumerate(sequence):
        with market.database.transaction() as session:
            if amount > 0:
                payments.record_bank_transfer(
                    session,
                    setup["finance"],
                    invoice_id=invoice_ids[index],
                    buyer_org_id=None,
                    amount_minor=amount,
                    currency=None,
                    reference=f"split-{invoice_ids[index]}-{n}",
                    received_at=None,
                )
            else:
                payments.credit_and_refund(
                    session,
                    market.settings,
                    setup["finance"],
                    invoice_ids[index],
                    amount_minor=-amount,
                    refund_minor=-amount,
                    reason="correction",
                    reference=f"refund-{n}",
                )


def _stored(market: Market, period: Period) -> tuple[dict[Party, int], dict[str, int], dict[str, int]]:
    """Per party: what was distributed in the period; per payment: the sum of its parts, and its amount."""
    with market.database.transaction() as session:
        rows = session.scalars(select(Distribution).where(Distribution.period == period.key)).all()
        paid = session.scalars(
            select(Payment)
            .join(Invoice, Invoice.id == Payment.invoice_id)
            .where(Invoice.period == period.key, Payment.status == PaymentStatus.SUCCEEDED.value)
        ).all()
        amounts = {p.id: p.amount_minor for p in paid}
    parties: dict[Party, int] = defaultdict(int)
    per_payment: dict[str, int] = defaultdict(int)
    for row in rows:
        parties[(row.party_kind, row.party_org_id)] += row.amount_minor
        per_payment[row.payment_id] += row.amount_minor
    return {k: v for k, v in parties.items() if v}, dict(per_payment), amounts


def test_a_hundred_payments_of_33_over_four_invoices_split_like_one_of_3300(market: Market) -> None:
    setup = _setup(market)
    period = _fresh_period()
    shares = [Share("source", "src1", 3_000), Share("operator", "op1", 5_000), Share("platform", None, 2_000)]
    for agreement_id in setup["agreements"]:
        _set_shares(market, setup, agreement_id, shares)
    invoice_ids = _invoices(market, setup, period, 4)
    _pay_in_sequence(market, setup, invoice_ids, [(n % 4, 33) for n in range(100)])
    parties, per_payment, amounts = _stored(market, period)
    # One invoice at a time this was source 992, operator 1,648.
    assert parties == {
        ("source", setup["sources"][0]): 990,
        ("operator", setup["operator"]): 1_650,
        ("platform", None): 660,
    }
    assert per_payment == amounts


@PROPERTY_SETTINGS
@given(
    shares=st.lists(share_lists(), min_size=4, max_size=4),
    steps=st.lists(st.tuples(st.integers(0, 3), st.integers(-300, 3_000)), min_size=1, max_size=14),
    invoice_count=st.integers(1, 4),
)
def test_payments_and_refunds_in_any_order_split_per_period_and_party(
    market: Market, shares: list[list[Share]], steps: list[tuple[int, int]], invoice_count: int
) -> None:
    setup = _setup(market)
    period = _fresh_period()
    frozen = {a: _set_shares(market, setup, a, s) for a, s in zip(setup["agreements"], shares, strict=True)}
    invoice_ids = _invoices(market, setup, period, invoice_count)
    received: dict[int, int] = defaultdict(int)
    sequence = []
    for index, amount in steps:
        index %= invoice_count
        amount = max(amount, -received[index])  # a refund never exceeds what was paid
        if amount:
            received[index] += amount
            sequence.append((index, amount))
    _pay_in_sequence(market, setup, invoice_ids, sequence)
    parties, per_payment, amounts = _stored(market, period)
    assert {p: per_payment.get(p, 0) for p in amounts} == amounts  # each payment's parts add up to it
    with market.database.transaction() as session:
        weights: dict[str, dict[str, int]] = {invoice_ids[i]: defaultdict(int) for i in range(invoice_count)}
        for i in range(invoice_count):
            for line in repository.lines_of(session, [invoice_ids[i]]):
                weights[invoice_ids[i]][line.agreement_id] += line.amount_minor
    exact = _exact({invoice_ids[i]: a for i, a in received.items()}, weights, frozen)
    for party in set(exact) | set(parties):
        assert abs(parties.get(party, 0) - exact.get(party, Fraction(0))) < 1, (party, parties, exact)
    once = period_split((Received(invoice_ids[i], a, weights[invoice_ids[i]]) for i, a in received.items()), frozen)
    assert parties == _by_party(once)
    # The books agree: no journal or ledger finding about distributions.
    with market.database.transaction() as session:
        report = reconciliation.reconcile(session, setup["finance"], period)
    assert not [m for m in report.mismatches if m.reason.startswith(("journal_", "ledger_", "undistributed"))]


def test_payments_of_one_period_at_the_same_time_split_as_if_serial(market: Market) -> None:
    """Eight bank transfers on four invoices of one period, in threads with their own connections:
    distributions of a period are serial (its distribution lock), so nothing is counted twice."""
    setup = _setup(market)
    period = _fresh_period()
    shares = [Share("source", "src1", 3_000), Share("operator", "op1", 5_000), Share("platform", None, 2_000)]
    for agreement_id in setup["agreements"]:
        _set_shares(market, setup, agreement_id, shares)
    invoice_ids = _invoices(market, setup, period, 4)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def pay(n: int) -> None:
        database = Database.from_settings(market.settings)
        try:
            barrier.wait()
            for attempt in range(20):  # a 503 database_busy is retried, as a client would
                try:
                    with database.transaction() as session:
                        payments.record_bank_transfer(
                            session,
                            setup["finance"],
                            invoice_id=invoice_ids[n % 4],
                            buyer_org_id=None,
                            amount_minor=33,
                            currency=None,
                            reference=f"race-{period.key}-{n}",
                            received_at=None,
                        )
                    return
                except DBAPIError as error:
                    if not is_transient(error) or attempt == 19:
                        raise
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            database.dispose()

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    parties, per_payment, amounts = _stored(market, period)
    assert len(amounts) == 8 and per_payment == amounts
    # 264 fen split as one amount: 30% 79.2, 50% 132, 20% 52.8.
    assert parties == {
        ("source", setup["sources"][0]): 79,
        ("operator", setup["operator"]): 132,
        ("platform", None): 53,
    }
    with market.database.transaction() as session:
        report = reconciliation.reconcile(session, setup["finance"], period)
    assert not [m for m in report.mismatches if m.reason.startswith(("journal_", "ledger_", "distribution_"))]

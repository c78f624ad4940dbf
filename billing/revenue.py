"""Revenue distribution (收益分配): shares per product in basis points, frozen per agreement, and the
split of each amount received among source departments, the operator and the platform."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import finance_repository, ledger, repository
from billing.models import AgreementShare, Distribution, Invoice, PartyKind, Payment, RevenueShare
from market.accounts.models import Organisation, OrgKind, Role
from market.accounts.service import Principal
from market.errors import NotFound, Unprocessable
from market.money import allocate
from metering.models import Agreement
from products.models import Product

FULL = 10_000
K = TypeVar("K", bound=Hashable)
DEFAULT_SHARES = ((PartyKind.OPERATOR, 8_000), (PartyKind.PLATFORM, 2_000))
"""Used when a product has no configured shares: the operator and the platform, no source part."""


@dataclass(frozen=True)
class Share:
    party_kind: str
    party_org_id: str | None
    basis_points: int


def configured_shares(session: Session, product_id: str) -> list[Share]:
    """The product's shares, or the defaults (operator 80%, platform 20%)."""
    rows = finance_repository.product_shares(session, product_id)
    if rows:
        return [Share(r.party_kind, r.party_org_id, r.basis_points) for r in rows]
    found = repository.product(session, product_id)
    operator = found.operator_org_id if found else None
    return [Share(kind.value, operator if kind == PartyKind.OPERATOR else None, bps) for kind, bps in DEFAULT_SHARES]


def set_shares(
    session: Session, actor: Principal, slug: str, shares: Sequence[tuple[str, str | None, int]]
) -> list[Share]:
    """The regulator or finance sets a product's shares; they must add up to 10,000 basis points.

    `shares` is (party kind, source org id or None, basis points). The operator's org is the product's.
    """
    actor.require(Role.REGULATOR, Role.FINANCE)
    product = repository.product_by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    total = sum(bps for _, _, bps in shares)
    if total != FULL or any(bps < 0 for _, _, bps in shares):
        raise Unprocessable("shares_must_sum", total=total)
    kinds = [kind for kind, _, _ in shares]
    if kinds.count(PartyKind.OPERATOR.value) > 1 or kinds.count(PartyKind.PLATFORM.value) > 1:
        raise Unprocessable("duplicate_share_party")
    rows = []
    seen_sources: set[str] = set()
    for kind, org_id, bps in shares:
        party_org: str | None
        if kind == PartyKind.SOURCE.value:
            source = repository.org(session, org_id)
            if source is None or source.kind != OrgKind.SOURCE.value:
                raise Unprocessable("share_source_unknown", org=org_id or "")
            if source.id in seen_sources:
                raise Unprocessable("duplicate_share_party")
            seen_sources.add(source.id)
            party_org = source.id
        elif kind == PartyKind.OPERATOR.value:
            party_org = product.operator_org_id
        else:
            party_org = None
        rows.append(
            RevenueShare(
                product_id=product.id,
                party_kind=kind,
                party_org_id=party_org,
                basis_points=bps,
                updated_by=actor.user_id,
            )
        )
    finance_repository.replace_product_shares(session, product.id, rows)
    return configured_shares(session, product.id)


def shares_for_reader(session: Session, actor: Principal, slug: str) -> list[Share]:
    """Shares are visible to finance, the regulator, the product's operator and its source departments."""
    product = repository.product_by_slug(session, slug)
    if product is None:
        raise NotFound("product_not_found", slug=slug)
    shares = configured_shares(session, product.id)
    if actor.role in (Role.FINANCE, Role.REGULATOR):
        return shares
    if actor.role in (Role.OPERATOR, Role.SOURCE) and any(s.party_org_id == actor.org_id for s in shares):
        return shares
    raise NotFound("product_not_found", slug=slug)


@dataclass(frozen=True)
class ProductShares:
    """A product with its current revenue shares (the configured ones, or the defaults)."""

    slug: str
    title: str
    status: str
    operator_org_id: str
    configured: bool
    shares: list[Share]


def shares_overview(session: Session, actor: Principal) -> list[ProductShares]:
    """Every product's current split, for those who may set it (the regulator and finance), by slug."""
    actor.require(Role.REGULATOR, Role.FINANCE)
    found = session.scalars(select(Product).order_by(Product.slug)).all()
    return [
        ProductShares(
            slug=p.slug,
            title=p.title,
            status=p.status,
            operator_org_id=p.operator_org_id,
            configured=bool(finance_repository.product_shares(session, p.id)),
            shares=configured_shares(session, p.id),
        )
        for p in found
    ]


def source_departments(session: Session, actor: Principal) -> list[tuple[str, str]]:
    """(id, name) of every source department's organisation, for those who set shares."""
    actor.require(Role.REGULATOR, Role.FINANCE)
    rows = session.scalars(
        select(Organisation).where(Organisation.kind == OrgKind.SOURCE.value).order_by(Organisation.name)
    ).all()
    return [(o.id, o.name) for o in rows]


def snapshot_shares(session: Session, agreement: Agreement) -> list[Share]:
    """Freeze the product's current shares with a new agreement (called when the agreement is made)."""
    existing = finance_repository.agreement_shares(session, agreement.id)
    if existing:
        return [Share(s.party_kind, s.party_org_id, s.basis_points) for s in existing]
    shares = configured_shares(session, agreement.product_id)
    session.add_all(
        AgreementShare(
            agreement_id=agreement.id, party_kind=s.party_kind, party_org_id=s.party_org_id, basis_points=s.basis_points
        )
        for s in shares
    )
    session.flush()
    return shares


def agreement_split(session: Session, agreement_id: str) -> list[Share]:
    """The agreement's frozen shares; agreements made before snapshots existed are frozen now."""
    rows = finance_repository.agreement_shares(session, agreement_id)
    if rows:
        return [Share(r.party_kind, r.party_org_id, r.basis_points) for r in rows]
    found = repository.agreement(session, agreement_id)
    if found is None:  # pragma: no cover - lines reference agreements by foreign key
        raise NotFound("invoice_not_found", invoice=agreement_id)
    return snapshot_shares(session, found)


def split_payment(
    weights_by_agreement: dict[str, int], shares_by_agreement: dict[str, list[Share]], amount: int
) -> list[tuple[str, Share, int]]:
    """Split `amount` over agreements by their invoiced amounts, then each part over the agreement's
    shares; largest remainder both times, so the parts add up to `amount` exactly."""
    agreements = sorted(a for a, w in weights_by_agreement.items() if w > 0)
    if not agreements:
        return []
    parts = allocate(amount, [weights_by_agreement[a] for a in agreements])
    out: list[tuple[str, Share, int]] = []
    for agreement_id, part in zip(agreements, parts, strict=True):
        shares = shares_by_agreement[agreement_id]
        for share, piece in zip(shares, allocate(part, [s.basis_points for s in shares]), strict=True):
            out.append((agreement_id, share, piece))
    return out


PartKey = tuple[str, str, str | None]
"""(agreement id, party kind, party org id or None for the platform): one row of a distribution."""


@dataclass(frozen=True)
class Received:
    """What one invoice of a period has received so far (payments less refunds), and how its lines
    weigh its agreements (their invoiced amounts)."""

    invoice_id: str
    amount_minor: int
    weights: Mapping[str, int]


def round_to_total(exact: Mapping[K, Fraction], total: int) -> dict[K, int]:
    """Integers within one unit of `exact` that add up to `total` (largest remainder: each key gets
    the floor of its exact value, then the units left over go to the largest remainders, ties by key).
    `total` must lie between the sum of the floors and that sum plus the number of keys."""
    floors = {key: floor(value) for key, value in exact.items()}
    left = total - sum(floors.values())
    if not 0 <= left <= len(exact):
        raise ValueError(f"cannot round {len(exact)} values to {total}")
    order = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), _sort_key(key)))
    for key in order[:left]:
        floors[key] += 1
    return floors


def _sort_key(key: Hashable) -> tuple[str, ...]:
    parts = key if isinstance(key, tuple) else (key,)
    return tuple("" if part is None else str(part) for part in parts)


def period_split(
    received: Iterable[Received], shares_by_agreement: Mapping[str, Sequence[Share]]
) -> dict[PartKey, int]:
    """Everything a period's invoices received, split as one amount: what each party (and, within
    it, each agreement) is owed in total, in integers that add up to what was received.

    Each invoice's amount is divided over its agreements by weight and then over their shares,
    exactly (fractions). Each party's total is rounded to the fen first (largest remainder over the
    parties of the period), then that total is divided over the party's agreements the same way. So
    every party is within one fen of its exact share whatever the number, size or order of payments:
    100 payments of 33 fen, on one invoice or on a hundred, split like one payment of 3,300."""
    exact: dict[PartKey, Fraction] = defaultdict(Fraction)
    total = 0
    for item in received:
        weights = {a: w for a, w in item.weights.items() if w > 0}
        weight_sum = sum(weights.values())
        if weight_sum == 0 or item.amount_minor == 0:
            continue
        total += item.amount_minor
        for agreement_id, weight in weights.items():
            for share in shares_by_agreement[agreement_id]:
                key = (agreement_id, share.party_kind, share.party_org_id)
                exact[key] += Fraction(item.amount_minor * weight * share.basis_points, weight_sum * FULL)
    by_party: dict[tuple[str, str | None], Fraction] = defaultdict(Fraction)
    for (_, kind, org), value in exact.items():
        by_party[(kind, org)] += value
    party_totals = round_to_total(by_party, total)
    out: dict[PartKey, int] = {}
    for party, party_total in party_totals.items():
        mine = {key: value for key, value in exact.items() if (key[1], key[2]) == party}
        out.update(round_to_total(mine, party_total))
    return out


def distribute(session: Session, invoice: Invoice, payment: Payment) -> list[Distribution]:
    """Distribute a payment (or a refund, negative) of `invoice` and post it to the journal.

    Cumulative per period and party: everything the period's invoices received, this payment
    included, is split as one amount (`period_split`), and this payment's parts are that split less
    what was distributed before. The parts add up to the payment exactly; a part may move a fen of
    another party of the period, so that no party drifts (rounding never favours the same party).
    Taken under the period's distribution lock, after the invoice's and the payment's."""
    finance_repository.lock_distributions(session, invoice.period, payment.currency)
    weights = finance_repository.period_weights(session, invoice.period, payment.currency)
    if sum(w for w in weights.get(invoice.id, {}).values() if w > 0) == 0:
        return []
    received = finance_repository.distributed_by_invoice(session, invoice.period, payment.currency)
    received[invoice.id] = received.get(invoice.id, 0) + payment.amount_minor
    agreements = {a for invoice_id in received for a, w in weights.get(invoice_id, {}).items() if w > 0}
    shares = shares_of(session, agreements)
    target = period_split(
        (Received(i, amount, weights.get(i, {})) for i, amount in received.items()),
        shares,
    )
    before = finance_repository.distributed_by_part(session, invoice.period, payment.currency)
    parts = {
        key: target.get(key, 0) - before.get(key, 0)
        for key in sorted(set(target) | set(before), key=_sort_key)
        if target.get(key, 0) != before.get(key, 0)
    }
    if not parts:
        return []
    rows = [
        Distribution(
            payment_id=payment.id,
            invoice_id=invoice.id,
            agreement_id=agreement_id,
            period=invoice.period,
            party_kind=kind,
            party_org_id=org,
            amount_minor=amount,
            currency=payment.currency,
        )
        for (agreement_id, kind, org), amount in parts.items()
    ]
    session.add_all(rows)
    by_account: dict[str, int] = defaultdict(int)
    for (_, kind, org), amount in parts.items():
        by_account[ledger.payable(kind, org)] -= amount
    ledger.record(
        session,
        kind="distribution",
        reference=payment.id,
        period=invoice.period,
        currency=payment.currency,
        lines=[(ledger.BILLED_REVENUE, payment.amount_minor), *by_account.items()],
        memo=f"revenue shares of {payment.id} for invoice {invoice.number or invoice.id}",
    )
    session.flush()
    return rows


def shares_of(session: Session, agreement_ids: Iterable[str]) -> dict[str, list[Share]]:
    """The frozen shares of these agreements (frozen now for agreements made before snapshots)."""
    wanted = sorted(set(agreement_ids))
    found: dict[str, list[Share]] = defaultdict(list)
    for row in finance_repository.agreement_shares_of(session, wanted):
        found[row.agreement_id].append(Share(row.party_kind, row.party_org_id, row.basis_points))
    return {a: found[a] if found.get(a) else agreement_split(session, a) for a in wanted}

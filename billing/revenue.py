"""Revenue distribution (收益分配): shares per product in basis points, frozen per agreement, and the
split of each amount received among source departments, the operator and the platform."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from billing import finance_repository, ledger, repository
from billing.models import AgreementShare, Distribution, Invoice, PartyKind, Payment, RevenueShare
from market.accounts.models import OrgKind, Role
from market.accounts.service import Principal
from market.errors import NotFound, Unprocessable
from market.money import allocate
from metering.models import Agreement

FULL = 10_000
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


def distribute(session: Session, invoice: Invoice, payment: Payment) -> list[Distribution]:
    """Distribute a payment (or a refund, negative) of `invoice` and post it to the journal.

    Cumulative: everything received for the invoice so far, this payment included, is split as if it
    were one payment, and this payment's parts are that split less what was distributed before. So
    rounding never drifts with the number of payments: 100 payments of 33 fen split like one of 3,300."""
    weights: dict[str, int] = defaultdict(int)
    for line in repository.lines_of(session, [invoice.id]):
        weights[line.agreement_id] += line.amount_minor
    shares = {agreement_id: agreement_split(session, agreement_id) for agreement_id, w in weights.items() if w > 0}
    before = finance_repository.distributed_by_party(session, invoice.id)
    target = split_payment(dict(weights), shares, sum(before.values()) + payment.amount_minor)
    parts = [
        (agreement_id, share, amount - before.get((agreement_id, share.party_kind, share.party_org_id), 0))
        for agreement_id, share, amount in target
    ]
    if not parts:
        return []
    rows = [
        Distribution(
            payment_id=payment.id,
            invoice_id=invoice.id,
            agreement_id=agreement_id,
            period=invoice.period,
            party_kind=share.party_kind,
            party_org_id=share.party_org_id,
            amount_minor=amount,
            currency=payment.currency,
        )
        for agreement_id, share, amount in parts
    ]
    session.add_all(rows)
    by_account: dict[str, int] = defaultdict(int)
    for agreement_id, share, amount in parts:
        del agreement_id
        by_account[ledger.payable(share.party_kind, share.party_org_id)] -= amount
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

"""Payments: bank transfers (对公转账) recorded by finance, and refunds through credit notes. Card
payments through Stripe are in `card_payments`.

A payment changes an invoice, the journal and the revenue distribution exactly once: when it
becomes `succeeded` (`settle`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.orm import Session

from billing import invoices, ledger, repository, revenue
from billing.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.errors import Conflict, NotFound, Unprocessable
from market.settings import Settings

SUCCEEDED_STATES = {"succeeded"}
FAILED_STATES = {"requires_payment_method", "canceled"}


def settle(session: Session, payment: Payment, now: datetime) -> None:
    """A payment became succeeded: the invoice's paid amount, the journal and the distribution, once.
    The caller holds the payment's lock (and took the invoice's first: invoice, then payment)."""
    payment.status = PaymentStatus.SUCCEEDED.value
    payment.received_at = payment.received_at or now
    payment.updated_at = now
    invoice = repository.get_invoice(session, payment.invoice_id, lock=True) if payment.invoice_id else None
    period = invoice.period if invoice else now.strftime("%Y-%m")
    ledger.record(
        session,
        kind="payment" if payment.amount_minor > 0 else "refund",
        reference=payment.id,
        period=period,
        currency=payment.currency,
        lines=[
            (ledger.cash(payment.method), payment.amount_minor),
            (ledger.receivable(payment.buyer_org_id), -payment.amount_minor),
        ],
        memo=payment.reference,
    )
    if invoice is None:
        return
    invoice.paid_minor += payment.amount_minor
    invoice.updated_at = now
    if invoice.status == InvoiceStatus.FINALIZED.value and invoices.due_minor(invoice) <= 0:
        invoice.status = InvoiceStatus.PAID.value
        invoice.paid_at = now
    revenue.distribute(session, invoice, payment)


def _payable_invoice(session: Session, invoice: Invoice) -> None:
    if invoice.status not in (InvoiceStatus.FINALIZED.value, InvoiceStatus.PAID.value):
        raise Conflict("invoice_not_payable", invoice=invoice.id, status=invoice.status)


def record_bank_transfer(
    session: Session,
    actor: Principal,
    *,
    invoice_id: str | None,
    buyer_org_id: str | None,
    amount_minor: int,
    currency: str | None,
    reference: str,
    received_at: datetime | None,
) -> Payment:
    """Finance records money received by bank transfer, with the bank's reference. Partial payments
    are fine; money no invoice explains is recorded against the buyer (a reconciliation mismatch)."""
    actor.require(Role.FINANCE)
    if amount_minor <= 0:
        raise Unprocessable("payment_amount_positive", amount=amount_minor)
    if not reference.strip():
        raise Unprocessable("payment_reference_required")
    invoice = None
    if invoice_id:
        invoice = repository.get_invoice(session, invoice_id, lock=True)
        if invoice is None:
            raise NotFound("invoice_not_found", invoice=invoice_id)
        _payable_invoice(session, invoice)
        if currency and currency != invoice.currency:
            raise Unprocessable("currency_mismatch", currency=currency, expected=invoice.currency)
        buyer_org_id, currency = invoice.buyer_org_id, invoice.currency
    elif buyer_org_id is None or repository.org(session, buyer_org_id) is None:
        raise Unprocessable("payment_needs_invoice_or_buyer")
    now = utcnow()
    payment = Payment(
        invoice_id=invoice.id if invoice else None,
        buyer_org_id=buyer_org_id,
        method=PaymentMethod.BANK_TRANSFER.value,
        amount_minor=amount_minor,
        currency=currency or "CNY",
        reference=reference.strip(),
        idempotency_key=f"bank:{buyer_org_id}:{hashlib.sha256(reference.strip().encode()).hexdigest()[:40]}",
        recorded_by=actor.user_id,
        received_at=received_at or now,
        created_at=now,
        updated_at=now,
    )
    if _exists_key(session, payment.idempotency_key):
        raise Conflict("duplicate_payment_reference", reference=reference)
    session.add(payment)
    session.flush()
    settle(session, payment, now)
    session.flush()
    return payment


def _exists_key(session: Session, key: str | None) -> bool:
    from sqlalchemy import select

    return key is not None and session.scalar(select(Payment.id).where(Payment.idempotency_key == key)) is not None


# -- credit notes and refunds ---------------------------------------------------------------------


def credit_and_refund(
    session: Session,
    settings: Settings,
    actor: Principal,
    invoice_id: str,
    *,
    amount_minor: int,
    refund_minor: int,
    reason: str,
    reference: str,
) -> CreditNote:
    """Issue a credit note and pay back `refund_minor` of it: through Stripe when the invoice was paid
    by card, otherwise as a bank transfer out with `reference` (settled at once).

    A card refund is only recorded here, pending, with its idempotency key: Stripe is never called
    while the billing locks are held. The caller commits, then sends it
    (`card_payments.send_refund`); the re-check job sends any refund left pending."""
    del settings  # the card refund is sent after commit, by the caller
    invoice = invoices.locked_invoice(session, actor, invoice_id)
    if not reason.strip():
        raise Unprocessable("credit_note_reason_required")
    refundable = invoice.paid_minor - pending_refunds_minor(session, invoice.id)
    if refund_minor < 0 or refund_minor > min(amount_minor, refundable):
        raise Unprocessable("refund_amount", refund=refund_minor, paid=refundable)
    card = _refundable_card_payments(session, invoice.id, refund_minor)
    if refund_minor and not card and not reference.strip():
        raise Unprocessable("payment_reference_required")
    note = invoices.issue_credit_note(session, actor, invoice, amount_minor, reason.strip())
    if refund_minor == 0:
        return note
    now = utcnow()
    refund = Payment(
        invoice_id=invoice.id,
        buyer_org_id=invoice.buyer_org_id,
        amount_minor=-refund_minor,
        currency=invoice.currency,
        credit_note_id=note.id,
        recorded_by=actor.user_id,
        idempotency_key=f"refund-{note.id}",
        created_at=now,
        updated_at=now,
        method=PaymentMethod.STRIPE.value if card else PaymentMethod.BANK_TRANSFER.value,
    )
    note.refund_minor = refund_minor
    if card:
        refund.stripe_payment_intent_id = card[-1].stripe_payment_intent_id
        session.add(refund)
        session.flush()
        return note
    refund.reference = reference.strip()
    session.add(refund)
    session.flush()
    settle(session, refund, now)
    return note


def _refundable_card_payments(session: Session, invoice_id: str, refund_minor: int) -> list[Payment]:
    """Succeeded card payments of the invoice with at least `refund_minor` not yet refunded (refunds
    pending or succeeded against their intent count), oldest first."""
    found = repository.payments_of(session, invoice_id)
    refunded: dict[str, int] = {}
    for p in found:
        if p.amount_minor < 0 and p.stripe_payment_intent_id and p.status != PaymentStatus.FAILED.value:
            refunded[p.stripe_payment_intent_id] = refunded.get(p.stripe_payment_intent_id, 0) - p.amount_minor
    return [
        p
        for p in found
        if p.method == PaymentMethod.STRIPE.value
        and p.status == PaymentStatus.SUCCEEDED.value
        and p.amount_minor > 0
        and p.stripe_payment_intent_id
        and p.amount_minor - refunded.get(p.stripe_payment_intent_id, 0) >= refund_minor
    ]


def pending_refunds_minor(session: Session, invoice_id: str) -> int:
    """Card refunds of the invoice recorded and not yet confirmed by Stripe (positive minor units)."""
    return -sum(
        p.amount_minor
        for p in repository.payments_of(session, invoice_id)
        if p.amount_minor < 0 and p.status == PaymentStatus.PENDING.value
    )


def visible_payments(session: Session, actor: Principal, status: str | None) -> list[Payment]:
    actor.require(*invoices.READERS)
    if status is not None and status not in {s.value for s in PaymentStatus}:
        raise Unprocessable("invalid_payment_status", status=status)
    return list(repository.list_payments(session, actor.org_id if actor.role == Role.BUYER else None, status))

"""Payments: bank transfers (对公转账) recorded by finance, card payments through Stripe, webhooks,
the re-check of pending payments, and refunds through credit notes.

A payment changes an invoice, the journal and the revenue distribution exactly once: when it
becomes `succeeded` (`_settle`). Every path that learns a payment's outcome (the pay call, a
webhook in any order, the reconciling job) goes through `_apply_intent`, which only moves forward.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from billing import invoices, ledger, repository, revenue
from billing.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    StripeCustomer,
    StripeEvent,
)
from billing.stripe_gateway import CardDeclined, IntentState, StripeGateway, StripeUnavailable
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import insert_ignore
from market.errors import BadRequest, Conflict, NotFound, Unprocessable
from market.settings import Settings

SUCCEEDED_STATES = {"succeeded"}
FAILED_STATES = {"requires_payment_method", "canceled"}


def _settle(session: Session, payment: Payment, now: datetime) -> None:
    """A payment became succeeded: the invoice's paid amount, the journal and the distribution, once."""
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
    _settle(session, payment, now)
    session.flush()
    return payment


def _exists_key(session: Session, key: str | None) -> bool:
    from sqlalchemy import select

    return key is not None and session.scalar(select(Payment.id).where(Payment.idempotency_key == key)) is not None


# -- Stripe ---------------------------------------------------------------------------------------


@dataclass
class PayOutcome:
    payment: Payment
    declined_code: str | None = None


def _customer(session: Session, gateway: StripeGateway, org_id: str) -> str:
    found = repository.stripe_customer(session, org_id)
    if found is not None:
        return found.customer_id
    organisation = repository.org(session, org_id)
    customer_id = gateway.create_customer(org_id=org_id, name=organisation.name if organisation else org_id)
    session.add(StripeCustomer(org_id=org_id, customer_id=customer_id))
    session.flush()
    return customer_id


def pay_by_card(
    session: Session, settings: Settings, actor: Principal, invoice_id: str, payment_method: str
) -> PayOutcome:
    """The buyer pays what is due on a finalized invoice by card, through a PaymentIntent.

    The idempotency key is derived from the invoice and the attempt number, so a retried request
    never charges twice; a payment already pending is re-checked instead of starting another.
    """
    actor.require(Role.BUYER)
    # Tenancy first: another buyer's invoice is 404 whatever the configuration.
    invoice = invoices.visible_invoice(session, actor, invoice_id, lock=True)
    if not StripeGateway.configured(settings):
        raise StripeUnavailable("stripe_not_configured")
    if invoice.status != InvoiceStatus.FINALIZED.value:
        raise Conflict("invoice_not_payable", invoice=invoice.id, status=invoice.status)
    gateway = StripeGateway(settings)
    attempts = [p for p in repository.payments_of(session, invoice.id) if p.method == PaymentMethod.STRIPE.value]
    for pending in (p for p in attempts if p.status == PaymentStatus.PENDING.value):
        if pending.stripe_payment_intent_id:
            _apply_intent(session, pending, gateway.retrieve(pending.stripe_payment_intent_id))
        if pending.status == PaymentStatus.PENDING.value:
            return PayOutcome(pending)
    due = invoices.due_minor(invoice)
    if due <= 0:
        raise Conflict("nothing_due", invoice=invoice.id)
    now = utcnow()
    payment = Payment(
        invoice_id=invoice.id,
        buyer_org_id=invoice.buyer_org_id,
        method=PaymentMethod.STRIPE.value,
        amount_minor=due,
        currency=invoice.currency,
        idempotency_key=f"invoice-{invoice.id}-attempt-{len(attempts) + 1}",
        recorded_by=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(payment)
    session.flush()
    customer = _customer(session, gateway, invoice.buyer_org_id)
    try:
        state = gateway.pay(
            customer=customer,
            amount=due,
            currency=invoice.currency,
            payment_method=payment_method,
            metadata={"invoice_id": invoice.id, "payment_id": payment.id, "invoice_number": invoice.number or ""},
            key=payment.idempotency_key or payment.id,
        )
    except CardDeclined as declined:
        if declined.intent is not None:
            payment.stripe_payment_intent_id = declined.intent.id
        payment.status = PaymentStatus.FAILED.value
        payment.failure_code = declined.code
        payment.updated_at = utcnow()
        session.flush()
        return PayOutcome(payment, declined_code=declined.code)
    payment.stripe_payment_intent_id = state.id
    payment.reference = state.id
    _apply_intent(session, payment, state)
    session.flush()
    return PayOutcome(payment)


def _apply_intent(session: Session, payment: Payment, state: IntentState) -> None:
    """Move a Stripe payment forward to what Stripe says; never backward (succeeded is final)."""
    payment.stripe_amount_minor = state.amount
    payment.stripe_currency = state.currency or None
    if payment.stripe_payment_intent_id is None:
        payment.stripe_payment_intent_id = state.id
        payment.reference = state.id
    if payment.status == PaymentStatus.SUCCEEDED.value:
        return
    now = utcnow()
    if state.status in SUCCEEDED_STATES:
        _settle(session, payment, now)
    elif state.status in FAILED_STATES and payment.status == PaymentStatus.PENDING.value:
        payment.status = PaymentStatus.FAILED.value
        payment.failure_code = state.failure_code or state.status
        payment.updated_at = now
    session.flush()


def _payment_for_intent(session: Session, state: IntentState) -> Payment | None:
    """Our payment for a PaymentIntent; if we never stored it (a crash between Stripe and our commit),
    recreate it from the intent's metadata so the money is not lost."""
    found = repository.payment_by_intent(session, state.id)
    if found is not None:
        return found
    payment_id = state.metadata.get("payment_id")
    if payment_id:
        found = repository.get_payment(session, payment_id, lock=True)
        if found is not None:
            return found
    invoice = repository.get_invoice(session, state.metadata.get("invoice_id", ""))
    buyer = invoice.buyer_org_id if invoice else state.metadata.get("org_id")
    if buyer is None or repository.org(session, buyer) is None:
        return None
    payment = Payment(
        invoice_id=invoice.id if invoice else None,
        buyer_org_id=buyer,
        method=PaymentMethod.STRIPE.value,
        amount_minor=state.amount,
        currency=state.currency,
        reference=state.id,
        stripe_payment_intent_id=state.id,
    )
    session.add(payment)
    session.flush()
    return payment


def handle_webhook(session: Session, settings: Settings, payload: bytes, signature: str | None) -> str:
    """Verify, store the event id once (insert-or-ignore), and handle it once. Returns what happened."""
    if not StripeGateway.configured(settings) or settings.stripe_webhook_secret is None:
        raise StripeUnavailable("stripe_not_configured")
    gateway = StripeGateway(settings)
    try:
        event = gateway.verify(payload, signature)
    except ValueError as error:
        raise BadRequest("webhook_signature_invalid") from error
    body: dict[str, Any] = json.loads(payload)
    event_id = str(body.get("id", ""))
    event_type = str(body.get("type", ""))
    obj = (body.get("data") or {}).get("object") or {}
    del event
    if not event_id:
        raise BadRequest("webhook_signature_invalid")
    insert_ignore(
        session,
        StripeEvent.__table__,
        {"id": event_id, "type": event_type, "object_id": str(obj.get("id", "")), "received_at": utcnow()},
        ["id"],
    )
    stored = session.get(StripeEvent, event_id, with_for_update=True)
    if stored is None or stored.handled_at is not None:
        return "duplicate"
    if event_type.startswith("payment_intent."):
        # Events arrive in any order: the intent's state is what counts, and it only moves forward.
        state = IntentState.from_object(obj)
        payment = _payment_for_intent(session, state)
        if payment is not None:
            _apply_intent(session, payment, state)
    stored.handled_at = utcnow()
    session.flush()
    return "handled"


def recheck_pending(session: Session, settings: Settings) -> int:
    """The reconciling job: ask Stripe about every payment still pending. Returns how many changed."""
    if not StripeGateway.configured(settings):
        return 0
    gateway = StripeGateway(settings)
    changed = 0
    for payment in repository.pending_stripe_payments(session):
        if not payment.stripe_payment_intent_id:
            continue
        before = payment.status
        _apply_intent(session, payment, gateway.retrieve(payment.stripe_payment_intent_id))
        changed += payment.status != before
    return changed


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
    by card, otherwise as a bank transfer out with `reference`."""
    actor.require(Role.FINANCE)
    invoice = repository.get_invoice(session, invoice_id, lock=True)
    if invoice is None:
        raise NotFound("invoice_not_found", invoice=invoice_id)
    if not reason.strip():
        raise Unprocessable("credit_note_reason_required")
    if refund_minor < 0 or refund_minor > min(amount_minor, invoice.paid_minor):
        raise Unprocessable("refund_amount", refund=refund_minor, paid=invoice.paid_minor)
    note = invoices.issue_credit_note(session, actor, invoice, amount_minor, reason.strip())
    if refund_minor == 0:
        return note
    card = [
        p
        for p in repository.payments_of(session, invoice.id)
        if p.method == PaymentMethod.STRIPE.value
        and p.status == PaymentStatus.SUCCEEDED.value
        and p.amount_minor >= refund_minor
    ]
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
    if card and card[-1].stripe_payment_intent_id:
        refund.stripe_payment_intent_id = card[-1].stripe_payment_intent_id
        refund.reference = StripeGateway(settings).refund(
            intent_id=card[-1].stripe_payment_intent_id, amount=refund_minor, key=f"refund-{note.id}"
        )
    else:
        if not reference.strip():
            raise Unprocessable("payment_reference_required")
        refund.reference = reference.strip()
    note.refund_minor = refund_minor
    session.add(refund)
    session.flush()
    _settle(session, refund, now)
    return note


def visible_payments(session: Session, actor: Principal, status: str | None) -> list[Payment]:
    actor.require(*invoices.READERS)
    if status is not None and status not in {s.value for s in PaymentStatus}:
        raise Unprocessable("invalid_payment_status", status=status)
    return list(repository.list_payments(session, actor.org_id if actor.role == Role.BUYER else None, status))


__all__ = ["PayOutcome", "StripeUnavailable"]

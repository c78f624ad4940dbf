"""Card payments through Stripe, exactly once: the pay call, webhooks and the re-check job.

The pay call is three steps, and no database transaction is open while Stripe is called:
1. the attempt is recorded and committed (pending, with an idempotency key stable across retries,
   and the moment it was claimed for a call to Stripe);
2. Stripe is called with that key and the attempt's id in the intent's metadata;
3. what Stripe said is applied in a short transaction.
A crash between 2 and 3 leaves a pending attempt. Whoever comes next (the buyer's retry, the
re-check job, a webhook) finds the intent at Stripe by its metadata and settles it: a retry never
charges twice. Every path that learns an intent's state goes through `_apply_intent`, which only
moves forward, under the invoice's lock and then the payment's (always in that order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from billing import invoices, repository
from billing.models import InvoiceStatus, Payment, PaymentMethod, PaymentStatus, StripeCustomer, StripeEvent
from billing.payments import settle
from billing.stripe_gateway import CardDeclined, IntentState, RefundState, StripeGateway, StripeUnavailable
from market.accounts.models import Role
from market.accounts.service import Principal
from market.clock import utcnow
from market.db import Database, insert_ignore
from market.errors import BadRequest, Conflict
from market.settings import Settings

SUCCEEDED_STATES = {"succeeded"}
FAILED_STATES = {"requires_payment_method", "canceled"}
CLAIM = timedelta(seconds=120)
"""How long an attempt belongs to the request that is calling Stripe for it (longer than a call)."""
ABANDONED = timedelta(minutes=15)
"""An attempt Stripe has never heard of after this long was never sent: the re-check job fails it."""


@dataclass
class PayOutcome:
    payment: Payment
    declined_code: str | None = None


@dataclass(frozen=True)
class _Attempt:
    payment_id: str
    key: str
    intent_id: str | None
    fresh: bool
    """True when this request claimed the attempt and may call Stripe to create its intent."""
    new: bool
    """True when this request recorded the attempt."""
    invoice_id: str
    invoice_number: str
    amount: int
    currency: str
    buyer_org_id: str


@dataclass(frozen=True)
class CardDetails:
    """A card as the buyer typed it in the console's card form: passed to Stripe once, never stored."""

    number: str
    exp_month: int
    exp_year: int
    cvc: str

    def __repr__(self) -> str:  # never in a log or a traceback
        return f"CardDetails(number=...{self.number[-4:]})"


def card_payment_method(settings: Settings, card: CardDetails) -> str:
    """The Stripe PaymentMethod for a card typed into the console; CardDeclined if Stripe refuses the details."""
    if not StripeGateway.configured(settings):
        raise StripeUnavailable("stripe_not_configured")
    return StripeGateway(settings).card_method(
        number=card.number, exp_month=card.exp_month, exp_year=card.exp_year, cvc=card.cvc
    )


def pay_by_card(
    database: Database, settings: Settings, actor: Principal, invoice_id: str, payment_method: str
) -> PayOutcome:
    """The buyer pays what is due on a finalized invoice by card, through a PaymentIntent, once."""
    actor.require(Role.BUYER)
    with database.transaction(write=True) as session:
        attempt = _claim_attempt(session, settings, actor, invoice_id)
    gateway = StripeGateway(settings)
    # An attempt recorded by this very request cannot be at Stripe yet; any other may be.
    state = None if attempt.new else _find_at_stripe(gateway, attempt.payment_id, attempt.key, attempt.intent_id)
    if state is None and attempt.fresh:
        customer = _customer(database, gateway, attempt.buyer_org_id)
        try:
            state = gateway.pay(
                customer=customer,
                amount=attempt.amount,
                currency=attempt.currency,
                payment_method=payment_method,
                metadata={
                    "invoice_id": attempt.invoice_id,
                    "payment_id": attempt.payment_id,
                    "invoice_number": attempt.invoice_number,
                    "attempt_key": attempt.key,
                },
                key=attempt.key,
            )
        except CardDeclined as declined:
            with database.transaction(write=True) as session:
                payment = _locked_payment(session, attempt.payment_id)
                if declined.intent is not None:
                    _apply_intent(session, payment, declined.intent)
                if payment.status == PaymentStatus.PENDING.value:
                    payment.status = PaymentStatus.FAILED.value
                    payment.failure_code = declined.code
                    payment.updated_at = utcnow()
                return PayOutcome(payment, declined_code=declined.code)
    with database.transaction(write=True) as session:
        payment = _locked_payment(session, attempt.payment_id)
        if state is not None:
            _apply_intent(session, payment, state)
        return PayOutcome(payment)


def _claim_attempt(session: Session, settings: Settings, actor: Principal, invoice_id: str) -> _Attempt:
    """Under the invoice's lock: the pending attempt to carry on with, or a new one, committed before
    Stripe is called. Only one request at a time may create an attempt's intent (the claim)."""
    # Tenancy first: another buyer's invoice is 404 whatever the configuration.
    invoice = invoices.visible_invoice(session, actor, invoice_id, lock=True)
    if not StripeGateway.configured(settings):
        raise StripeUnavailable("stripe_not_configured")
    if invoice.status != InvoiceStatus.FINALIZED.value:
        raise Conflict("invoice_not_payable", invoice=invoice.id, status=invoice.status)
    now = utcnow()
    attempts = [p for p in repository.payments_of(session, invoice.id) if p.method == PaymentMethod.STRIPE.value]
    pending = next((p for p in attempts if p.status == PaymentStatus.PENDING.value), None)
    if pending is not None:
        payment = repository.get_payment(session, pending.id, lock=True)
        assert payment is not None
        claimable = payment.stripe_payment_intent_id is None and now - payment.updated_at >= CLAIM
        if claimable:
            payment.updated_at = now
        return _attempt_of(payment, invoice.number or "", fresh=claimable, new=False)
    due = invoices.due_minor(invoice)
    if due <= 0:
        raise Conflict("nothing_due", invoice=invoice.id)
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
    return _attempt_of(payment, invoice.number or "", fresh=True, new=True)


def _attempt_of(payment: Payment, number: str, *, fresh: bool, new: bool) -> _Attempt:
    return _Attempt(
        payment_id=payment.id,
        key=payment.idempotency_key or payment.id,
        intent_id=payment.stripe_payment_intent_id,
        fresh=fresh,
        new=new,
        invoice_id=payment.invoice_id or "",
        invoice_number=number,
        amount=payment.amount_minor,
        currency=payment.currency,
        buyer_org_id=payment.buyer_org_id,
    )


def _find_at_stripe(gateway: StripeGateway, payment_id: str, key: str, intent_id: str | None) -> IntentState | None:
    """The attempt's intent at Stripe: by its id when we stored it, else by the attempt's metadata
    (searched, or every page of the list: no cap)."""
    if intent_id:
        return gateway.retrieve(intent_id)
    return gateway.find_intent(payment_id=payment_id, key=key)


def _customer(database: Database, gateway: StripeGateway, org_id: str) -> str:
    """The buyer's Stripe customer, created at Stripe outside any transaction, stored once."""
    with database.transaction() as session:
        found = repository.stripe_customer(session, org_id)
        if found is not None:
            return found.customer_id
        organisation = repository.org(session, org_id)
        name = organisation.name if organisation else org_id
    customer_id = gateway.create_customer(org_id=org_id, name=name)
    with database.transaction(write=True) as session:
        insert_ignore(session, StripeCustomer.__table__, {"org_id": org_id, "customer_id": customer_id}, ["org_id"])
        stored = repository.stripe_customer(session, org_id)
        return stored.customer_id if stored else customer_id


def _locked_payment(session: Session, payment_id: str) -> Payment:
    """The payment re-read under its invoice's lock and then its own: the one lock order of payments."""
    found = repository.get_payment(session, payment_id)
    if found is None:  # pragma: no cover - payments are never deleted
        raise Conflict("payment_not_found", payment=payment_id)
    if found.invoice_id:
        repository.get_invoice(session, found.invoice_id, lock=True)
    payment = repository.get_payment(session, payment_id, lock=True)
    assert payment is not None
    return payment


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
        settle(session, payment, now)
    elif state.status in FAILED_STATES and payment.status == PaymentStatus.PENDING.value:
        payment.status = PaymentStatus.FAILED.value
        payment.failure_code = state.failure_code or state.status
        payment.updated_at = now
    session.flush()


def _payment_for_intent(session: Session, state: IntentState) -> Payment | None:
    """Our payment for a PaymentIntent, locked; if we never stored it, recreated from the intent's
    metadata so the money is not lost."""
    found = repository.payment_by_intent(session, state.id)
    if found is None and state.metadata.get("payment_id"):
        found = repository.get_payment(session, state.metadata["payment_id"])
    if found is not None:
        return _locked_payment(session, found.id)
    invoice = repository.get_invoice(session, state.metadata.get("invoice_id", ""), lock=True)
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
    try:
        StripeGateway(settings).verify(payload, signature)
    except ValueError as error:
        raise BadRequest("webhook_signature_invalid") from error
    body: dict[str, Any] = json.loads(payload)
    event_id = str(body.get("id", ""))
    event_type = str(body.get("type", ""))
    obj = (body.get("data") or {}).get("object") or {}
    if not event_id:
        raise BadRequest("webhook_signature_invalid")
    insert_ignore(
        session,
        StripeEvent.__table__,
        {"id": event_id, "type": event_type, "object_id": str(obj.get("id", "")), "received_at": utcnow()},
        ["id"],
    )
    stored = session.get(StripeEvent, event_id, with_for_update=True, populate_existing=True)
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


def recheck_pending(database: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """The reconciling job: settle every pending card payment from what Stripe says, find at Stripe
    the intents of attempts we never heard back about (and succeeded intents we never stored), and
    fail attempts Stripe never received. Returns how many payments changed or were found."""
    if not StripeGateway.configured(settings):
        return 0
    gateway = StripeGateway(settings)
    now = now or utcnow()
    with database.transaction() as session:
        pending = [
            (p.id, p.stripe_payment_intent_id, p.updated_at) for p in repository.pending_stripe_payments(session)
        ]
        refunds = [p.id for p in repository.pending_stripe_refunds(session)]
    changed = 0
    for refund_id in refunds:
        try:
            changed += send_refund(database, settings, refund_id).status != PaymentStatus.PENDING.value
        except StripeUnavailable:
            continue  # tried again at the next run
    # Every page of Stripe's list (no cap): attempts whose answer was lost, and intents never stored.
    listed = list(gateway.intents())
    by_payment = {s.metadata["payment_id"]: s for s in listed if s.metadata.get("payment_id")}
    for payment_id, intent_id, claimed_at in pending:
        state = gateway.retrieve(intent_id) if intent_id else by_payment.get(payment_id)
        with database.transaction(write=True) as session:
            payment = _locked_payment(session, payment_id)
            before = payment.status
            if state is not None:
                _apply_intent(session, payment, state)
            elif payment.status == PaymentStatus.PENDING.value and now - claimed_at >= ABANDONED:
                payment.status = PaymentStatus.FAILED.value
                payment.failure_code = "never_sent_to_stripe"
                payment.updated_at = now
            changed += payment.status != before
    for state in listed:
        if state.status not in SUCCEEDED_STATES or not state.metadata.get("invoice_id"):
            continue
        with database.transaction(write=True) as session:
            known = repository.payment_by_intent(session, state.id) is not None or (
                state.metadata.get("payment_id") is not None
                and repository.get_payment(session, state.metadata["payment_id"]) is not None
            )
            if known:
                continue
            recovered = _payment_for_intent(session, state)
            if recovered is not None:
                _apply_intent(session, recovered, state)
                changed += 1
    return changed


# -- refunds of card payments ---------------------------------------------------------------------


def send_refund(database: Database, settings: Settings, payment_id: str) -> Payment:
    """Send a pending card refund (recorded and committed with its credit note) to Stripe, outside
    any transaction and lock, then apply Stripe's answer in a short one. Idempotent: the refund is
    first looked for at Stripe by our payment id in its metadata, and created with the refund's
    idempotency key, so a retry (the re-check job, after a crash or a Stripe outage) never refunds twice."""
    with database.transaction() as session:
        payment = repository.get_payment(session, payment_id)
        if payment is None:  # pragma: no cover - payments are never deleted
            raise Conflict("payment_not_found", payment=payment_id)
        if payment.status != PaymentStatus.PENDING.value or payment.amount_minor >= 0:
            return payment
        intent_id = payment.stripe_payment_intent_id or ""
        key = payment.idempotency_key or payment.id
        amount = -payment.amount_minor
        metadata = {"payment_id": payment.id, "credit_note_id": payment.credit_note_id or ""}
    gateway = StripeGateway(settings)
    state = gateway.find_refund(intent_id=intent_id, payment_id=payment_id) or gateway.refund(
        intent_id=intent_id, amount=amount, key=key, metadata=metadata
    )
    with database.transaction(write=True) as session:
        payment = _locked_payment(session, payment_id)
        _apply_refund(session, payment, state)
        return payment


def _apply_refund(session: Session, payment: Payment, state: RefundState) -> None:
    """Move a refund forward to what Stripe says: succeeded settles it (once), failed fails it."""
    payment.reference = state.id
    payment.stripe_amount_minor = -state.amount
    if payment.status != PaymentStatus.PENDING.value:
        return
    now = utcnow()
    if state.status == "succeeded":
        settle(session, payment, now)
    elif state.status in ("failed", "canceled"):
        payment.status = PaymentStatus.FAILED.value
        payment.failure_code = f"refund_{state.status}"
        payment.updated_at = now
    session.flush()

"""HTTP routes: bank transfers, card payments through Stripe, the Stripe webhook, credit notes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from billing import card_payments, invoices, payments
from billing.schemas import (
    BankTransferIn,
    CreditNoteIn,
    CreditNoteOut,
    PayIn,
    PaymentOut,
    UnappliedTransferIn,
)
from market.deps import DatabaseDep, PrincipalDep, SessionDep, SettingsDep
from market.messages import render

router = APIRouter(prefix="/v1", tags=["payments"])


@router.post("/invoices/{invoice_id}/payments", response_model=PaymentOut, status_code=201)
def record_transfer(invoice_id: str, body: BankTransferIn, session: SessionDep, principal: PrincipalDep) -> PaymentOut:
    """Finance records a bank transfer (对公转账) received for an invoice; partial payments are fine."""
    payment = payments.record_bank_transfer(
        session,
        principal,
        invoice_id=invoice_id,
        buyer_org_id=None,
        amount_minor=body.amount_minor,
        currency=body.currency,
        reference=body.reference,
        received_at=body.received_at,
    )
    return PaymentOut.model_validate(payment)


@router.post("/payments", response_model=PaymentOut, status_code=201)
def record_unapplied(body: UnappliedTransferIn, session: SessionDep, principal: PrincipalDep) -> PaymentOut:
    """Finance records a transfer no invoice explains yet; reconciliation lists it until resolved."""
    payment = payments.record_bank_transfer(
        session,
        principal,
        invoice_id=None,
        buyer_org_id=body.buyer_org_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        reference=body.reference,
        received_at=body.received_at,
    )
    return PaymentOut.model_validate(payment)


@router.get("/payments", response_model=list[PaymentOut])
def list_payments(session: SessionDep, principal: PrincipalDep, status: str | None = None) -> list[PaymentOut]:
    """Payments received: bank transfers and card payments, applied or not."""
    return [PaymentOut.model_validate(p) for p in payments.visible_payments(session, principal, status)]


@router.post("/invoices/{invoice_id}/pay", response_model=PaymentOut)
def pay(
    invoice_id: str, body: PayIn, database: DatabaseDep, settings: SettingsDep, principal: PrincipalDep
) -> PaymentOut | JSONResponse:
    """The buyer pays what is due by card. A declined card is a 402 and the attempt is kept. Retrying
    is safe: it carries on with the same attempt and never charges twice."""
    outcome = card_payments.pay_by_card(database, settings, principal, invoice_id, body.payment_method)
    if outcome.declined_code is not None:
        # Returned, not raised: the failed attempt is already committed.
        return JSONResponse(
            status_code=402,
            content={
                "error": {
                    "code": "card_declined",
                    "message": render("card_declined", reason=outcome.declined_code),
                    "payment_id": outcome.payment.id,
                }
            },
        )
    return PaymentOut.model_validate(outcome.payment)


async def raw_body(request: Request) -> bytes:
    """The request body as sent (the webhook's signature covers these exact bytes)."""
    return await request.body()


@router.post("/stripe/webhook", include_in_schema=True)
def stripe_webhook(
    payload: Annotated[bytes, Depends(raw_body)], request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, str]:
    """Stripe's events, verified by signature, stored once by id and handled once, in any order.
    A plain (sync) route: its database work runs in the thread pool, never on the event loop."""
    result = card_payments.handle_webhook(session, settings, payload, request.headers.get("stripe-signature"))
    return {"status": result}


@router.post("/invoices/{invoice_id}/credit-notes", response_model=CreditNoteOut, status_code=201)
def credit_note(
    invoice_id: str, body: CreditNoteIn, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> CreditNoteOut:
    """Finance corrects a finalized invoice with a credit note, refunding part of it if asked."""
    note = payments.credit_and_refund(
        session,
        settings,
        principal,
        invoice_id,
        amount_minor=body.amount_minor,
        refund_minor=body.refund_minor,
        reason=body.reason,
        reference=body.reference,
    )
    return CreditNoteOut.model_validate(note)


@router.get("/credit-notes", response_model=list[CreditNoteOut])
def list_credit_notes(session: SessionDep, principal: PrincipalDep) -> list[CreditNoteOut]:
    """Credit notes issued, with their refunds."""
    return [CreditNoteOut.model_validate(n) for n in invoices.credit_notes(session, principal)]

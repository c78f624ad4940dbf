"""HTTP routes: bank transfers, card payments through Stripe, the Stripe webhook, credit notes."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from billing import invoices, payments, repository
from billing.models import CreditNote, Payment
from billing.schemas import (
    BankTransferIn,
    CreditNoteIn,
    CreditNoteOut,
    PayIn,
    PaymentOut,
    UnappliedTransferIn,
)
from market.deps import PrincipalDep, SessionDep, SettingsDep
from market.messages import render
from market.pagination import CursorQuery, LimitQuery, Page, page_of

router = APIRouter(prefix="/v1", tags=["payments"])


def _payments(session: SessionDep, found: Sequence[Payment]) -> list[PaymentOut]:
    numbers = repository.invoice_numbers(session, {p.invoice_id for p in found if p.invoice_id})
    names = repository.org_names(session, {p.buyer_org_id for p in found})
    return [
        PaymentOut.model_validate(p).model_copy(
            update={"invoice_number": numbers.get(p.invoice_id or ""), "buyer": names.get(p.buyer_org_id, "")}
        )
        for p in found
    ]


def _notes(session: SessionDep, found: Sequence[CreditNote]) -> list[CreditNoteOut]:
    numbers = repository.invoice_numbers(session, {n.invoice_id for n in found})
    return [
        CreditNoteOut.model_validate(n).model_copy(update={"invoice_number": numbers.get(n.invoice_id)}) for n in found
    ]


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
    return _payments(session, [payment])[0]


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
    return _payments(session, [payment])[0]


@router.get("/payments", response_model=Page[PaymentOut])
def list_payments(
    session: SessionDep,
    principal: PrincipalDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: str | None = None,
) -> Page[PaymentOut]:
    """Payments received, newest first: bank transfers and card payments, applied or not."""
    found = payments.visible_payments(session, principal, status)
    page, next_cursor = page_of(found, key=lambda p: (p.created_at, p.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=_payments(session, page), next_cursor=next_cursor)


@router.post("/invoices/{invoice_id}/pay", response_model=PaymentOut)
def pay(
    invoice_id: str, body: PayIn, session: SessionDep, settings: SettingsDep, principal: PrincipalDep
) -> PaymentOut | JSONResponse:
    """The buyer pays what is due by card. A declined card is a 402 and the attempt is kept."""
    outcome = payments.pay_by_card(session, settings, principal, invoice_id, body.payment_method)
    if outcome.declined_code is not None:
        # Returned, not raised: the failed attempt is committed with the request.
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
    return _payments(session, [outcome.payment])[0]


@router.post("/stripe/webhook", include_in_schema=True)
async def stripe_webhook(request: Request, session: SessionDep, settings: SettingsDep) -> dict[str, str]:
    """Stripe's events, verified by signature, stored once by id and handled once, in any order."""
    payload = await request.body()
    result = payments.handle_webhook(session, settings, payload, request.headers.get("stripe-signature"))
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
    return _notes(session, [note])[0]


@router.get("/credit-notes", response_model=Page[CreditNoteOut])
def list_credit_notes(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[CreditNoteOut]:
    """Credit notes issued, with their refunds, newest first."""
    found = invoices.credit_notes(session, principal)
    page, next_cursor = page_of(found, key=lambda n: (n.created_at, n.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=_notes(session, page), next_cursor=next_cursor)

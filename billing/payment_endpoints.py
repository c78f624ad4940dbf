"""HTTP routes: bank transfers, card payments through Stripe, the Stripe webhook, credit notes."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from billing import card_payments, document_render, documents, invoices, payments, repository
from billing.models import CreditNote, Payment, PaymentStatus
from billing.schemas import (
    BankTransferIn,
    CreditNoteIn,
    CreditNoteOut,
    PayIn,
    PaymentOut,
    UnappliedTransferIn,
)
from billing.stripe_gateway import StripeUnavailable
from market.deps import DatabaseDep, PrincipalDep, SessionDep, SettingsDep
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
    refunds = repository.refunds_of_notes(session, [n.id for n in found])
    return [
        CreditNoteOut.model_validate(n).model_copy(
            update={
                "invoice_number": numbers.get(n.invoice_id),
                "refund_status": refunds[n.id].status if n.id in refunds else None,
                "refund_payment_id": refunds[n.id].id if n.id in refunds else None,
            }
        )
        for n in found
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
    with database.transaction() as session:  # a read of what the payment's transactions committed
        return _payments(session, [outcome.payment])[0]


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
    invoice_id: str,
    body: CreditNoteIn,
    session: SessionDep,
    database: DatabaseDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> CreditNoteOut:
    """Finance corrects a finalized invoice with a credit note, refunding part of it if asked.

    A card refund is recorded with the note and committed under the billing locks; Stripe is called
    after, outside every lock and transaction. If Stripe cannot be reached the note stands and its
    refund stays `pending`: the re-check job sends it (with the same idempotency key)."""
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
    refund = repository.refund_of_note(session, note.id)
    session.commit()
    if refund is not None and refund.status == PaymentStatus.PENDING.value:
        # If Stripe cannot be reached, the note stands and the refund stays pending for the re-check job.
        with contextlib.suppress(StripeUnavailable):
            card_payments.send_refund(database, settings, refund.id)
        session.expire_all()
    return _notes(session, [note])[0]


@router.get("/credit-notes", response_model=Page[CreditNoteOut])
def list_credit_notes(
    session: SessionDep, principal: PrincipalDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[CreditNoteOut]:
    """Credit notes issued, with their refunds, newest first."""
    found = invoices.credit_notes(session, principal)
    page, next_cursor = page_of(found, key=lambda n: (n.created_at, n.id), limit=limit, cursor=cursor, descending=True)
    return Page(items=_notes(session, page), next_cursor=next_cursor)


@router.get("/credit-notes/{note_id}/document", response_class=HTMLResponse, response_model=None)
def credit_note_document(
    note_id: str, session: SessionDep, principal: PrincipalDep, format: str = "html", lang: str | None = None
) -> Response:
    """A credit note as a printable document (`?format=html|pdf`, `?lang=zh-CN|en`): the buyer's own, or any
    for finance."""
    document_render.check_format(format)
    note, invoice = documents.visible_credit_note(session, principal, note_id)
    document = documents.credit_note_document(session, note, invoice, document_render.document_locale(lang))
    return document_render.respond(document, format)

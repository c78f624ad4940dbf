"""Billing's HTTP shapes. Amounts are integers of minor units next to a currency."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from market.money import MAX_AMOUNT_MINOR


class RunIn(BaseModel):
    period: str = Field(description="YYYY-MM, the period's first month.")
    finalize: bool = False


class RunOut(BaseModel):
    period: str
    invoices_created: int
    lines_created: int
    usage_linked: int
    draft_invoices: int
    draft_total_minor: int
    finalized: int = 0


class PeriodOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    period: str
    months: int
    status: str
    runs: int
    last_run_at: datetime | None
    scheduled_run_at: datetime | None
    closed_at: datetime | None


class LineOut(BaseModel):
    id: str
    agreement_id: str
    product_id: str
    product: str = Field(description="The product's slug.")
    component: str
    source_period: str
    description: str
    quantity: int
    bytes_scanned: int
    unit_price_minor: int
    amount_minor: int
    usage_records: str = Field(description="Where to list the usage records this line covers.")
    privacy_rho_nano: int = Field(
        default=0, description="DP products: privacy budget the line's queries spent (rho-zCDP, 1e-9 units)."
    )


class BuyerOut(BaseModel):
    id: str
    name: str


class InvoiceOut(BaseModel):
    id: str
    number: str | None
    buyer: BuyerOut
    period: str
    status: str
    public_interest: bool
    currency: str
    total_minor: int
    credited_minor: int
    paid_minor: int
    due_minor: int
    created_at: datetime
    finalized_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    overdue: bool
    lines: list[LineOut]
    document: str


class FinalizedOut(BaseModel):
    period: str
    finalized: int = Field(description="How many invoices this call finalized.")
    invoices: list[InvoiceOut]


class UsageRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agreement_id: str
    charge_type: str
    amount_minor: int
    currency: str
    bytes_scanned: int
    month: str
    created_at: datetime


class ReasonIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class CreditNoteIn(BaseModel):
    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR, description="Amount credited, minor units.")
    reason: str = Field(min_length=1, max_length=2000)
    refund_minor: int = Field(
        default=0, ge=0, le=MAX_AMOUNT_MINOR, description="Part of the credit paid back, minor units."
    )
    reference: str = Field(default="", max_length=200, description="Bank reference of a refund by transfer.")


class CreditNoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    number: str
    invoice_id: str
    invoice_number: str | None = Field(default=None, description="The credited invoice's number.")
    amount_minor: int
    refund_minor: int
    currency: str
    reason: str
    created_at: datetime


class BankTransferIn(BaseModel):
    amount_minor: int = Field(gt=0, le=MAX_AMOUNT_MINOR, description="Amount received, minor units.")
    reference: str = Field(min_length=1, max_length=200, description="The bank's transaction reference (流水号).")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    received_at: AwareDatetime | None = Field(default=None, description="With a timezone, e.g. 2026-11-02T10:00:00Z.")


class UnappliedTransferIn(BankTransferIn):
    buyer_org_id: str


class PayIn(BaseModel):
    payment_method: str = Field(
        min_length=3, max_length=200, description="A Stripe PaymentMethod id, e.g. pm_card_visa."
    )


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    invoice_id: str | None
    invoice_number: str | None = Field(default=None, description="The invoice's number, once it has one.")
    buyer_org_id: str
    buyer: str = Field(default="", description="The buyer organisation's name.")
    method: str
    status: str
    amount_minor: int
    currency: str
    reference: str
    stripe_payment_intent_id: str | None
    failure_code: str
    credit_note_id: str | None
    received_at: datetime | None
    created_at: datetime


class ShareIn(BaseModel):
    party: Literal["source", "operator", "platform"]
    org_id: str | None = Field(default=None, description="The source department's organisation (sources only).")
    basis_points: int = Field(ge=0, le=10_000)


class SharesIn(BaseModel):
    shares: list[ShareIn] = Field(min_length=1, max_length=20)


class ShareOut(BaseModel):
    party: str
    org_id: str | None
    name: str = Field(default="", description="The party's organisation name; empty for the platform's share.")
    basis_points: int


class RevenueSharesOut(BaseModel):
    product: str = Field(description="The product's slug.")
    shares: list[ShareOut]


class StatementOut(BaseModel):
    period: str
    party: str
    org_id: str | None
    name: str
    currency: str
    amount_minor: int
    payments: int
    year_to_date_minor: int | None = Field(
        description="Operators: revenue received so far in the period's year from paid use of its products "
        "(all parties' parts), as the allowed revenue counts it."
    )
    ceiling_minor: int | None = Field(
        description="Operators: the year's allowed revenue (最高准许收入, GET /v1/allowed-revenue); null until "
        "the regulator records its figures."
    )
    over_ceiling: bool = Field(description="Operators: the revenue has reached the allowed revenue.")
    used_basis_points: int | None = Field(default=None, description="Revenue over allowed revenue, 1/100 of 1%.")
    warning: str | None = Field(default=None, description="none, approaching (from 80%) or exceeded (from 100%).")


class MismatchOut(BaseModel):
    reason: str
    objects: dict[str, str]
    amount_minor: int
    currency: str = Field(description="The amount's currency; empty when the mismatch has no amount.")
    detail: str
    key: str = Field(description="Stable key of this mismatch: acknowledge it by this key.")
    acknowledgement: dict[str, str] | None = Field(
        default=None, description="Finance's acknowledgement (`note`, `by`, `at`), if any."
    )


class TotalsOut(BaseModel):
    usage_billable_minor: int
    invoiced_minor: int
    fees_minor: int
    adjustments_minor: int
    credited_minor: int
    paid_minor: int
    paid_by_method: dict[str, int]
    distributed_minor: int


class ReconciliationOut(TotalsOut):
    """The period's totals in the marketplace currency, each currency's apart, and the mismatches."""

    period: str
    status: str
    currency: str = Field(description="Currency of the top-level totals; `by_currency` has each currency apart.")
    by_currency: dict[str, TotalsOut]
    mismatches: list[MismatchOut]
    open_mismatches: int = Field(description="Mismatches not acknowledged by finance; closing needs 0.")


class AcknowledgementIn(BaseModel):
    mismatch_key: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=2000, description="Why finance accepts the mismatch.")


class AcknowledgementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    period: str
    mismatch_key: str
    reason: str
    objects: str
    amount_minor: int
    currency: str
    note: str
    acknowledged_by: str
    acknowledged_at: datetime


class PeriodClosingOut(BaseModel):
    """What the regulator sees of a period's closing: its state and every acknowledged mismatch."""

    period: str
    status: str
    closed_at: datetime | None
    closed_by: str | None
    acknowledgements: list[AcknowledgementOut]


class BalanceOut(BaseModel):
    account: str
    currency: str
    balance_minor: int = Field(description="Debits positive, credits negative, minor units.")


class JournalLineOut(BaseModel):
    account: str
    amount_minor: int


class JournalEntryOut(BaseModel):
    id: str
    kind: str
    reference: str
    period: str
    currency: str
    memo: str
    created_at: datetime
    lines: list[JournalLineOut]

"""Rating one query: purpose, trial, per-query and per-GB fees, and the monthly cap. Pure functions.

All amounts are integer minor units; the per-GB rate is a Decimal; rounding is market.money's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from market.money import round_minor
from metering.models import ChargeType

BYTES_PER_GB = Decimal(10**9)


@dataclass(frozen=True)
class PlanTerms:
    """The pricing terms of an agreement's plan snapshot."""

    currency: str
    monthly_fee_minor: int = 0
    per_query_minor: int = 0
    per_gb_minor: Decimal = Decimal(0)
    trial_queries: int = 0
    monthly_cap_minor: int | None = None

    @classmethod
    def from_snapshot(cls, plan: dict[str, Any]) -> PlanTerms:
        return cls(
            currency=str(plan["currency"]),
            monthly_fee_minor=int(plan.get("monthly_fee_minor", 0)),
            per_query_minor=int(plan.get("per_query_minor", 0)),
            per_gb_minor=Decimal(str(plan.get("per_gb_minor", "0"))),
            trial_queries=int(plan.get("trial_queries", 0)),
            monthly_cap_minor=None if plan.get("monthly_cap_minor") is None else int(plan["monthly_cap_minor"]),
        )


@dataclass(frozen=True)
class Charge:
    charge_type: ChargeType
    amount_minor: int
    currency: str


def list_price(terms: PlanTerms, bytes_scanned: int) -> int:
    """The undiscounted price of one query: the per-query fee plus the per-GB fee, rounded once."""
    scanned = terms.per_gb_minor * Decimal(bytes_scanned) / BYTES_PER_GB
    return terms.per_query_minor + round_minor(scanned)


def rate_query(
    terms: PlanTerms, *, public_interest: bool, accepted_before: int, charged_before: int, bytes_scanned: int
) -> Charge:
    """The charge for one accepted query, given what the agreement already used this month.

    `accepted_before` counts this month's earlier accepted queries, `charged_before` their charges.
    Public-interest use is free. The first `trial_queries` queries are free. Past the monthly cap a
    query is served but `cap_reached` and free; the query that reaches the cap pays only the rest.
    """
    if public_interest:
        return Charge(ChargeType.FREE_PUBLIC, 0, terms.currency)
    if accepted_before < terms.trial_queries:
        return Charge(ChargeType.TRIAL, 0, terms.currency)
    amount = list_price(terms, bytes_scanned)
    if terms.monthly_cap_minor is not None:
        room = max(terms.monthly_cap_minor - charged_before, 0)
        if room == 0:
            return Charge(ChargeType.CAP_REACHED, 0, terms.currency)
        amount = min(amount, room)
    return Charge(ChargeType.BILLABLE, amount, terms.currency)

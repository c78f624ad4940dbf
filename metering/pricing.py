"""Rating one query: purpose, trial, per-query and per-GB fees, graduated tiers and the monthly cap.

Pure functions over an agreement's plan snapshot. All amounts are integer minor units; per-GB rates
are Decimal; rounding is market.money's (half away from zero).

The per-GB fee is fair over the month: each query's exact per-GB charge (a Decimal of minor units)
is added to the carry left by the agreement's earlier queries of the month, the sum is rounded, and
the difference is carried on (`Charge.per_gb_carry`, kept in `agreement_months.per_gb_carry`). So a
month's per-GB charges add up to its total bytes at their rates, rounded once: 10,000 queries of
900 KB at 500 fen/GB pay 4,500 fen, not 10,000 times 0.

- Public-interest use is free (`free_public`).
- The first `trial_queries` accepted queries of each calendar month are free (`trial`).
- Later queries pay the per-query fee plus the per-GB fee (`billable`). With graduated tiers, the
  n-th billable query of the month pays the rates of the tier whose range holds n.
- A DP query also pays `per_tenth_epsilon_minor` per 0.1 epsilon it spends (`privacy_fee`).
- Usage charges of a month never exceed `monthly_cap_minor`: the query that reaches the cap pays
  only the rest, and every later query is served and recorded as `cap_reached`, for 0.
- The monthly access fee is not rated here; billing invoices it from the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from market.money import round_minor
from metering.models import ChargeType

BYTES_PER_GB = Decimal(10**9)


@dataclass(frozen=True)
class Tier:
    """Billable queries numbered up to `up_to` (inclusive, 1-based; None = no end) pay these rates."""

    up_to: int | None
    per_query_minor: int = 0
    per_gb_minor: Decimal = Decimal(0)


@dataclass(frozen=True)
class PlanTerms:
    """The pricing terms of an agreement's plan snapshot."""

    currency: str
    monthly_fee_minor: int = 0
    per_query_minor: int = 0
    per_gb_minor: Decimal = Decimal(0)
    trial_queries: int = 0
    monthly_cap_minor: int | None = None
    tiers: tuple[Tier, ...] = field(default_factory=tuple)
    per_tenth_epsilon_minor: int = 0
    """DP products: fee per 0.1 epsilon of privacy budget a billable query spends."""

    @classmethod
    def from_snapshot(cls, plan: dict[str, Any]) -> PlanTerms:
        return cls(
            currency=str(plan["currency"]),
            monthly_fee_minor=int(plan.get("monthly_fee_minor") or 0),
            per_query_minor=int(plan.get("per_query_minor") or 0),
            per_gb_minor=Decimal(str(plan.get("per_gb_minor") or "0")),
            trial_queries=int(plan.get("trial_queries") or 0),
            monthly_cap_minor=None if plan.get("monthly_cap_minor") is None else int(plan["monthly_cap_minor"]),
            tiers=tuple(
                Tier(
                    up_to=None if t.get("up_to") is None else int(t["up_to"]),
                    per_query_minor=int(t.get("per_query_minor") or 0),
                    per_gb_minor=Decimal(str(t.get("per_gb_minor") or "0")),
                )
                for t in plan.get("tiers") or ()
            ),
            per_tenth_epsilon_minor=int(plan.get("per_tenth_epsilon_minor") or 0),
        )

    def tier_for(self, billable_number: int) -> Tier:
        """The rates of the `billable_number`-th (1-based) billable query of the month."""
        for tier in self.tiers:
            if tier.up_to is None or billable_number <= tier.up_to:
                return tier
        if self.tiers:  # a snapshot whose last tier is bounded: its rates continue
            return self.tiers[-1]
        return Tier(up_to=None, per_query_minor=self.per_query_minor, per_gb_minor=self.per_gb_minor)


def peak_rates(terms: PlanTerms) -> Tier:
    """The highest per-query and per-GB rates a plan can charge (across its tiers): what a fee cap must bound."""
    tiers = terms.tiers or (Tier(None, terms.per_query_minor, terms.per_gb_minor),)
    return Tier(None, max(t.per_query_minor for t in tiers), max(t.per_gb_minor for t in tiers))


@dataclass(frozen=True)
class Charge:
    charge_type: ChargeType
    amount_minor: int
    currency: str
    per_gb_carry: Decimal = Decimal(0)
    """What the month's per-GB charges owe (positive) or were paid ahead (negative) after this query."""


def tier_price(tier: Tier, bytes_scanned: int) -> int:
    """One query at a tier's rates: the per-query fee plus the per-GB fee, rounded once."""
    scanned = tier.per_gb_minor * Decimal(bytes_scanned) / BYTES_PER_GB
    return tier.per_query_minor + round_minor(scanned)


def list_price(terms: PlanTerms, bytes_scanned: int, billable_number: int = 1) -> int:
    """The undiscounted price of the `billable_number`-th billable query of the month."""
    return tier_price(terms.tier_for(billable_number), bytes_scanned)


def carried_price(tier: Tier, bytes_scanned: int, carry: Decimal) -> tuple[int, Decimal]:
    """One query at a tier's rates with the month's per-GB carry: (amount, the carry after it)."""
    exact = tier.per_gb_minor * Decimal(bytes_scanned) / BYTES_PER_GB + carry
    rounded = round_minor(exact)
    return tier.per_query_minor + rounded, exact - rounded


def privacy_fee(terms: PlanTerms, epsilon: Decimal) -> int:
    """The fee for spending `epsilon` of privacy budget: per 0.1 epsilon, pro rata, rounded once (half away
    from zero). Stored repeats spend 0 and pay 0."""
    return round_minor(Decimal(terms.per_tenth_epsilon_minor) * epsilon * 10)


def rate_query(
    terms: PlanTerms,
    *,
    public_interest: bool,
    accepted_before: int,
    charged_before: int,
    bytes_scanned: int,
    per_gb_carry: Decimal = Decimal(0),
    privacy_epsilon: Decimal = Decimal(0),
) -> Charge:
    """The charge for one accepted query, given what the agreement already used this month.

    `accepted_before` counts this month's earlier accepted queries, `charged_before` their charges,
    `per_gb_carry` the rounding the month's per-GB charges carried so far (0 rates the query alone).
    """
    if public_interest:
        return Charge(ChargeType.FREE_PUBLIC, 0, terms.currency, per_gb_carry)
    if accepted_before < terms.trial_queries:
        return Charge(ChargeType.TRIAL, 0, terms.currency, per_gb_carry)
    tier = terms.tier_for(accepted_before - terms.trial_queries + 1)
    amount, carry = carried_price(tier, bytes_scanned, per_gb_carry)
    amount += privacy_fee(terms, privacy_epsilon)
    if terms.monthly_cap_minor is not None:
        room = max(terms.monthly_cap_minor - charged_before, 0)
        if room == 0:
            return Charge(ChargeType.CAP_REACHED, 0, terms.currency, per_gb_carry)
        amount = min(amount, room)
    return Charge(ChargeType.BILLABLE, amount, terms.currency, carry)

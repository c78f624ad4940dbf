"""The one money type, the one rounding rule and the one way to split an amount.

Amounts are integer minor units (fen for CNY) with a currency. Unit rates are Decimal. Python's
built-in round() rounds half to even ("banker's rounding"), which is wrong for invoices: 0.5 fen
must become 1 fen, and -0.5 fen must become -1 fen. So rounding happens only in `round_minor`,
half away from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

MINOR_UNITS: dict[str, int] = {"CNY": 2, "USD": 2, "EUR": 2, "JPY": 0}

MAX_AMOUNT_MINOR = 10**12
"""The largest amount one input may state (10 billion yuan in fen): far above any real fee or payment,
and low enough that sums of millions of them still fit a 64-bit BigInteger column."""
MAX_COUNT = 2**31 - 1
"""The largest count (queries, trial queries) an input may state: what an Integer column holds."""


def round_minor(value: Decimal) -> int:
    """Round a Decimal amount of minor units to an integer, half away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise TypeError("amount_minor must be an int of minor units")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def times(self, factor: Decimal | int) -> Money:
        """This amount multiplied by a rate, rounded once."""
        return Money(round_minor(Decimal(self.amount_minor) * Decimal(factor)), self.currency)

    def min(self, other: Money) -> Money:
        self._same(other)
        return self if self.amount_minor <= other.amount_minor else other

    def format(self) -> str:
        digits = MINOR_UNITS.get(self.currency, 2)
        sign = "-" if self.amount_minor < 0 else ""
        major, minor = divmod(abs(self.amount_minor), 10**digits)
        return f"{sign}{major:,}.{minor:0{digits}d} {self.currency}" if digits else f"{sign}{major:,} {self.currency}"


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` minor units in proportion to `weights`, so the parts add up to `total` exactly.

    Largest-remainder method: each part gets the floor of its exact share, then the units left over
    go one each to the parts with the largest remainders (ties to the earlier part). Negative
    totals (refunds) are split as the mirror image of the positive split.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    if total < 0:
        return [-part for part in allocate(-total, weights)]
    floors = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors

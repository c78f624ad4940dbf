"""The money type, the rounding rule and largest-remainder splits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.money import Money, allocate, round_minor


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5", 1), ("1.5", 2), ("2.5", 3), ("-0.5", -1), ("-2.5", -3), ("2.4999", 2), ("0", 0)],
)
def test_round_minor_is_half_away_from_zero(value: str, expected: int) -> None:
    assert round_minor(Decimal(value)) == expected


def test_money_refuses_floats_and_mixed_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Money(1, "CNY") + Money(1, "USD")
    assert (Money(150, "CNY") + Money(250, "CNY")).amount_minor == 400
    assert Money(123456, "CNY").format() == "1,234.56 CNY"
    assert Money(100, "CNY").times(Decimal("0.125")).amount_minor == 13  # 12.5 rounds away from zero


@given(
    total=st.integers(min_value=-(10**12), max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
)
def test_allocate_always_adds_up_and_is_within_one_unit_of_exact(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        exact = Decimal(total) * weight / sum(weights)
        assert abs(Decimal(part) - exact) < 1
        if weight == 0:
            assert part == 0


def test_allocate_gives_leftover_units_to_largest_remainders() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10, [7000, 2000, 1000]) == [7, 2, 1]
    assert allocate(1, [3333, 3333, 3334]) == [0, 0, 1]

"""The regulator's form readers and the review diff, without a server: amounts typed in yuan become exact
minor units (money, hypothesis), and the diff names every changed leaf."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.console.regulator.forms import minor_units, whole_minor_units, words
from market.errors import Unprocessable
from products.review import flatten, version_diff
from products.schemas import ColumnOut, TableOut, VersionOut


@given(st.integers(min_value=0, max_value=10**15))
def test_an_amount_in_yuan_is_exactly_its_minor_units(fen: int) -> None:
    typed = f"{fen // 100:,}.{fen % 100:02d}"
    assert whole_minor_units(typed, "cap") == fen
    assert whole_minor_units(typed.replace(",", ""), "cap") == fen


@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_a_rate_keeps_six_decimals_exactly(rate: Decimal) -> None:
    assert minor_units(str(rate), "per GB", places=6) == rate * 100


@pytest.mark.parametrize("typed", ["1.505", "-1", "abc", "1e3", "NaN", "Infinity"])
def test_an_amount_that_is_not_yuan_and_fen_is_refused(typed: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        whole_minor_units(typed, "cap")
    assert refused.value.code == "console_invalid_amount"


def test_words_split_on_commas_and_spaces_without_repeats() -> None:
    assert words("a, b，c  a、d") == ["a", "b", "c", "d"]


def _version(number: int, k: int, columns: list[tuple[str, str]], recipe: dict | None = None) -> VersionOut:  # type: ignore[type-arg]
    return VersionOut(
        number=number,
        status="listed",
        content_hash="x",
        recipe_hash=None,
        recipe=recipe,
        sources=None,
        tables=[
            TableOut(
                name="t",
                row_count=100 * number,
                columns=[ColumnOut(name=n, type="VARCHAR", role=r) for n, r in columns],
            )
        ],
        policy={"min_group_size": k, "tables": {"t": {"dimensions": [n for n, r in columns if r == "dimension"]}}},
        audit=None,
        quality=None,
        created_at=datetime(2031, 1, 1),
    )


def test_the_diff_names_each_changed_leaf_and_nothing_else() -> None:
    listed = _version(1, 10, [("region", "dimension"), ("name", "hidden")])
    pending = _version(
        2, 15, [("region", "dimension"), ("age", "dimension")], recipe={"t": {"age": {"transform": "bin"}}}
    )
    changes = {(c.area, c.item): (c.before, c.after) for c in version_diff(listed, pending)}
    assert changes == {
        ("tables", "t.row_count"): ("100", "200"),
        ("tables", "t.columns.name"): ("VARCHAR · hidden", ""),
        ("tables", "t.columns.age"): ("", "VARCHAR · dimension"),
        ("policy", "min_group_size"): ("10", "15"),
        ("policy", "tables.t.dimensions"): ("region", "age, region"),
        ("recipe", "t.age.transform"): ("", "bin"),
    }
    assert version_diff(listed, listed) == []
    assert flatten({"a": {"b": [2, 1]}}) == {"a.b": "1, 2"}

"""The chart drawn for a query result: its kind follows the shape of the result."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from market.console.query import chart_of


def test_time_dimension_draws_a_line_and_others_draw_bars() -> None:
    assert chart_of(["month", "n"], [[1, 10], [2, 12]])["type"] == "line"
    assert chart_of(["origin", "n"], [["JFK", 10], ["LGA", 12]])["type"] == "bar"


def test_no_chart_without_a_numeric_column_or_rows() -> None:
    assert chart_of(["origin", "carrier"], [["JFK", "AA"]]) is None
    assert chart_of(["origin", "n"], []) is None
    assert chart_of(["n"], [[1]]) is None


def test_a_series_on_a_far_smaller_scale_is_left_out_of_the_chart() -> None:
    chart = chart_of(["month", "flights", "avg_delay"], [[1, 27004, 6.1], [2, 24951, 5.6]])
    assert [s["name"] for s in chart["series"]] == ["flights"]


@given(
    st.lists(
        st.tuples(st.text(max_size=5), st.integers(-(10**9), 10**9), st.floats(allow_nan=False, width=32)),
        min_size=1,
        max_size=30,
    )
)
def test_every_row_is_on_the_axis_and_the_first_series_is_always_drawn(rows: list[tuple[str, int, float]]) -> None:
    chart = chart_of(["label", "n", "x"], [list(r) for r in rows])
    assert chart is not None
    assert chart["x"] == [r[0] for r in rows]
    assert chart["series"][0] == {"name": "n", "data": [r[1] for r in rows]}

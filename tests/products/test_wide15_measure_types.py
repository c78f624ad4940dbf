"""Wide decimals (issue 9, branch wide15): a hypothesis property of the build's measure types.

For any DECIMAL(width, scale) measure, declared bounds (within MAX_BOUND) and values within them, the build's steps
(products.storage.write_table, check_bounds, fast_measures, as products.versions calls them) store a type whose cast
to DOUBLE costs the same for every value the bounds allow: a DECIMAL of at most 18 digits whose unscaled integers
stay under 2^52 (the same values, exactly), or DOUBLE (the value the sandbox's `TRY_CAST(m AS DOUBLE)` computed).
A value outside the bounds is refused (`measure_out_of_bounds`) as before. The HTTP tests are
tests/products/test_wide15_decimals_http.py.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.errors import Unprocessable
from products import storage
from sandbox.policy import MeasureBounds

FAST_UNSCALED = 2**52


def _fast(type_: str) -> bool:
    """Not a DECIMAL wider than 18 digits."""
    found = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", type_)
    return found is None or int(found[1]) <= 18


@st.composite
def _decimals(draw: st.DrawFn) -> tuple[int, int, float, float, list[Decimal]]:
    """A DECIMAL(width, scale) column, declared bounds (within MAX_BOUND) and values within them."""
    width = draw(st.sampled_from([9, 15, 16, 18, 19, 28, 38]))
    scale = draw(st.integers(min_value=0, max_value=min(width, 12)))
    largest = min(10**width - 1, 10**12 * 10**scale)
    high = draw(st.integers(min_value=-largest, max_value=largest))
    low = draw(st.integers(min_value=-largest, max_value=high))
    unscaled = draw(st.lists(st.integers(min_value=low, max_value=high), min_size=1, max_size=8))
    step = Decimal(10) ** -scale
    return width, scale, float(low * step), float(high * step), [u * step for u in unscaled]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_decimals(), outside=st.sampled_from([None, "low", "high"]))
def test_built_measures_are_fast_and_bounds_refuse_as_before(
    tmp_path: Path, case: tuple[int, int, float, float, list[Decimal]], outside: str | None
) -> None:
    width, scale, low, high, values = case
    if outside == "low":
        values = [*values, Decimal(low) - Decimal(1)]
    elif outside == "high":
        values = [*values, Decimal(high) + Decimal(1)]
    source = tmp_path / "m.parquet"
    typed = f"DECIMAL({min(width + 2, 38) if outside else width}, {scale})"
    literal = ", ".join(f"CAST('{v:f}' AS {typed})" for v in values)
    with duckdb.connect() as connection:
        connection.execute(f"COPY (SELECT unnest([{literal}]) AS m) TO '{source}' (FORMAT parquet)")
    bounds = {"m": MeasureBounds(min=low, max=high)}
    destination = tmp_path / "v" / "m.parquet"
    stored = storage.write_table(source, "parquet", "m.parquet", ["m"], destination)
    if outside:
        with pytest.raises(Unprocessable) as refused:
            storage.check_bounds(stored, bounds)
        assert refused.value.code == "measure_out_of_bounds"
        return
    storage.check_bounds(stored, bounds)
    stored = storage.fast_measures(stored, ["m"], bounds)
    (column,) = stored.columns
    assert _fast(column.type), column.type
    found = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", column.type)
    with duckdb.connect() as connection:
        kept = [row[0] for row in connection.execute(f"SELECT m FROM read_parquet('{destination}')").fetchall()]
    if found:
        assert int(found[2]) == scale and kept == values
        assert max(abs(v) for v in values) * 10**scale < FAST_UNSCALED
    else:
        assert column.type == "DOUBLE" and kept == [float(v) for v in values]

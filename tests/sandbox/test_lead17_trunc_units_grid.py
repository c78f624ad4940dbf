"""The whole class of date_trunc() units, decided in process (lead17; the HTTP checks are in
test_lead17_trunc_units.py). It never touches the market database, so CI runs it once (tests/db_independent.py)."""

from __future__ import annotations

from products.storage import DATE_RANGE
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.support.typed_product import fails_for_some_value, policy

UNITS = [
    "millennium", "millennia", "mil", "mils", "century", "centuries", "c", "cent", "cents", "decade", "decades",
    "dec", "decs", "year", "years", "y", "yr", "yrs", "quarter", "quarters", "month", "months", "mon", "mons",
    "week", "weeks", "w", "day", "days", "d", "dayofmonth", "hour", "hours", "h", "hr", "hrs", "minute",
    "minutes", "m", "min", "mins", "second", "seconds", "s", "sec", "secs", "millisecond", "milliseconds", "ms",
    "msec", "msecs", "microsecond", "microseconds", "us", "usec", "usecs", "isoyear", "epoch", "dow", "dayofweek",
    "weekday", "isodow", "doy", "dayofyear", "yearweek", "era", "timezone", "timezone_hour", "timezone_minute",
    "julian", "nanosecond", "epoch_ns", "foo", "Month", "YEAR",
]  # fmt: skip
low, high = DATE_RANGE
COLUMNS: dict[str, tuple[str, list[str]]] = {
    # column: (its type, literals of the values a version may hold: the range's ends and an ordinary day)
    "c_date": ("DATE", [f"'{low}'", f"'{high}'", "'2024-06-15'"]),
    "c_timestamp": ("TIMESTAMP", [f"'{low} 00:00:00'", f"'{high} 23:59:59.999999'", "'2024-06-15 10:11:12'"]),
    "c_timestamptz": (
        "TIMESTAMP WITH TIME ZONE",
        [f"'{low} 00:00:00+00'", f"'{high} 00:00:00+00'", "'2024-06-15 10:11:12+00'"],
    ),
}
POLICY = policy("dated", COLUMNS)
ZONES = ("UTC", "Asia/Shanghai", "America/Los_Angeles")


def test_a_unit_the_sandbox_accepts_truncates_every_value_a_version_may_hold() -> None:
    # The whole class, decided in process as the API decides it (both validators and the rewrite); the HTTP test
    # below checks the service agrees on a sample. In process, this test runs once in CI rather than on each
    # database (tests/db_independent.py).
    policy = ProtectionPolicy.model_validate(POLICY)
    accepted: set[tuple[str, str]] = set()
    for column in COLUMNS:
        for unit in UNITS:
            try:
                plan_query(_sql(unit, column), policy)
            except QueryRefused:
                continue
            accepted.add((unit, column))
            assert not fails_for_some_value(COLUMNS, column, f"date_trunc('{unit}', {{value}})", ZONES), (
                f"accepted a unit that can fail: {unit} on {column}"
            )
    # The rule refuses what can fail, not everything: the calendar's units answer on every dated type.
    for unit in ("year", "quarter", "month", "week", "day", "hour", "minute", "second", "Month", "YEAR"):
        for column in COLUMNS:
            assert (unit, column) in accepted, (unit, column)


def _sql(unit: str, column: str) -> str:
    return f"SELECT region, count(*) AS c FROM dated WHERE date_trunc('{unit}', {column}) IS NOT NULL GROUP BY 1"

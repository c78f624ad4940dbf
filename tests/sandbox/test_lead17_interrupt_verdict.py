"""An interrupt during the checks before a query runs is not a verdict (found by red team redcube17, session 17).

A worker decides once per product version whether a statement is refused before it touches rows (engine._refusal:
the query's constants computed, its statements typed) and remembers the verdict per statement text
(TableStatistics.refusal). The constants run on the version's connection, the one the worker's deadline interrupts;
the interrupt is a duckdb.Error, and it was caught as the constants failing: `constant_error`, remembered, so the same
query was refused again by that worker for as long as it ran, although nothing is wrong with it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from sandbox import engine
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.factories import PEOPLE_POLICY


class _Interrupted:
    """The version's connection at the moment the deadline interrupts it: the next statement raises."""

    def __init__(self, real: duckdb.DuckDBPyConnection) -> None:
        self.real = real
        self.interrupt = True

    def execute(self, sql: str, *args: Any) -> Any:
        if self.interrupt:
            self.interrupt = False
            raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_an_interrupt_in_the_constants_is_raised_and_not_remembered_as_a_refusal() -> None:
    plan = plan_query(
        "SELECT region, count(*) FROM people WHERE month = 1 + 1 GROUP BY region",
        ProtectionPolicy.model_validate(PEOPLE_POLICY),
    )
    assert plan.constants_sql, "the query must have constants to compute"
    with duckdb.connect() as real:
        real.execute("CREATE TABLE people AS SELECT 1 AS person, 'north' AS region, 1 AS month, 1.0 AS amount")
        connection = _Interrupted(real)
        stats = engine.TableStatistics(connection, {}, "v1")  # type: ignore[arg-type]
        with pytest.raises(duckdb.InterruptException):
            engine._refusal(connection, plan, stats)  # type: ignore[arg-type]
        # Asked again, when no deadline interrupts it: the constants are fine, nothing remembered refuses it.
        verdict = engine._refusal(connection, plan, stats)  # type: ignore[arg-type]
        assert verdict is None or verdict[0] != "constant_error", verdict

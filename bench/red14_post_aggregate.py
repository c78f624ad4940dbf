"""Red team red14: post-aggregate expressions on shown groups, through a worker: refused, or answered, never failed.

    python -m bench.red14_post_aggregate

Each expression over aggregates (shifts, factorial, gcd/lcm, logarithms and roots of negatives, huge powers,
narrowing casts, rounding by a count, division by a count that is 0 for a shown group, products near 2^63,
date and interval arithmetic by counts, string growth, list indexing, bit operators, ...) in the select list,
in HAVING and in ORDER BY of a query over tests.factories' people (every region shown at k = 10), through
sandbox.service.run_query and a worker. Prints every outcome that is not a refusal; a `FAILED` (query_failed,
resource_limit) or `EXC` line would be a run-time error after validation (issue 9: the only failures after
validation are resource limits). Not a test: a probe (docs/sandbox.md, "Red team red14").
"""

import os
import tempfile
from collections import Counter
from pathlib import Path

from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query
from tests.factories import PEOPLE_POLICY, people_rows
from tests.sandbox.conftest import LIMITS, PEOPLE_TYPES, write_parquet

EXPRS = [
    "count(*) << 70",
    "1 << count(*)",
    "count(*) >> 70",
    "factorial(count(*))",
    "count(*)!",
    "gcd(count(*), 0)",
    "lcm(count(*), 9223372036854775807)",
    "ln(count(*) - 100)",
    "sqrt(sum(amount) - 100000)",
    "log(count(*) - 45)",
    "pow(count(*), 1000)",
    "count(*) ^ 1000",
    "exp(count(*) * 100)",
    "CAST(sum(amount) AS TINYINT)",
    "sum(amount)::TINYINT",
    "count(*)::TINYINT",
    "CAST(avg(amount) AS INTEGER) * 2147483647",
    "round(avg(amount), count(*))",
    "round(avg(amount), -count(*))",
    "sum(amount) // (count(*) - 45)",
    "sum(amount) % (count(*) - 45)",
    "sum(amount) / (count(*) - 45)",
    "count(*) * 9223372036854775807",
    "sum(amount) * 9223372036854775807",
    "abs(count(*) - 9223372036854775807 - 10)",
    "-(count(*) - 9223372036854775807 - 46)",
    "DATE '2020-01-01' + count(*)",
    "DATE '2020-01-01' + count(*) * 100000000",
    "to_days(count(*))",
    "INTERVAL 1 DAY * count(*) * 100000000",
    "make_date(count(*), 1, 1)",
    "chr(count(*) * 100000000)",
    "repeat('x', count(*))",
    "lpad('x', count(*) * 1000000, 'y')",
    "'a' || count(*)",
    "count(*)::VARCHAR::INTEGER",
    "sum(amount)::DECIMAL(3,0)",
    "avg(amount)::DECIMAL(38,37)",
    "list_value(count(*))[2]",
    "[1,2][count(*) - 43]",
    "greatest(count(*), 9223372036854775807) + 1",
    "even(count(*) * 4611686018427387904)",
    "bit_count(count(*))",
    "hash(count(*))",
    "count(*) * 1.0e308 * 10",
    "1e308 * sum(amount)",
    "atan2(count(*), 0)",
    "ceil(avg(amount)) * 9223372036854775807",
    "xor(count(*), 3)",
    "count(*) & 3",
    "~count(*)",
    "count(*)::HUGEINT * 170141183460469231731687303715884105727",
    "nextafter(count(*), 0)",
    "count(*) // 0",
    "count(*) % 0",
    "count(*) / 0",
    "CASE WHEN count(*) = 45 THEN 1 // 0 END",
    "CASE WHEN count(*) = 45 THEN CAST('x' AS INTEGER) END",
    "try_cast(count(*) AS TINYINT)",
    "epoch_ms(count(*) * 100000000000000)",
]


def main() -> None:
    load_before = os.getloadavg()
    policy = ProtectionPolicy.model_validate(PEOPLE_POLICY)
    outcomes: Counter[tuple[str, str]] = Counter()
    with tempfile.TemporaryDirectory() as d:
        path = write_parquet(Path(d) / "p.parquet", people_rows(), PEOPLE_TYPES)
        tables = {"people": TableFile("people", path, 180)}
        pool = WorkerPool(LIMITS)
        try:
            for where in ("select", "having", "order"):
                for e in EXPRS:
                    if where == "select":
                        sql = f"SELECT region, {e} AS v FROM people GROUP BY region"
                    elif where == "having":
                        sql = f"SELECT region, count(*) AS n FROM people GROUP BY region HAVING {e} IS NOT NULL OR true"
                    else:
                        sql = f"SELECT region, count(*) AS n FROM people GROUP BY region ORDER BY {e}, region"
                    try:
                        r = run_query(sql, policy, tables, LIMITS, 1000, pool)
                        out = f"200 {r.rows[:1]}"
                    except QueryRefused as x:
                        out = f"refused {x.code}"
                    except QueryFailed as x:
                        out = f"FAILED {x.code} {getattr(x, 'params', '')}"
                    except Exception as x:
                        out = f"EXC {type(x).__name__} {x}"
                    outcomes[(where, out.split()[0])] += 1
                    if not out.startswith("refused"):
                        print(f"{where:6} {e:60} {out[:150]}", flush=True)
        finally:
            pool.close()
    print(f"{len(EXPRS)} expressions; outcomes per position: {dict(sorted(outcomes.items()))}")
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}")


if __name__ == "__main__":
    main()

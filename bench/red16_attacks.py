"""Red team red16: the implicit casts DuckDB's binder adds, tried against the sandbox (docs/sandbox.md "Red team red16").

Each query runs through sandbox.service.run_query on a product with a column of every numeric, date, text, boolean
and interval type (dimensions of a threshold policy, k = 5; `typed` and `other` for joins; `DP:` lines under a DP
policy). Prints OK (and the rows), REFUSED (the code) or FAILED per query. Data generated at run time.

    python -m bench.red16_attacks
"""
# ruff: noqa: E501

import copy
import tempfile
from pathlib import Path

import duckdb

from sandbox.engine import EngineLimits
from sandbox.errors import QueryFailed, QueryRefused
from sandbox.policy import ProtectionPolicy
from sandbox.pool import WorkerPool
from sandbox.service import TableFile, run_query

D = Path(tempfile.mkdtemp(prefix="red16-attacks-"))
COLS = {
    "c_tinyint": "TINYINT",
    "c_integer": "INTEGER",
    "c_bigint": "BIGINT",
    "c_ubigint": "UBIGINT",
    "c_hugeint": "HUGEINT",
    "c_double": "DOUBLE",
    "c_float": "FLOAT",
    "c_dec9": "DECIMAL(9,2)",
    "c_dec18": "DECIMAL(18,2)",
    "c_date": "DATE",
    "c_timestamp": "TIMESTAMP",
    "c_varchar": "VARCHAR",
    "c_boolean": "BOOLEAN",
    "c_interval": "INTERVAL",
}
sel = ", ".join(
    f"CAST(i % 7 AS {t}) AS {c}" for c, t in COLS.items() if t not in ("DATE", "TIMESTAMP", "VARCHAR", "INTERVAL")
)
ROWS = f"""SELECT 'P'||(i % 60) AS person, ['north','south','east'][i % 3 + 1] AS region, {sel},
 DATE '2024-01-01' + CAST(i % 7 AS INTEGER) AS c_date, TIMESTAMP '2024-01-01' + to_hours(CAST(i%7 AS INTEGER)) AS c_timestamp,
 CAST(i % 7 AS VARCHAR) AS c_varchar, to_days(CAST(i%7 AS INTEGER)) AS c_interval, CAST(i % 100 AS INTEGER) AS amount, CAST(i%100 AS DOUBLE) AS damount FROM range(600) t(i)"""
p = D / "typed.parquet"
with duckdb.connect() as c:
    c.execute(f"COPY ({ROWS}) TO '{p}' (FORMAT parquet)")
t = {
    "privacy_unit": "person",
    "dimensions": ["region", *COLS],
    "measures": ["amount", "damount"],
    "hidden": [],
    "bounds": {"amount": {"min": 0, "max": 1000}, "damount": {"min": 0, "max": 1000}},
}
POL = {"min_group_size": 5, "tables": {"typed": t, "other": copy.deepcopy(t)}}
DPPOL = copy.deepcopy(POL)
DPPOL["tables"].pop("other")
DPPOL["mode"] = "dp"
DPPOL["privacy_unit_kind"] = "natural_person"
DPPOL["dp"] = {
    "max_groups_per_unit": 3,
    "max_rows_per_group": 3,
    "public_keys": {"region": ["north", "south", "east"]},
    "delta": 1e-7,
    "agreement_epsilon": 100.0,
    "version_epsilon_cap": 1000.0,
    "query_epsilon": 1.0,
    "min_query_epsilon": 0.1,
    "max_query_epsilon": 2.0,
}
policy = ProtectionPolicy.model_validate(POL)
LIMITS = EngineLimits(timeout_seconds=10, workers=1)
pool = WorkerPool(LIMITS)
tables = {n: TableFile(name=n, path=p, row_count=600) for n in ("typed", "other")}


def run(sql, dp=False):
    pol = ProtectionPolicy.model_validate(DPPOL) if dp else policy
    tb = {"typed": tables["typed"]} if dp else tables
    try:
        r = run_query(sql, pol, tb, LIMITS, 10_000, pool)
        return "OK", str(getattr(r, "rows", r))[:80]
    except QueryRefused as e:
        return "REFUSED", f"{e.code}"
    except QueryFailed as e:
        return "FAILED", f"{e.code} {e}"[:200]
    except Exception as e:
        return "EXC", repr(e)[:200]


ATTACKS = [
    "SELECT region, count(*) AS c FROM typed GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE to_hours(c_bigint) > INTERVAL 1 HOUR GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE to_days(c_integer) > INTERVAL 1 DAY GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE abs(c_bigint) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_ubigint > c_bigint GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_ubigint = -1 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_hugeint > c_ubigint GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_dec9 > 1.5::DOUBLE GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_dec18 > 1.5::DOUBLE GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_date < TIMESTAMP '2024-01-02 10:00:00' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_date BETWEEN DATE '2024-01-01' AND TIMESTAMP '2024-01-03 10:00:00' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_timestamp BETWEEN c_date AND DATE '2024-05-01' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE coalesce(c_tinyint, c_ubigint) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE greatest(c_tinyint, c_ubigint, c_bigint) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE CASE WHEN c_integer > 3 THEN c_dec9 ELSE c_bigint END > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE CASE WHEN c_integer > 3 THEN c_dec9 ELSE c_double END > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE CASE WHEN c_integer > 3 THEN c_date ELSE c_timestamp END > DATE '2024-01-01' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_integer IN (1, 2.5, c_bigint) GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_tinyint IN (1, 300) GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_tinyint = 300 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_tinyint + 100 > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE substring(c_varchar, 1, 2) = '1' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE substring(c_integer, 1, 2) = '1' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE left(c_double, 2) = '1' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE round(c_dec18, 1) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE round(c_dec9, 1) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE round(c_bigint, -2) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE floor(c_dec18) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_interval > INTERVAL 2 DAY GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_varchar LIKE c_varchar GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_varchar = c_integer GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_boolean = 1 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_boolean = c_integer GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_float = c_dec18 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_float = c_bigint GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE nullif(c_tinyint, c_ubigint) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE trunc(c_dec18) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE trunc(c_double) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE extract(epoch FROM c_date) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE year(c_timestamp) > 0 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE date_trunc('month', c_date) > DATE '2024-01-01' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE date_trunc('month', c_timestamp) > DATE '2024-01-01' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_date + 1 > DATE '2024-01-01' GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE c_date - c_date > 0 GROUP BY region",
    "SELECT region, sum(amount) AS s FROM typed GROUP BY region HAVING sum(amount) > 1.5::DOUBLE",
    "SELECT region, sum(amount) AS s FROM typed GROUP BY region HAVING sum(amount) > 1e30",
    "SELECT region, sum(damount * c_tinyint) AS s FROM typed GROUP BY region",
    "SELECT region, sum(CASE WHEN c_integer > 3 THEN amount ELSE 0 END) AS s FROM typed GROUP BY region",
    "SELECT region, sum(amount) AS s FROM typed GROUP BY region ORDER BY CAST(sum(amount) AS TINYINT)",
    "SELECT region, CAST(sum(amount) AS SMALLINT) AS s FROM typed GROUP BY region",
    "SELECT region, count(*) AS c FROM typed GROUP BY region ORDER BY left(region, 1)",
    "SELECT c_ubigint, count(*) AS c FROM typed GROUP BY c_ubigint",
    "SELECT CAST(c_ubigint AS BIGINT) AS u, count(*) AS c FROM typed GROUP BY 1",
    "SELECT typed.region, count(*) AS c FROM typed JOIN other ON typed.c_ubigint = other.c_bigint GROUP BY typed.region",
    "SELECT typed.region, count(*) AS c FROM typed JOIN other ON typed.c_date = other.c_timestamp GROUP BY typed.region",
    "SELECT typed.region, count(*) AS c FROM typed JOIN other ON typed.c_varchar = other.c_integer GROUP BY typed.region",
    "SELECT typed.region, count(*) AS c FROM typed JOIN other ON typed.c_integer = other.c_integer WHERE other.c_date < TIMESTAMP '2024-01-02 01:00:00' GROUP BY typed.region",
    "DP:SELECT region, count(*) AS c FROM typed GROUP BY region",
    "DP:SELECT region, count(*) AS c FROM typed WHERE c_date < TIMESTAMP '2024-01-02 10:00:00' GROUP BY region",
    "DP:SELECT region, count(*) AS c FROM typed WHERE coalesce(CAST(c_bigint AS TINYINT), 0) >= 0 GROUP BY region",
    "DP:SELECT region, count(*) AS c FROM typed WHERE c_varchar = 3 GROUP BY region",
    "DP:SELECT region, sum(CAST(c_integer AS TINYINT)) AS c FROM typed GROUP BY region",
    "DP:SELECT region, count(*) AS c FROM typed WHERE to_hours(c_bigint) > INTERVAL 1 HOUR GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE ((c_double - 4) * 1e300) % 3.0 >= -1e300 GROUP BY region",
    "SELECT region, count(*) AS c FROM typed WHERE 1e300 % c_integer > 0 GROUP BY region",
]


def main() -> None:
    for line in ATTACKS:
        dp = line.startswith("DP:")
        sql = line[3:] if dp else line
        status, detail = run(sql, dp)
        print(f"{status:8} {detail[:60]:60} | {line}")
    pool.close()


if __name__ == "__main__":
    main()

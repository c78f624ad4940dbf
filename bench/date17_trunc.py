"""Per-row cost of the sandbox's calendar functions over the DATE values a build accepts (date17, issue 9).

The build refuses a DATE outside products.storage.DATE_RANGE (check_dates); this measures, in raw DuckDB, the
expressions as the sandbox writes them over a column holding, on every row, a date of 1900 (the reference), of
2024, of 1000 AD, near the accepted range's lower end, near its upper end, and two kinds of value the build now refuses:
+-infinity on alternate rows (one value on every row would let DuckDB read next to nothing), and a date beyond
the TIMESTAMP range. Each value varies by row (`i % 20` days) and the files are written without
dictionaries, as in bench/red16_value_costs.py, whose timing it reuses: one DuckDB thread, the sandbox's disabled
optimizers, no page index, best of R runs with the tables alternated, the scan's own cost subtracted.

    python -m bench.date17_trunc [--rows 500000] [--repeats 5]

Prints ns per row for each column and, in brackets, the ratio to 1900's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import duckdb

from bench.red16_value_costs import _time
from products.storage import DATE_RANGE
from sandbox.engine import DISABLED_OPTIMIZERS

LOW, HIGH = DATE_RANGE
COLUMNS: dict[str, str] = {
    "1900": "DATE '1900-06-15' - CAST(i % 20 AS INTEGER)",
    "2024": "DATE '2024-06-15' - CAST(i % 20 AS INTEGER)",
    "1000 AD": "DATE '1000-06-15' - CAST(i % 20 AS INTEGER)",
    f"lower end ({LOW})": f"DATE '{LOW}' + CAST(i % 20 AS INTEGER)",
    f"upper end ({HIGH})": f"DATE '{HIGH}' - CAST(i % 20 AS INTEGER)",
    "refused: +-infinity (alternate rows)": "CASE WHEN i % 2 = 0 THEN DATE 'infinity' ELSE DATE '-infinity' END",
    "refused: 300000 AD (beyond TIMESTAMP)": "DATE '300000-01-01' - CAST(i % 20 AS INTEGER)",
}
"""1900 must stay first: ratios are to it (2024 is cheaper than the rest of the calendar for most functions)."""

EXPRESSIONS: dict[str, str] = {
    "TRY(date_trunc('month', x))": "year(TRY(date_trunc('month', x)))",
    "TRY(date_trunc('year', x))": "year(TRY(date_trunc('year', x)))",
    "TRY(date_trunc('week', x))": "year(TRY(date_trunc('week', x)))",
    "TRY(date_trunc('day', x))": "year(TRY(date_trunc('day', x)))",
    "year(x)": "year(x)",
    "extract(month FROM x)": "extract(month FROM x)",
    "dayofweek(x)": "dayofweek(x)",
    "date_part('isoyear', x)": "date_part('isoyear', x)",
}
"""The sandbox keeps date_trunc() in TRY() (sandbox.syntax.guard); extract and friends stay bare."""


def measure(rows: int, repeats: int) -> dict[tuple[str, str], float]:
    directory = tempfile.mkdtemp(prefix="date17-")
    try:
        with duckdb.connect(":memory:") as writer:
            for number, value in enumerate(COLUMNS.values()):
                writer.execute(
                    f"COPY (SELECT {value} AS x FROM range({rows}) t(i)) "
                    f"TO '{os.path.join(directory, f't{number}.parquet')}' (FORMAT parquet, DICTIONARY_SIZE_LIMIT 1)"
                )
        connection = duckdb.connect(":memory:", config={"threads": 1, "disabled_optimizers": DISABLED_OPTIMIZERS})
        connection.execute("SET parquet_use_page_index = false")
        for number in range(len(COLUMNS)):
            connection.execute(f"CREATE VIEW t{number} AS SELECT * FROM read_parquet('{directory}/t{number}.parquet')")
        best: dict[tuple[int, str], float] = {}
        for _ in range(repeats):
            for number in range(len(COLUMNS)):  # alternated
                for label, expression in {"scan": "x IS NOT NULL", **EXPRESSIONS}.items():
                    sql = f"SELECT count(({expression})) FROM t{number}"
                    key = (number, label)
                    best[key] = min(best.get(key, float("inf")), _time(connection, sql))
        connection.close()
    finally:
        shutil.rmtree(directory)
    names = list(COLUMNS)
    return {
        (names[n], label): (best[(n, label)] - best[(n, "scan")]) / rows * 1e9
        for n in range(len(COLUMNS))
        for label in EXPRESSIONS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    costs = measure(arguments.rows, arguments.repeats)
    reference = next(iter(COLUMNS))
    print("| expression | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for label in EXPRESSIONS:
        cells = []
        for name in COLUMNS:
            ns = costs[(name, label)]
            ratio = ns / max(costs[(reference, label)], 0.05)
            cells.append(f"{ns:,.1f}" if name == reference else f"{ns:,.1f} ({ratio:.2f}x)")
        print(f"| `{label}` | " + " | ".join(cells) + " |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Timing oracles through HTTP on the demo (red team, session 5): does the response time of
`POST /v1/queries` tell whether a hidden row exists?

    python -m bench.http_timing_oracle [--runs 300]

Builds the demo marketplace in a temporary directory and serves it (`market serve`, one API process,
fixed timing on, as deployed). The hidden fact: the demo's flights product has exactly ONE flight to
'LEX' (k = 10, so every answer below is the same whether it exists or not: its group is suppressed);
'LEY' has none. Each pair alternates A ('LEX') and B ('LEY') `--runs` times; every request carries
a new no-op constant (`day > -n`), so that no answer comes from the result cache or single-flight
(a buyer would do the same). Prints the medians, a two-sided Mann–Whitney U p-value, and the answers'
bodies compared (they must be equal but for query ids).

Not a test: timings belong here, not in the suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.live_server import live_server
from bench.stats import mann_whitney
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings

PAIRS: dict[str, str] = {
    # execute_single (the demo is far under SINGLE_STATEMENT_ROWS); {dest} is 'LEX' (A) or 'LEY' (B)
    "count": "SELECT count(*) AS n FROM flights WHERE dest = '{dest}' AND day > -{n}",
    "group-empty": "SELECT dest, count(*) AS n FROM flights WHERE dest = '{dest}' AND day > -{n} GROUP BY dest",
    "group": "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{dest}', 'ATL') AND day > -{n} GROUP BY dest",
    "having": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{dest}', 'ATL', 'ORD') AND day > -{n} "
        "GROUP BY dest HAVING sum(arr_delay) > -100000000"
    ),
    "order-limit": (
        "SELECT dest, count(*) AS n FROM flights WHERE dest IN ('{dest}', 'ATL', 'ORD') AND day > -{n} "
        "GROUP BY dest ORDER BY n LIMIT 1"
    ),
    # Red team red9 (session 6). The first-row step times 40 aggregates, each over a measure with NULLs
    # (so each has its own per-cell count of units): does the step grow with the number of aggregates?
    "many-cells": "SELECT dest, "
    + ", ".join(f"sum(arr_delay * {1 + i / 1000}) AS s{i}" for i in range(40))
    + " FROM flights WHERE dest = '{dest}' AND day > -{n} GROUP BY dest",
    # date_trunc's TRY(): a date beyond the TIMESTAMP range on the LEX row only; every row passes (same
    # answer, no first-row step), but the failing row's vector is recomputed row by row.
    "try-date": "SELECT count(*) AS n FROM flights WHERE date_trunc('day', CASE WHEN dest = '{dest}' "
    "THEN DATE '300000-01-01' ELSE DATE '2013-01-01' END) IS NULL OR day > -{n}",
}


def _comparable(body: dict[str, Any]) -> Any:
    return {k: v for k, v in body.items() if k not in ("query_id",)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--pairs", nargs="*", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    counter = iter(range(1, 1 << 62))
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=Settings().database_url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        keys = build_demo(database, settings)
        database.dispose()
        headers = {"Authorization": f"Bearer {keys['buyer_commercial']}"}
        with live_server(settings.data_dir, settings.effective_database_url) as url, httpx.Client(timeout=60) as client:

            def send(template: str, dest: str) -> tuple[float, dict[str, Any]]:
                sql = template.format(dest=dest, n=next(counter))
                started = time.perf_counter()
                answer = client.post(f"{url}/v1/queries", headers=headers, json={"product": FLIGHTS_SLUG, "sql": sql})
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 200, answer.text
                return elapsed, answer.json()

            print(f"{'pair':12} {'A LEX ms':>9} {'B LEY ms':>9} {'p-value':>9}  same answers")
            for name, template in PAIRS.items():
                if args.pairs and name not in args.pairs:
                    continue
                for dest in ("LEX", "LEY"):  # warm-up
                    send(template, dest)
                times: dict[str, list[float]] = {"LEX": [], "LEY": []}
                same = True
                for i in range(args.runs):
                    answers = {}
                    for dest in ("LEX", "LEY") if i % 2 == 0 else ("LEY", "LEX"):
                        elapsed, answers[dest] = send(template, dest)
                        times[dest].append(elapsed)
                    a, b = (_comparable(answers[d]) for d in ("LEX", "LEY"))
                    rows_a, rows_b = (sorted(x["rows"], key=repr) for x in (a, b))  # no ORDER BY: any order
                    same = same and rows_a == rows_b and a["usage"] == b["usage"]
                p = mann_whitney(times["LEX"], times["LEY"]).p
                print(
                    f"{name:12} {statistics.median(times['LEX']):9.2f} {statistics.median(times['LEY']):9.2f} "
                    f"{p:9.4f}  {same}",
                    flush=True,
                )
    load = " ".join(f"{v:.2f}" for v in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()

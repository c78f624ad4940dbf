"""The metered path of a cached answer, in-process: statements, round trips and CPU per request.

Builds the demo marketplace in a temporary directory with `--buyers` buyer organisations (as
bench/http_throughput.py does), answers one dashboard query once so that the sandbox's result cache
holds it, then calls `metering.service.run_metered_query` `--requests` times (buyers round-robin,
authentication included through `market.deps`' cache path), and prints, per request:

- the SQL statements sent to the database (SQLAlchemy's `before_cursor_execute`), by kind;
- the round trips: statements plus the transaction's BEGIN (PostgreSQL: psycopg sends it before the
  first statement), COMMIT / ROLLBACK and pool checkout pings;
- the CPU time (thread time) and wall time of `run_metered_query`;
- with `--profile`, the top functions by cumulative time (cProfile).

    python -m bench.metered_path [--requests 400] [--quota N] [--skip-postgres] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from bench.databases import on_both_databases
from bench.http_throughput import DASHBOARD, _add_buyers
from market.accounts.service import authenticate
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings
from metering import service as metering


def _kind(statement: str) -> str:
    words = re.sub(r"\s+", " ", statement.strip()).split(" ")
    head = " ".join(words[:3]).upper()
    table = next((w for w in words if w in TABLES), "")
    return f"{head[:30]} … {table}".strip()


TABLES = {"agreement_months", "usage_chain_heads", "usage_records", "agreements", "api_keys", "products", "users"}


def _bench(database: Database, name: str, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = database.engine.url.render_as_string(hide_password=False)
        settings = Settings(data_dir=Path(tmp), database_url=url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        build_demo(database, settings)
        keys = _add_buyers(database, args.buyers)
        if args.quota:  # agreements with a monthly query quota: the early quota check has a counter to read
            with database.transaction() as session:
                session.execute(text("UPDATE agreements SET monthly_query_quota = :q"), {"q": args.quota})
        principals = []
        for key in keys:
            with database.transaction() as session:
                principals.append(authenticate(session, key))
        sql = DASHBOARD[0]

        def one(i: int) -> None:
            outcome = metering.run_metered_query(
                database,
                settings,
                principals[i % len(principals)],
                product_slug=FLIGHTS_SLUG,
                sql=sql,
                idempotency_key=None,
            )
            assert outcome.status_code == 200, outcome.body

        for i in range(2 * len(principals)):  # fill the result cache and the access caches
            one(i)
        statements: Counter[str] = Counter()
        events: Counter[str] = Counter()

        def on_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            statements[_kind(statement)] += 1

        def on(kind: str) -> Any:
            def count(*_: Any) -> None:
                events[kind] += 1

            return count

        event.listen(database.engine, "before_cursor_execute", on_execute)
        for kind in ("begin", "commit", "rollback"):
            event.listen(database.engine, kind, on(kind))
        event.listen(database.engine.pool, "checkout", on("checkout"))
        cpu: list[float] = []
        wall: list[float] = []
        profiler = cProfile.Profile() if args.profile else None
        for i in range(args.requests):
            c, w = time.thread_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            one(i)
            if profiler:
                profiler.disable()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
        n = args.requests
        lines.append(f"== {name}: {n} cached answers, {args.buyers} buyers")
        lines.append(
            f"   statements/request {sum(statements.values()) / n:.2f}; transactions/request"
            f" {events['begin'] / n:.2f} (commits {events['commit'] / n:.2f}, rollbacks {events['rollback'] / n:.2f});"
            f" pool checkouts/request {events['checkout'] / n:.2f}"
        )
        for kind, count in statements.most_common():
            lines.append(f"     {count / n:5.2f}  {kind}")
        lines.append(
            f"   run_metered_query: CPU p50 {statistics.median(cpu) * 1000:.2f} ms,"
            f" mean {statistics.mean(cpu) * 1000:.2f};"
            f" wall p50 {statistics.median(wall) * 1000:.2f} ms, p99 {sorted(wall)[int(0.99 * n)] * 1000:.2f}"
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile_lines)
            lines.append(out.getvalue())
        database.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--buyers", type=int, default=16)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quota", type=int, default=0, help="give every agreement this monthly query quota")
    parser.add_argument("--profile-lines", type=int, default=40)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    run = lambda db, name: _bench(db, name, args)  # noqa: E731
    for lines in on_both_databases(run, args.postgres, skip_postgres=args.skip_postgres):
        print("\n".join(lines))


if __name__ == "__main__":
    main()

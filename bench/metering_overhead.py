"""What metering adds to a query: the sandbox alone vs. the full metered HTTP path, side by side.

Builds the demo marketplace (nyc-flights-2013, 336,776 rows) in a temporary directory, then times
the same aggregate query (1) through sandbox.service.run_query directly and (2) through
POST /v1/queries (auth, agreement, quota lock, rating, hash-chained usage record, commit), and
(3) 64 concurrent queries on one agreement (they serialize on its month counter).
Prints medians and ratios measured in one run.

    python -m bench.metering_overhead [--rounds 30]
    MARKET_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench python -m bench.metering_overhead
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from market.app import create_app
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings
from products import repository as products_repo
from products import service as products
from products.models import ProductVersion
from sandbox.engine import EngineLimits
from sandbox.policy import ProtectionPolicy
from sandbox.service import run_query

SQL = "SELECT origin, carrier, count(*) AS n, avg(dep_delay) AS delay FROM flights GROUP BY origin, carrier"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings()
        settings = Settings(data_dir=Path(tmp), database_url=base.database_url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        keys = build_demo(database, settings)
        with database.transaction() as session:
            product = products_repo.by_slug(session, FLIGHTS_SLUG)
            assert product is not None and product.listed_version_id
            version = session.get(ProductVersion, product.listed_version_id)
            assert version is not None
            policy = ProtectionPolicy.model_validate(version.policy)
            tables = products.version_tables(settings, version)
        limits = EngineLimits(settings.sandbox_memory_limit, settings.sandbox_threads, settings.sandbox_timeout_seconds)

        sandbox_times, http_times = [], []
        with TestClient(create_app(settings, database)) as client:
            headers = {"Authorization": f"Bearer {keys['buyer_commercial']}"}
            body = {"product": FLIGHTS_SLUG, "sql": SQL}
            for _ in range(3):  # warm both paths
                run_query(SQL, policy, tables, limits, settings.sandbox_max_result_rows)
                client.post("/v1/queries", headers=headers, json=body)
            for _ in range(args.rounds):  # interleaved, so both see the same machine load
                started = time.perf_counter()
                run_query(SQL, policy, tables, limits, settings.sandbox_max_result_rows)
                sandbox_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                response = client.post("/v1/queries", headers=headers, json=body)
                http_times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text

            # concurrency: one agreement hit by 64 threads at once (they serialize on its month counter)
            public = {"Authorization": f"Bearer {keys['buyer_public']}"}
            agreements = client.get("/v1/agreements", headers=public).json()["items"]
            barrier = threading.Barrier(64)

            def one(_: int) -> int:
                barrier.wait()
                return client.post("/v1/queries", headers=public, json=body).status_code

            started = time.perf_counter()
            with ThreadPoolExecutor(64) as pool:
                statuses = list(pool.map(one, range(64)))
            burst = time.perf_counter() - started
        database.dispose()

    sandbox_ms, http_ms = _median_ms(sandbox_times), _median_ms(http_times)
    print(f"database: {database.engine.dialect.name}; query: {SQL}")
    print(f"sandbox only      median {sandbox_ms:8.1f} ms  ({args.rounds} rounds)")
    print(f"metered HTTP path median {http_ms:8.1f} ms")
    print(f"metering overhead {http_ms - sandbox_ms:8.1f} ms  (ratio {http_ms / sandbox_ms:.2f}x)")
    print(
        f"64 concurrent queries on one agreement (quota {agreements[0]['monthly_query_quota']}): "
        f"{burst * 1000:.0f} ms total, {64 / burst:.1f} queries/s, statuses {sorted(set(statuses))}"
    )


if __name__ == "__main__":
    main()

"""CPU per query in the app: POST /v1/queries with the fast path (market.fast_path) on and off, in-process.

Builds the demo marketplace in a temporary directory with `--buyers` buyer organisations (as
bench/http_throughput.py does) and two apps on the same database and settings, one with
`query_fast_path` on and one with it off. Each app is called directly as an ASGI app (no server, no HTTP
client: a scope, a receive that hands out the JSON body, a send that keeps the answer), one request at a
time, buyers round-robin, the dashboard's queries in turn (bench/http_throughput.py's DASHBOARD), all of
them answered from the sandbox's result cache after a warm-up, so that what is measured is the app's
path around the sandbox: routing, validation, authentication (key cache), metering, serialisation.

`--rounds` rounds alternate the two apps (on, off, off, on, ...), `--requests` requests each; every line
is the process's CPU time (all its threads: the event loop's and the threadpool's; the sandbox workers
are other processes) per request, and the wall time per request. Beside it, the
CPU time of the event loop's thread alone: where FastAPI's routing, dependencies and validation run.
Medians over the rounds.

    python -m bench.query_route [--requests 300] [--rounds 6] [--buyers 16] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.databases import on_both_databases
from bench.http_throughput import DASHBOARD, _add_buyers, _loadavg
from market.app import create_app
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings


async def _call(app: Any, key: str, sql: str) -> int:
    body = json.dumps({"product": FLIGHTS_SLUG, "sql": sql}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/queries",
        "raw_path": b"/v1/queries",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
            (b"accept-language", b"en"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False
    status = [0]

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


async def _requests(app: Any, keys: list[str], count: int, start: int) -> tuple[float, float, float]:
    """(process CPU seconds, the event loop thread's CPU seconds, wall seconds) of `count` requests, one at a
    time."""
    cpu, loop, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(start, start + count):
        status = await _call(app, keys[i % len(keys)], DASHBOARD[(i // len(keys)) % len(DASHBOARD)])
        assert status == 200, status
    return time.process_time() - cpu, time.thread_time() - loop, time.perf_counter() - wall


def _bench(database: Database, name: str, args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = database.engine.url.render_as_string(hide_password=False)
        settings = Settings(data_dir=Path(tmp), database_url=url, scheduler_enabled=False, sandbox_prestart=False)
        database = Database.from_settings(settings)
        migrate(database)
        build_demo(database, settings)
        keys = _add_buyers(database, args.buyers)
        apps = {
            "on": create_app(settings, database),
            "off": create_app(settings.model_copy(update={"query_fast_path": False}), database),
        }
        results: dict[str, list[tuple[float, float, float]]] = {"on": [], "off": []}

        async def run() -> None:
            for app in apps.values():  # the result cache (per process), the key and access caches
                await _requests(app, keys, len(keys) * len(DASHBOARD), 0)
            for round_ in range(args.rounds):
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for label in order:
                    measured = await _requests(apps[label], keys, args.requests, round_ * args.requests)
                    results[label].append(tuple(m / args.requests for m in measured))

        asyncio.run(run())
        served = apps["on"].state.query_fast_path.served
        database.dispose()
    lines = [f"== {name}: {args.requests} cached queries x {args.rounds} rounds per side, {args.buyers} buyers"]
    medians: dict[str, tuple[float, float]] = {}
    for label, runs in results.items():
        cpu, loop, wall = (statistics.median(run[i] for run in runs) * 1e6 for i in range(3))
        medians[label] = (cpu, loop)
        every = ", ".join(f"{run[0] * 1e6:.0f}/{run[1] * 1e6:.0f}" for run in runs)
        lines.append(
            f"   fast path {label:3}: CPU/query {cpu:5.0f} µs, of which the event loop's {loop:5.0f} µs;"
            f" wall/query {wall:5.0f} µs (rounds, process/loop: {every})"
        )
    (cpu_on, loop_on), (cpu_off, loop_off) = medians["on"], medians["off"]
    lines.append(
        f"   on/off: CPU {cpu_on / cpu_off:.2f}, event loop {loop_on / loop_off:.2f};"
        f" the fast path answered {served} requests"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--buyers", type=int, default=16)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {_loadavg()}", flush=True)
    results = on_both_databases(
        lambda db, name: _bench(db, name, args),
        args.postgres,
        skip_postgres=args.skip_postgres,
        skip_sqlite=args.skip_sqlite,
    )
    for lines in results:
        print("\n".join(lines))
    print(f"load average after: {_loadavg()}")


if __name__ == "__main__":
    main()

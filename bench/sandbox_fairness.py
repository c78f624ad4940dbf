"""Fairness under a flood: another buyer's small query and /healthz while one buyer floods the sandbox.

Builds the demo marketplace in a temporary directory and serves it with `market serve --workers N`
(a real server, loopback). Then, in one run:

1. quiet: the public buyer's small query, one at a time, and /healthz, as a baseline;
2. flood: the commercial buyer runs `--flooders` client threads that send a heavy query again and
   again (waiting the Retry-After they are given, or not, with `--ignore-retry-after`), while the
   public buyer sends the same small queries one at a time and a thread polls /healthz.

Prints p50/p95 of the small query and of /healthz in both phases, the ratio flood/quiet, and the
count of every status (429 too_many_queries, 503 sandbox_busy, 5xx) per kind of request.

    python -m bench.sandbox_fairness [--seconds 20] [--flooders 30] [--workers 2]
    MARKET_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench python -m bench.sandbox_fairness
    python -m bench.sandbox_fairness --orgs 8     # red team (session 5): the flood from 8 organisations
    python -m bench.sandbox_fairness --orgs 8 --policies fair,free --rounds 3 --seconds 15

`--policies fair,free` compares the admission order side by side in one run: a server with waiters
served by organisation in turn (the default) and one with the previous free-for-all
(MARKET_SANDBOX_FAIR_QUEUE=false), on the same data, flooded alike, `--rounds` times each, alternating
which goes first. It prints the other buyer's small query during the flood per policy (p50, p95, max
of those answered, and how many were turned away) and a Mann-Whitney p between the two.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.live_server import live_server
from bench.stats import mann_whitney
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings

SMALL = "SELECT origin, count(*) AS flights FROM flights GROUP BY origin HAVING count(*) > -{run}"
HEAVY = (
    "SELECT month, day, hour, origin, dest, carrier, count(*) AS n, avg(dep_delay) AS delay, "
    "sum(distance) AS distance, stddev(arr_delay) AS spread FROM flights "
    "GROUP BY month, day, hour, origin, dest, carrier HAVING count(*) > -{run}"
)
MEDIUM = (
    "SELECT month, origin, carrier, count(*) AS n, avg(dep_delay) AS delay FROM flights "
    "GROUP BY month, origin, carrier HAVING count(*) > -{run}"
)
"""--heavy medium: a flood query of about a second on a loaded machine (HEAVY can reach the 20 s timeout
there, and then no worker frees within the queue timeout whatever the order)."""
HEAVIES = {"wide": HEAVY, "medium": MEDIUM}
"""Each request (heavy and small) has its own text (an always-true HAVING numbered per request): a
flooder varies its queries, so none is answered from the result cache or joins another's run in
flight (sandbox/cache.py)."""


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")


POLICIES = {"fair": "true", "free": "false"}
"""--policies: MARKET_SANDBOX_FAIR_QUEUE for each admission order compared."""


@contextlib.contextmanager
def _server(settings: Settings, workers: int, env: dict[str, str] | None = None) -> Iterator[str]:
    try:
        with live_server(settings.data_dir, settings.effective_database_url, workers=workers, env=env) as base:
            yield base
    finally:
        errors = (settings.data_dir / "server.log").read_text().split("ERROR:")[1:]
        for error in errors[:3]:  # a 5xx is a bug: show its traceback
            print("server error:", error[:3000], file=sys.stderr)


class Tally:
    """Latencies of successful requests and the count of every (status, code), per kind of request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.statuses: dict[str, Counter[str]] = {}

    def record(self, kind: str, started: float, response: httpx.Response) -> None:
        elapsed = time.perf_counter() - started
        label = str(response.status_code)
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            label += " " + str(response.json().get("error", {}).get("code", ""))
        if response.status_code in (429, 503) and "Retry-After" not in response.headers:
            label += " WITHOUT Retry-After"
        with self.lock:
            self.statuses.setdefault(kind, Counter())[label] += 1
            if response.status_code == 200:
                self.latencies.setdefault(kind, []).append(elapsed)


def _until(
    stop: threading.Event, tally: Tally, kind: str, send: Callable[[], httpx.Response], *, polite: bool = True
) -> None:
    """Send again and again until `stop`; a polite client waits the Retry-After it is given."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = send()
        except httpx.HTTPError as error:
            with tally.lock:
                tally.statuses.setdefault(kind, Counter())[f"transport error {type(error).__name__}"] += 1
            continue
        tally.record(kind, started, response)
        if polite and "Retry-After" in response.headers:
            stop.wait(float(response.headers["Retry-After"]))


def _flood(
    seconds: float,
    flooders: int,
    heavy: Callable[[], httpx.Response],
    small: Callable[[], httpx.Response],
    health: Callable[[], httpx.Response],
    *,
    polite: bool,
) -> Tally:
    """`flooders` clients sending heavy queries for `seconds`, while one client sends small ones and one
    polls /healthz."""
    flood = Tally()
    stop = threading.Event()
    with ThreadPoolExecutor(flooders + 2) as pool:
        for _ in range(flooders):
            pool.submit(_until, stop, flood, "heavy", heavy, polite=polite)
        time.sleep(1.0)  # let the flood take hold
        pool.submit(_until, stop, flood, "small", small)
        pool.submit(_until, stop, flood, "healthz", health)
        time.sleep(seconds)
        stop.set()
    return flood


def _statuses(flood: Tally, label: str = "") -> None:
    for kind in ("heavy", "small", "healthz"):
        counts = flood.statuses.get(kind, Counter())
        server_errors = sum(n for key, n in counts.items() if key.startswith("5") and "sandbox_busy" not in key)
        print(
            f"flood{label} {kind:8} statuses: {dict(sorted(counts.items()))}; "
            f"5xx other than sandbox_busy: {server_errors}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the flood")
    parser.add_argument("--flooders", type=int, default=30, help="the flooding buyer's concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="API processes (market serve --workers)")
    parser.add_argument("--quiet-rounds", type=int, default=40)
    parser.add_argument("--orgs", type=int, default=0, help="flood from this many new organisations (0: one)")
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="the flooder retries at once (worst case), not after Retry-After",
    )
    parser.add_argument(
        "--policies", default="", help="compare admission orders side by side: fair,free (default: the server's own)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="floods per policy with --policies (alternating)")
    parser.add_argument("--heavy", choices=sorted(HEAVIES), default="wide", help="the flood's query")
    parser.add_argument(
        "--org-concurrency", type=int, default=0, help="MARKET_SANDBOX_ORG_CONCURRENCY for the server (0: its default)"
    )
    args = parser.parse_args()
    policies = [name for name in args.policies.split(",") if name]
    assert all(name in POLICIES for name in policies), f"--policies: {', '.join(POLICIES)}"
    with tempfile.TemporaryDirectory() as tmp:
        base_settings = Settings()
        settings = Settings(data_dir=Path(tmp), database_url=base_settings.database_url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        keys = build_demo(database, settings)
        database.dispose()
        public = {"Authorization": f"Bearer {keys['buyer_public']}"}
        commercial = {"Authorization": f"Bearer {keys['buyer_commercial']}"}
        flooders = [commercial]
        if args.orgs:  # red team (session 5): the flood from many organisations, each with its own limit
            from bench.http_throughput import _add_buyers

            database = Database.from_settings(settings)
            flooders = [{"Authorization": f"Bearer {key}"} for key in _add_buyers(database, args.orgs)]
            database.dispose()

        smalls, runs = itertools.count(), itertools.count()

        def senders(client: httpx.Client, url: str) -> tuple[Callable[[], httpx.Response], ...]:
            def small() -> httpx.Response:
                sql = SMALL.format(run=next(smalls))
                return client.post(f"{url}/v1/queries", headers=public, json={"product": FLIGHTS_SLUG, "sql": sql})

            def heavy() -> httpx.Response:
                run = next(runs)
                sql = HEAVIES[args.heavy].format(run=run)
                headers = flooders[run % len(flooders)]
                return client.post(f"{url}/v1/queries", headers=headers, json={"product": FLIGHTS_SLUG, "sql": sql})

            def health() -> httpx.Response:
                return client.get(f"{url}/healthz")

            with ThreadPoolExecutor(4) as warm:  # every API process's workers, warm for the product
                for _ in range(4):
                    list(warm.map(lambda send: send(), [small, heavy, small, small]))
            return small, heavy, health

        if policies:
            _compare(args, settings, senders, policies)
            return

        limit = {"MARKET_SANDBOX_ORG_CONCURRENCY": str(args.org_concurrency)} if args.org_concurrency else {}
        with _server(settings, args.workers, limit) as url, httpx.Client(timeout=120) as client:
            small, heavy, health = senders(client, url)
            quiet = Tally()
            for _ in range(args.quiet_rounds):
                for kind, send in (("small", small), ("healthz", health)):
                    started = time.perf_counter()
                    quiet.record(kind, started, send())
            started = time.perf_counter()
            heavy_alone = heavy()
            heavy_ms = (time.perf_counter() - started) * 1000
            # A timeout (408) is possible on a loaded machine (the budget is wall-clock): reported, not fatal.
            assert heavy_alone.status_code in (200, 408), heavy_alone.text
            flood = _flood(args.seconds, args.flooders, heavy, small, health, polite=not args.ignore_retry_after)

    load = os.getloadavg()
    print(f"database: {database.engine.dialect.name}; API processes: {args.workers}; cores: {os.cpu_count()}")
    manners = "retrying at once" if args.ignore_retry_after else "each waiting its Retry-After"
    print(f"heavy query alone: {heavy_ms:.0f} ms (HTTP {heavy_alone.status_code})")
    print(f"flood: {args.flooders} clients {manners}, {args.seconds:.0f} s, from {len(flooders)} organisation(s)")
    print(f"{'':18} {'quiet p50':>10} {'quiet p95':>10} {'flood p50':>10} {'flood p95':>10} {'p50 ratio':>10}")
    for kind in ("small", "healthz"):
        q, f = quiet.latencies.get(kind, []), flood.latencies.get(kind, [])
        ratio = _percentile(f, 0.5) / _percentile(q, 0.5)
        print(
            f"{kind:18} {_percentile(q, 0.5):8.1f}ms {_percentile(q, 0.95):8.1f}ms "
            f"{_percentile(f, 0.5):8.1f}ms {_percentile(f, 0.95):8.1f}ms {ratio:9.2f}x"
        )
    _statuses(flood)
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _compare(
    args: argparse.Namespace,
    settings: Settings,
    senders: Callable[[httpx.Client, str], tuple[Callable[[], httpx.Response], ...]],
    policies: list[str],
) -> None:
    """The same flood against each admission order, `args.rounds` times each, alternating which goes first."""
    small_s: dict[str, list[float]] = {name: [] for name in policies}
    turned_away: dict[str, Counter[str]] = {name: Counter() for name in policies}
    loads: list[float] = []
    heavy_alone: list[str] = []
    for round_ in range(args.rounds):
        order = policies if round_ % 2 == 0 else policies[::-1]
        for name in order:
            env = {"MARKET_SANDBOX_FAIR_QUEUE": POLICIES[name]}
            if args.org_concurrency:
                env["MARKET_SANDBOX_ORG_CONCURRENCY"] = str(args.org_concurrency)
            with _server(settings, args.workers, env) as url, httpx.Client(timeout=120) as client:
                small, heavy, health = senders(client, url)
                started = time.perf_counter()
                alone = heavy()
                heavy_alone.append(f"{(time.perf_counter() - started) * 1000:.0f} ms ({alone.status_code})")
                flood = _flood(args.seconds, args.flooders, heavy, small, health, polite=not args.ignore_retry_after)
            loads.append(os.getloadavg()[0])
            small_s[name] += flood.latencies.get("small", [])
            turned_away[name] += Counter(
                {label: n for label, n in flood.statuses.get("small", Counter()).items() if label != "200"}
            )
            _statuses(flood, f" [{name}, round {round_ + 1}]")
    manners = "retrying at once" if args.ignore_retry_after else "each waiting its Retry-After"
    print(
        f"database: {settings.effective_database_url.split(':')[0]}; "
        f"API processes: {args.workers}; cores: {os.cpu_count()}"
    )
    print(
        f"flood: {args.flooders} clients {manners}, from {max(1, args.orgs)} organisation(s); "
        f"{args.rounds} x {args.seconds:.0f} s per policy, alternating; "
        f"per-organisation limit {args.org_concurrency or 'default'}"
    )
    print(f"the flood's query ({args.heavy}) alone, before each flood: {', '.join(heavy_alone)}")
    print("the other buyer's small query during the flood (answered ones; turned away counted apart):")
    print(f"{'policy':8} {'answered':>9} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  turned away")
    for name in policies:
        samples = small_s[name]
        print(
            f"{name:8} {len(samples):9d} {_percentile(samples, 0.5):9.0f} "
            f"{_percentile(samples, 0.95):9.0f} {max(samples, default=float('nan')) * 1000:9.0f}  "
            f"{dict(turned_away[name])}"
        )
    if len(policies) == 2:
        a, b = (small_s[name] for name in policies)
        test = mann_whitney(a, b)
        print(f"Mann-Whitney {policies[0]} vs {policies[1]}: p = {test.p:.2g} (z = {test.z:+.2f})")
    load = os.getloadavg()
    print(f"load average after each flood (1 min): {' '.join(f'{x:.2f}' for x in loads)}")
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

"""Queries over HTTP against raw DuckDB: requests/s, p50 and p99 at 1, 4 and 16 connections.

Builds the demo marketplace in a temporary directory, adds `--buyers` buyer organisations (each with
its own API key and a commercial agreement on the flights product), and serves it with
`market serve --workers N` (a real server on loopback, another process). The load generator is this
process: asyncio + aiohttp, one keep-alive connection per simulated client, each client a buyer of
its own (client i is buyer i mod --buyers), sending its next request as soon as the last answer
arrived (a closed loop).

Workloads, each for `--seconds` at every connection count:

- `origin`, `carrier_month`, `dest_july`: three small demo queries, each sent again and again, on a
  server started with the result cache off (`MARKET_SANDBOX_RESULT_CACHE_ENTRIES=0`): every request
  runs the sandbox. Beside them, raw DuckDB runs the same SQL on the same Parquet file in this
  process (one connection, the sandbox's thread count), in the same run: the ratio HTTP/raw is the
  price of the whole path (authentication, validation, threshold, metering, JSON).
- `dashboard`: a dashboard mix on a server with its default settings (result cache on): every
  client is its own buyer and picks, per request, one of a few queries (the three above and three
  more), the way dashboards refresh the same panels for many users.

Every line also shows `cpu/req`: the CPU (user + system) the server's processes, API and sandbox
workers, spent per answered request during the run, read from /proc for the server's process group.
On a machine shared with other work, latency mostly measures the queue for the CPU; CPU per request
does not, and it is what bounds throughput.

Everything runs on SQLite, then on a scratch PostgreSQL database (bench/databases.py).

    python -m bench.http_throughput [--seconds 6] [--connections 1,4,16] [--workers N]
        [--workloads dashboard] [--repeat N] [--skip-sqlite | --skip-postgres]
        [--baseline DIR] [--phases] [--this-env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import httpx

from bench.databases import on_both_databases
from bench.stats import mann_whitney
from market.accounts import service as accounts
from market.accounts.models import OrgKind, Role
from market.db import Database, migrate
from market.demo import FLIGHTS_SLUG, build_demo
from market.settings import Settings
from metering import service as metering
from metering.models import Purpose
from products import repository as products_repo
from products import service as products

SMALL = {
    "origin": "SELECT origin, count(*) AS flights, avg(dep_delay) AS delay FROM flights GROUP BY origin",
    "carrier_month": (
        "SELECT carrier, month, count(*) AS flights, avg(arr_delay) AS delay FROM flights GROUP BY carrier, month"
    ),
    "dest_july": "SELECT dest, count(*) AS flights, avg(arr_delay) AS delay FROM flights WHERE month = 7 GROUP BY dest",
}
DASHBOARD = [
    *SMALL.values(),
    "SELECT month, count(*) AS flights, sum(distance) AS miles FROM flights GROUP BY month ORDER BY month",
    "SELECT carrier, avg(dep_delay) AS delay, stddev(dep_delay) AS spread FROM flights GROUP BY carrier",
    "SELECT origin, dest, count(*) AS flights FROM flights WHERE origin = 'JFK' GROUP BY origin, dest",
]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")


def _add_buyers(database: Database, count: int) -> list[str]:
    """`count` buyer organisations with a key and a commercial agreement each; their clear keys."""
    keys: list[str] = []
    with database.transaction() as session:
        product = products_repo.by_slug(session, FLIGHTS_SLUG)
        assert product is not None
        operator = None
        from market.accounts.models import Organisation, User
        from market.demo import _principal

        owner = session.get(Organisation, product.operator_org_id)
        staff = session.query(User).filter(User.org_id == product.operator_org_id, User.role == "operator").first()
        assert owner is not None and staff is not None
        operator = _principal(staff, owner)
        scenario = sorted(metering.access.allowed_scenarios(session, product) or {"logistics-planning"})[0]
        for i in range(count):
            org = accounts.create_org(session, None, name=f"Bench buyer {i}", kind=OrgKind.BUYER)
            user = accounts.create_user(
                session, None, org=org, name=f"Buyer {i}", email=f"bench{i}@bench.market", role=Role.BUYER
            )
            session.flush()
            _, clear = accounts.issue_key(session, None, user=user, label="bench")
            buyer = _principal(user, org)
            request = metering.request_access(
                session,
                buyer,
                product_slug=FLIGHTS_SLUG,
                plan_code="commercial-standard",
                purpose=Purpose.COMMERCIAL,
                scenario=scenario,
                justification="Benchmark.",
            )
            if request.status == "pending":
                metering.decide_request(session, operator, request.id, approve=True, reason="Benchmark.")
            keys.append(clear)
    return keys


def _parquet(database: Database, settings: Settings) -> Path:
    with database.transaction() as session:
        product = products_repo.by_slug(session, FLIGHTS_SLUG)
        assert product is not None and product.listed_version_id is not None
        from products.models import ProductVersion

        version = session.get(ProductVersion, product.listed_version_id)
        assert version is not None
        return products.version_tables(settings, version)["flights"].path


def _group_cpu(group: int) -> float:
    """CPU seconds (user + system) of every live process in process group `group`: the server's API
    processes and their sandbox workers (the server runs in a session of its own)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ..., utime (11), stime (12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(
    settings: Settings,
    workers: int,
    extra: dict[str, str],
    report: list[str] | None = None,
    code: Path | None = None,
) -> Iterator[tuple[str, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "MARKET_DATA_DIR": str(settings.data_dir),
        "MARKET_DATABASE_URL": settings.effective_database_url,
        "MARKET_SCHEDULER_ENABLED": "false",
        **extra,
    }
    if code is not None:  # another checkout's packages first on the path (an editable install's finder is last)
        env["PYTHONPATH"] = str(code)
    log_path = settings.data_dir / f"server-{port}.log"
    log = log_path.open("wb")
    command = [sys.executable, "-c", "from market.cli import main; main()", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=code,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if server.poll() is not None:
                raise SystemExit(log_path.read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield base, server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
        if report is not None:  # each API process logs its caches' hit rates when it stops (market/app.py)
            report.extend(
                "   " + line.split("INFO:", 1)[-1].strip()
                for line in log_path.read_text().splitlines()
                if "sandbox result cache" in line or "gc pauses" in line or "phases of process" in line
            )
        for error in log_path.read_text().split("ERROR:")[1:3]:  # a 5xx is a bug: show its traceback
            print("server error:", error[:2000], "\n  ...\n", error[-4000:], file=sys.stderr)


@dataclass
class Run:
    """One workload at one connection count."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    server_cpu: float = 0.0
    """CPU seconds the server's processes (API and sandbox workers) spent during the run."""
    spread: list[int] = field(default_factory=list)
    """Established connections held by each API process, sampled halfway through the run, most first."""
    warm_ups: int = 0
    """Requests sent before the clock started (one per client, `_load`): in server_cpu, not in latencies."""

    @property
    def imbalance(self) -> float:
        """The busiest API process's connections over the fair share (1.0: even)."""
        if not self.spread or not sum(self.spread):
            return float("nan")
        return self.spread[0] / (sum(self.spread) / len(self.spread))

    @property
    def cpu_ms_per_request(self) -> float:
        answered = sum(self.statuses.values()) + self.warm_ups
        return 1000 * self.server_cpu / answered if answered else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def _load(base: str, keys: list[str], queries: list[str], connections: int, seconds: float) -> Run:
    """A closed loop of `connections` clients for `seconds`. Each client first sends one request that is
    not measured, and the clock starts once all have been answered: a run opens new connections, which
    the kernel may hand to another API process than in the last run (market.serving), where that buyer's
    key and agreement are not cached yet (or expired while the other side ran). Those first requests
    (one per buyer and process, as a dashboard's first refresh) were ~2 % of a run's requests, and so
    its p99, in every run; they are a connection's set-up, reported apart from the steady state."""
    run = Run()
    stop_at = [float("inf")]
    url = f"{base}/v1/queries"
    warm = [0]
    all_warm = asyncio.Event()

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {keys[i % len(keys)]}"}
        chooser = random.Random(i)
        with contextlib.suppress(aiohttp.ClientError):
            body = {"product": FLIGHTS_SLUG, "sql": chooser.choice(queries)}
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
        warm[0] += 1
        run.warm_ups += 1
        if warm[0] == connections:
            stop_at[0] = time.perf_counter() + seconds
            all_warm.set()
        await all_warm.wait()
        while time.perf_counter() < stop_at[0]:
            body = {"product": FLIGHTS_SLUG, "sql": chooser.choice(queries)}
            started = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except aiohttp.ClientError as error:
                run.statuses[f"transport {type(error).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - started
            if status == 200:
                run.latencies.append(elapsed)
                run.statuses["200"] += 1
            else:
                run.statuses[f"{status} {payload[:80].decode(errors='replace')}"] += 1
                if status in (429, 503):
                    await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(i, session) for i in range(connections)))
        run.seconds = seconds + max(0.0, time.perf_counter() - stop_at[0])
    return run


def _raw(parquet: Path, sql: str, seconds: float, threads: int) -> Run:
    """Raw DuckDB, the same SQL on the same file, one query at a time (its own best case)."""
    connection = duckdb.connect(config={"threads": threads})
    connection.execute(f"CREATE VIEW flights AS SELECT * FROM read_parquet('{parquet}')")
    connection.execute(sql).fetchall()
    run = Run()
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop_at:
        t = time.perf_counter()
        connection.execute(sql).fetchall()
        run.latencies.append(time.perf_counter() - t)
    run.seconds = time.perf_counter() - started
    connection.close()
    return run


def _api_processes(server: int) -> list[int]:
    """The API processes of `market serve` (pid `server`): itself with one process, else the children
    its supervisor spawned (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == server and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found or [server]


def _spread(server: int, port: int) -> list[int]:
    """Established connections to `port` held by each API process, most first (from /proc)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            established.add(fields[9])
    counts = []
    for pid in _api_processes(server):
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    held += target.startswith("socket:[") and target[8:-1] in established
        counts.append(held)
    return sorted(counts, reverse=True)


def _measured(group: int, base: str, keys: list[str], queries: list[str], connections: int, seconds: float) -> Run:
    """A load run, with the CPU the server's processes spent on it and how its connections were spread."""
    before = _group_cpu(group)
    port = int(base.rsplit(":", 1)[1])
    sampled: list[int] = []
    sampler = threading.Timer(seconds / 2, lambda: sampled.extend(_spread(group, port)))
    sampler.start()
    run = asyncio.run(_load(base, keys, queries, connections, seconds))
    sampler.join()
    run.server_cpu = _group_cpu(group) - before
    run.spread = sampled
    return run


def _line(name: str, connections: int, run: Run, raw: Run | None) -> str:
    p50, p99 = _percentile(run.latencies, 0.5), _percentile(run.latencies, 0.99)
    text = f"{name:14} {connections:5d} {run.rate:9.1f} {p50:9.1f} {p99:9.1f} {run.cpu_ms_per_request:9.1f}"
    if raw is not None:
        raw_p50 = _percentile(raw.latencies, 0.5)
        text += f" {raw_p50:9.2f} {p50 / raw_p50:8.2f}x {run.rate / raw.rate:8.2f}"
    text += f"  conns/process {'/'.join(map(str, run.spread))}"
    bad = {k: v for k, v in run.statuses.items() if k != "200"}
    if bad:
        text += f"  other: {dict(bad)}"
    return text


Side = tuple[str, Path | None]
"""A server's label and the source tree it runs (None: this checkout)."""


def _alternated(
    servers: dict[str, tuple[str, int]], keys: list[str], queries: list[str], connections: int, args: argparse.Namespace
) -> dict[str, list[Run]]:
    """`args.repeat` runs of the cell on every side, alternating which side goes first."""
    runs: dict[str, list[Run]] = {label: [] for label in servers}
    labels = list(servers)
    for repeat in range(args.repeat):
        for label in labels if repeat % 2 == 0 else labels[::-1]:
            base, group = servers[label]
            runs[label].append(_measured(group, base, keys, queries, connections, args.seconds))
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _cell(name: str, connections: int, runs: dict[str, list[Run]], raw: Run | None) -> list[str]:
    """One line per side (medians over the repeats when there are several), then, with a baseline, this
    side's medians against it and the Mann-Whitney p of the per-run p50s and p99s."""
    lines = []
    for label, kept in runs.items():
        if len(kept) == 1:
            line = _line(name, connections, kept[0], raw)
        else:
            rate = _median([run.rate for run in kept])
            p50 = _median([_percentile(run.latencies, 0.5) for run in kept])
            p99 = _median([_percentile(run.latencies, 0.99) for run in kept])
            cpu = _median([run.cpu_ms_per_request for run in kept])
            line = f"{name:14} {connections:5d} {rate:9.1f} {p50:9.1f} {p99:9.1f} {cpu:9.1f}"
            if raw is not None:
                raw_p50 = _percentile(raw.latencies, 0.5)
                line += f" {raw_p50:9.2f} {p50 / raw_p50:8.2f}x {rate / raw.rate:8.2f}"
            bad: Counter[str] = Counter()
            for run in kept:
                bad.update({k: v for k, v in run.statuses.items() if k != "200"})
            imbalance = _median([run.imbalance for run in kept])
            worst = max(kept, key=lambda run: run.imbalance).spread
            line += f"  (median of {len(kept)}; busiest process / fair share {imbalance:.2f}, worst run"
            line += f" {'/'.join(map(str, worst))})" + (f"  other: {dict(bad)}" if bad else "")
        lines.append(f"{label:5} {line}  load {_loadavg()}" if len(runs) > 1 else f"{line}  load {_loadavg()}")
    if "this" in runs and "base" in runs:
        this, base = runs["this"], runs["base"]

        def ratio(measure: Any) -> str:
            a, b = [measure(run) for run in this], [measure(run) for run in base]
            return f"{_median(a) / _median(b):.2f} (p {mann_whitney(a, b).p:.3f})"

        lines.append(
            f"      this/base: req/s {ratio(lambda r: r.rate)}, p50 {ratio(lambda r: _percentile(r.latencies, 0.5))}, "
            f"p99 {ratio(lambda r: _percentile(r.latencies, 0.99))}, cpu/req {ratio(lambda r: r.cpu_ms_per_request)}, "
            f"busiest/fair {ratio(lambda r: r.imbalance)}"
        )
    for line in lines:
        print(line, flush=True)
    return lines


def _sides(args: argparse.Namespace) -> list[Side]:
    return [("this", None), *([("base", args.baseline.resolve())] if args.baseline else [])]


@contextlib.contextmanager
def _servers(
    settings: Settings, workers: int, extra: dict[str, str], args: argparse.Namespace, report: list[str]
) -> Iterator[dict[str, tuple[str, int]]]:
    """One server per side, all serving the same marketplace (one side is loaded at a time)."""
    if args.phases:
        extra = {**extra, "MARKET_DEBUG_PHASES": "1"}
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}
        logs: dict[str, list[str]] = {}
        for label, code in _sides(args):
            logs[label] = []
            own = {**extra, **(dict(args.this_env) if label == "this" else {})}
            servers[label] = stack.enter_context(_server(settings, workers, own, logs[label], code))
        for base, _ in servers.values():
            # Warm every process and worker, and every buyer: one client per buyer, so that each buyer's key
            # and agreement are in the access caches before measuring (with 4 clients, buyers 4..15 were
            # first seen inside the measurement: their database authentication and transaction 1 were
            # most of the dashboard's p99).
            asyncio.run(_load(base, keys_of(args), DASHBOARD, max(4, len(keys_of(args))), 2.0))
        if args.phases and "this" in servers:
            # This checkout's API processes forget the warm-up's phases and GC pauses (market.app, SIGUSR1):
            # their report is the measurement's. Not the baseline's, whose code may not handle the signal.
            for pid in _api_processes(servers["this"][1]):
                os.kill(pid, signal.SIGUSR1)
        try:
            yield servers
        finally:
            stack.close()
            for label, lines in logs.items():
                report.extend(f"  [{label}]{line}" for line in lines)


def keys_of(args: argparse.Namespace) -> list[str]:
    keys: list[str] = args.keys
    return keys


def _bench(database: Database, name: str, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = database.engine.url.render_as_string(hide_password=False)
        settings = Settings(data_dir=Path(tmp), database_url=url, scheduler_enabled=False)
        database = Database.from_settings(settings)
        migrate(database)
        build_demo(database, settings)
        keys = args.keys = _add_buyers(database, args.buyers)
        parquet = _parquet(database, settings)
        database.dispose()
        workers = args.workers or max(1, len(os.sched_getaffinity(0)))
        header = f"{'workload':14} {'conns':>5} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'cpu/req':>9}"
        sides = ", ".join(f"{label}: {code or 'this checkout'}" for label, code in _sides(args))
        lines.append(f"== {name}: market serve --workers {workers}; {args.buyers} buyers; {sides}")
        lines.append(f"{'      ' if args.baseline else ''}{header} {'raw p50':>9} {'p50/raw':>9} {'raw/s÷':>8}")
        small = {name: sql for name, sql in SMALL.items() if name in args.workloads}
        if small:
            lines.append("   (uncached: MARKET_SANDBOX_RESULT_CACHE_ENTRIES=0)")
            report: list[str] = []
            with _servers(settings, workers, {"MARKET_SANDBOX_RESULT_CACHE_ENTRIES": "0"}, args, report) as servers:
                for query_name, sql in small.items():
                    for connections in args.connections:
                        runs = _alternated(servers, keys, [sql], connections, args)
                        raw = _raw(parquet, sql, min(args.seconds, 3.0), Settings().sandbox_threads)
                        lines.extend(_cell(query_name, connections, runs, raw))
            lines.extend(report)
        lines.extend(_dashboard(settings, workers, keys, args))
    return lines


def _dashboard(settings: Settings, workers: int, keys: list[str], args: argparse.Namespace) -> list[str]:
    if "dashboard" not in args.workloads:
        return []
    lines = ["   (dashboard mix, default settings)"]
    report: list[str] = []
    with _servers(settings, workers, {}, args, report) as servers:
        for connections in args.connections:
            lines.extend(
                _cell("dashboard", connections, _alternated(servers, keys, DASHBOARD, connections, args), None)
            )
    return lines + report


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__().replace("'", "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each measurement")
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=0, help="API processes (default: the cores)")
    parser.add_argument("--buyers", type=int, default=16, help="buyer organisations (clients share them round-robin)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--workloads",
        type=lambda s: s.split(","),
        default=[*SMALL, "dashboard"],
        help=f"comma-separated, of {', '.join([*SMALL, 'dashboard'])} (default: all)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run every cell this many times (medians)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. a worktree of main) served beside this one; cells alternate between them",
    )
    parser.add_argument(
        "--phases", action="store_true", help="servers time their phases (MARKET_DEBUG_PHASES=1, market.phases)"
    )
    parser.add_argument(
        "--this-env",
        type=lambda s: tuple(s.split("=", 1)),
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for this checkout's server only, not the baseline's (repeatable), e.g. "
        "MARKET_METERING_GROUP_COMMIT=1",
    )
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load average before: {_loadavg()}", flush=True)
    results = on_both_databases(
        lambda db, name: _bench(db, name, args),
        args.postgres,
        skip_postgres=args.skip_postgres,
        skip_sqlite=args.skip_sqlite,
    )
    print()
    for lines in results:
        print("\n".join(lines))
    print(f"load average after: {_loadavg()}")


if __name__ == "__main__":
    main()

"""What ordering every grouped answer by its values costs (branch sbx-red15), against another checkout, alternated.

    python -m bench.sbx_red15_order --other /tmp/main-copy --runs 15

Builds one flights-like Parquet file (336,776 rows, 4,000 units, 105 destinations, 16 carriers, 3 origins),
then starts one long-lived server per checkout (each imports its own `sandbox`) and asks both, in rotating
order, to plan each query with the plan cache emptied (validation, thread CPU) and to run it on the one-
statement path and the staged path (engine.execute_two_level / execute_plan on a connection configured as
the sandbox's, process CPU). Prints medians per side, the ratio, two-sided Mann-Whitney p, load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.stats import mann_whitney

QUERIES = {
    "dest": "SELECT dest, count(*) AS n, avg(m) AS a FROM t GROUP BY dest",
    "many-groups": "SELECT carrier, origin, dest, month, count(*) AS n, sum(m) AS s FROM t "
    "GROUP BY carrier, origin, dest, month",
    "order-limit": "SELECT dest, day, count(*) AS n FROM t GROUP BY dest, day ORDER BY n DESC LIMIT 10",
}

SERVER = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
from pathlib import Path
from sandbox import cache
from sandbox.engine import execute_plan, execute_two_level, TableStatistics
from sandbox.policy import ProtectionPolicy
from sandbox.service import plan_query
from tests.sandbox.conftest import replaying_connection
path, rows, queries = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
policy = ProtectionPolicy.model_validate({"min_group_size": 10, "tables": {"t": {"privacy_unit": "uid",
    "dimensions": ["carrier", "origin", "dest", "month", "day"], "measures": ["m"],
    "bounds": {"m": {"min": -120, "max": 1440}}}}})
connection = replaying_connection({"t": path})
stats = TableStatistics(connection, {}, "v")
print(json.dumps({"ready": True}), file=answers, flush=True)
for line in sys.stdin:
    name = json.loads(line)
    cache.plans.clear()
    started = time.thread_time()
    plan = plan_query(queries[name], policy, {"t": rows})
    validation = (time.thread_time() - started) * 1000
    out = {"validation_ms": validation}
    for label, run in (("single_ms", execute_two_level), ("staged_ms", execute_plan)):
        started = time.process_time()
        execution = run(connection, plan, 1_000_000, stats)
        out[label] = (time.process_time() - started) * 1000
        out[label.replace("_ms", "_rows")] = len(execution.rows)
    print(json.dumps(out), file=answers, flush=True)
"""

ROWS = 336_776


def build(path: Path) -> None:
    import duckdb

    with duckdb.connect() as connection:
        connection.execute(
            f"""COPY (SELECT (hash(i) % 4000)::INTEGER AS uid, ['AA','B6','DL','EV','MQ','UA','US','WN','9E',
            'VX','FL','AS','F9','YV','HA','OO'][1 + (i % 16)] AS carrier, ['EWR','JFK','LGA'][1 + (i % 3)] AS origin,
            'D' || lpad(((hash(i + 7) % 105))::VARCHAR, 3, '0') AS dest, (1 + i % 12)::INTEGER AS month,
            (1 + (i // 12) % 28)::INTEGER AS day, ((hash(i + 3) % 1560)::INTEGER - 120) AS m
            FROM range({ROWS}) r(i) ORDER BY i) TO '{path}' (FORMAT parquet)"""
        )


def start(tree: Path, path: Path) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), str(ROWS), json.dumps(QUERIES)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and json.loads(server.stdout.readline())["ready"]
    return server


def ask(server: subprocess.Popen[str], name: str) -> dict[str, Any]:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(json.dumps(name) + "\n")
    server.stdin.flush()
    answer: dict[str, Any] = json.loads(server.stdout.readline())
    return answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", type=Path, required=True, help="the baseline checkout (e.g. a git archive of main)")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print("load average before:", os.getloadavg())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.parquet"
        build(path)
        sides = {"main": start(args.other.resolve(), path), "branch": start(Path.cwd(), path)}
        found: dict[tuple[str, str, str], list[float]] = {}
        for run in range(args.runs):
            for name in QUERIES:
                order = list(sides) if run % 2 == 0 else list(reversed(sides))
                answers = {side: ask(sides[side], name) for side in order}
                # The same groups either way (the branch only orders them).
                assert answers["main"]["single_rows"] == answers["branch"]["single_rows"], name
                for side, answer in answers.items():
                    for metric in ("validation_ms", "single_ms", "staged_ms"):
                        found.setdefault((name, metric, side), []).append(answer[metric])
        for server in sides.values():
            server.terminate()
    print("load average after:", os.getloadavg())
    print(f"{'query':<12} {'metric':<14} {'main':>9} {'branch':>9} {'ratio':>6} {'p':>7}")
    for name in QUERIES:
        for metric in ("validation_ms", "single_ms", "staged_ms"):
            a, b = found[(name, metric, "main")], found[(name, metric, "branch")]
            ma, mb = statistics.median(a), statistics.median(b)
            p = mann_whitney(a, b).p
            print(f"{name:<12} {metric:<14} {ma:9.2f} {mb:9.2f} {mb / ma:6.3f} {p:7.4f}")


if __name__ == "__main__":
    main()

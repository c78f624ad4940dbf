"""val15's fast checks on and off in one process, alternating call by call over the validation corpus (branch val15).

On a machine shared past its cores, two processes (main's tree and the branch's) run minutes apart meet different
loads; here every query is timed with the fast checks on and off in alternation, so both sides meet the same load.
"Off" is the code before val15: stage 2 and the constants statement parsed by DuckDB and walked
(crosscheck._plain_output and _plain_constants answer False) and the constants text generated as a SELECT
(rewrite._constants_select). Prints each side's fastest-run p99 (the third slowest of 270 queries' best thread
CPU, as bench.sandbox_overhead), the median and the slowest, and the median of the per-query ratios.
Usage: python -m bench.val15_toggle [runs per side, default 15]"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time


def main() -> None:
    from bench.sandbox_overhead import POLICY, QUERIES
    from sandbox import cache, crosscheck, rewrite
    from sandbox.errors import QueryRefused
    from sandbox.policy import ProtectionPolicy
    from sandbox.service import plan_query
    from tests.sandbox.conftest import TWO_TABLE_POLICY
    from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
    fast = (crosscheck._plain_output, crosscheck._plain_constants, rewrite._constants_sql)
    slow = (lambda sql, table: False, lambda sql: False, rewrite._constants_select)

    def use(fns: tuple) -> None:  # type: ignore[type-arg]
        crosscheck._plain_output, crosscheck._plain_constants, rewrite._constants_sql = fns

    gc.collect()
    gc.freeze()
    best: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for sql in corpus:
            target = POLICY if sql in QUERIES.values() else policy
            times: dict[str, list[float]] = {"on": [], "off": []}
            for i in range(2 * runs + 2):
                side = "on" if i % 2 == 0 else "off"
                use(fast if side == "on" else slow)
                cache.plans.clear()
                started = time.thread_time()
                with contextlib.suppress(QueryRefused):
                    plan_query(sql, target)
                times[side].append((time.thread_time() - started) * 1000)
            for side in ("on", "off"):
                best[side].append(min(times[side][1:]))  # each side's first run warms caches
    finally:
        use(fast)
    pairs = list(zip(best["on"], best["off"], strict=True))
    for side in ("off", "on"):
        ordered = sorted(best[side])
        print(
            f"fast checks {side:3s}: fastest-run p99 {ordered[int(len(ordered) * 0.99)]:.2f} ms, "
            f"median {statistics.median(ordered):.3f} ms, slowest {ordered[-1]:.2f} ms"
        )
    slow_ones = [on / off for on, off in pairs if off > 0.5]  # the accepted queries (refusals take ~0.1 ms)
    print(
        f"per-query ratio on/off: median {statistics.median(on / off for on, off in pairs):.3f}; "
        f"over the {len(slow_ones)} queries above 0.5 ms off: median {statistics.median(slow_ones):.3f}"
    )


if __name__ == "__main__":
    main()

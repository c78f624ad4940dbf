"""val16's shortcuts on and off call by call in one process (branch val16, session 16), so that both meet the
same load: each corpus query's best thread CPU of plan_query over N uncached runs of each. "off" tests every
node's kind in check and guard, names unnamed output columns with Expression.sql and generates every guarded
group key's text, as main does (plus one
Python call per node for the switched-off test, about 0.1 us). Prints the accepted and refused queries'
median per-query ratio on/off, the fastest-run p99 (the third slowest query's best) and the OR chain.
Usage: python -m bench.val16_toggle [runs, default 10]"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from typing import Any

from sqlglot import exp

from sandbox import cache, rewrite, syntax, validator
from sandbox.errors import QueryRefused


def _switch(on: bool, saved: dict[str, Any]) -> None:
    if on:
        validator._plain_kind = saved["plain"]
        syntax._guarded_kind = saved["guarded"]
        validator.output_name = saved["name"]
        rewrite._guarded_key_texts = saved["keys"]
    else:
        validator._plain_kind = _never  # type: ignore[assignment]
        syntax._guarded_kind = _always  # type: ignore[assignment]
        validator.output_name = _sql_name
        rewrite._guarded_key_texts = _every_key_text


def _never(node: exp.Expr) -> bool:
    return False


def _always(node: exp.Expr) -> bool:
    return True


def _every_key_text(keys: list[exp.Expr], guarded: list[exp.Expr], texts: list[str]) -> list[str]:
    return [syntax.to_sql(key) for key in guarded]


def _sql_name(node: exp.Expr) -> str:
    return str(node.sql(syntax.DIALECT, normalize_functions="lower"))


def main() -> None:
    from bench.sandbox_overhead import POLICY, QUERIES
    from sandbox.policy import ProtectionPolicy
    from sandbox.service import plan_query
    from tests.sandbox.conftest import TWO_TABLE_POLICY
    from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    policy = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    corpus = [sql for _, sql, _ in PEOPLE + JOINED] + list(QUERIES.values())
    saved = {
        "plain": validator._plain_kind,
        "guarded": syntax._guarded_kind,
        "name": validator.output_name,
        "keys": rewrite._guarded_key_texts,
    }
    gc.collect()
    gc.freeze()
    best: dict[bool, list[float]] = {True: [], False: []}
    accepted: list[bool] = []
    for sql in corpus:
        target = POLICY if sql in QUERIES.values() else policy
        times: dict[bool, list[float]] = {True: [], False: []}
        ok = True
        for i in range(2 * runs + 2):
            on = i % 2 == 0
            _switch(on, saved)
            cache.plans.clear()
            started = time.thread_time()
            try:
                plan_query(sql, target)
            except QueryRefused:
                ok = False
            times[on].append((time.thread_time() - started) * 1000)
        for on in (True, False):
            best[on].append(min(times[on][1:]))  # the first run of each warms caches
        accepted.append(ok)
    _switch(True, saved)
    chain = max(range(len(corpus)), key=lambda i: best[False][i])
    for label, keep in (("accepted", True), ("refused", False)):
        index = [i for i, ok in enumerate(accepted) if ok == keep]
        ratios = [best[True][i] / best[False][i] for i in index]
        on_sorted = sorted(best[True][i] for i in index)
        off_sorted = sorted(best[False][i] for i in index)
        print(
            f"{label} ({len(index)}): median off {statistics.median(off_sorted):.3f} / on "
            f"{statistics.median(on_sorted):.3f} ms, median ratio on/off {statistics.median(ratios):.3f}, "
            f"on faster in {sum(r < 1 for r in ratios)} of {len(ratios)}"
        )
    slow_off, slow_on = sorted(best[False]), sorted(best[True])
    print(f"fastest-run p99 (third slowest query's best): off {slow_off[-3]:.2f} / on {slow_on[-3]:.2f} ms")
    print(f"slowest (the 180-term OR chain): off {best[False][chain]:.2f} / on {best[True][chain]:.2f} ms")


if __name__ == "__main__":
    main()

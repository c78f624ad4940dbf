"""The cost of red16s's key check in sandbox.binding.check (a walk of DuckDB's bound plan), side by side with
main's binding.check, in one run: for each TPC-H query of bench.sandbox_overhead and each accepted query of the
two-table corpus, the statement engine._refusal binds (stage 1, the exact threshold columns, stage 2 over it) is
checked by both modules, alternated, thread CPU, median of N. The check runs once per (version, statement) in a
worker (Statistics.refusal remembers the verdict), so this is a cold query's cost, not every query's.

Usage: python -m bench.red16s_binding_cost MAIN_TREE [runs, default 15]
(MAIN_TREE: `git -C /work/main archive main | tar -x -C MAIN_TREE`)"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _main_binding(tree: Path) -> Any:
    spec = importlib.util.spec_from_file_location("main_binding", tree / "sandbox" / "binding.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _statements() -> list[tuple[str, str, list[str]]]:
    from bench.sandbox_overhead import POLICY, QUERIES
    from sandbox.errors import QueryRefused
    from sandbox.policy import ProtectionPolicy
    from sandbox.rewrite import GROUPS_TABLE, PLACEHOLDER, RESTRICT, threshold_sql
    from sandbox.service import plan_query
    from tests.sandbox.conftest import TWO_TABLE_POLICY
    from tests.sandbox.test_policy_corpus import JOINED, PEOPLE

    people = ProtectionPolicy.model_validate(TWO_TABLE_POLICY)
    cases = [(name, sql, POLICY) for name, sql in QUERIES.items()]
    cases += [(f"corpus{i}", sql, people) for i, (_, sql, code) in enumerate(PEOPLE + JOINED) if code is None]
    out = []
    for name, sql, policy in cases:
        try:
            plan = plan_query(sql, policy)
        except QueryRefused:
            continue
        statement = (plan.seeded or plan.template).replace(
            PLACEHOLDER, threshold_sql(plan.units, "exact", (), plan.cells)
        )
        statement = f'WITH "{GROUPS_TABLE}" AS ({statement.replace(RESTRICT, "TRUE")}) {plan.output_sql}'
        out.append((name, statement, plan.tables))
    return out


def _shadow(tables: list[str]) -> Any:
    """Empty tables of the TPC-H and corpus columns, typed as the benches' files are."""
    import duckdb

    from bench.sandbox_overhead import POLICY
    from tests.sandbox.conftest import PEOPLE_TYPES, SHOPS_TYPES

    copy = duckdb.connect(":memory:", config={"threads": 1})
    types = {"people": PEOPLE_TYPES, "shops": SHOPS_TYPES}
    for table in set(tables):
        if table in types:
            columns = ", ".join(f'"{c}" {t}' for c, t in types[table].items())
        else:
            spec = POLICY.tables[table]
            names = [spec.privacy_unit, *spec.dimensions, *spec.measures, *spec.hidden]
            columns = ", ".join(f'"{c}" {"DOUBLE" if c in spec.measures else "VARCHAR"}' for c in dict.fromkeys(names))
        copy.execute(f'CREATE TABLE "{table}" ({columns})')
    return copy


def main() -> None:
    tree = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    from sandbox import binding

    main_binding = _main_binding(tree)
    statements = _statements()
    every = sorted({t for _, _, tables in statements for t in tables})
    copy = _shadow(every)
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    gc.collect()
    gc.freeze()
    ratios, totals = [], {"main": 0.0, "branch": 0.0}
    for name, statement, _ in statements:
        times: dict[str, list[float]] = {"main": [], "branch": []}
        for run in range(runs + 1):
            order = [("main", main_binding), ("branch", binding)]
            for label, module in order if run % 2 else order[::-1]:
                started = time.thread_time()
                verdict = module.check(copy, statement)
                spent = time.thread_time() - started
                if run:
                    times[label].append(spent)
            assert verdict is None or verdict[0] != "disallowed_construct", (name, verdict)
        medians = {label: statistics.median(values) * 1000 for label, values in times.items()}
        totals["main"] += medians["main"]
        totals["branch"] += medians["branch"]
        ratios.append(medians["branch"] / medians["main"])
        if not name.startswith("corpus"):
            print(f"{name:28} main {medians['main']:.3f} ms  branch {medians['branch']:.3f} ms")
    print(
        f"{len(statements)} statements: median ratio branch/main {statistics.median(ratios):.3f}, "
        f"sum of medians main {totals['main']:.1f} ms, branch {totals['branch']:.1f} ms"
    )
    print("load after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()

"""The timing harness shared by the benches that time two kinds of data, or two source trees, side by side
(bench/dim15_timing.py, wide15_decimal_timing.py, redx15_decimal_cast.py, red16_value_costs.py).

Building a small product (generated rows; nothing read from disk but what these write):
- `write_upload`: a Parquet upload of ROWS rows, `'u' || (i // 4) AS u, 'g' || (i % 20) AS g` and one column of the
  bench's own;
- `stored_table`: that upload built as the build builds it (products.storage: write_table, then with bounds
  check_bounds and fast_measures where the tree has it), described, as the sandbox's TableFile "t";
- `locked`: the engine's locked connection on it, one thread;
- `policy`: the ProtectionPolicy of table "t" (privacy unit u, k = 5).

Timing (thread CPU time, so that other processes on a shared machine weigh less):
- `alternation`: (repeat, key) pairs, the keys in their order on even repeats and reversed on odd ones;
- `thread_time_into`: a `with` block whose thread CPU seconds are appended to a list;
- `alternated`: both at once for a callable per key; `engine_alternated`: for prepared plans on locked connections;
- `ns_per_row`: a median in nanoseconds per row; `medians`: the medians over rounds of some keys of their results.

Trees side by side:
- `run_trees`: one command per source tree and round, each in a fresh process with PYTHONPATH the tree (its own
  sandbox and products are measured), the trees' order reversed every other round; the JSON each printed last;
- `tree_options`: the command line's --trees, --rounds and --repeats;
- `per_tree`: the results of each key and tree, in the order of a table's rows; `loadavg`: /proc/loadavg.

What imports the project (products, sandbox) does so inside the function that needs it: a worker run under another
tree's PYTHONPATH measures that tree's packages, never this one's. A bench run as a module (`python -m bench.x`)
imports this as `bench.timing`; one run by path (`python bench/x.py`, as the workers are, under a PYTHONPATH whose
tree may have no bench/timing.py) as `timing`, from its own folder, the first entry of sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

K = TypeVar("K")


def loadavg() -> str:
    """/proc/loadavg as it reads (1, 5 and 15 minute load, running/total tasks, last pid)."""
    return Path("/proc/loadavg").read_text().strip()


def write_upload(
    path: Path,
    rows: int,
    column: str,
    name: str,
    *,
    unit: str = "'u' || (i // 4)",
    group: str = "'g' || (i % 20)",
    options: str = "FORMAT parquet",
) -> Path:
    """A Parquet file at `path` of `rows` rows `i`: `unit AS u, group AS g, column AS name`."""
    import duckdb

    with duckdb.connect() as connection:
        connection.execute(
            f"COPY (SELECT {unit} AS u, {group} AS g, {column} AS {name} FROM range({rows}) r(i)) "
            f"TO '{path}' ({options})"
        )
    return path


def stored_table(
    upload: Path, target: Path, roles: dict[str, str], bounds: dict[str, tuple[float, float]] | None = None
) -> tuple[Any, dict[str, Any], Any]:
    """(TableFile "t", its statistics, the stored table) of `upload` built into `target` as the build builds it;
    `bounds` (measure: (min, max)) are checked, applied by fast_measures where the tree has it, and described."""
    from products import storage
    from sandbox.service import TableFile

    stored = storage.write_table(upload, "parquet", upload.name, list(roles), target)
    if bounds is None:
        described = stored.describe(roles)
    else:
        from sandbox.policy import MeasureBounds

        measure_bounds = {name: MeasureBounds(min=low, max=high) for name, (low, high) in bounds.items()}
        storage.check_bounds(stored, measure_bounds)
        if hasattr(storage, "fast_measures"):
            stored = storage.fast_measures(stored, list(bounds), measure_bounds)
        described = stored.describe(roles, {name: (float(low), high) for name, (low, high) in bounds.items()})
    table = TableFile(name="t", path=stored.path, row_count=stored.row_count, statistics=described["statistics"])
    return table, described["statistics"], stored


def locked(table: Any, table_statistics: dict[str, Any]) -> Any:
    """The engine's locked connection on the TableFile `table` (as "t"), one thread."""
    from sandbox.engine import EngineLimits, open_locked
    from sandbox.service import files_of

    files = {name: Path(file) for name, file in files_of({"t": table})}
    return open_locked(files, EngineLimits(threads=1), table_statistics["statistics_free"])


def policy(dimensions: list[str], bounds: dict[str, tuple[float, float]] | None = None) -> Any:
    """The ProtectionPolicy of table "t": privacy unit u, these dimensions, the measures of `bounds`, k = 5."""
    from sandbox.policy import ProtectionPolicy

    table: dict[str, Any] = {"privacy_unit": "u", "dimensions": dimensions, "hidden": []}
    if bounds:
        table["measures"] = list(bounds)
        table["bounds"] = {name: {"min": low, "max": high} for name, (low, high) in bounds.items()}
    return ProtectionPolicy.model_validate({"min_group_size": 5, "tables": {"t": table}})


def alternation(keys: Sequence[K], repeats: int) -> Iterator[tuple[int, K]]:
    """(repeat, key) for every key, `repeats` times: the keys in their order on even repeats, reversed on odd ones
    (neither key always runs first, after the other's warm caches)."""
    for repeat in range(repeats):
        for key in keys if repeat % 2 == 0 else list(reversed(keys)):
            yield repeat, key


@contextmanager
def thread_time_into(times: list[float]) -> Iterator[None]:
    """Appends the thread CPU seconds the block took to `times` (nothing if it raises)."""
    started = time.thread_time()
    yield
    times.append(time.thread_time() - started)


def alternated(keys: Sequence[K], repeats: int, run: Callable[[K], object]) -> dict[K, list[float]]:
    """Thread CPU seconds of each `run(key)`, `repeats` times a key, in `alternation`."""
    timed: dict[K, list[float]] = {key: [] for key in keys}
    for _, key in alternation(keys, repeats):
        with thread_time_into(timed[key]):
            run(key)
    return timed


def engine_alternated(prepared: dict[str, tuple[Any, Any, Any]], repeats: int) -> dict[str, list[float]]:
    """Thread CPU seconds of engine.execute_plan(connection, plan, 100, table statistics) for each key of `prepared`
    ({key: (locked connection, plan, TableStatistics)}), `repeats` times a key, in `alternation`."""
    from sandbox import engine

    def run(key: str) -> None:
        connection, plan, table_statistics = prepared[key]
        engine.execute_plan(connection, plan, 100, table_statistics)

    return alternated(list(prepared), repeats, run)


def ns_per_row(seconds: list[float], rows: int) -> float:
    """The median of `seconds`, in nanoseconds per row."""
    return statistics.median(seconds) / rows * 1e9


def per_tree(runs: dict[str, list[Any]], keys: Iterable[Any]) -> Iterator[tuple[Any, str, list[Any]]]:
    """(key, tree, [the key's result in each of the tree's rounds]) for every key and, within it, every tree of
    `runs` (as `run_trees` returns it): the rows of a side-by-side table."""
    for key in keys:
        for tree, results in runs.items():
            yield key, tree, [result[key] for result in results]


def medians(results: Sequence[Any], *keys: Any) -> list[float]:
    """Per key, the median over `results` (one a round, e.g. a tree's in `run_trees`) of `float(result[key])`."""
    return [statistics.median(float(result[key]) for result in results) for key in keys]


def tree_options(parser: argparse.ArgumentParser, example: str, rounds: int, repeats: int = 9) -> None:
    """The options of a bench's side-by-side mode: --trees (this tree by default), --rounds and --repeats."""
    parser.add_argument("--trees", nargs="+", default=["."], help=f"source trees, e.g. {example}")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--repeats", type=int, default=repeats)


def run_trees(
    trees: Sequence[str],
    rounds: int,
    command: Sequence[str],
    cwd: Callable[[str], str] | None = None,
    loads: list[str] | None = None,
) -> dict[str, list[Any]]:
    """{tree: [the JSON of the last line `command` printed, a round each]}: each round runs `command` once per tree
    in a fresh process, PYTHONPATH the tree and working directory `cwd(tree)` (the tree by default), the trees in
    `alternation`. A failing process raises. `loads`, if given, gets the 1-minute load after each process."""
    runs: dict[str, list[Any]] = {tree: [] for tree in trees}
    for _, tree in alternation(trees, rounds):
        root = str(Path(tree).resolve())
        done = subprocess.run(
            list(command),
            env=dict(os.environ, PYTHONPATH=root),
            cwd=root if cwd is None else cwd(tree),
            capture_output=True,
            text=True,
            check=True,
        )
        runs[tree].append(json.loads(done.stdout.strip().splitlines()[-1]))
        if loads is not None:
            loads.append(loadavg().split()[0])
    return runs

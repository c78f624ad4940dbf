"""What tests/conftest.py's SQLite write check (`sqlite_writes_begin_immediate`, branch busy-writers) costs the
suite: the same test files run with the check on and off (MARKET_TEST_WRITE_CHECK=0), alternated, in one run.

Reports the pytest processes' CPU time (user + system, of the child and its children: the machine is shared,
so wall time says little) per side, and the ratio on/off of the medians. Prints the load average before and
after.

    .venv/bin/python -m bench.write_check_overhead --rounds 3 tests/console/test_admin_pages.py
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys


def _cpu_of(files: list[str], check: bool) -> float:
    env = dict(os.environ, MARKET_TEST_WRITE_CHECK="1" if check else "0")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({done.returncode}) with the check {'on' if check else 'off'}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("load before:", os.getloadavg())
    on: list[float] = []
    off: list[float] = []
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for check in order:
            (on if check else off).append(_cpu_of(args.files, check))
    print("load after:", os.getloadavg())
    print(f"CPU seconds, check on:  {', '.join(f'{t:.2f}' for t in on)}  median {statistics.median(on):.2f}")
    print(f"CPU seconds, check off: {', '.join(f'{t:.2f}' for t in off)}  median {statistics.median(off):.2f}")
    print(f"ratio on/off (medians): {statistics.median(on) / statistics.median(off):.3f}")


if __name__ == "__main__":
    main()

"""What taking and releasing a worker slot costs, with the queue's order against main's free-for-all.

An uncontended query passes admission twice: it takes a worker slot (under the queue lock, reading and
writing the queue's book) and releases it (reading the book to ring the next in turn). This times
`with admission.worker(org): pass` in one process, nobody waiting, against the same loop over main's
`sandbox/admission.py` (read with `git show main:sandbox/admission.py`), alternating the two sides
batch by batch.

    python -m bench.admission_overhead [--batches 30] [--per-batch 500] [--ref 1b27c9c]

Since `fair-queue` was merged, main's admission is this one: pass `--ref 1b27c9c` (main before the
merge, the free-for-all) to compare with the previous admission.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from bench.stats import mann_whitney
from sandbox.admission import Admission


def _main_module(ref: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{ref}:sandbox/admission.py"], check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("main_admission")
    module.__file__ = f"<{ref}:sandbox/admission.py>"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def _batch(enter: Any, count: int) -> float:
    """Microseconds per take-and-release, over `count` of them."""
    started = time.perf_counter()
    for _ in range(count):
        with enter():
            pass
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--per-batch", type=int, default=500)
    parser.add_argument("--ref", default="main", help="the git ref whose admission.py is the other side")
    args = parser.parse_args()
    old = _main_module(args.ref)
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as theirs_dir:
        limits: dict[str, Any] = {"workers": 2, "per_org": 1, "queue_size": 32, "queue_timeout": 5.0}
        ours = Admission(Path(ours_dir), **limits)
        theirs = old.Admission(Path(theirs_dir), **limits)
        sides = {
            "fair (this branch)": lambda: ours.worker("org-a"),
            f"{args.ref}": lambda: theirs.worker(),
        }
        samples: dict[str, list[float]] = {name: [] for name in sides}
        for batch in range(args.batches):
            names = list(sides) if batch % 2 == 0 else list(sides)[::-1]
            for name in names:
                samples[name].append(_batch(sides[name], args.per_batch))
    load = os.getloadavg()
    print(f"take and release one worker slot, nobody waiting: {args.batches} batches x {args.per_batch}, alternating")
    for name, values in samples.items():
        print(f"  {name:20} median {statistics.median(values):7.1f} µs   min {min(values):7.1f} µs")
    a, b = samples.values()
    test = mann_whitney(list(a), list(b))
    ratio = statistics.median(a) / statistics.median(b)
    print(f"  ratio fair/{args.ref}: {ratio:.2f}x; Mann-Whitney p = {test.p:.2g}")
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

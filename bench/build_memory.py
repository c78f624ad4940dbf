"""Where a build's memory goes: the peak resident memory of each build stage, in one process.

    .venv/bin/python -m bench.build_memory --size-gb 0.25
    .venv/bin/python -m bench.build_memory --size-gb 1 --memory-limit 256MB --threads 1

Generates the same person-level CSV as bench.upload_memory, then runs the build's pipeline in this process
(products.pipeline.run.process_table, then products.pipeline.assess.assess: the code a build runs) with the
bench's recipe and policy. At every stage the pipeline reports (the stages the console's progress page shows),
the process's peak resident memory (VmHWM) since the previous stage is read from /proc/self/status and the
peak is reset (`echo 5 > /proc/self/clear_refs`), so each stage's figure is its own high-water mark.
--memory-limit and --threads override the build's DuckDB settings (products.pipeline.run) for a comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.upload_memory import POLICY, RECIPE, ROW_BYTES, generate


def _status() -> tuple[float, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=0.25)
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for the build (default: the code's)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads for the build (default: the code's)")
    args = parser.parse_args()

    from products.pipeline import run
    from products.pipeline.assess import assess
    from products.pipeline.recipe import Recipe
    from products.storage import file_kind
    from sandbox.policy import ProtectionPolicy

    if args.memory_limit:
        run.MEMORY_LIMIT = args.memory_limit
    if args.threads:
        run.THREADS = args.threads
    recipe = Recipe.model_validate(RECIPE)
    policy = ProtectionPolicy.model_validate(POLICY)
    peaks: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="build-memory-") as tmp:
        work = Path(tmp)
        source = work / "payments.csv"
        generate(source, int(args.size_gb * 1e9 / ROW_BYTES))
        size_mib = source.stat().st_size / 2**20
        current = ["start"]
        started = time.perf_counter()
        _reset_peak()

        def progress(
            stage: str, table: str | None = None, rows_done: int | None = None, rows_total: int | None = None
        ) -> None:
            rss, peak = _status()
            peaks.append((current[0], peak, rss))
            current[0] = stage
            _reset_peak()

        out = work / "v1"
        table_run = run.process_table(
            "payments",
            source,
            file_kind(source.name),
            source.name,
            recipe.tables["payments"],
            b"bench secret bench secret bench!",
            out / "payments.parquet",
            work,
            progress,
        )
        described = [table_run.stored.describe({"person": "privacy_unit", "district": "dimension",
                                                "birth_decade": "dimension", "month": "dimension",
                                                "amount": "measure"})]  # fmt: skip
        assess(out, 1, described, policy, recipe, {"payments": table_run}, None, progress)
        progress("end")
        seconds = time.perf_counter() - started
    print(
        f"file {size_mib:,.0f} MiB, {table_run.rows_in:,} rows in, {table_run.stored.row_count:,} out, "
        f"{seconds:.1f} s; DuckDB memory_limit {run.MEMORY_LIMIT}, threads {run.THREADS}"
    )
    print(f"{'stage':<16} {'peak RSS MiB':>13} {'RSS at end MiB':>15}")
    for stage, peak, rss in peaks:
        print(f"{stage:<16} {peak:13,.0f} {rss:15,.0f}")
    print(f"{'whole build':<16} {max(p for _, p, _ in peaks):13,.0f}")


if __name__ == "__main__":
    main()

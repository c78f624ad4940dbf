"""Runs a table recipe over an uploaded file with DuckDB, streaming: memory stays bounded whatever the size.

One pass reads the upload and writes a staging Parquet file of cleaned values plus each row's
verdict; the product table, the quarantine file and the counts are then read from that file.
DuckDB spills to `workdir` when a step (dedupe) outgrows its memory limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb

from market.errors import Unprocessable
from products import storage
from products.pipeline.recipe import TableRecipe, checks, cleaned, hmac_pads, lit, q, transformed

MEMORY_LIMIT = os.environ.get("MARKET_BUILD_MEMORY_LIMIT", "256MB")
"""DuckDB's working memory for processing; larger steps spill to disk (docs/benchmarks.md, build memory)."""
THREADS = int(os.environ.get("MARKET_BUILD_THREADS", "2"))
"""DuckDB's threads for processing."""


class Progress(Protocol):
    """Told each stage a build reaches (products.pipeline.builds records it for the page to poll)."""

    def __call__(
        self, stage: str, table: str | None = None, rows_done: int | None = None, rows_total: int | None = None
    ) -> None: ...


def silent(stage: str, table: str | None = None, rows_done: int | None = None, rows_total: int | None = None) -> None:
    """The default Progress: tells nobody."""


@dataclass
class TableRun:
    """What processing one table produced: the stored table and every count the quality report needs."""

    stored: storage.StoredTable
    rows_in: int
    rejected: int
    quarantined: int
    duplicates: int
    rule_counts: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None
    dropped_columns: list[str] = field(default_factory=list)


def connect(workdir: Path) -> duckdb.DuckDBPyConnection:
    """The one way the pipeline opens DuckDB: bounded memory, spilling to `workdir`, no insertion order."""
    workdir.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        ":memory:",
        config={
            "threads": THREADS,
            "memory_limit": MEMORY_LIMIT,
            "temp_directory": str(workdir),
            "preserve_insertion_order": False,
        },
    )


def reader(source: Path, kind: str) -> str:
    """A DuckDB table function reading the upload; CSV columns all as text, so the recipe decides types."""
    if kind == "parquet":
        return f"read_parquet({lit(str(source))})"
    nulls = ", ".join(lit(n) for n in storage.NULL_STRINGS)
    return f"read_csv({lit(str(source))}, header = true, all_varchar = true, nullstr = [{nulls}])"


def _fail(error: duckdb.Error, filename: str, kind: str) -> Unprocessable:
    detail = storage.error_detail(error, filename)
    return Unprocessable("invalid_upload", file=filename, kind=kind.upper(), detail=detail)


def process_table(
    name: str,
    source: Path,
    kind: str,
    filename: str,
    recipe: TableRecipe,
    secret: bytes,
    destination: Path,
    workdir: Path,
    progress: Progress | None = None,
) -> TableRun:
    """Clean and desensitise `source` into the Parquet file `destination`, atomically."""
    say = progress or silent
    read = reader(source, kind)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = workdir / f"{name}.staging.parquet"
    partial = destination.with_suffix(".partial")
    try:
        say("reading", name)
        with connect(workdir / "spill") as connection:
            available = [str(r[0]) for r in connection.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()]
            used: set[str] = set()
            values: list[str] = []
            rules: list[tuple[str, str, str]] = []
            for index, (column_name, column) in enumerate(recipe.columns.items()):
                source_column = column.source or column_name
                if source_column not in available:
                    raise Unprocessable(
                        "recipe_column_unknown",
                        column=source_column,
                        table=name,
                        columns=", ".join(available),
                    )
                used.add(source_column)
                text, value = cleaned(column, source_column)
                values.append(f"{value} AS v{index}")
                rules.extend(
                    (cond, label, column.on_invalid) for cond, label in checks(column_name, column, text, value)
                )
            failed = ", ".join(f"CASE WHEN {c} THEN {lit(label)} END" for c, label, _ in rules) or "NULL"
            reject = " OR ".join(f"coalesce({c}, false)" for c, _, action in rules if action == "reject") or "false"
            quarantine = " OR ".join(f"coalesce({c}, false)" for c, _, action in rules if action == "quarantine")
            verdict = f"CASE WHEN {reject} THEN 'reject' WHEN {quarantine or 'false'} THEN 'quarantine' END"
            say("cleaning", name)
            connection.execute(
                f"COPY (SELECT {', '.join(values)}, {verdict} AS _verdict, "
                f"list_distinct([{failed}]) AS _failed FROM {read}) "
                f"TO {lit(str(staging))} (FORMAT parquet, COMPRESSION zstd)"
            )
            stage = f"read_parquet({lit(str(staging))})"
            totals = connection.execute(
                f"SELECT count(*), count_if(_verdict = 'reject'), count_if(_verdict = 'quarantine') FROM {stage}"
            ).fetchone()
            rows_in, rejected, quarantined = (int(x or 0) for x in (totals or (0, 0, 0)))
            rule_counts = {
                str(label): int(n)
                for label, n in connection.execute(
                    f"SELECT label, count(*) FROM (SELECT unnest(_failed) AS label FROM {stage}) GROUP BY label"
                ).fetchall()
            }
            pads = hmac_pads(secret)
            columns = list(recipe.columns.items())
            inner = (
                f"SELECT DISTINCT {', '.join(f'v{i}' for i in range(len(columns)))} FROM {stage} WHERE _verdict IS NULL"
                if recipe.dedupe
                else f"SELECT * FROM {stage} WHERE _verdict IS NULL"
            )
            outputs = ", ".join(f"{transformed(c, f'v{i}', pads)} AS {q(n)}" for i, (n, c) in enumerate(columns))
            say("desensitising", name, rows_done=0, rows_total=rows_in - rejected - quarantined)
            storage.write_product_parquet(connection, f"SELECT {outputs} FROM ({inner})", partial)
            os.replace(partial, destination)
            quarantine_file = None
            if quarantined:
                target = destination.parent / "quarantine" / f"{name}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                cleaned_columns = ", ".join(f"v{i} AS {q(n)}" for i, (n, _) in enumerate(columns))
                connection.execute(
                    f"COPY (SELECT {cleaned_columns}, _failed AS broken_rules FROM {stage} "
                    f"WHERE _verdict = 'quarantine') TO {lit(str(target))} (FORMAT parquet, COMPRESSION zstd)"
                )
                quarantine_file = f"quarantine/{target.name}"
            stored = storage.describe_parquet(connection, destination)
            say(
                "desensitising",
                name,
                rows_done=rows_in - rejected - quarantined,
                rows_total=rows_in - rejected - quarantined,
            )
    except duckdb.Error as error:
        partial.unlink(missing_ok=True)
        raise _fail(error, filename, kind) from error
    finally:
        staging.unlink(missing_ok=True)
    valid = rows_in - rejected - quarantined
    return TableRun(
        stored=stored,
        rows_in=rows_in,
        rejected=rejected,
        quarantined=quarantined,
        duplicates=valid - stored.row_count,
        rule_counts=rule_counts,
        quarantine_file=quarantine_file,
        dropped_columns=[c for c in available if c not in used],
    )


def stats(connection: duckdb.DuckDBPyConnection, path: Path) -> list[dict[str, Any]]:
    """Per column of a Parquet file: type, nulls, exact distinct count, min and max (as text); one scan.

    Distinct counts are exact (not HyperLogLog estimates): the quality report must agree with the data
    an operator can count for itself."""
    source = f"read_parquet({lit(str(path))})"
    schema = [(str(r[0]), str(r[1])) for r in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    parts = ["count(*)"]
    for name, _ in schema:
        column = q(name)
        parts += [
            f"count({column})",
            f"count(DISTINCT {column})",
            f"min({column})::VARCHAR",
            f"max({column})::VARCHAR",
        ]
    row = connection.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone() or ()
    total = int(row[0]) if row else 0
    out = []
    for index, (name, kind) in enumerate(schema):
        count, distinct, low, high = row[1 + 4 * index : 5 + 4 * index]
        out.append(
            {
                "name": name,
                "type": kind,
                "nulls": total - int(count),
                "distinct": int(distinct),
                "min": low,
                "max": high,
            }
        )
    return out

"""The reports attached to every new version: the irreversibility audit and the quality report."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from products.pipeline import audit
from products.pipeline.recipe import Recipe, lit, q
from products.pipeline.run import Progress, TableRun, connect, silent, stats
from sandbox.policy import ProtectionPolicy


def _compare(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    if previous is None:
        return None
    before = {c["name"]: c for c in previous.get("columns", [])}
    now = {c["name"]: c for c in current["columns"]}
    return {
        "previous_version": previous.get("version"),
        "rows_out_delta": current["rows_out"] - int(previous.get("rows_out", 0)),
        "columns_added": sorted(set(now) - set(before)),
        "columns_removed": sorted(set(before) - set(now)),
        "nulls_delta": {n: c["nulls"] - before[n]["nulls"] for n, c in now.items() if n in before},
        "distinct_delta": {n: c["distinct"] - before[n]["distinct"] for n, c in now.items() if n in before},
    }


def assess(
    version_dir: Path,
    number: int,
    tables: list[dict[str, Any]],
    policy: ProtectionPolicy,
    recipe: Recipe | None,
    runs: dict[str, TableRun],
    previous_quality: dict[str, Any] | None,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(audit report, quality report) for a version's stored tables."""
    findings: list[dict[str, Any]] = []
    k_reports: dict[str, Any] = {}
    quality_tables: dict[str, Any] = {}
    previous_tables = (previous_quality or {}).get("tables", {})
    say = progress or silent
    with tempfile.TemporaryDirectory(dir=version_dir) as workdir, connect(Path(workdir)) as connection:
        for table in tables:
            name = table["name"]
            path = version_dir / table["file"]
            say("statistics", name, rows_total=int(table["row_count"]))
            columns = stats(connection, path)
            unit = policy.tables[name].privacy_unit
            held = held_by_k(connection, path, unit, policy.min_group_size, table["columns"])
            columns = [{**c, **({"held_by_k": held[c["name"]]} if c["name"] in held else {})} for c in columns]
            say("audit", name, rows_total=int(table["row_count"]))
            findings.extend(audit.identifier_findings(connection, name, path, columns))
            quasi = recipe.tables[name].quasi_identifiers if recipe and name in recipe.tables else []
            report, k_findings = audit.k_anonymity(
                connection, name, path, quasi, policy.tables[name].privacy_unit, policy.min_group_size
            )
            k_reports[name] = report
            findings.extend(k_findings)
            run = runs.get(name)
            rows_out = int(table["row_count"])
            roles = {c["name"]: c["role"] for c in table["columns"]}
            current = {
                "version": number,
                "rows_in": run.rows_in if run else rows_out,
                "rejected": run.rejected if run else 0,
                "quarantined": run.quarantined if run else 0,
                "duplicates_removed": run.duplicates if run else 0,
                "rows_out": rows_out,
                "broken_rules": run.rule_counts if run else {},
                "dropped_columns": run.dropped_columns if run else [],
                "quarantine_file": run.quarantine_file if run else None,
                "columns": [{**c, "role": roles.get(c["name"], "hidden")} for c in columns],
            }
            prior = previous_tables.get(name)
            current["change"] = _compare(
                current, {**prior, "version": previous_quality.get("version")} if prior and previous_quality else None
            )
            quality_tables[name] = current
    blocking = [f for f in findings if f["blocking"]]
    audit_report = {
        "findings": findings,
        "k_anonymity": k_reports,
        "blocking_findings": len(blocking),
        "clean": not blocking,
    }
    return audit_report, {"version": number, "tables": quality_tables}


def held_by_k(
    connection: Any, path: Path, unit: str, k: int, columns: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per dimension and measure: statistics over only the values at least k distinct units hold.

    A buyer-facing range, distinct count or null share computed over every value would describe
    values that one unit alone holds (the earliest date, a rare district, one business's missing
    revenue). These count only values held by k or more units, so they say nothing about a smaller
    group, exactly as a query answer would not (DOMAIN.md rule 3).
    """
    source = f"read_parquet({lit(str(path))})"
    out: dict[str, dict[str, Any]] = {}
    for column in columns:
        if column["role"] not in ("dimension", "measure"):
            continue
        name = q(column["name"])
        if str(column.get("type", "")).upper() == "INTERVAL":
            # Equal intervals can differ (`1 month` = `30 days` = `720 hours`), and GROUP BY keeps the FIRST row's
            # spelling of equal values, so the range showed a hidden unit's spelling when its row came first (red
            # team red17). DuckDB's normalized form is one spelling per equality class, whatever the rows hold.
            name = f"normalized_interval({name})"
        elif str(column.get("type", "")).upper() in ("FLOAT", "DOUBLE"):
            # Likewise -0.0 = 0.0 and -nan = nan: one spelling each (red17).
            kind = str(column["type"]).upper()
            name = (
                f"CASE WHEN isnan({name}) THEN CAST('nan' AS {kind}) "
                f"WHEN {name} = 0 THEN CAST(0 AS {kind}) ELSE {name} END"
            )
        row = connection.execute(
            f"SELECT count(*) FILTER (WHERE v IS NOT NULL), min(v)::VARCHAR, max(v)::VARCHAR, "
            f"coalesce(max(units) FILTER (WHERE v IS NULL), 0) "
            f"FROM (SELECT {name} AS v, count(DISTINCT {q(unit)}) AS units FROM {source} GROUP BY 1) "
            f"WHERE units >= {int(k)} OR v IS NULL"
        ).fetchone()
        distinct, low, high, null_units = row if row else (0, None, None, 0)
        out[column["name"]] = {
            "distinct": int(distinct),
            "min": low,
            "max": high,
            "nulls_held_by_k": int(null_units) >= k,
        }
    return out


def _canonical(kind: Any, text: str | None) -> str | None:
    """One spelling per equal value of a range end stored by a version built before red17 (held_by_k now writes
    them so): GROUP BY kept the first row's spelling of equal values, which could be a hidden unit's (`-0.0` for
    0.0, `-nan`, `1 month` or `720:00:00` for 30 days)."""
    if text is None:
        return None
    kind = str(kind or "").upper()
    if kind in ("FLOAT", "DOUBLE"):
        return {"-0.0": "0.0", "-nan": "nan"}.get(text, text)
    if kind == "INTERVAL":
        return _normalized_interval(text)
    return text


@functools.lru_cache(maxsize=1024)
def _normalized_interval(text: str) -> str:
    """DuckDB's one spelling of a stored interval (remembered: the catalogue's detail page reads it per request)."""
    import duckdb

    with duckdb.connect() as connection:
        row = connection.execute("SELECT normalized_interval(CAST(? AS INTERVAL))::VARCHAR", [text]).fetchone()
    return str(row[0]) if row and row[0] is not None else text


def _at_least_k(count: int, k: int) -> int | None:
    """A count of rows shown to buyers only when it is zero or covers at least k rows."""
    return count if count == 0 or count >= k else None


def buyer_summary(quality: dict[str, Any] | None, k: int) -> dict[str, Any] | None:
    """The quality summary buyers see, built only from values at least k units hold (held_by_k).

    Ranges and distinct counts are of dimensions only, over values k or more units share; a measure's
    min and max are single rows' values, and never shown. A null share is shown when no nulls exist or
    when k or more units have them. Versions built before these statistics existed show none.
    """
    if not quality:
        return None
    tables = {}
    for name, table in quality.get("tables", {}).items():
        rows = table["rows_out"]
        columns = []
        for c in table["columns"]:
            if c["role"] == "hidden":
                continue
            safe = c.get("held_by_k")
            dimension = safe is not None and c["role"] == "dimension"
            null_share_shown = c["nulls"] == 0 or (safe is not None and safe["nulls_held_by_k"])
            columns.append(
                {
                    "name": c["name"],
                    "role": c["role"],
                    "null_share": round(c["nulls"] / rows, 4) if rows and null_share_shown else None,
                    "distinct": safe["distinct"] if dimension else None,
                    "range": [_canonical(c.get("type"), safe["min"]), _canonical(c.get("type"), safe["max"])]
                    if dimension
                    else None,
                }
            )
        tables[name] = {
            "rows": rows,
            "rejected": _at_least_k(table["rejected"], k),
            "quarantined": _at_least_k(table["quarantined"], k),
            "duplicates_removed": _at_least_k(table["duplicates_removed"], k),
            "columns": columns,
        }
    return {"version": quality.get("version"), "tables": tables, "held_by_at_least": k}

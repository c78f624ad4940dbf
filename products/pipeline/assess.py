"""The reports attached to every new version: the irreversibility audit and the quality report."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from products.pipeline import audit
from products.pipeline.recipe import Recipe
from products.pipeline.run import TableRun, connect, stats
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
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(audit report, quality report) for a version's stored tables."""
    findings: list[dict[str, Any]] = []
    k_reports: dict[str, Any] = {}
    quality_tables: dict[str, Any] = {}
    previous_tables = (previous_quality or {}).get("tables", {})
    with tempfile.TemporaryDirectory(dir=version_dir) as workdir, connect(Path(workdir)) as connection:
        for table in tables:
            name = table["name"]
            path = version_dir / table["file"]
            columns = stats(connection, path)
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


def buyer_summary(quality: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quality summary buyers see: counts, nulls and distinct counts, and ranges of dimensions only.

    Minimum and maximum of a measure or identifier are single rows' values, which buyers may never see.
    """
    if not quality:
        return None
    tables = {}
    for name, table in quality.get("tables", {}).items():
        tables[name] = {
            "rows": table["rows_out"],
            "rejected": table["rejected"],
            "quarantined": table["quarantined"],
            "duplicates_removed": table["duplicates_removed"],
            "columns": [
                {
                    "name": c["name"],
                    "role": c["role"],
                    "null_share": round(c["nulls"] / table["rows_out"], 4) if table["rows_out"] else 0.0,
                    "distinct": c["distinct"] if c["role"] == "dimension" else None,
                    "range": [c["min"], c["max"]] if c["role"] == "dimension" else None,
                }
                for c in table["columns"]
                if c["role"] != "hidden"
            ],
        }
    return {"version": quality.get("version"), "tables": tables}

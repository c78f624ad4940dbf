"""The irreversibility audit (不可回溯) every new version gets, before anyone can submit it.

Two checks, per table:
- direct identifiers: a column whose values still look like ID-card numbers, phone numbers, e-mail
  addresses or personal names (pattern on a sample, plus cardinality), which should have been dropped,
  pseudonymised, generalised or masked by the recipe;
- k-anonymity: every combination of the declared quasi-identifiers covers at least `min_group_size`
  distinct privacy units.

Findings on values block submission until fixed by a new version or resolved with a justification the
regulator reads in review. A column name alone (e.g. `name`) only raises an advisory finding.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb

from products.pipeline.recipe import lit, q

SAMPLE_ROWS = 20_000
MATCH_SHARE = 0.5
"""Share of sampled non-null values that must match a pattern for the column to be flagged."""
NAME_MIN_DISTINCT = 50
"""Personal-name patterns also match district or company names; names of people have many distinct values."""

PATTERNS: dict[str, str] = {
    "id_card_number": r"[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dXx]",
    "phone_number": r"(\+?86[- ]?)?1[3-9]\d{9}|\+\d{7,15}|\(?\d{3}\)?[- .]\d{3}[- .]\d{4}",
    "email": r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}",
    "personal_name": r"[\x{4e00}-\x{9fff}]{2,4}|[A-Z][a-z]+( [A-Z]\.?)?( [A-Z][a-z]+){1,2}",
}
HINTS = re.compile(
    r"(^|_)(name|full_?name|surname|first_?name|last_?name|phone|mobile|email|e_mail|id_?card|"
    r"id_?number|passport|ssn|address)($|_)|姓名|电话|手机|身份证|邮箱|住址"
)


def _finding(table: str, column: str, kind: str, blocking: bool, detail: str, **evidence: Any) -> dict[str, Any]:
    return {
        "id": f"{table}.{column}.{kind}",
        "table": table,
        "column": column,
        "kind": kind,
        "blocking": blocking,
        "detail": detail,
        "evidence": evidence,
        "resolution": None,
    }


def identifier_findings(
    connection: duckdb.DuckDBPyConnection, table: str, path: Path, columns: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Columns that still look like direct identifiers, by pattern on a sample and by cardinality."""
    findings: list[dict[str, Any]] = []
    texts = [c for c in columns if c["type"] == "VARCHAR"]
    if texts:
        cases = ", ".join(
            f"count_if(regexp_full_match({q(c['name'])}, {lit(p)})) AS {q(c['name'] + '|' + kind)}"
            for c in texts
            for kind, p in PATTERNS.items()
        )
        nonnull = ", ".join(f"count({q(c['name'])}) AS {q(c['name'] + '|n')}" for c in texts)
        row = connection.execute(
            f"SELECT {nonnull}, {cases} FROM read_parquet({lit(str(path))}) "
            f"USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (7)"
        ).fetchone()
        names = [d[0] for d in connection.description or []]
        counts = dict(zip(names, row or (), strict=True))
        for column in texts:
            sampled = int(counts.get(column["name"] + "|n") or 0)
            if not sampled:
                continue
            for kind in PATTERNS:
                share = int(counts[column["name"] + "|" + kind] or 0) / sampled
                if share < MATCH_SHARE:
                    continue
                if kind == "personal_name" and column["distinct"] < NAME_MIN_DISTINCT:
                    continue
                findings.append(
                    _finding(
                        table,
                        column["name"],
                        kind,
                        True,
                        f"{share:.0%} of sampled values look like a {kind.replace('_', ' ')} "
                        f"({column['distinct']} distinct); drop, pseudonymise, generalise or mask it in the recipe.",
                        match_share=round(share, 4),
                        distinct=column["distinct"],
                    )
                )
                break
    flagged = {f["column"] for f in findings}
    for column in columns:
        if column["name"] not in flagged and HINTS.search(column["name"].lower()) and column["distinct"] >= 2:
            findings.append(
                _finding(
                    table,
                    column["name"],
                    "identifier_name",
                    False,
                    "The column's name suggests a direct identifier; check that its values are desensitised.",
                    distinct=column["distinct"],
                )
            )
    return findings


def k_anonymity(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    quasi_identifiers: list[str],
    privacy_unit: str,
    min_group_size: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Whether every combination of the quasi-identifiers covers at least k distinct privacy units."""
    if not quasi_identifiers:
        return {"quasi_identifiers": [], "checked": False}, []
    group = ", ".join(q(c) for c in quasi_identifiers)
    row = connection.execute(
        f"SELECT count(*), coalesce(count_if(units < {min_group_size}), 0), "
        f"coalesce(sum(rows) FILTER (units < {min_group_size}), 0), coalesce(min(units), 0) "
        f"FROM (SELECT {group}, count(DISTINCT {q(privacy_unit)}) AS units, count(*) AS rows "
        f"FROM read_parquet({lit(str(path))}) GROUP BY {group})"
    ).fetchone()
    groups, small, rows_in_small, smallest = (int(x or 0) for x in (row or (0, 0, 0, 0)))
    report = {
        "quasi_identifiers": quasi_identifiers,
        "checked": True,
        "min_group_size": min_group_size,
        "groups": groups,
        "groups_below_k": small,
        "rows_in_small_groups": rows_in_small,
        "smallest_group_units": smallest,
    }
    findings = []
    if small:
        findings.append(
            _finding(
                table,
                ",".join(quasi_identifiers),
                "k_anonymity",
                True,
                f"{small} of {groups} combinations of {', '.join(quasi_identifiers)} cover fewer than "
                f"{min_group_size} distinct {privacy_unit} ({rows_in_small} rows); generalise them more coarsely.",
                groups=groups,
                groups_below_k=small,
                rows_in_small_groups=rows_in_small,
            )
        )
    return report, findings

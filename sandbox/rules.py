"""The allowlists the sandbox enforces, named twice: as sqlglot node types and as DuckDB function names.

The first validator (sandbox.validator) walks sqlglot's tree; the second opinion (sandbox.crosscheck)
walks DuckDB's own parse of the statement that will run. Both read their allowlists from here, so
the two can only disagree by refusing.
"""

from __future__ import annotations

from sqlglot import exp

# -- aggregates --------------------------------------------------------------------------------------

AGGREGATE_CLASSES: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Stddev: "stddev",
    exp.StddevSamp: "stddev_samp",
    exp.StddevPop: "stddev_pop",
    exp.Variance: "variance",
    exp.VariancePop: "var_pop",
}
"""sqlglot's aggregate node types and the policy name each stands for."""

DUCKDB_AGGREGATES: dict[str, str] = {
    "count": "count",
    "count_star": "count",
    "sum": "sum",
    "avg": "avg",
    "mean": "avg",
    "stddev": "stddev",
    "stddev_samp": "stddev_samp",
    "stddev_pop": "stddev_pop",
    "variance": "variance",
    "var_samp": "variance",
    "var_pop": "var_pop",
}
"""DuckDB's aggregate function names and the policy name each stands for."""

ROW_REVEALING_AGGREGATES = frozenset(
    {
        "min",
        "max",
        "median",
        "mode",
        "quantile",
        "quantile_cont",
        "quantile_disc",
        "percentile_cont",
        "percentile_disc",
        "any_value",
        "first",
        "last",
        "arg_max",
        "arg_min",
        "argmax",
        "argmin",
        "arg_max_null",
        "arg_min_null",
        "max_by",
        "min_by",
        "list",
        "array_agg",
        "string_agg",
        "group_concat",
        "listagg",
        "histogram",
        "histogram_exact",
        "approx_top_k",
        "approx_quantile",
        "reservoir_quantile",
        "bit_and",
        "bit_or",
        "bit_xor",
        "bitstring_agg",
        "bool_and",
        "bool_or",
        "product",
        "entropy",
        "kurtosis",
        "kurtosis_pop",
        "skewness",
        "mad",
        "fsum",
        "sumkahan",
        "kahan_sum",
        "favg",
        "arbitrary",
        "approx_count_distinct",
        "corr",
        "covar_pop",
        "covar_samp",
        "regr_slope",
        "regr_intercept",
        "weighted_avg",
        "sem",
        "geomean",
        "geometric_mean",
    }
)
"""Aggregates refused by name: each can return one row's value, or a near-exact function of it."""

# -- scalar functions --------------------------------------------------------------------------------

SCALAR_CLASSES: tuple[type[exp.Expr], ...] = (
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Sqrt,
    exp.Ln,
    exp.Log,
    exp.Pow,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Substring,
    exp.Trim,
    exp.Concat,
    exp.DPipe,
    exp.Left,
    exp.Right,
    exp.Replace,
    exp.DateTrunc,
    exp.TimestampTrunc,
    exp.Extract,
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.DayOfWeek,
    exp.Coalesce,
    exp.Nullif,
    exp.Greatest,
    exp.Least,
    exp.Cast,
    exp.TryCast,
    exp.If,
    exp.Case,
)
"""Scalar functions a buyer may use outside aggregates: on dimensions, and over aggregates."""

SCALAR_ALLOWED_TEXT = (
    "abs, round, floor, ceil, sqrt, ln, log, pow, lower, upper, length, substring, trim, concat, ||, left, right, "
    "replace, date_trunc, extract, year, month, day, quarter, dayofweek, coalesce, nullif, greatest, least, "
    "cast, try_cast, if, case"
)

DUCKDB_SCALARS = frozenset(
    {
        "abs",
        "round",
        "floor",
        "ceil",
        "ceiling",
        "sqrt",
        "ln",
        "log",
        "log10",
        "log2",
        "pow",
        "power",
        "lower",
        "upper",
        "lcase",
        "ucase",
        "length",
        "substring",
        "substr",
        "trim",
        "ltrim",
        "rtrim",
        "concat",
        "||",
        "left",
        "right",
        "replace",
        "date_trunc",
        "datetrunc",
        "date_part",
        "datepart",
        "extract",
        "year",
        "month",
        "day",
        "quarter",
        "dayofweek",
        "greatest",
        "least",
        "nullif",
        "coalesce",
        "if",
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "~~",
        "!~~",
        "~~*",
        "!~~*",
        "trunc",
        "to_days",
        "to_months",
        "to_years",
        "to_hours",
        "to_minutes",
        "to_seconds",
    }
)
"""DuckDB's names for the same scalar functions and operators, as its parser spells them."""


# -- casts -------------------------------------------------------------------------------------------

CAST_TYPES = frozenset(
    {
        exp.DataType.Type.BOOLEAN,
        exp.DataType.Type.TINYINT,
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.DECIMAL,
        exp.DataType.Type.VARCHAR,
        exp.DataType.Type.TEXT,
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPNTZ,  # what sqlglot reads DuckDB's TIMESTAMP as
    }
)
"""Cast targets. No HUGEINT or 38-digit DECIMAL: sums of these types could overflow, an error oracle."""

NUMERIC_CAST_TYPES = frozenset(
    {
        exp.DataType.Type.TINYINT,
        exp.DataType.Type.SMALLINT,
        exp.DataType.Type.INT,
        exp.DataType.Type.BIGINT,
        exp.DataType.Type.FLOAT,
        exp.DataType.Type.DOUBLE,
        exp.DataType.Type.DECIMAL,
    }
)

DUCKDB_CAST_TYPES = frozenset(
    {
        "BOOLEAN",
        "BOOL",
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "INT",
        "BIGINT",
        "FLOAT",
        "REAL",
        "DOUBLE",
        "DECIMAL",
        "NUMERIC",
        "VARCHAR",
        "TEXT",
        "STRING",
        "DATE",
        "TIMESTAMP",
        "INTERVAL",
    }
)

MAX_DECIMAL_PRECISION = 18
MAX_SQL_CHARS = 20_000
MAX_NESTING = 16
"""Deepest parenthesis nesting accepted: sqlglot's recursive parser needs ~25 frames a level."""
MAX_TREE_DEPTH = 200
"""Deepest syntax tree accepted (e.g. a chain of operators), checked right after parsing."""
MAX_LIMIT = 1_000_000
RESERVED_PREFIX = "__"
"""Names the sandbox gives its own columns; a buyer's identifiers may not start with it."""

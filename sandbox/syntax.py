"""Parsing buyer SQL with sqlglot, and the syntax-level helpers both the checker and the rewrite use.

`parse_one_select` turns text into exactly one SELECT tree (or refuses it: length, nesting depth,
statement count and kind); `guard` makes a row-level expression unable to raise on a value.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from market.i18n import Msg
from sandbox import rules
from sandbox.errors import QueryRefused

DIALECT = "duckdb"
PARSER_CLASS = re.compile(r"<class '(?:\w+\.)*(\w+)'>")
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its fallback-to-Command warnings are ours to report


ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod)
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
STRUCTURAL = (
    exp.Paren,
    exp.Literal,
    exp.RawString,
    exp.Null,
    exp.Boolean,
    exp.Neg,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Interval,
    *ARITHMETIC,
    *COMPARISONS,
)
SELECT_ARGS = frozenset(
    {"expressions", "from", "from_", "joins", "where", "group", "having", "order", "limit", "offset"}
)
SUBQUERY_HINT = (
    "write one SELECT over the product's tables (joined if needed) with WHERE, GROUP BY and HAVING; "
    "subqueries and CTEs are refused because they could build groups the threshold does not see."
)
REFUSED_NODES: dict[type[exp.Expr], tuple[str, str]] = {
    exp.Window: ("A window function (OVER ...)", "aggregate with GROUP BY instead."),
    exp.Subquery: ("A subquery", SUBQUERY_HINT),
    exp.Select: ("A subquery", SUBQUERY_HINT),
    exp.Exists: ("EXISTS (subquery)", SUBQUERY_HINT),
    exp.With: ("A WITH clause (CTE)", SUBQUERY_HINT),
    exp.Union: ("UNION", "run each SELECT as its own query."),
    exp.Intersect: ("INTERSECT", "run each SELECT as its own query."),
    exp.Except: ("EXCEPT", "run each SELECT as its own query."),
    exp.Rollup: ("ROLLUP", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Cube: ("CUBE", "GROUP BY the dimensions and run one query per grouping level."),
    exp.GroupingSets: ("GROUPING SETS", "GROUP BY the dimensions and run one query per grouping level."),
    exp.Filter: ("An aggregate FILTER clause", "filter rows with WHERE, or GROUP BY the dimension."),
    exp.TableSample: ("TABLESAMPLE / USING SAMPLE", "query the whole table and filter with WHERE."),
    exp.Placeholder: ("A query parameter", "write the value in the SQL."),
    exp.Parameter: ("A query parameter", "write the value in the SQL."),
    exp.Qualify: ("QUALIFY", "filter groups with HAVING."),
    exp.Lateral: ("LATERAL", "join the product's tables directly."),
    exp.Unnest: ("UNNEST", "query the product's tables only."),
    exp.Pivot: ("PIVOT", "GROUP BY the dimension instead."),
    exp.Lambda: ("A lambda", "use the allowed scalar functions."),
    exp.Collate: ("COLLATE", "compare with lower() or upper() instead."),
    exp.Star: ("*", "name dimensions and aggregate measures; * is allowed only in count(*)."),
}


def refuse_construct(construct: str, instead: str) -> QueryRefused:
    return QueryRefused("disallowed_construct", construct=construct, instead=instead)


REFUSED_TYPES: tuple[type[exp.Expr], ...] = tuple(REFUSED_NODES)
"""The refused node types as one tuple: a single isinstance() test before looking up which one."""


class TypeTest:
    """isinstance(node, types), answered once per node class and then from a dict.

    The walks ask the same few questions of every node; for a node class the answer never changes.
    """

    def __init__(self, *types: type[exp.Expr]) -> None:
        self.types = types
        self._answers: dict[type, bool] = {}

    def __call__(self, node: object) -> bool:
        kind = type(node)
        answer = self._answers.get(kind)
        if answer is None:
            answer = self._answers[kind] = issubclass(kind, self.types)
        return answer


is_refused_type = TypeTest(*REFUSED_TYPES)
is_allowed_type = TypeTest(*STRUCTURAL, *rules.SCALAR_CLASSES)
"""Node kinds a row-level or output expression may contain (besides columns, aggregates and casts)."""

_CLASS_NAMES: dict[type[exp.Expr], str] = {}
"""Lower-case SQL name of each node type (sql_name() depends on the class only), filled on first use."""


def function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    kind = type(node)
    name = _CLASS_NAMES.get(kind)
    if name is None:
        name = _CLASS_NAMES[kind] = (
            str(node.sql_name()).lower() if isinstance(node, exp.Func) else str(node.key).lower()
        )
    return name


_AGGREGATE_LIKE: dict[type[exp.Expr], bool] = {}


def is_aggregate_like(node: exp.Expr) -> bool:
    kind = type(node)
    answer = _AGGREGATE_LIKE.get(kind)
    if answer is None:
        answer = isinstance(node, exp.AggFunc) or (
            isinstance(node, exp.Func) and function_name(node) in rules.ROW_REVEALING_AGGREGATES
        )
        if not isinstance(node, exp.Anonymous):  # an anonymous function's answer depends on its name
            _AGGREGATE_LIKE[kind] = answer
    return answer


def contains_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) or node.find(exp.Column) is not None


def literal_int(node: exp.Expr | None, clause: str) -> int | None:
    if node is None:
        return None
    if isinstance(node, exp.Limit):
        options = node.args.get("limit_options")
        if node.args.get("expressions") or (
            options is not None and (options.args.get("percent") or options.args.get("with_ties"))
        ):
            raise refuse_construct(f"That {clause} form", f"write {clause} n with a whole number of groups.")
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        number = int(value.this)
        if number > rules.MAX_LIMIT:
            raise refuse_construct(f"{clause} {number}", f"use a {clause} of at most {rules.MAX_LIMIT}.")
        return number
    raise refuse_construct(f"A non-literal {clause}", f"write {clause} as a whole number.")


_PARENTHESES = re.compile(r"[()]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@functools.cache
def _duckdb_dialect() -> Dialect:
    """One Dialect instance for every parse (sqlglot.parse would build a new one per call)."""
    return Dialect.get_or_raise(DIALECT)


_parsers = threading.local()


def _parse(sql: str) -> list[exp.Expr | None]:
    """`Dialect.parse(sql)`, with one tokenizer and one parser per thread instead of two new objects per call
    (branch val13). Both reset all their state at the start of every call (TokenizerCore.tokenize and
    Parser._parse call reset()), so a reused one parses exactly as a new one; a failed parse leaves nothing
    behind that the next call reads."""
    pair: Any = getattr(_parsers, "duckdb", None)
    if pair is None:
        dialect = _duckdb_dialect()
        pair = _parsers.duckdb = (dialect.tokenizer(), dialect.parser())
    tokenizer, parser = pair
    return list(parser.parse(tokenizer.tokenize(sql), sql))


def parse_one_select(sql: str) -> exp.Select:
    """Parse `sql` as exactly one SELECT in DuckDB's dialect, or refuse it."""
    if len(sql) > rules.MAX_SQL_CHARS:
        raise QueryRefused("sql_too_long", length=len(sql), limit=rules.MAX_SQL_CHARS)
    depth = deepest = 0
    # Nesting is at most the number of "(": only a text with more than the limit needs the scan.
    for match in _PARENTHESES.finditer(sql) if sql.count("(") > rules.MAX_NESTING else ():
        if match.group() == "(":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    if deepest > rules.MAX_NESTING:
        raise QueryRefused("sql_too_complex", depth=deepest, limit=rules.MAX_NESTING)
    if "\x00" in sql:
        raise QueryRefused("sql_syntax", detail="the text contains a NUL character")
    if _SURROGATE.search(sql):  # red21: DuckDB's binding raised TypeError on one (HTTP refuses such a body first)
        raise QueryRefused("sql_syntax", detail="the text contains an unpaired surrogate (U+D800 to U+DFFF)")
    try:
        statements = [s for s in _parse(sql) if s is not None]
    except (ParseError, TokenError) as error:
        # sqlglot names its own classes ("<class 'sqlglot.expressions.core.Paren'>"): keep the bare name.
        detail = PARSER_CLASS.sub(r"\1", str(error).splitlines()[0])[:200].rstrip(". ")
        raise QueryRefused("sql_syntax", detail=detail) from error
    if len(statements) != 1:
        raise QueryRefused("multiple_statements", count=len(statements))
    statement = statements[0]
    for refused, (construct, instead) in REFUSED_NODES.items():
        if isinstance(statement, refused) and refused is not exp.Select:
            raise refuse_construct(construct, instead)
    if not isinstance(statement, exp.Select):
        kind = statement.key.upper() if not isinstance(statement, exp.Command) else str(statement.this).upper()
        raise QueryRefused("not_a_select", kind=kind)
    deepest = 0
    level: list[exp.Expr] = [statement]
    while level:  # one tree level at a time
        deepest += 1
        below: list[exp.Expr] = []
        for node in level:
            node.comments = None  # comments never reach the statements that run
            node._meta = None  # token positions: unused after parsing, and each copy of the tree would copy them
            for value in node.args.values():
                if isinstance(value, exp.Expr):
                    below.append(value)
                elif isinstance(value, list):
                    below.extend(v for v in value if isinstance(v, exp.Expr))
        level = below
    if deepest > rules.MAX_TREE_DEPTH:
        raise QueryRefused("sql_too_complex", depth=deepest, limit=rules.MAX_TREE_DEPTH)
    return statement


NEVER_RAISE: tuple[type[exp.Expr], ...] = (
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Quarter,
    exp.DayOfWeek,
    exp.Extract,
    exp.Lower,
    exp.Upper,
    exp.Length,
    exp.Trim,
    exp.Concat,
    exp.DPipe,
    exp.Replace,
    exp.Coalesce,
    exp.Nullif,
)
"""Functions DuckDB evaluates without raising for any input value (NULL, NaN or infinity instead).
Checked against DuckDB's edge values (infinite dates, extreme integers)."""

NUMERIC: tuple[type[exp.Expr], ...] = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Abs, exp.Round)
NUMERIC += (exp.Floor, exp.Ceil, exp.Sqrt, exp.Ln, exp.Log, exp.Pow)
"""Row-level arithmetic, computed in DOUBLE when it reads data: DOUBLE arithmetic never raises."""
_numeric = TypeTest(*NUMERIC)
_NUMERIC_OPERANDS = ("this", "expression")
_POSITIONS = {exp.Substring: ("start", "length"), exp.Left: ("expression",), exp.Right: ("expression",)}
_DECIMALS = {exp.Round: ("decimals",)}
MAX_POSITION = 2**31
"""Largest magnitude of a constant position or length (DuckDB raises past 2^32)."""
_DOUBLE = exp.DataType.build("DOUBLE")
_guarded_kind = TypeTest(*_POSITIONS, *_DECIMALS, exp.IntDiv, *NUMERIC, exp.DateTrunc, exp.TimestampTrunc, exp.Extract)
"""The node kinds _guard changes or checks once they read data; every other kind that reads data stays as it
is, so one test per node replaces the six below (the OR chain's 1,079 nodes: 1.5 ms of guard)."""


def _is_double(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.TryCast):
        to = node.args.get("to")
        return isinstance(to, exp.DataType) and to.this == exp.DataType.Type.DOUBLE
    return _numeric(node)


def _constant_position(node: exp.Expr | None, function: str) -> None:
    """A position or length must be a whole-number literal within +-2^31, never computed from data."""
    if node is None:
        return
    value = node.this if isinstance(node, exp.Neg) else node
    if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
        raise refuse_construct(
            f"A position or length of {function}() that is not a whole-number constant",
            f"write the position as a number, e.g. {function}(column, 1, 3).",
        )
    if int(value.this) > MAX_POSITION:
        raise refuse_construct(
            f"A position or length of {function}() beyond {MAX_POSITION}", "use a smaller position or length."
        )


TRUNC_UNITS = frozenset({
    "millennium", "millenniums", "millennia", "mil", "mils", "century", "centuries", "c", "cent", "decade",
    "decades", "dec", "decs", "year", "years", "y", "yr", "yrs", "isoyear", "quarter", "quarters", "month",
    "months", "mon", "mons", "week", "weeks", "w", "day", "days", "d", "hour", "hours", "h", "hr", "hrs",
    "minute", "minutes", "m", "min", "mins", "second", "seconds", "s", "sec", "secs", "millisecond",
    "milliseconds", "ms", "msec", "msecs", "microsecond", "microseconds", "us", "usec", "usecs",
})  # fmt: skip
"""The units date_trunc() may take on data: each truncates every DATE, TIMESTAMP and TIMESTAMP WITH TIME ZONE a version
may hold (products.storage.DATE_RANGE) without an error, in any time zone (tests/sandbox/test_lead17_trunc_units.py).
Not 'cents', 'timezone*', 'nanosecond' (each fails per row on a TIMESTAMP WITH TIME ZONE), nor the units of no
calendar ('epoch', 'dow', 'julian'...)."""

EXTRACT_UNITS = TRUNC_UNITS | frozenset({
    "epoch", "dow", "dayofweek", "weekday", "isodow", "doy", "dayofyear", "dayofmonth", "yearweek", "era", "julian",
})  # fmt: skip
"""The fields extract() may take from data: each reads every DATE, TIMESTAMP and TIMESTAMP WITH TIME ZONE a version may
hold without an error, in any time zone (tests/sandbox/test_fn17_functions_by_type.py). Not 'timezone',
'timezone_hour' or 'timezone_minute': DuckDB extracts them from a DATE with an error per row, not at binding, so the
error answered whether any row reached it (fn17); the fields it refuses at binding ('nanosecond' of a DATE) fail
whatever the rows."""


def guard(node: exp.Expr, *, row_level: bool = True) -> exp.Expr:
    """Make a row-level expression unable to raise on any value of the data, by construction.

    A run-time error for some rows is an error oracle, and TRY() is no cure: DuckDB recomputes a
    vector row by row when one of its values fails, so a single failing hidden row costs tens of
    milliseconds (a timing oracle: issue 9, found by the red team). So nothing that reads data may fail:

    - arithmetic and numeric functions that read data are computed in DOUBLE (each operand that
      reads data becomes `TRY_CAST(operand AS DOUBLE)`, which never fails for a number), which
      yields infinity or NaN where integer arithmetic would overflow or divide by zero; `a // b`
      becomes `floor(a / b)` (DOUBLE `//` raises on zero);
    - positions and lengths (substring, left, right) and round()'s digits are whole-number
      constants within +-2^31; a position computed from data is refused;
    - date_trunc() raises only for dates outside the timestamp range: it stays in TRY(), and takes a
      date column only (possibly cast), so such dates can only be the data's own values, which a recipe
      can exclude (red9: a CASE put a constant date out of range on the hidden row alone, and the TRY()
      slow path showed, 25.6 against 12.6 ms).

    Comparisons, CASE, TRY_CAST and the NEVER_RAISE functions cannot fail on data and stay bare, so
    DuckDB can still push filters down into the Parquet scan.

    `row_level`: a `%` is written so that it costs the same for every value (_remainder). False for expressions
    over stage 1's shown groups (algebra.post_aggregate): they run once per shown group, on what the buyer sees.
    """
    return _guard(node, row_level)[0]


def _guard(node: exp.Expr, row_level: bool) -> tuple[exp.Expr, bool]:
    """guard() of `node`, and whether it reads data (worked out once per node, bottom-up)."""
    reads: dict[str, bool] = {}
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            guarded, reads[key] = _guard(value, row_level)
            if guarded is not value:
                node.set(key, guarded)
        elif isinstance(value, list):
            results = [_guard(v, row_level) if isinstance(v, exp.Expr) else (v, False) for v in value]
            reads[key] = any(read for _, read in results)
            if any(new is not old for (new, _), old in zip(results, value, strict=True)):
                node.set(key, [new for new, _ in results])
    if not (isinstance(node, exp.Column) or any(reads.values())):
        return node, False  # constants are computed, and checked, before any row is read
    if not _guarded_kind(node):
        return node, True  # a comparison, AND, OR, CASE, a column...: nothing below applies (branch val16)
    for kind, keys in _POSITIONS.items():
        if isinstance(node, kind):
            for key in keys:
                _constant_position(node.args.get(key), function_name(node))
    if isinstance(node, exp.Extract):
        unit = node.this
        if reads.get("this") or not isinstance(unit, (exp.Var, exp.Literal)) or unit.name.lower() not in EXTRACT_UNITS:
            raise QueryRefused(
                "disallowed_construct",
                construct=f"extract({unit.name if isinstance(unit, (exp.Var, exp.Literal)) else '?'} FROM ...)",
                instead=Msg("extract year, quarter, month, week, day, dow, doy, hour, minute, second or epoch."),
            )
        return node, True
    if isinstance(node, exp.IntDiv):
        return _guard(exp.Floor(this=exp.Div(this=node.this, expression=node.expression)), row_level)
    if _numeric(node):
        if any(isinstance(node.args.get(key), exp.Interval) for key in _NUMERIC_OPERANDS):
            raise refuse_construct(
                "Date arithmetic on data (it fails for dates out of range)",
                "group or filter with date_trunc(), extract() or a comparison with a date constant.",
            )
        for key in _NUMERIC_OPERANDS:
            operand = node.args.get(key)
            if isinstance(operand, exp.Expr) and reads.get(key) and not _is_double(operand):
                node.set(key, exp.TryCast(this=operand, to=_DOUBLE.copy()))
        if isinstance(node, exp.Round):
            _constant_position(node.args.get("decimals"), "round")
        if row_level and isinstance(node, exp.Mod):
            return _remainder(node, reads), True
        return node, True
    if isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)):
        if reads.get("unit"):
            raise refuse_construct("A date_trunc() unit computed from data", "write the unit, e.g. 'month'.")
        unit = node.args.get("unit")
        if not isinstance(unit, (exp.Var, exp.Literal)) or unit.name.lower() not in TRUNC_UNITS:
            # DuckDB truncates a TIMESTAMP WITH TIME ZONE to 'timezone', 'nanosecond' or 'cents' with an error per
            # row, not at binding: in TRY() the slow path timed which hidden rows reached it (lead17).
            raise QueryRefused(
                "disallowed_construct",
                construct=f"date_trunc('{unit.name if isinstance(unit, (exp.Var, exp.Literal)) else '?'}', ...)",
                instead=Msg("truncate to 'year', 'quarter', 'month', 'week', 'day', 'hour', 'minute' or 'second'."),
            )
        date = node.this
        while isinstance(date, (exp.Cast, exp.TryCast, exp.Paren)):
            date = date.this
        if not isinstance(date, exp.Column):
            # A CASE, coalesce() or greatest() can put a constant date beyond the timestamp range on chosen
            # rows only; date_trunc() then fails there and TRY() recomputes that vector row by row (red9).
            raise refuse_construct(
                "date_trunc() of a computed date (a constant out of the timestamp range on chosen rows fails)",
                "truncate a date column itself, e.g. date_trunc('month', d), and choose rows with WHERE.",
            )
        return exp.Try(this=node), True
    return node, True


def _remainder(node: exp.Mod, reads: dict[str, bool]) -> exp.Expr:
    """A row-level `a % b` as `a - b * trunc(a / b)`, whose cost is the same for every value (red team red16).

    DuckDB computes a DOUBLE `%` with fmod(), whose time grows with the exponent of a / b: 23 ns a row for
    `7.0 % 3.0`, 1,097 ns for `1e300 % 3.0` (bench/red16_value_costs.py), so `((d - 40) * 1e300) % 3.0`, fast only
    where d = 40, timed hidden values. The rewrite gives fmod's remainder (the dividend's sign) for every dividend
    under 2^53 times the divisor, and NaN for a zero divisor, as fmod. The dividend is written twice: so the divisor
    must be a constant and the dividend hold no `%` (else each level would double the statement)."""
    dividend, divisor = node.this, node.expression
    if reads.get("expression") or dividend.find(exp.Trunc) is not None:
        raise QueryRefused(
            "disallowed_construct",
            construct=Msg("A remainder (%) of data by data, or of another remainder"),
            instead=Msg("divide by a constant, e.g. month % 3, once per expression."),
        )
    quotient = exp.Trunc(this=exp.Div(this=dividend.copy(), expression=divisor.copy()))
    product = exp.Mul(this=divisor, expression=exp.Paren(this=quotient))
    return exp.Paren(this=exp.Sub(this=dividend, expression=exp.Paren(this=product)))


_generators = threading.local()


def to_sql(node: exp.Expr) -> str:
    """`node` as DuckDB SQL, without comments, reusing one generator per thread (no tree copy)."""
    generator: Any = getattr(_generators, "duckdb", None)
    if generator is None:
        generator = _generators.duckdb = Dialect.get_or_raise(DIALECT).generator(comments=False)
    return str(generator.generate(node, copy=False))


def output_name(node: exp.Expr) -> str:
    """`node.sql(DIALECT, normalize_functions="lower")` (the name of an output column the buyer left
    unnamed, e.g. `count(*)`), from one generator per thread: `Expression.sql` builds a new Dialect and a new
    Generator and copies the tree on every call, 20 of its 23 µs (branch val16). No copy: the generator
    does not change a node with a parent (its preprocessing moves CTEs of a root only), and comments are
    gone since parse_one_select."""
    generator: Any = getattr(_generators, "names", None)
    if generator is None:
        generator = _generators.names = Dialect.get_or_raise(DIALECT).generator(normalize_functions="lower")
    return str(generator.generate(node, copy=False))

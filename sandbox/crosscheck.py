"""The second validator: DuckDB's own parser reads every statement that will run, and we check its tree.

sqlglot is the first validator and the rewriter, but DuckDB decides what runs. To leave no room for
a parser differential, the exact strings the engine will execute are parsed again by DuckDB
(`json_serialize_sql`, the same parser `execute` uses, same library, same text) and their trees are
walked against the same allowlists (sandbox.rules): one SELECT, only the product's tables, only
allowed functions, casts and operators, and every column in a context its role allows. The raw
buyer text is also parsed by DuckDB and must be exactly one SELECT, so sqlglot cannot have read a
statement DuckDB would see differently. Any disagreement refuses the query.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import re
import threading
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

import duckdb
import msgspec

from market.i18n import Phrase
from sandbox import rules
from sandbox.errors import QueryRefused
from sandbox.policy import ProtectionPolicy

_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None


def _connection() -> duckdb.DuckDBPyConnection:
    """A data-less DuckDB used only to parse; it never executes buyer SQL."""
    global _parser
    if _parser is None:
        connection = duckdb.connect(
            ":memory:",
            # One thread: it only parses, and a single-threaded connection answers each call sooner.
            config={"enable_external_access": False, "autoload_known_extensions": False, "threads": 1},
        )
        # The only queries it runs are `SELECT json_serialize_sql(...), ...` (prepared): planning them needs no
        # optimizer, and skipping it saves a tenth of a millisecond per check. The parse trees the
        # function returns come from the parser alone and are the same either way.
        connection.execute("PRAGMA disable_optimizer")
        for count in range(1, SERIALIZED_AT_ONCE + 1):
            calls = ", ".join(f"json_serialize_sql(${i})" for i in range(1, count + 1))
            connection.execute(f"PREPARE {_SERIALIZE}{count} AS SELECT {calls}")
        _parser = connection
    return _parser


SERIALIZED_AT_ONCE = 4
"""The most statements one check hands DuckDB's parser (confirm: the template, stage 2, the constants, the
seeded stage 1): a prepared `SELECT json_serialize_sql($1), ...` for each count up to it."""
_SERIALIZE = "serialize_"


def _serialize_call(statements: list[str]) -> str:
    """`EXECUTE serialize_<n>('<statement>', ...)`: the prepared call of json_serialize_sql on `statements`.

    A prepared statement that reads no table keeps its plan in DuckDB 2.0 (docs/sandbox.md, "The cube's set as a
    constant"), so the call is parsed (`EXECUTE` and its string constants) and run, never bound or planned
    again: 0.07-0.09 ms less per query than `SELECT json_serialize_sql(?)` with the texts as parameters, of
    which DuckDB binds and plans the SELECT anew every time (session 21). Each text goes in as a standard SQL
    string constant, `'` doubled (DuckDB reads no backslash escape in one), so json_serialize_sql receives it
    byte for byte (tests/sandbox/test_syn21_duckdb_syntax.py). _serialized binds a text with a NUL character
    (which no string constant can carry) as a parameter instead."""
    constants = ", ".join("'" + statement.replace("'", "''") + "'" for statement in statements)
    return f"EXECUTE {_SERIALIZE}{len(statements)}({constants})"


def _serialized(connection: duckdb.DuckDBPyConnection, statements: list[str]) -> tuple[Any, ...] | None:
    """DuckDB's parse trees (JSON) of `statements`, in one call; the caller holds _lock."""
    if len(statements) <= SERIALIZED_AT_ONCE and not any("\x00" in statement for statement in statements):
        with contextlib.suppress(duckdb.Error):  # never expected (the texts are constants): then as parameters
            return connection.execute(_serialize_call(statements)).fetchone()
    calls = ", ".join(["json_serialize_sql(?)"] * len(statements))
    return connection.execute(f"SELECT {calls}", statements).fetchone()


def _mismatch(detail: str) -> QueryRefused:
    return QueryRefused("parser_mismatch", detail=detail)


_decode_json = msgspec.json.Decoder().decode
"""DuckDB's JSON to plain dicts and lists, as json.loads would give, in half the time."""


_POSITIONS = re.compile(r',"query_location":\d+,"query_location_length":\d+')
"""Text positions, which no check reads: dropped from DuckDB's JSON of a statement whose checks compare
expressions (the seeded stage 1, DP), so that two written the same compare equal as they are (_same). A
`"` inside a JSON string is escaped, so the pattern only ever matches a node's own fields."""


def _node(text: str | None, *, compared: bool = False) -> dict[str, Any]:
    if text and compared:
        text = _POSITIONS.sub("", text)
    try:
        tree = _decode_json(text) if text else {"error": True}
    except msgspec.DecodeError as error:
        raise _mismatch("DuckDB's parse tree could not be read") from error
    if not isinstance(tree, dict) or tree.get("error") or len(tree.get("statements", [])) != 1:
        raise _mismatch("DuckDB does not read the rewritten statement as one SELECT")
    node: dict[str, Any] = tree["statements"][0]["node"]
    return node


def _serialize_text(sql: str) -> str | None:
    with _lock:
        row = _serialized(_connection(), [sql])
    return row[0] if row else None


def _serialize(sql: str, *, compared: bool = False) -> dict[str, Any]:
    return _node(_serialize_text(sql), compared=compared)


def _read(raw_sql: str, statements: list[str]) -> tuple[Any, ...]:
    """The buyer's raw text must be exactly one SELECT to DuckDB; then DuckDB's parse trees (JSON) of
    `statements`, all in one call (this is on every query's path)."""
    with _lock:
        connection = _connection()
        try:
            raw = connection.extract_statements(raw_sql)
        except duckdb.Error as error:
            raise (_syntax_error(connection, raw_sql) or _mismatch("DuckDB cannot parse the query")) from error
        row = _serialized(connection, statements)
    if len(raw) != 1 or raw[0].type != duckdb.StatementType.SELECT or row is None:
        raise _mismatch("DuckDB does not read the query as exactly one SELECT")
    return tuple(row)


_BEFORE_PARSING = frozenset({"sql_too_long", "sql_too_complex"})
"""Refusals of a text for its size or nesting (syntax.parse_one_select), decided before any parser reads it: so
that no parser ever reads such a text, syntax_first does not hand it to DuckDB's either."""


MOST_SIGNS = 200
"""syntax_first leaves sqlglot's refusal of a text with more `-` and `+` than this (the most nested levels a query
may have, rules.MAX_TREE_DEPTH): DuckDB's parser is quadratic on a chain of signs before a missing operand (120 ms
for 1,100, `SELECT - - ... - FROM people`, which sqlglot refuses as sql_syntax; 79 s for 9,900), and such a text was
never handed to DuckDB before session 21 (red21). A query needs no such count of signs; one that has them is
refused all the same, with sqlglot's message."""
_NEAR = re.compile(r'(at or near ")(.*)(")', re.DOTALL)
"""The text DuckDB quotes: after an unterminated comment or dollar quote, all the rest of the buyer's text."""
NEAR_CHARS = 40
MAX_MESSAGE = 200
"""DuckDB's message is cut as sqlglot's detail is (syntax.parse_one_select), its quote first (red21: a 20,000
character text was quoted whole, in the refusal and its Idempotency-Key replay)."""
_LINE_END = re.compile(r"\r\n|\r|\n")


def _shortened(near: re.Match[str]) -> str:
    quoted = near.group(2)
    return near.group(1) + (quoted if len(quoted) <= NEAR_CHARS else quoted[:NEAR_CHARS] + "…") + near.group(3)


def readable(raw_sql: str) -> bool:
    """Whether DuckDB's parser can be handed `raw_sql` at all: no NUL character (no string constant carries one)
    and no unpaired surrogate (DuckDB's binding takes only text that encodes as UTF-8: it raises TypeError)."""
    if "\x00" in raw_sql:
        return False
    try:
        raw_sql.encode()
    except UnicodeEncodeError:
        return False
    return True


def _syntax_error(connection: duckdb.DuckDBPyConnection, raw_sql: str) -> QueryRefused | None:
    """`sql_syntax` with DuckDB's own message and where in the text it stopped, when DuckDB's parser cannot read
    `raw_sql`; None when it can (or fails for another reason, such as its own nesting limit, which the buyer
    cannot change with a SET: the caller's refusal then stands). The caller holds _lock.

    The message and position are DuckDB's reading of the buyer's own text, nothing else: they depend on no
    data. The position is a byte offset into the UTF-8 text; the buyer is told the line and the column, in
    characters, both from 1."""
    try:
        row = _serialized(connection, [raw_sql])  # the prepared call (red21: 0.3 ms less than binding the SELECT)
        found = _decode_json(row[0]) if row and row[0] else {}
    except (duckdb.Error, msgspec.DecodeError):
        return None
    if not isinstance(found, dict) or not found.get("error") or found.get("error_type") != "parser":
        return None
    message = str(found.get("error_message") or "").strip()
    if not message or message.startswith("Max expression depth"):
        return None
    message = _NEAR.sub(_shortened, message)[:MAX_MESSAGE]
    position = str(found.get("position") or "")
    if not position.isdigit():
        return QueryRefused("sql_syntax", detail=message)
    before = raw_sql.encode()[: int(position)].decode(errors="ignore")
    lines = _LINE_END.split(before)  # as an editor splits them (red21: CR alone was counted as a column)
    line, column = len(lines), len(lines[-1]) + 1
    where = Phrase("{message} (line {line}, column {column})", message=message, line=line, column=column)
    return QueryRefused("sql_syntax", detail=where)


@contextlib.contextmanager
def syntax_first(raw_sql: str) -> Iterator[None]:
    """Around a query's planning: when it is refused, and DuckDB's parser cannot read the buyer's text, the
    refusal is DuckDB's syntax error instead (`sql_syntax`, naming the token and the line and column).

    sqlglot, which reads the text first, accepts much that DuckDB does not (`sum(amount), , avg(trips)`,
    `max(amount> 90` with its `)` missing, `count(DISTINCT )`) and then refused such a text for what it made
    of it (a `max` aggregate, a column not grouped): a message about the wrong thing. The text is only ever
    planned when DuckDB reads it as one SELECT (_read), so a text DuckDB cannot read was always refused; now
    it is refused for the reason DuckDB gives. An accepted query is not read a second time. Not for a text
    refused for its size or nesting (_BEFORE_PARSING) or holding a NUL character or an unpaired surrogate: no
    parser reads those."""
    try:
        yield
    except QueryRefused as refused:
        if (
            refused.code in _BEFORE_PARSING
            or not readable(raw_sql)
            or isinstance(refused.__cause__, duckdb.Error)  # _read's: DuckDB read it already (red21: twice more)
            or raw_sql.count("-") + raw_sql.count("+") > MOST_SIGNS
        ):
            raise
        with _lock:
            connection = _connection()
            # Most refused texts are ones DuckDB reads (a policy refusal): extract_statements tells so at the least
            # cost (validation p50 over the corpus 0.22 ms, against 0.59 with json_serialize_sql for every refused
            # text). Only a text it cannot read is parsed again, for the message and position: two parses, each
            # bounded by MAX_SQL_CHARS and, for the one quadratic shape found (red21), by MOST_SIGNS.
            try:
                connection.extract_statements(raw_sql)
                found = None
            except duckdb.Error:
                found = _syntax_error(connection, raw_sql)
        if found is None:
            raise
        raise found from refused


def confirm(
    raw_sql: str,
    template: str,
    output_sql: str,
    policy: ProtectionPolicy,
    aliases: dict[str, str],
    *,
    threshold: str,
    restrict: str,
    groups_table: str,
    constants: str | None = None,
    seeded: str | None = None,
) -> None:
    """All of DuckDB's checks for one query, parsed in a single call (this is on every query's path).

    The buyer's raw text must be exactly one SELECT to DuckDB too; the stage-1 template and the
    stage-2 statement are walked as check_groups and check_output do; the seeded stage 1
    (rewrite.seeded_stage), when there is one, as check_seeded does.
    """
    # The seeded stage 1 is DuckDB-parsed only when its text is not provably the template's with the rewrite's
    # insertions (_derived_seeded): then DuckDB's reading of it follows from its reading of the template.
    derived = _derived_seeded(template, seeded, aliases, threshold=threshold, restrict=restrict) if seeded else None
    parsed_seeded = bool(seeded) and derived is None
    # Stage 2 and the constants are DuckDB-parsed only when their text is not provably a plain projection of the
    # groups (_plain_output) or a list of date casts (_plain_constants), which their walks would accept (val15).
    parsed_output = not _plain_output(output_sql, groups_table)
    parsed_constants = bool(constants) and not _plain_constants(constants or "")
    statements = [template, *([output_sql] if parsed_output else [])]
    statements += [constants] if parsed_constants and constants else []
    statements += [seeded] if parsed_seeded and seeded else []
    row = _read(raw_sql, statements)
    groups = _node(row[0], compared=parsed_seeded)
    _check_groups_node(groups, policy, aliases, threshold=threshold, restrict=restrict)
    if parsed_output:
        _check_output_node(_node(row[1]), policy, groups_table)
    if parsed_constants:
        _check_constants_node(_node(row[1 + parsed_output]), policy)
    if seeded and derived is not None and not _plain_groups(groups, grouped=derived):
        # The template's GROUP BY is not a plain list of keys: appending one is not known to add one key.
        parsed_seeded, groups = True, _serialize(template, compared=True)
        row = (*row, _serialize_text(seeded))
    if seeded and parsed_seeded:
        node = _node(row[-1], compared=True)
        _check_seeded_node(node, policy, aliases, threshold=threshold, restrict=restrict, template=groups)


class Ctx(Enum):
    ROW = "row"
    AGGREGATE_ARGUMENT = "aggregate argument"
    POST = "post"


_NOT_CHILDREN = frozenset({"type_expr", "order_bys"})
_CONTAINERS = (dict, list)


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Direct child expressions of a DuckDB expression node, wherever the serializer put them."""
    found: list[dict[str, Any]] = []
    for key, value in node.items():
        # The usual shapes first, without a call: a child itself, or a list of children (val15).
        if isinstance(value, dict):
            if "class" in value:
                if key not in _NOT_CHILDREN:
                    found.append(value)
            elif value and key not in _NOT_CHILDREN:
                _collect(value, found)
        elif isinstance(value, list) and value and key not in _NOT_CHILDREN:
            for inner in value:
                if isinstance(inner, dict) and "class" in inner:
                    found.append(inner)
                elif isinstance(inner, _CONTAINERS):
                    _collect(inner, found)
    return found


def _collect(value: dict[str, Any] | list[Any], found: list[dict[str, Any]]) -> None:
    """Appends the outermost expressions (dicts with a "class") in `value`, in document order."""
    if isinstance(value, dict):
        if "class" in value:
            found.append(value)
            return
        inner_values: Iterable[Any] = value.values()
    else:
        inner_values = value
    for inner in inner_values:
        if isinstance(inner, _CONTAINERS):
            _collect(inner, found)


class _TreeCheck:
    def __init__(self, policy: ProtectionPolicy, aliases: dict[str, str]) -> None:
        self.policy = policy
        self.aliases = aliases
        """Table alias -> product table name, as the rewrite spelled them."""

    def role(self, names: list[str]) -> str:
        if len(names) != 2 or names[0] not in self.aliases:
            raise _mismatch(f"unqualified or unknown column {'.'.join(names)}")
        table = self.aliases[names[0]]
        return self.policy.tables[table].role_of(names[1]) or "unknown"

    def expression(self, node: dict[str, Any], ctx: Ctx, *, count_distinct: bool = False) -> None:
        kind = node.get("class")
        if kind == "COLUMN_REF":
            self.column(node, ctx, count_distinct=count_distinct)
            return
        if kind == "CONSTANT":
            return
        if kind == "FUNCTION":
            self.function(node, ctx)
            return
        if kind == "CASE" and ctx is Ctx.AGGREGATE_ARGUMENT:
            self.clamped_measure(node)
            return
        if kind == "CAST":
            type_name = str(node.get("type_expr", {}).get("type_name", "")).upper()
            if type_name not in rules.DUCKDB_CAST_TYPES:
                raise _mismatch(f"cast to {type_name}")
            if not node.get("try_cast") and _mentions_columns(node):
                raise _mismatch("a cast of data that is not TRY_CAST")
            if ctx is Ctx.AGGREGATE_ARGUMENT and type_name != "DOUBLE":
                raise _mismatch(f"a cast to {type_name} in an aggregate argument")
            if ctx is Ctx.AGGREGATE_ARGUMENT and _mentions_columns(node):
                # A measure's value: TRY_CAST(measure AS DOUBLE), nothing else under the cast.
                if self.role(_measure_names(node)) != "measure":
                    raise _mismatch("something other than a measure inside an aggregate")
                return
        elif kind == "OPERATOR":
            allowed_ops = frozenset() if ctx is Ctx.AGGREGATE_ARGUMENT else _OPERATORS
            if node.get("type") not in allowed_ops:
                raise _mismatch(f"operator {node.get('type')} in {ctx.value}")
        elif kind in ("COMPARISON", "CONJUNCTION", "CASE", "BETWEEN"):
            if ctx not in (Ctx.ROW, Ctx.POST):
                raise _mismatch(f"{kind} in {ctx.value}")
        else:
            raise _mismatch(f"expression {kind}")
        for child in _children(node):
            self.expression(child, ctx)

    def column(self, node: dict[str, Any], ctx: Ctx, *, count_distinct: bool) -> None:
        names = [str(n) for n in node.get("column_names", [])]
        if ctx is Ctx.POST:
            if len(names) != 1 or not names[0].startswith(rules.RESERVED_PREFIX):
                raise _mismatch(f"column {'.'.join(names)} after grouping")
            return
        role = self.role(names)
        if ctx is Ctx.ROW and role == "dimension":
            return
        if count_distinct and (
            role == "dimension" or (role == "privacy_unit" and self.policy.allow_count_distinct_unit)
        ):
            return
        raise _mismatch(f"column {names[1]} ({role}) in {ctx.value}")

    def clamp(self, node: dict[str, Any], what: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """`CASE WHEN <tested> IS NULL THEN NULL ELSE least(greatest(<value>, low), high) END` with constant
        bounds: (what the CASE tests, the value it clamps); the caller checks that they match."""
        checks = node.get("case_checks") or []
        if len(checks) != 1:
            raise _mismatch(f"a CASE {what}")
        when, then = checks[0].get("when_expr") or {}, checks[0].get("then_expr") or {}
        if (
            when.get("type") != "OPERATOR_IS_NULL"
            or then.get("class") != "CONSTANT"
            or (then.get("literal") or {}).get("kind") != "NULL_LITERAL"
        ):
            raise _mismatch(f"a CASE {what}")
        greatest, high = _only_function(node.get("else_expr") or {}, "least")
        value, low = _only_function(greatest, "greatest")
        for bound in (low, high):
            if _mentions_columns(bound):
                raise _mismatch("a clamp bound that is not a constant")
            self.expression(bound, Ctx.AGGREGATE_ARGUMENT)
        return _children(when), value

    def clamped_measure(self, node: dict[str, Any]) -> None:
        """A measure inside sum/avg/variance, exactly as sandbox.algebra.clamp writes it.

        A measure column is accepted in an aggregate argument only in this form (sandbox.algebra), so
        every value an aggregate sees is a clamped DOUBLE, whatever the column's type.
        """
        tested, value = self.clamp(node, "inside an aggregate")
        if len(tested) != 1 or tested[0].get("class") != "COLUMN_REF":
            raise _mismatch("a CASE inside an aggregate that tests something else")
        if [str(n) for n in tested[0].get("column_names", [])] != _measure_names(value):
            raise _mismatch("a CASE inside an aggregate that tests something else")
        if self.role(_measure_names(value)) != "measure":
            raise _mismatch("something other than a measure clamped inside an aggregate")

    def function(self, node: dict[str, Any], ctx: Ctx) -> None:
        name = str(node.get("function_name", "")).lower()
        if node.get("schema") or node.get("catalog") or node.get("filter") or node.get("export_state"):
            raise _mismatch(f"qualified or filtered function {name}")
        if (node.get("order_bys") or {}).get("orders"):
            raise _mismatch(f"ORDER BY inside {name}")
        if ctx is Ctx.AGGREGATE_ARGUMENT:
            allowed = name in ("+", "-", "*", "/") and bool(node.get("is_operator"))
            if name == "/" and any(_mentions_columns(child) for child in _children(node)[1:]):
                raise _mismatch("a division by a column inside an aggregate")
        else:
            allowed = name in rules.DUCKDB_SCALARS
        if not allowed or node.get("distinct"):
            raise _mismatch(f"function {name} in {ctx.value}")
        for child in _children(node):
            self.expression(child, ctx)

    def aggregate(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        if node.get("class") != "FUNCTION" or name not in rules.DUCKDB_AGGREGATES:
            raise _mismatch(f"{name or node.get('class')} where an aggregate belongs")
        if rules.DUCKDB_AGGREGATES[name] not in self.policy.allowed_aggregates:
            raise _mismatch(f"aggregate {name}")
        if node.get("schema") or node.get("catalog") or node.get("filter") or node.get("export_state"):
            raise _mismatch(f"qualified or filtered aggregate {name}")
        if (node.get("order_bys") or {}).get("orders"):
            raise _mismatch(f"ORDER BY inside {name}")
        distinct = bool(node.get("distinct"))
        children = list(_children(node))
        if name in ("count", "count_star"):
            if distinct and len(children) != 1:
                raise _mismatch("count(DISTINCT ...) of several values")
            for child in children:
                if child.get("class") != "COLUMN_REF":
                    raise _mismatch("count() of an expression")
                names = [str(n) for n in child.get("column_names", [])]
                role = self.role(names)
                if role in ("dimension", "measure"):
                    continue
                if not (distinct and role == "privacy_unit" and self.policy.allow_count_distinct_unit):
                    raise _mismatch(f"count() of {names[-1]} ({role})")
            return
        if distinct:
            raise _mismatch(f"DISTINCT inside {name}")
        for child in children:
            self.expression(child, Ctx.AGGREGATE_ARGUMENT)

    def from_table(self, node: dict[str, Any]) -> None:
        kind = node.get("type")
        if node.get("sample"):
            raise _mismatch("a sample")
        if kind == "BASE_TABLE":
            if node.get("schema_name") or node.get("catalog_name") or node.get("at_clause"):
                raise _mismatch("a qualified table")
            if node.get("column_name_alias"):
                raise _mismatch("a column alias list")
            alias = str(node.get("alias") or node.get("table_name"))
            if self.aliases.get(alias) != node.get("table_name"):
                raise _mismatch(f"table {node.get('table_name')}")
            return
        if kind == "JOIN":
            if node.get("join_type") not in ("INNER", "LEFT", "RIGHT", "OUTER", "FULL") or node.get("ref_type") not in (
                "REGULAR",
                "CROSS",
            ):
                raise _mismatch(f"{node.get('ref_type')} {node.get('join_type')} join")
            if node.get("using_columns") or node.get("duplicate_eliminated_columns"):
                raise _mismatch("JOIN USING")
            self.from_table(node["left"])
            self.from_table(node["right"])
            if node.get("condition") is not None:
                self.expression(node["condition"], Ctx.ROW)
            return
        raise _mismatch(f"FROM {kind}")


_OPERATORS = frozenset(
    {
        "OPERATOR_NOT",
        "OPERATOR_IS_NULL",
        "OPERATOR_IS_NOT_NULL",
        "COMPARE_IN",
        "COMPARE_NOT_IN",
        "OPERATOR_TRY",
        "OPERATOR_COALESCE",
    }
)


def _measure_names(node: dict[str, Any]) -> list[str]:
    """The column of `TRY_CAST(column AS DOUBLE)`, or a mismatch."""
    column = node.get("child") or {}
    type_name = str(node.get("type_expr", {}).get("type_name", "")).upper()
    if node.get("class") != "CAST" or not node.get("try_cast") or type_name != "DOUBLE":
        raise _mismatch("a measure inside an aggregate that is not clamped as DOUBLE")
    if column.get("class") != "COLUMN_REF":
        raise _mismatch("something other than a measure clamped inside an aggregate")
    return [str(n) for n in column.get("column_names", [])]


def _only_function(node: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The two arguments of a plain call to `name` (no DISTINCT, FILTER, ORDER BY, schema)."""
    children = _children(node)
    plain = not any(node.get(k) for k in ("schema", "catalog", "filter", "export_state", "distinct", "is_operator"))
    if (
        node.get("class") != "FUNCTION"
        or str(node.get("function_name", "")).lower() != name
        or not plain
        or (node.get("order_bys") or {}).get("orders")
        or len(children) != 2
    ):
        raise _mismatch(f"a measure inside an aggregate that is not clamped ({name})")
    return children


def _mentions_columns(node: dict[str, Any]) -> bool:
    if node.get("class") == "COLUMN_REF":
        return True
    return any(_mentions_columns(child) for child in _children(node))


def _plain_select(node: dict[str, Any]) -> None:
    if node.get("type") != "SELECT_NODE":
        raise _mismatch(f"{node.get('type')} instead of a plain SELECT")
    if (node.get("cte_map") or {}).get("map"):
        raise _mismatch("a CTE")
    if node.get("qualify") or node.get("sample") or node.get("aggregate_handling") != "STANDARD_HANDLING":
        raise _mismatch("QUALIFY, SAMPLE or GROUP BY ALL in the rewritten statement")


def check_groups(sql: str, policy: ProtectionPolicy, aliases: dict[str, str], *, threshold: str, restrict: str) -> None:
    """Stage 1's template as DuckDB reads it: grouping and aggregates over the product's tables.

    The template carries two placeholders the sandbox fills with its own text: a select item
    `threshold` (the threshold columns) and a top-level conjunct `restrict` of WHERE (the recheck
    restriction). Each must be exactly there, as a bare column name.
    """
    _check_groups_node(_serialize(sql), policy, aliases, threshold=threshold, restrict=restrict)


def _check_groups_node(
    node: dict[str, Any], policy: ProtectionPolicy, aliases: dict[str, str], *, threshold: str, restrict: str
) -> None:
    _plain_select(node)
    if node.get("modifiers") or node.get("having"):
        raise _mismatch("modifiers or HAVING in stage 1")
    check = _TreeCheck(policy, aliases)
    check.from_table(node["from_table"])

    def is_placeholder(item: dict[str, Any], name: str) -> bool:
        return item.get("class") == "COLUMN_REF" and item.get("column_names") == [name] and not item.get("alias")

    where = node.get("where_clause") or {}
    if is_placeholder(where, restrict):
        conjuncts: list[dict[str, Any]] = []
    elif where.get("type") == "CONJUNCTION_AND" and is_placeholder(where.get("children", [{}])[-1], restrict):
        conjuncts = where["children"][:-1]
    else:
        raise _mismatch("the WHERE clause is not where the rewrite put it")
    for conjunct in conjuncts:
        check.expression(conjunct, Ctx.ROW)
    for key in node.get("group_expressions") or []:
        check.expression(key, Ctx.ROW)
    # One grouping set of all the keys (or none): GROUPING SETS, ROLLUP or CUBE would add subtotal groups the
    # threshold never decided. sqlglot refuses them in the buyer's text; this holds whatever wrote the template.
    plain = _plain_groups(node, grouped=bool(node.get("group_expressions")))
    if not plain or node.get("aggregate_handling", "STANDARD_HANDLING") != "STANDARD_HANDLING":
        raise _mismatch("the GROUP BY is not one list of keys")
    items = node.get("select_list") or []
    if not items or not is_placeholder(items[-1], threshold):
        raise _mismatch("the threshold columns are not where the rewrite put them")
    for item in items[:-1]:
        alias = str(item.get("alias", ""))
        if alias.startswith("__g"):
            check.expression(item, Ctx.ROW)
        elif alias.startswith("__a"):
            check.aggregate(item)
        else:
            raise _mismatch(f"select item {alias or '(unnamed)'}")


def check_seeded(sql: str, policy: ProtectionPolicy, aliases: dict[str, str], *, threshold: str, restrict: str) -> None:
    """The seeded stage 1 (rewrite.seeded_stage) as DuckDB reads it: check_groups's statement, but for
    `flag` = `COALESCE(<filter>, FALSE)` (the item `flag AS "__kept"` before the threshold placeholder, and
    the last group key), WHERE `(<filter> OR <seed>) AND <restrict>` with the same filter, and the seed
    `("<alias>"."__row" & 2047) = 0`, the one place a `__row` column may appear."""
    _check_seeded_node(_serialize(sql, compared=True), policy, aliases, threshold=threshold, restrict=restrict)


def _check_seeded_node(
    node: dict[str, Any],
    policy: ProtectionPolicy,
    aliases: dict[str, str],
    *,
    threshold: str,
    restrict: str,
    template: dict[str, Any] | None = None,
) -> None:
    """check_seeded on DuckDB's tree; `template`, DuckDB's tree of the template that _check_groups_node has
    accepted (read with compared=True), when there is one."""
    where = node.get("where_clause") or {}
    children = where.get("children") or []
    if where.get("type") != "CONJUNCTION_AND" or len(children) != 2 or children[0].get("type") != "CONJUNCTION_OR":
        raise _mismatch("the seeded WHERE clause is not where the rewrite put it")
    either = children[0].get("children") or []
    if len(either) < 2:
        raise _mismatch("the seeded WHERE clause is not where the rewrite put it")
    *rest, seed = either
    _check_seed(seed, aliases)
    items = node.get("select_list") or []
    keys = node.get("group_expressions") or []
    if len(items) < 2 or str(items[-2].get("alias", "")) != KEPT or not keys:
        raise _mismatch("the seeded stage 1 has no __kept column where the rewrite put it")
    flag = items[-2]
    filter_ = _flag_filter(flag)
    # DuckDB's parser flattens `(a OR b) OR <seed>` into one OR of three: the filter is the rest of it.
    if len(rest) > 1:
        if filter_.get("type") != "CONJUNCTION_OR" or not _same(filter_.get("children"), rest):
            raise _mismatch("the seeded WHERE clause does not test the filter")
    elif not _same(rest[0], filter_):
        raise _mismatch("the seeded WHERE clause does not test the filter")
    # The last group key is the flag's expression itself: the same tree, with an empty alias.
    if not _same(keys[-1], {**flag, "alias": ""}):
        raise _mismatch("the seeded stage 1's __kept is not its filter")
    # One grouping set of every key, the flag's included: then the statement without its last key groups by one
    # set of the others, which is what _check_groups_node demands of it (and of the template).
    if node.get("group_sets") != [list(range(len(keys)))]:
        raise _mismatch("the GROUP BY is not one list of keys")
    # What is left is check_groups's statement: WHERE `<filter> AND <restrict>`, the keys, the items.
    if template is not None and _unseeded_is(node, template, filter_, children[1]):
        return  # the very tree _check_groups_node accepted in the template: the same walk, the same verdict
    unseeded = {
        **node,
        "where_clause": {"type": "CONJUNCTION_AND", "children": [filter_, children[1]]},
        "select_list": [*items[:-2], items[-1]],
        "group_expressions": keys[:-1],
        "group_sets": [list(range(len(keys) - 1))] if len(keys) > 1 else [],
    }
    _check_groups_node(unseeded, policy, aliases, threshold=threshold, restrict=restrict)


def _unseeded_is(
    node: dict[str, Any], template: dict[str, Any], filter_: dict[str, Any], restrict: dict[str, Any]
) -> bool:
    """Whether the seeded stage 1 without its flag, its seed and its last key is `template`'s tree (both
    read without text positions): the same items, keys, FROM and every other field, and a WHERE of the
    same filter and the same restriction placeholder. False sends the caller to the full walk."""
    rest = node.keys() - _SEEDED_PARTS
    if rest != template.keys() - _SEEDED_PARTS or any(node[key] != template[key] for key in rest):
        return False
    items, keys = node.get("select_list") or [], node.get("group_expressions") or []
    if [*items[:-2], items[-1]] != template.get("select_list") or keys[:-1] != (
        template.get("group_expressions") or []
    ):
        return False
    where = template.get("where_clause") or {}
    terms = where.get("children") or []
    if where.get("type") != "CONJUNCTION_AND" or not terms or terms[-1] != restrict:
        return False
    # DuckDB's parser flattens `(a AND b) AND <restrict>` into one AND of three, as it does the filter's own AND.
    conjuncts = filter_.get("children") if filter_.get("type") == "CONJUNCTION_AND" else None
    return terms[:-1] == [filter_] or (conjuncts is not None and terms[:-1] == conjuncts)


_SEEDED_PARTS = frozenset({"where_clause", "select_list", "group_expressions", "group_sets"})
"""Fields _unseeded_is compares part by part; `group_sets` (the key indices of each grouping set) differs by
the extra key and neither walk reads it."""

KEPT = "__kept"
"""rewrite.KEPT_COLUMN (not imported: this validator depends on the rewrite for nothing)."""
_SEED_MASK = 2047


# -- the seeded stage 1 from the template's tokens (branch val15; docs/sandbox.md) ---------------------------

_TOKEN = duckdb.token_type
_CLAUSE_WORDS = frozenset(
    {
        b"SELECT", b"WHERE", b"GROUP", b"HAVING", b"WINDOW", b"QUALIFY", b"ORDER", b"LIMIT", b"OFFSET", b"FETCH",
        b"USING", b"TABLESAMPLE", b"FOR", b"UNION", b"EXCEPT", b"INTERSECT", b"WITH", b"INTO", b"RETURNING",
    }
)  # fmt: skip
_OPEN, _CLOSE, _QUOTE = ord("("), ord(")"), ord('"')
"""Keywords that open a clause: the template may hold only its one SELECT, one WHERE and at most one GROUP
(BY), so every other clause (which the JSON of a WINDOW clause would not even show) sends it to DuckDB."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.lru_cache(maxsize=64)
def _piece_tokens(text: str) -> tuple[tuple[int, Any], ...]:
    """DuckDB's tokens of one of the sandbox's own pieces of text (a handful of constants)."""
    return tuple(duckdb.tokenize(text))


def _derived_seeded(
    template: str, seeded: str, aliases: dict[str, str], *, threshold: str, restrict: str
) -> bool | None:
    """Whether `seeded` is, character for character, `template` with the seeded stage's insertions
    (rewrite.seeded_stage) at places DuckDB's tokens of the template name, and DuckDB's tokens of `seeded`
    are exactly those of its pieces: then whether the template has a GROUP BY; None when anything differs
    (the caller then has DuckDB parse `seeded` and walks it, check_seeded).

    The places, found on DuckDB's tokens of the template (never on sqlglot's text): the `,` before the
    threshold placeholder, which is the last select item; the filter F, the parenthesised span right after
    the one WHERE, whose `(` closes at the `)` before `AND "__restrict__"`; and the end of the text, right
    after that placeholder or after the GROUP BY keys. The seeded text must then be

        <..., > COALESCE(F, FALSE) AS "__kept"<, "__threshold__" FROM ... WHERE >(F OR <seed>)< AND
        "__restrict__"[ GROUP BY keys]>, COALESCE(F, FALSE)   (or `GROUP BY COALESCE(F, FALSE)` when none)

    with <...> the template's own text and <seed> `("<alias>"."__row" & 2047) = 0` for an alias of the
    query. Why DuckDB then reads it as the template plus a flag item, a seed and a last key: docs/sandbox.md,
    "The seeded stage 1 from the template's tokens"."""
    # DuckDB's token positions are byte offsets into the UTF-8 text: everything below works on those bytes.
    try:
        tokens = duckdb.tokenize(template)
    except duckdb.Error:
        return None
    text = template.encode()
    placeholder_text, restrict_text = _quoted(threshold).encode(), _quoted(restrict).encode()
    at = text.find(placeholder_text)
    if at < 0 or text.count(placeholder_text) != 1:
        return None
    starts = [start for start, _ in tokens]
    ends = [*starts[1:], len(text)]
    operator, keyword, comment, identifier = _TOKEN.operator, _TOKEN.keyword, _TOKEN.comment, _TOKEN.identifier
    depth = 0
    clauses: list[tuple[bytes, int, int]] = []  # (keyword, token index, depth)
    placeholder = None
    for i, (start, kind) in enumerate(tokens):
        if kind is operator:
            first = text[start]
            if first == _OPEN:
                depth += 1
            elif first == _CLOSE:
                depth -= 1
        elif kind is keyword or (kind is identifier and text[start] != _QUOTE):
            # Every byte the scanner skips, not spaces only: `WINDOW\n` is a clause word too (red team red16s).
            word = text[start : ends[i]].rstrip().upper()
            if word in _CLAUSE_WORDS:
                clauses.append((word, i, depth))
        elif kind is comment:
            return None
        elif start == at and not depth:
            placeholder = i

    def span(i: int) -> bytes:
        return text[starts[i] : ends[i]]

    words = [word for word, _, _ in clauses]
    if (
        depth
        or words not in ([b"SELECT", b"WHERE"], [b"SELECT", b"WHERE", b"GROUP"])
        or any(level for _, _, level in clauses)
        or clauses[0][1] != 0
        or span(0) != b"SELECT "
        or placeholder is None
        or placeholder < 2
        or span(placeholder - 1) != b", "
        or span(placeholder) != placeholder_text + b" "
        or span(placeholder + 1) != b"FROM "
    ):
        return None
    where = clauses[1][1]
    grouped = len(clauses) == 3
    if span(where) != b"WHERE " or where <= placeholder or text[starts[where + 1]] != _OPEN:
        return None
    # F: from the `(` right after WHERE to the `)` that closes it.
    level, close = 0, None
    for j in range(where + 1, len(tokens)):
        if tokens[j][1] is operator:
            first = text[starts[j]]
            if first == _OPEN:
                level += 1
            elif first == _CLOSE:
                level -= 1
                if level == 0:
                    close = j
                    break
    rest = 4 if grouped else 3  # `)`, AND, the placeholder[, GROUP]
    if close is None or close + rest != (clauses[2][1] + 1 if grouped else len(tokens)):
        return None
    if (
        span(close) != b") "
        or span(close + 1) != b"AND "
        or span(close + 2) != restrict_text + (b" " if grouped else b"")
        or (grouped and (span(close + 3) != b"GROUP " or close + 4 >= len(tokens) or span(close + 4) != b"BY "))
    ):
        return None
    p1, p2, p3 = starts[placeholder - 1], starts[where + 1], starts[close] + 1
    filter_ = text[p2:p3]
    flag_open, flag_close, kept = "COALESCE(", ", FALSE)", " AS " + _quoted(KEPT)
    flag = flag_open.encode() + filter_ + flag_close.encode()
    last = ", " + flag_open if grouped else " GROUP BY " + flag_open
    prefix = text[:p1] + b", " + flag + kept.encode() + text[p1:p2] + b"(" + filter_ + b" OR "
    suffix = b")" + text[p3:] + last.encode() + filter_ + flag_close.encode()  # `last` opens the flag
    whole = seeded.encode()
    if len(whole) <= len(prefix) + len(suffix) or not whole.startswith(prefix) or not whole.endswith(suffix):
        return None
    seed = whole[len(prefix) : len(whole) - len(suffix)].decode()
    if seed not in {f'({_quoted(alias)}."__row" & {_SEED_MASK}) = 0' for alias in aliases}:
        return None
    # DuckDB's tokens of the seeded text must be its pieces' tokens, each where the piece lies.
    pieces: list[tuple[int, int] | str] = [
        (0, p1),
        ", " + flag_open,
        (p2, p3),
        flag_close + kept,
        (p1, p2),
        "(",
        (p2, p3),
        " OR ",
        seed,
        ")",
        (p3, len(text)),
        last,
        (p2, p3),
        flag_close,
    ]
    expected: list[tuple[int, Any]] = []
    offset = 0
    try:
        for piece in pieces:
            if isinstance(piece, tuple):
                low, high = piece
                shift = offset - low
                first_token, after = bisect.bisect_left(starts, low), bisect.bisect_left(starts, high)
                expected += [(start + shift, kind) for start, kind in tokens[first_token:after]]
                offset += high - low
            else:
                expected += [(start + offset, kind) for start, kind in _piece_tokens(piece)]
                offset += len(piece.encode())
        if offset != len(whole) or duckdb.tokenize(seeded) != expected:
            return None
    except duckdb.Error:
        return None
    return grouped


def _plain_groups(node: dict[str, Any], *, grouped: bool) -> bool:
    """Whether DuckDB read the template's GROUP BY (when `grouped`) as a plain list of keys, one grouping set
    of all of them, so that one more key after the last is one more key of that set; or read no GROUP BY."""
    keys = node.get("group_expressions") or []
    sets = node.get("group_sets") or []
    if not grouped:
        return not keys and not sets
    return bool(keys) and sets == [list(range(len(keys)))]


def _flag_filter(flag: dict[str, Any]) -> dict[str, Any]:
    """The filter of `COALESCE(<filter>, FALSE)`, or a mismatch."""
    parts = flag.get("children") or []
    if (
        flag.get("class") != "OPERATOR"
        or flag.get("type") != "OPERATOR_COALESCE"
        or len(parts) != 2
        or parts[1].get("class") != "CONSTANT"
        or (parts[1].get("literal") or {}).get("kind") != "BOOLEAN"
        or str((parts[1].get("literal") or {}).get("text", "")).lower() != "false"
    ):
        raise _mismatch("the seeded filter is not COALESCE(<filter>, FALSE)")
    filter_: dict[str, Any] = parts[0]
    return filter_


def _check_seed(seed: dict[str, Any], aliases: dict[str, str]) -> None:
    """`("<alias>"."__row" & 2047) = 0`, with a table alias of the query, or a mismatch."""
    left, right = seed.get("left") or {}, seed.get("right") or {}
    arguments = [a.get("expression") or {} for a in left.get("arguments") or []]

    def constant(value: dict[str, Any], text: str) -> bool:
        literal = value.get("literal") or {}
        return value.get("class") == "CONSTANT" and literal.get("kind") == "INTEGER" and literal.get("text") == text

    if not (
        seed.get("class") == "COMPARISON"
        and seed.get("type") == "COMPARE_EQUAL"
        and constant(right, "0")
        and left.get("class") == "FUNCTION"
        and left.get("function_name") == "&"
        and left.get("is_operator")
        and not any(left.get(k) for k in ("schema", "catalog", "filter", "distinct", "export_state"))
        and len(arguments) == 2
        and arguments[0].get("class") == "COLUMN_REF"
        and len(arguments[0].get("column_names") or []) == 2
        and arguments[0]["column_names"][0] in aliases
        and arguments[0]["column_names"][1] == "__row"
        and constant(arguments[1], str(_SEED_MASK))
    ):
        raise _mismatch("the seed condition is not the rewrite's")


def check_output(sql: str, policy: ProtectionPolicy, groups_table: str) -> None:
    """Stage 2 as DuckDB reads it: expressions over the passing groups only."""
    _check_output_node(_serialize(sql), policy, groups_table)


def _check_output_node(node: dict[str, Any], policy: ProtectionPolicy, groups_table: str) -> None:
    _plain_select(node)
    if node.get("group_expressions") or node.get("having"):
        raise _mismatch("grouping in stage 2")
    source = node.get("from_table") or {}
    if source.get("type") != "BASE_TABLE" or source.get("table_name") != groups_table or source.get("schema_name"):
        raise _mismatch("stage 2 reads something other than the groups")
    check = _TreeCheck(policy, {})
    for item in node.get("select_list") or []:
        check.expression(item, Ctx.POST)
    if node.get("where_clause") is not None:
        check.expression(node["where_clause"], Ctx.POST)
    for modifier in node.get("modifiers") or []:
        if modifier.get("type") == "ORDER_MODIFIER":
            for order in modifier.get("orders", []):
                check.expression(order["expression"], Ctx.POST)
        elif modifier.get("type") == "LIMIT_MODIFIER":
            for key in ("limit", "offset"):
                value = modifier.get(key)
                if value is not None and value.get("class") != "CONSTANT":
                    raise _mismatch("a non-constant LIMIT")
        else:
            raise _mismatch(f"modifier {modifier.get('type')}")


def _check_constants_node(node: dict[str, Any], policy: ProtectionPolicy) -> None:
    """The constants statement: a SELECT of row-level expressions with no FROM, so no column at all."""
    _plain_select(node)
    if (node.get("from_table") or {}).get("type") not in (None, "EMPTY") or node.get("where_clause"):
        raise _mismatch("the constants statement reads a table")
    if node.get("group_expressions") or node.get("having") or node.get("modifiers"):
        raise _mismatch("the constants statement groups or orders")
    check = _TreeCheck(policy, {})
    for item in node.get("select_list") or []:
        check.expression(item, Ctx.ROW)


# -- DP mode (sandbox.dp) -----------------------------------------------------------------------------

_DP_WRAPPER_FUNCTIONS = frozenset({"count_star", "count", "sum", "least", "greatest", "hash", "+", "-", "*", "/"})
"""What the levels above the bounded rows may call: the per-unit and per-group statistics and their caps."""
_DP_WRAPPER_CLASSES = frozenset({"COLUMN_REF", "CONSTANT", "FUNCTION", "OPERATOR", "CASE", "COMPARISON", "WINDOW"})
_DP_LEVELS = 5
"""The statistics, the group cap (two levels), the per-unit aggregation, the bounded rows."""


def _dp_wrapper(node: dict[str, Any]) -> None:
    """An expression above the bounded rows: only reserved names of the levels below, and only the
    statistics' functions. Nothing there may read a column of the product's tables."""
    kind = node.get("class")
    if kind not in _DP_WRAPPER_CLASSES:
        raise _mismatch(f"expression {kind} above the bounded rows")
    if kind == "COLUMN_REF":
        names = [str(n) for n in node.get("column_names", [])]
        if len(names) != 1 or not names[0].startswith(rules.RESERVED_PREFIX):
            raise _mismatch(f"column {'.'.join(names)} above the bounded rows")
        return
    if kind == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if name not in _DP_WRAPPER_FUNCTIONS:
            raise _mismatch(f"function {name} above the bounded rows")
        if node.get("schema") or node.get("catalog") or node.get("filter") or node.get("export_state"):
            raise _mismatch(f"qualified or filtered function {name}")
        if (node.get("order_bys") or {}).get("orders"):
            raise _mismatch(f"ORDER BY inside {name}")
        if node.get("distinct") and name != "count":
            raise _mismatch(f"DISTINCT inside {name}")
    elif kind == "OPERATOR" and node.get("type") != "OPERATOR_COALESCE":
        raise _mismatch(f"operator {node.get('type')} above the bounded rows")
    elif kind == "WINDOW" and (
        node.get("function_name") != "row_number" or node.get("filter_expr") or node.get("schema")
    ):
        raise _mismatch(f"window {node.get('function_name')} above the bounded rows")
    for child in _children(node):
        _dp_wrapper(child)


def _dp_star(item: dict[str, Any]) -> bool:
    """`*` over the level below, and nothing more (no EXCLUDE, REPLACE, COLUMNS or a named relation)."""
    if item.get("class") != "STAR":
        return False
    extras = ("relation_name", "exclude_list", "replace_list", "columns", "expr", "qualified_exclude_list")
    if any(item.get(key) for key in extras) or item.get("rename_list"):
        raise _mismatch("a * with modifiers above the bounded rows")
    return True


def _dp_value(check: _TreeCheck, node: dict[str, Any]) -> None:
    """A bounded row's aggregate argument: a clamped measure, or a clamped multi-affine expression of
    clamped measures (`CASE WHEN x IS NULL THEN NULL ELSE least(greatest(x, low), high) END`)."""
    if node.get("class") != "CASE":
        raise _mismatch("a DP value that is not clamped")
    try:
        check.clamped_measure(node)
        return
    except QueryRefused:
        pass
    tested, value = check.clamp(node, "that is not a clamped DP value")
    if len(tested) != 1 or not _same(tested[0], value):
        raise _mismatch("a DP value that clamps something other than what it tests")
    check.expression(value, Ctx.AGGREGATE_ARGUMENT)


_LOCATIONS = frozenset({"query_location", "query_location_length"})


def _same(first: Any, second: Any) -> bool:
    """Whether two parse trees are equal but for their text positions: what comparing copies of both
    with every query_location(_length) removed would say, without copying (an iterative walk, linear in
    the trees' size; a 180-term OR spent a quarter of its validation copying trees)."""
    if first == second:  # positions are dropped when the JSON is read (_node): the usual case
        return True
    pending: list[tuple[Any, Any]] = [(first, second)]
    while pending:
        one, other = pending.pop()
        if isinstance(one, dict):
            if not isinstance(other, dict):
                return False
            keys = one.keys() - _LOCATIONS
            if keys != other.keys() - _LOCATIONS:
                return False
            pending.extend((one[key], other[key]) for key in keys)
        elif isinstance(one, list):
            if not isinstance(other, list) or len(one) != len(other):
                return False
            pending.extend(zip(one, other, strict=True))
        elif isinstance(other, dict | list) or one != other:
            return False
    return True


def _check_dp_rows(node: dict[str, Any], policy: ProtectionPolicy, aliases: dict[str, str]) -> None:
    """The bounded rows: one table; the unit, dimension keys and clamped values; WHERE on dimensions."""
    if node.get("group_expressions") or node.get("group_sets"):
        raise _mismatch("the bounded rows are grouped")
    check = _TreeCheck(policy, aliases)
    check.from_table(node["from_table"])
    if node["from_table"].get("type") != "BASE_TABLE":
        raise _mismatch("the bounded rows read more than one table")
    units = 0
    for item in node.get("select_list") or []:
        alias = str(item.get("alias") or "")
        if alias == "__unit":
            if item.get("class") != "COLUMN_REF":
                raise _mismatch("the privacy unit is an expression")
            if check.role([str(n) for n in item.get("column_names", [])]) != "privacy_unit":
                raise _mismatch("__unit is not the privacy unit")
            units += 1
        elif alias.startswith("__g"):
            check.expression(item, Ctx.ROW)
        elif alias.startswith("__v"):
            _dp_value(check, item)
        else:
            raise _mismatch(f"a bounded-row column {alias or '(unnamed)'}")
    if units != 1:
        raise _mismatch("the bounded rows do not name one privacy unit")
    if node.get("where_clause"):
        check.expression(node["where_clause"], Ctx.ROW)


def _check_dp_node(node: dict[str, Any], policy: ProtectionPolicy, aliases: dict[str, str]) -> None:
    for _ in range(_DP_LEVELS):
        _plain_select(node)
        if node.get("modifiers") or node.get("having"):
            raise _mismatch("ORDER BY, LIMIT or HAVING in the DP statement")
        source = node.get("from_table") or {}
        if source.get("type") == "BASE_TABLE":
            _check_dp_rows(node, policy, aliases)
            return
        if source.get("type") != "SUBQUERY" or source.get("sample") or source.get("column_name_alias"):
            raise _mismatch(f"FROM {source.get('type')} above the bounded rows")
        for item in node.get("select_list") or []:
            if not _dp_star(item):
                _dp_wrapper(item)
        for grouped in node.get("group_expressions") or []:
            _dp_wrapper(grouped)
        if node.get("where_clause"):
            _dp_wrapper(node["where_clause"])
        node = source["subquery"]["node"]
    raise _mismatch("the DP statement is nested deeper than its plan")


def confirm_dp(
    raw_sql: str, statement: str, policy: ProtectionPolicy, aliases: dict[str, str], constants: str | None = None
) -> None:
    """DuckDB's reading of a DP query (sandbox.dp): the buyer's text is one SELECT, and the statement
    that computes the bounded statistics reads only what the plan says (the same allowlists as
    threshold mode for every expression over the product's columns)."""
    row = _read(raw_sql, [statement, *([constants] if constants else [])])
    _check_dp_node(_node(row[0], compared=True), policy, aliases)
    if constants:
        _check_constants_node(_node(row[1]), policy)


# -- stage 2 and the constants from their tokens (branch val15, session 15; docs/sandbox.md) -----------------

_RESERVED_NAME = r'"__[A-Za-z0-9_]+"'
"""A quoted name the sandbox writes (rules.RESERVED_PREFIX, then letters, digits, `_`): no quote, space or
anything else a scanner could read as more than this one identifier."""
_OUTPUT_ITEM = rf"{_RESERVED_NAME} AS {_RESERVED_NAME}"
_OUTPUT_TEST = rf"{_RESERVED_NAME} (?:>=|<=|<>|>|<|=) \d+"
_OUTPUT_ORDER = rf"{_RESERVED_NAME}(?: ASC| DESC)?(?: NULLS FIRST| NULLS LAST)?"
_DATE_TEXT = r"'[0-9][0-9 :.-]*'"
"""A date or timestamp constant's text: digits, `-`, `:`, `.` and spaces, so no quote ends it early."""
_SHIFT = r"(?: [+-] INTERVAL '\d+' (?:DAY|MONTH|YEAR))?"
"""At most one `+ INTERVAL '90' DAY` (or `-`; MONTH, YEAR), which DuckDB's parser reads as `-`(<cast>,
to_days(CAST(trunc(CAST('90' AS DOUBLE)) AS INTEGER))): one operator call, no chain a walk could recurse on."""
_CONSTANT_ITEM = rf"CAST\({_DATE_TEXT} AS (?:DATE|TIMESTAMP)\){_SHIFT} AS {_RESERVED_NAME}"
_PLAIN_CONSTANTS = re.compile(rf"SELECT {_CONSTANT_ITEM}(?:, {_CONSTANT_ITEM})*", re.ASCII)
"""re.ASCII here and below: a digit pattern then matches 0-9 only, never another script's digit (which DuckDB
reads as a name)."""
_LEXEME = re.compile(
    r"(\"[^\"]*\")|('[^']*')|(\d+)|((?:DATE|TIMESTAMP)(?![A-Za-z]))|([A-Za-z]+)|(>=|<=|<>|[,<>=()+-])", re.ASCII
)
"""The tokens of a text either pattern (_PLAIN_CONSTANTS above, _plain_output_pattern below) has matched, as
DuckDB's scanner must see them; the group that matched gives the kind (_LEXEME_KINDS): a type name (DATE,
TIMESTAMP) is an identifier to DuckDB's tokenizer."""
_LEXEME_KINDS: tuple[Any, ...] = (
    None,
    _TOKEN.identifier,
    _TOKEN.string_const,
    _TOKEN.numeric_const,
    _TOKEN.identifier,
    _TOKEN.keyword,
    _TOKEN.operator,
)


_CONSTANT_CASTS = frozenset({"DATE", "TIMESTAMP", "DOUBLE", "INTEGER"})
_CONSTANT_FUNCTIONS = frozenset({"+", "-", "trunc", "to_days", "to_months", "to_years"})
"""What DuckDB's tree of a plain constants statement casts to and calls: the walk accepts it only while
sandbox.rules allows all of them, so _plain_constants checks that too."""


@functools.lru_cache(maxsize=8)
def _plain_output_pattern(groups_table: str) -> re.Pattern[str] | None:
    source = _quoted(groups_table)
    if not re.fullmatch(_RESERVED_NAME, source, re.ASCII):
        return None
    where = rf"(?: WHERE {_OUTPUT_TEST}(?: AND {_OUTPUT_TEST})*)?"
    order = rf"(?: ORDER BY {_OUTPUT_ORDER}(?:, {_OUTPUT_ORDER})*)?"
    limit = r"(?: LIMIT \d+(?: OFFSET \d+)?)?"
    return re.compile(rf"SELECT {_OUTPUT_ITEM}(?:, {_OUTPUT_ITEM})* FROM {source}{where}{order}{limit}", re.ASCII)


def _same_tokens(text: str) -> bool:
    """Whether DuckDB's tokens of `text` are, start for start and kind for kind, the lexemes of _LEXEME (a
    text one of the patterns above matched, so made only of those lexemes and single spaces)."""
    try:
        tokens = duckdb.tokenize(text)
    except duckdb.Error:
        return False
    kinds = _LEXEME_KINDS
    expected = [(found.start(), kinds[found.lastindex or 0]) for found in _LEXEME.finditer(text)]
    return tokens == expected


def _plain_output(sql: str, groups_table: str) -> bool:
    """Whether stage 2 is a plain projection that check_output would accept, shown without DuckDB's parse:

        SELECT "__x" AS "__y", ... FROM "<groups_table>"[ WHERE "__x" <op> <digits>[ AND ...]]
        [ ORDER BY "__x"[ ASC|DESC][ NULLS FIRST|LAST], ...][ LIMIT <digits>[ OFFSET <digits>]]

    character for character (uppercase keywords, single spaces, names of `__`, letters, digits and `_`), and
    DuckDB's tokens of it are exactly those words. Every such statement is a plain SELECT of the groups table
    whose every column is one reserved name, every other value a constant and every test a comparison: what
    _check_output_node accepts. False sends the caller to DuckDB's parse and that walk."""
    pattern = _plain_output_pattern(groups_table)
    return pattern is not None and pattern.fullmatch(sql) is not None and _same_tokens(sql)


def _plain_constants(sql: str) -> bool:
    """Whether the constants statement is `SELECT CAST('<date>' AS DATE) AS "__k0", ...` (or TIMESTAMP; each cast
    possibly shifted by one `+`/`- INTERVAL '<digits>' DAY|MONTH|YEAR`), character for character, with DuckDB's
    tokens exactly those words, and every cast and call of its tree allowed (_CONSTANT_CASTS, _CONSTANT_FUNCTIONS):
    a FROM-less SELECT of constants, which _check_constants_node accepts. False: DuckDB parses it, the walk runs."""
    return (
        _PLAIN_CONSTANTS.fullmatch(sql) is not None
        and _CONSTANT_CASTS <= rules.DUCKDB_CAST_TYPES
        and _CONSTANT_FUNCTIONS <= rules.DUCKDB_SCALARS
        and _same_tokens(sql)
    )

"""Differential-privacy mode: plan a query, bound contributions in SQL, add OpenDP's Gaussian noise.

The same validator as threshold mode checks the query first (sandbox.validator: dimensions, measures,
the closed algebra of aggregate arguments), then this module accepts the subset that can be made DP:
one table; SELECT items that are group keys (dimension columns) or `count(*)`, `count(DISTINCT
<privacy unit>)`, `sum(<argument>)` and `avg(<argument>)`; WHERE on dimensions; ORDER BY output
columns and LIMIT/OFFSET, which run on the noisy answer (post-processing). Everything else is refused
with what to write instead.

One statement (`DPPlan.sql`) computes, per group, the true statistics over *bounded* rows:

1. each row's aggregate arguments are clamped to the interval the declared bounds give them;
2. each privacy unit keeps at most `max_rows_per_group` rows per group, chosen by a hash seeded with
   the product version (`row_number()` over `hash(...)`), so the choice never changes for a version;
3. each unit keeps at most `max_groups_per_unit` groups, chosen the same way (`dense_rank()`).

Adding or removing one unit then changes each statistic's vector over groups by at most
sqrt(G) * c in L2 norm (G groups, c per group, both from the policy, never from the data): the
sensitivity the Gaussian mechanism (OpenDP `make_gaussian`, rho-zCDP) is calibrated to. The true
statistics never leave the service: `release` adds the noise in the API process and returns only
noisy values. See docs/privacy.md.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from sqlglot import exp

from market.i18n import Msg
from sandbox import cache, crosscheck
from sandbox.algebra import Argument, Interval, clamp, double
from sandbox.errors import QueryRefused
from sandbox.policy import MAX_PUBLIC_KEYS, DifferentialPrivacy, MeasureBounds, ProtectionPolicy
from sandbox.rewrite import _constants, _constants_sql
from sandbox.syntax import guard, to_sql
from sandbox.validator import CheckedQuery, check

Z95 = NormalDist().inv_cdf(0.975)
"""A Gaussian noise value lies within Z95 standard deviations with 95% probability."""
NANO = 10**9
"""The accountant keeps rho in integer nano-units, exact on both databases."""
SELECTION_DELTA_SHARE = Decimal("0.1")
"""Share of a query's delta spent on releasing groups through the noisy threshold tau."""


# -- accounting units -------------------------------------------------------------------------------


_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
"""The accountant's arithmetic: 40 significant digits, far beyond the nano-rho it keeps."""


def decimal_of(value: Decimal | float | int | str) -> Decimal:
    """A number as the accountant's Decimal; a float goes through its shortest repr (0.1 -> 0.1 exactly)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def epsilon_of(rho: Decimal | float, delta: Decimal | float) -> Decimal:
    """The epsilon of rho-zCDP at `delta` (Bun and Steinke 2016, Prop. 1.3): rho + 2 sqrt(rho ln(1/delta))."""
    r, d = decimal_of(rho), decimal_of(delta)
    if r <= 0:
        return Decimal(0)
    c = _CONTEXT
    return c.add(r, c.multiply(2, c.sqrt(c.multiply(r, c.ln(c.divide(1, d))))))


def rho_of(epsilon: Decimal | float, delta: Decimal | float) -> Decimal:
    """The largest rho whose epsilon at `delta` is `epsilon` (the inverse of epsilon_of)."""
    c = _CONTEXT
    log = c.ln(c.divide(1, decimal_of(delta)))
    root = c.subtract(c.sqrt(c.add(decimal_of(epsilon), log)), c.sqrt(log))
    return c.multiply(root, root)


def rho_nano(rho: Decimal | float) -> int:
    """rho in nano-units, rounded up: the accountant never under-counts a cost (a float rho from OpenDP
    is read through its repr; 1e-6 of a nano-unit is forgiven to its last-digit noise)."""
    exact = _CONTEXT.subtract(_CONTEXT.multiply(decimal_of(rho), NANO), Decimal("1e-6"))
    return int(exact.to_integral_value(rounding=decimal.ROUND_CEILING))


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statistic:
    """One noisy statistic per group: its SQL over bounded rows and one unit's most effect per group."""

    name: str
    sql: str
    per_group: float


@dataclass(frozen=True)
class Output:
    """One output column: a group key, or an aggregate computed from statistics."""

    name: str
    kind: str
    """key, count, count_units, sum or avg."""
    key: int = -1
    statistics: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0


@dataclass(frozen=True)
class DPPlan:
    """The statement that computes one DP query's true statistics, and how to release them."""

    sql: str
    key_count: int
    key_sets: list[list[Any]] | None
    """Public values of each group key (their product is the groups released), or None for tau."""
    statistics: list[Statistic]
    outputs: list[Output]
    groups_per_unit: int
    min_group_size: int
    order: list[tuple[int, bool]]
    limit: int | None
    offset: int
    columns: list[str]
    tables: list[str]
    referenced_columns: dict[str, list[str]] = field(default_factory=dict)
    constants_sql: str | None = None
    rows_per_group: int = 0
    """The policy's max_rows_per_group (R): the answer states it beside G, since the error bounds
    do not cover what bounding leaves out."""

    @property
    def canonical(self) -> str:
        """A digest of everything that decides the answer: equal digests are the same query."""
        text = json.dumps(
            [self.sql, self.key_sets, [o.__dict__ for o in self.outputs], self.order, self.limit, self.offset],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _refuse(construct: str, instead: Msg) -> QueryRefused:
    """`construct` (SQL text, or English text already wrapped in Msg) is refused; `instead` says what to write."""
    return QueryRefused("dp_unsupported", construct=construct, instead=instead)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Planner:
    def __init__(self, checked: CheckedQuery, policy: ProtectionPolicy, seed: str) -> None:
        assert policy.dp is not None
        self.checked = checked
        self.policy = policy
        self.params: DifferentialPrivacy = policy.dp
        self.seed = seed
        self.values: list[str] = []
        self.middles: dict[str, float] = {}
        self.statistics: dict[str, Statistic] = {}

    def _statistic(self, name: str, sql: str, per_group: float) -> str:
        self.statistics.setdefault(name, Statistic(name, sql, per_group))
        return name

    def plan(self) -> DPPlan:
        checked = self.checked
        select = checked.select
        if len(checked.refs) != 1 or select.args.get("joins"):
            raise _refuse(
                Msg("A join"), Msg("query one table at a time; DP mode bounds each unit's rows in one table.")
            )
        if select.args.get("having") is not None:
            raise _refuse("HAVING", Msg("filter rows with WHERE on dimensions, and filter the noisy groups yourself."))
        ref = checked.refs[0]
        table_policy = self.policy.tables[ref.table]
        unit = exp.column(table_policy.privacy_unit, table=ref.alias, quoted=True)
        keys: list[exp.Column] = []
        for key in checked.group_keys:
            if not isinstance(key, exp.Column):
                raise _refuse(Msg("GROUP BY an expression"), Msg("GROUP BY dimension columns as they are."))
            keys.append(key)
        key_texts = [to_sql(k) for k in keys]
        rows_per_group = self.params.max_rows_per_group
        outputs: list[Output] = []
        for name, item in zip(checked.columns, checked.items, strict=True):
            outputs.append(self._output(name, item, key_texts, ref.alias, table_policy.bounds, rows_per_group))
        key_sets: list[list[Any]] | None = None
        public = [self.params.public_keys.get(k.name) for k in keys]
        if all(values is not None for values in public):
            key_sets = [list(values) for values in public if values is not None]
            if math.prod(len(values) for values in key_sets) > MAX_PUBLIC_KEYS:
                raise _refuse(
                    Msg("GROUP BY with more than 10,000 public key combinations"),
                    Msg("group by fewer dimensions, or filter some of them."),
                )
        else:
            self._statistic("units", "count(*)", 1.0)
        groups = min(
            self.params.max_groups_per_unit,
            math.prod(len(v) for v in key_sets) if key_sets is not None else self.params.max_groups_per_unit,
        )
        if not keys:
            groups = 1
        sql = self._statement(unit, keys)
        order, limit, offset = self._order(outputs)
        return DPPlan(
            sql=sql,
            key_count=len(keys),
            key_sets=key_sets,
            statistics=list(self.statistics.values()),
            outputs=outputs,
            groups_per_unit=groups,
            min_group_size=self.policy.min_group_size,
            order=order,
            limit=limit,
            offset=offset,
            columns=checked.columns,
            tables=[ref.table],
            referenced_columns={t: sorted(c) for t, c in checked.referenced_columns.items()},
            constants_sql=self._constants(keys),
            rows_per_group=rows_per_group,
        )

    def _constants(self, keys: list[exp.Column]) -> str | None:
        where = self.checked.select.args.get("where")
        return _constants_sql(_constants([where.this] if where is not None else []))

    def _output(
        self,
        name: str,
        item: exp.Expr,
        key_texts: list[str],
        alias: str,
        bounds: dict[str, MeasureBounds],
        rows: int,
    ) -> Output:
        text = to_sql(item)
        if text in key_texts:
            return Output(name, "key", key=key_texts.index(text))
        if isinstance(item, exp.Count):
            argument = item.this
            if isinstance(argument, exp.Star):
                counted = self._statistic("rows", f"sum(least({_q('__n')}, {rows}))", float(rows))
                return Output(name, "count", statistics=(counted,))
            if isinstance(argument, exp.Distinct):
                target = argument.expressions[0]
                if (
                    isinstance(target, exp.Column)
                    and target.name == self.policy.tables[self.checked.refs[0].table].privacy_unit
                ):
                    return Output(
                        name,
                        "count_units",
                        statistics=(self._statistic("units", f"count(DISTINCT {_q('__unit')})", 1.0),),
                    )
            raise _refuse(f"{text}", Msg("write count(*) or count(DISTINCT <privacy unit>)."))
        if isinstance(item, (exp.Sum, exp.Avg)):
            function = "sum" if isinstance(item, exp.Sum) else "avg"

            def resolve(column: exp.Column, _function: str) -> tuple[object, MeasureBounds]:
                found = bounds.get(column.name)
                if found is None:  # pragma: no cover - the validator already refused unbounded measures
                    raise QueryRefused("unbounded_measure", column=column.name, function=function)
                return column.name, found

            argument = item.this.copy()
            _, interval = Argument(function, resolve).check(argument.copy())
            value = self._value(item.this, interval)
            low, high = float(interval.low), float(interval.high)
            if function == "sum":
                largest = max(abs(low), abs(high))
                scaled = self._scaled(value, "s", rows)
                statistic = self._statistic(f"sum:{value}", f"coalesce(sum({scaled}), 0)", rows * largest)
                return Output(name, "sum", statistics=(statistic,), low=low, high=high)
            middle = (low + high) / 2
            self.middles[value] = middle
            scaled = self._scaled(value, "c", rows)
            centred = self._statistic(f"csum:{value}", f"coalesce(sum({scaled}), 0)", rows * (high - low) / 2)
            index = value.removeprefix("__v")
            counted = self._statistic(
                f"cnt:{value}", f"coalesce(sum(least({_q('__n' + index)}, {rows})), 0)", float(rows)
            )
            return Output(name, "avg", statistics=(centred, counted), low=low, high=high)
        if isinstance(item, exp.AggFunc) or item.find(exp.AggFunc) is not None:
            raise _refuse(
                f"{text}",
                Msg(
                    "select count(*), count(DISTINCT <privacy unit>), sum(<measure>) or avg(<measure>) on their "
                    "own; compute ratios or spreads from the noisy answer."
                ),
            )
        raise _refuse(f"{text}", Msg("select group keys and aggregates only."))

    @staticmethod
    def _scaled(value: str, kind: str, rows: int) -> str:
        """A unit's per-group sum of `value` (kind s) or of its centred form (kind c), scaled down to
        `rows` rows' worth when the unit has more non-NULL rows in the group: at most `rows` times the
        largest magnitude, whatever the unit's row count."""
        index = value.removeprefix("__v")
        total, count = _q(f"__{kind}{index}"), _q(f"__n{index}")
        return f"CASE WHEN {count} > {rows} THEN {total} * {rows}e0 / {count} ELSE {total} END"

    def _value(self, argument: exp.Expr, interval: Interval) -> str:
        """The bounded-row column holding `argument` clamped to its interval; one column per argument."""
        name = f"__v{len(self.values)}"
        if isinstance(argument, exp.TryCast) and isinstance(argument.this, exp.Column):
            column = argument.this
            bounds = MeasureBounds(min=float(interval.low), max=float(interval.high))
            sql = to_sql(clamp(column.copy(), bounds))
        else:
            low = double(_decimal(float(interval.low)))
            high = double(_decimal(float(interval.high)))
            value = argument.copy()
            clamped = exp.Anonymous(
                this="least", expressions=[exp.Anonymous(this="greatest", expressions=[value.copy(), low]), high]
            )
            sql = to_sql(
                exp.Case(ifs=[exp.If(this=exp.Is(this=value, expression=exp.Null()), true=exp.Null())], default=clamped)
            )
        for index, existing in enumerate(self.values):
            if existing == sql:
                return f"__v{index}"
        self.values.append(sql)
        return name

    def _statement(self, unit: exp.Column, keys: list[exp.Column]) -> str:
        select = self.checked.select
        source = select.args.get("from_") or select.args.get("from")
        assert source is not None
        where = select.args.get("where")
        inner = [f"{to_sql(unit)} AS {_q('__unit')}"]
        inner += [f"{to_sql(guard(k.copy()))} AS {_q(f'__g{i}')}" for i, k in enumerate(keys)]
        inner += [f"{sql} AS {_q(f'__v{i}')}" for i, sql in enumerate(self.values)]
        rows_sql = f"SELECT {', '.join(inner)} {to_sql(source)}"
        if where is not None:
            rows_sql += f" WHERE {to_sql(where.this)}"
        groups = [_q(f"__g{i}") for i in range(len(keys))]
        seed = _literal(self.seed)
        # One row per unit and group: its row count and, per value, its non-NULL count, sum and centred
        # sum. Statistics then cap each unit's rows per group at R (counts: least(n, R); sums: scaled
        # by R / n), and a unit's groups at G, the first G in a hash order seeded by the product version.
        per_unit = [_q("__unit"), *groups, f"count(*) AS {_q('__n')}"]
        for i in range(len(self.values)):
            column = _q(f"__v{i}")
            per_unit += [f"count({column}) AS {_q(f'__n{i}')}", f"sum({column}) AS {_q(f'__s{i}')}"]
            middle = self.middles.get(f"__v{i}", 0.0)
            per_unit.append(f"sum({column} - {to_sql(double(_decimal(middle)))}) AS {_q(f'__c{i}')}")
        unit_groups = (
            f"SELECT {', '.join(per_unit)} FROM ({rows_sql}) AS {_q('__rows')} "
            f"GROUP BY {', '.join([_q('__unit'), *groups])}"
        )
        if keys:
            group_order = ", ".join([f"hash({', '.join([*groups, seed])})", *groups])
            bounded = (
                f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {_q('__unit')} ORDER BY {group_order}) "
                f"AS {_q('__group')} FROM ({unit_groups}) AS {_q('__units')}) AS {_q('__ranked')} "
                f"WHERE {_q('__group')} <= {self.params.max_groups_per_unit}"
            )
        else:
            bounded = unit_groups
        statistics = [f"{s.sql} AS {_q(f'__stat{i}')}" for i, s in enumerate(self.statistics.values())]
        statement = f"SELECT {', '.join([*groups, *statistics])} FROM ({bounded}) AS {_q('__bounded')}"
        if keys:
            statement += f" GROUP BY {', '.join(groups)}"
        return statement

    def _order(self, outputs: list[Output]) -> tuple[list[tuple[int, bool]], int | None, int]:
        select = self.checked.select
        order: list[tuple[int, bool]] = []
        names = [o.name.lower() for o in outputs]
        clause = select.args.get("order")
        for ordered in clause.expressions if clause is not None else []:
            target = ordered.this
            desc = bool(ordered.args.get("desc"))
            if isinstance(target, exp.Literal) and not target.is_string and target.this.isdigit():
                position = int(target.this) - 1
            elif isinstance(target, exp.Column) and target.name.lower() in names and not target.table:
                position = names.index(target.name.lower())
            else:
                text = to_sql(target)
                matches = [i for i, item in enumerate(self.checked.items) if to_sql(item) == text]
                if not matches:
                    raise _refuse("ORDER BY " + text, Msg("order by output columns, by name or position."))
                position = matches[0]
            if not 0 <= position < len(outputs):
                raise _refuse("ORDER BY " + to_sql(target), Msg("order by output columns, by name or position."))
            order.append((position, desc))
        return order, self.checked.limit, self.checked.offset


def _decimal(value: float) -> Any:
    return Decimal(repr(value))


def plan(sql: str, policy: ProtectionPolicy, seed: str) -> DPPlan:
    """Check `sql` with the validator, plan it in DP mode and have DuckDB confirm it; raises QueryRefused.

    Accepted plans are cached per process on (policy, seed, SQL text), as threshold mode's are: the
    plan depends on nothing else, and the cross-check costs DuckDB a parse of every level."""
    if not policy.is_dp:
        raise ValueError("not a DP policy")
    key = ("dp", policy.model_dump_json(), seed, sql)
    found: DPPlan | None = cache.plans.get(key)
    if found is not None:
        return found
    planned = _plan(sql, policy, seed)
    cache.plans.put(key, planned, len(planned.sql) + len(sql) + 1024)
    return planned


def _plan(sql: str, policy: ProtectionPolicy, seed: str) -> DPPlan:
    with crosscheck.syntax_first(sql):  # a text DuckDB cannot read: refused with DuckDB's syntax error
        checked = check(sql, policy)
        try:
            planned = _Planner(checked, policy, seed).plan()
            # The second validator, as in threshold mode: DuckDB's own parser reads what will run.
            crosscheck.confirm_dp(
                sql, planned.sql, policy, {ref.alias: ref.table for ref in checked.refs}, planned.constants_sql
            )
        except RecursionError as error:  # pragma: no cover - the validator bounds nesting
            raise QueryRefused("sql_too_complex", depth="too many", limit=0) from error
    return planned


# -- noise --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The noise of each statistic for a chosen rho: scale, sensitivity, cost (from OpenDP) and tau."""

    rho: Decimal
    """Total rho the query spends, as OpenDP's Gaussian mechanisms map it."""
    scales: dict[str, float]
    sensitivities: dict[str, float]
    tau: float | None
    selection_delta: Decimal
    """The delta the noisy threshold spends on releasing groups (0 with public keys)."""
    epsilon: Decimal
    delta: float


@functools.cache
def _opendp() -> Any:
    """OpenDP, imported on first use: sandbox workers import this module but never draw noise."""
    import opendp.prelude as opendp

    opendp.enable_features("contrib")
    return opendp


def _measurement(scale: float) -> Any:
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
    return dp.m.make_gaussian(*space, scale=scale)


def calibrate(plan: DPPlan, params: DifferentialPrivacy, epsilon: Decimal | float) -> Calibration:
    """Split the rho that `epsilon` stands for (at the policy's delta) evenly over the statistics.

    The accounting (rho, epsilon, delta) is Decimal; only the noise scales handed to OpenDP are floats."""
    target = rho_of(epsilon, params.delta)
    share = float(target / len(plan.statistics))
    root = math.sqrt(plan.groups_per_unit)
    scales: dict[str, float] = {}
    sensitivities: dict[str, float] = {}
    spent = Decimal(0)
    for statistic in plan.statistics:
        sensitivity = root * statistic.per_group
        scale = sensitivity / math.sqrt(2 * share) * (1 + 1e-9) if sensitivity > 0 else 0.0
        if scale > 0:
            spent += decimal_of(float(_measurement(scale).map(sensitivity)))
        scales[statistic.name] = scale
        sensitivities[statistic.name] = sensitivity
    tau: float | None = None
    delta = decimal_of(params.delta)
    selection_delta = Decimal(0)
    if plan.key_sets is None and plan.key_count > 0:
        # A group only one unit makes up has a true unit count of 1; the chance that any of that
        # unit's (at most G) groups passes tau is at most the selection share of delta.
        selection_delta = delta * SELECTION_DELTA_SHARE
        z = NormalDist().inv_cdf(1 - float(selection_delta) / plan.groups_per_unit)
        tau = max(float(plan.min_group_size), 1 + z * scales["units"])
    conversion_delta = delta - selection_delta
    return Calibration(
        rho=spent,
        scales=scales,
        sensitivities=sensitivities,
        tau=tau,
        selection_delta=selection_delta,
        epsilon=epsilon_of(spent, conversion_delta),
        delta=params.delta,
    )


def noise(values: Sequence[float], scale: float) -> list[float]:
    """`values` plus independent Gaussian noise of standard deviation `scale`, drawn by OpenDP."""
    if scale <= 0 or not values:
        return [float(v) for v in values]
    return [float(v) for v in _measurement(scale)([float(v) for v in values])]


def error_bounds(plan: DPPlan, calibration: Calibration) -> dict[str, float | None]:
    """Half-width of each column's 95% interval around the true bounded value (None: per row, see rows)."""
    bounds: dict[str, float | None] = {}
    for output in plan.outputs:
        if output.kind in ("count", "count_units", "sum"):
            bounds[output.name] = Z95 * calibration.scales[output.statistics[0]]
        elif output.kind == "avg":
            bounds[output.name] = None
    return bounds


def _key_order(key: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    """A sort key for group keys (NULL last; each key column holds one type)."""
    return tuple((value is None, "" if value is None else value) for value in key)


@dataclass
class Release:
    rows: list[list[Any]]
    avg_bounds: dict[str, float]
    """For avg columns: the largest per-row 95% bound over the released rows."""


def release(plan: DPPlan, true_rows: Sequence[Sequence[Any]], calibration: Calibration, max_rows: int) -> Release:
    """The noisy answer: noise on every statistic of every candidate group, then selection, then output."""
    n_keys = plan.key_count
    by_key = {tuple(row[:n_keys]): list(row[n_keys:]) for row in true_rows}
    zeros = [0] * len(plan.statistics)
    if plan.key_sets is not None or n_keys == 0:
        candidates = [tuple(c) for c in itertools.product(*(plan.key_sets or []))]
    else:
        # Key order, never the worker's: DuckDB returns groups in an order that follows single units.
        candidates = sorted(by_key, key=_key_order)
    columns: dict[str, list[float]] = {}
    for index, statistic in enumerate(plan.statistics):
        values = [float(by_key.get(key, zeros)[index] or 0) for key in candidates]
        columns[statistic.name] = noise(values, calibration.scales[statistic.name])
    kept = list(range(len(candidates)))
    if calibration.tau is not None:
        kept = [i for i in kept if columns["units"][i] >= calibration.tau]
    rows: list[list[Any]] = []
    avg_bounds: dict[str, float] = {}
    for i in kept:
        row: list[Any] = []
        for output in plan.outputs:
            if output.kind == "key":
                row.append(candidates[i][output.key])
            elif output.kind in ("count", "count_units"):
                row.append(max(0, round(columns[output.statistics[0]][i])))
            elif output.kind == "sum":
                row.append(columns[output.statistics[0]][i])
            else:
                centred, counted = output.statistics
                count = max(1.0, columns[counted][i])
                middle = (output.low + output.high) / 2
                average = min(output.high, max(output.low, middle + columns[centred][i] / count))
                row.append(average)
                half = (output.high - output.low) / 2
                bound = Z95 * (calibration.scales[centred] + half * calibration.scales[counted]) / count
                avg_bounds[output.name] = max(avg_bounds.get(output.name, 0.0), min(bound, output.high - output.low))
        rows.append(row)
    for position, desc in reversed(plan.order):
        rows.sort(key=lambda r, p=position: (r[p] is None, r[p]), reverse=desc)  # type: ignore[misc]
    rows = rows[plan.offset :]
    if plan.limit is not None:
        rows = rows[: plan.limit]
    return Release(rows=rows[:max_rows], avg_bounds=avg_bounds)


def privacy_summary(
    plan: DPPlan, calibration: Calibration, released: Release | None, *, left_epsilon: Decimal | None
) -> dict[str, Any]:
    """The `privacy` object of an answer (docs/api.md): mechanism, cost, budget left, 95% error bounds."""
    bounds = error_bounds(plan, calibration)
    if released is not None:
        bounds.update(released.avg_bounds)
    return {
        "mechanism": "gaussian (OpenDP make_gaussian), rho-zCDP; contributions bounded per unit",
        "cost": {
            "epsilon": round(float(calibration.epsilon), 6),
            "delta": calibration.delta,
            "rho": round(float(calibration.rho), 9),
            "selection_delta": float(calibration.selection_delta),
        },
        "budget_left": None if left_epsilon is None else {"epsilon": round(float(left_epsilon), 6)},
        "error_bound_95": {name: (None if value is None else round(value, 6)) for name, value in bounds.items()},
        "groups": "public keys" if plan.key_sets is not None or plan.key_count == 0 else "noisy threshold",
        "tau": None if calibration.tau is None else round(calibration.tau, 3),
        "contribution_bounds": {"max_groups_per_unit": plan.groups_per_unit, "max_rows_per_group": plan.rows_per_group},
    }


# -- running (inside a sandbox worker) -------------------------------------------------------------

MAX_CANDIDATE_GROUPS = 1_000_000
"""Most true groups a worker returns for selection; far above any grouping of the demo's data."""


def execute(connection: Any, plan: DPPlan, stats: Any | None = None) -> Any:
    """Type the statement with DuckDB's binder (sandbox.binding), then compute the true statistics.

    Returns an engine.Execution whose rows are per-group true statistics over bounded rows; they go
    back to the API process, which adds the noise before anything reaches the buyer.
    """
    import time

    from sandbox import binding
    from sandbox.engine import Execution

    started = time.process_time()
    if plan.constants_sql:
        try:
            connection.execute(plan.constants_sql).fetchall()
        except Exception as error:  # duckdb.Error: a constant that fails, whatever the rows
            refusal = ("constant_error", {"detail": str(error).splitlines()[0][:200]})
            return Execution([], 0, 0, [], too_many_rows=False, cpu_ms=0, statements=[], refused=refusal)
    if stats is not None:
        # The binder's verdict depends on the text and the version's types only: decided once (engine).
        refused = stats.refusal(
            "dp\0" + plan.sql, lambda: binding.check(stats.shadow(plan.tables), plan.sql, group_keys=False)
        )
    else:
        copy = binding.shadow(connection, plan.tables)
        try:
            refused = binding.check(copy, plan.sql, group_keys=False)
        finally:
            copy.close()
    if refused is not None:
        return Execution([], 0, 0, [], too_many_rows=False, cpu_ms=0, statements=[], refused=refused)
    rows = connection.execute(plan.sql).fetchmany(MAX_CANDIDATE_GROUPS)
    return Execution(
        rows=rows,
        groups=len(rows),
        suppressed_groups=0,
        methods=["dp"],
        too_many_rows=False,
        cpu_ms=int((time.process_time() - started) * 1000),
        statements=[plan.sql],
    )

"""A bound, before running, on how much a row-level expression can grow a string.

An expression that costs nothing on most rows but blows up on a few (nested replace() reached only
in a CASE branch a hidden condition selects) turns time and memory into an oracle. So the size of
every string an expression computes is bounded from the query text alone: `coefficient * L +
constant`, where L is the longest input string. replace(s, 'a', 'aaaa') can make s four times
longer; concatenation adds; substring, trim, lower and the like never grow. The coefficient and the
constant must stay under fixed limits, whatever branch the value sits in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sandbox.errors import QueryRefused
from sandbox.syntax import function_name

MAX_GROWTH = 64
"""Most times longer than its longest input a computed string may be."""
MAX_CONSTANT = 100_000
"""Most characters a string may gain from constants (the SQL itself is at most 20,000 characters)."""
NUMBER_TEXT = 64
"""Longest text of a number, date or other non-string value cast to VARCHAR."""


@dataclass(frozen=True)
class Size:
    """A string's length is at most growth * L + constant (L: the longest input string)."""

    growth: int
    constant: int

    def __add__(self, other: Size) -> Size:
        return Size(self.growth + other.growth, self.constant + other.constant)

    def widest(self, other: Size) -> Size:
        return Size(max(self.growth, other.growth), max(self.constant, other.constant))

    def times(self, factor: int) -> Size:
        return Size(self.growth * factor, self.constant * factor)


_SHRINKING = (exp.Lower, exp.Upper, exp.Trim, exp.Substring, exp.Left, exp.Right)
_CHOOSING = (exp.Coalesce, exp.Nullif, exp.Greatest, exp.Least, exp.If, exp.Case, exp.Paren, exp.Try, exp.TryCast)
_CONCATENATING = (exp.Concat, exp.DPipe)


def _literal_text(node: exp.Expr) -> str | None:
    return str(node.this) if isinstance(node, exp.Literal) and node.is_string else None


def size(node: exp.Expr) -> Size:
    """A bound on the length of the string `node` computes; refuses it past the limits."""
    bound = _size(node)
    if bound.growth > MAX_GROWTH or bound.constant > MAX_CONSTANT:
        _refuse(node, bound.growth)
    return bound


def _size(node: exp.Expr) -> Size:
    if isinstance(node, exp.Column):
        return Size(1, 0)
    if isinstance(node, exp.Literal):
        return Size(0, len(str(node.this)))
    if isinstance(node, exp.Replace):
        return _replace(node)
    if isinstance(node, _CONCATENATING):
        total = Size(0, 0)
        for part in node.iter_expressions():
            total = total + size(part)
        return total
    if isinstance(node, _SHRINKING):
        return size(node.this)
    if isinstance(node, _CHOOSING):
        widest = Size(0, 0)
        for option in node.iter_expressions():
            widest = widest.widest(size(option))
        return widest
    for argument in node.iter_expressions():
        size(argument)  # check inside, e.g. length(replace(...)) still computes the replace
    return Size(0, NUMBER_TEXT)


def _replace(node: exp.Replace) -> Size:
    subject = size(node.this)
    search, replacement = node.expression, node.args.get("replacement")
    found = _literal_text(search) if search is not None else None
    new = _literal_text(replacement) if replacement is not None else None
    if search is not None:
        size(search)
    if new is None:
        if replacement is not None:
            extra = size(replacement)
            if extra.growth:
                _refuse(node, "its own length")  # a replacement that grows with the input grows quadratically
            new_length = extra.constant
        else:
            new_length = 0
    else:
        new_length = len(new)
    # Every character can start a match: at most len(s) / len(search) matches, each adding the replacement.
    factor = max(1, -(-new_length // max(1, len(found)))) if found is not None else max(1, new_length)
    return subject.times(factor)


def _refuse(node: exp.Expr, growth: int | str) -> None:
    raise QueryRefused("expression_too_costly", construct=f"{function_name(node)}()", growth=growth, limit=MAX_GROWTH)


_GROWING = (exp.Replace, *_CONCATENATING)
"""The only nodes whose Size can exceed its inputs' (growth above 1, or constants added together)."""


def check(node: exp.Expr) -> None:
    """Refuse `node` if some string it computes can outgrow the limits.

    Without a replace() or a concatenation anywhere in it, no bound can pass the limits, so the walk is
    skipped (branch val15): every other node's Size is a column's (1, 0), a literal's (0, its length, under
    the 20,000 characters of the SQL), NUMBER_TEXT, or the widest of its inputs', so growth stays at most 1
    and the constant at most max(20,000, NUMBER_TEXT), under MAX_GROWTH and MAX_CONSTANT."""
    if node.find(*_GROWING) is None:
        return
    size(node)

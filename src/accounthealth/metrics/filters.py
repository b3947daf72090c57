"""`where:` filters written like SQL (``priority = 'P1' and status != 'solved'``).

The text is parsed by sqlglot into a syntax tree and rebuilt as an Ibis expression from a small
allowed set (comparisons, and/or/not, in, like, is null), so user text never becomes SQL text.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

from accounthealth.errors import ConfigError, did_you_mean

_COMPARE = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Filter:
    """A parsed filter; ``columns`` lists the columns it reads."""

    text: str
    tree: exp.Expression
    columns: frozenset[str]

    def apply(self, table: ir.Table) -> ir.BooleanValue:
        """The filter as a boolean Ibis expression over ``table``."""
        return _build(self.tree, table)


def parse_filter(text: str, columns: t.Iterable[str], where: str) -> Filter:
    """Parse ``text`` and check that every column it names is one of ``columns``."""
    fix = "write it like: priority = 'P1' and status != 'solved' (quote text values with ')"
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ConfigError(
            f"cannot parse filter {text!r}: {exc.errors[0]['description']}", where=where, fix=fix
        ) from None
    valid = set(columns)
    used = set()
    for node in tree.walk():
        if not isinstance(node, _ALLOWED):
            raise ConfigError(
                f"filter {text!r} uses '{node.sql()}', which filters do not support",
                where=where,
                fix="use comparisons (= != < <= > >=), and/or/not, in (...), like, is null",
            )
        if isinstance(node, exp.Column):
            name = node.name
            if name not in valid:
                raise ConfigError(
                    f"filter {text!r} names unknown column '{name}'",
                    where=where,
                    fix=did_you_mean(name, valid),
                )
            used.add(name)
    return Filter(text=text, tree=tree, columns=frozenset(used))


_ALLOWED = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.Paren,
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.In,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.Neg,
    exp.Tuple,
    *_COMPARE,
)


def _build(node: exp.Expression, table: ir.Table) -> t.Any:
    if isinstance(node, exp.Paren):
        return _build(node.this, table)
    if isinstance(node, exp.And):
        return _build(node.left, table) & _build(node.right, table)
    if isinstance(node, exp.Or):
        return _build(node.left, table) | _build(node.right, table)
    if isinstance(node, exp.Not):
        return ~_build(node.this, table)
    if isinstance(node, exp.Column):
        return table[node.name]
    if isinstance(node, exp.Literal):
        if node.is_string:
            return ibis.literal(node.this)
        number = float(node.this)
        return ibis.literal(int(number) if number.is_integer() else number)
    if isinstance(node, exp.Neg):
        return -_build(node.this, table)
    if isinstance(node, exp.Boolean):
        return ibis.literal(bool(node.this))
    if isinstance(node, exp.Null):
        return ibis.null()
    if isinstance(node, exp.Is):
        value = _build(node.this, table)
        return (
            value.isnull()
            if isinstance(node.expression, exp.Null)
            else value == _build(node.expression, table)
        )
    if isinstance(node, exp.In):
        return _build(node.this, table).isin([_build(e, table) for e in node.expressions])
    if isinstance(node, exp.Like):
        return _build(node.this, table).like(node.expression.this)
    if isinstance(node, exp.ILike):
        return _build(node.this, table).ilike(node.expression.this)
    for kind, op in _COMPARE.items():
        if isinstance(node, kind):
            return op(_build(node.left, table), _build(node.right, table))
    raise AssertionError(f"unsupported filter node {node!r}")  # parse_filter rejects these

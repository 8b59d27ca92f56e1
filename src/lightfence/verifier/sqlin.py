"""`column IN (values)` for long value lists, as one array parameter on PostgreSQL.

A batch of 2,000 records asks "which of these hashes, sessions, devices are stored?" with
thousands of values. Rendered as IN (...), each value is its own placeholder, and psycopg parses
such a statement in Python every time (it does not cache statements over 50 parameters): that
was the stream worker's largest cost. `= ANY(%(values)s)` is one array parameter and one short,
cached statement. SQLite keeps IN (...).

Text values travel as one array literal built here (`{"a","b"}`, cast to the column's array
type on the server): psycopg's own list adapter checks and quotes each element in Python, which
cost more than the query itself for 2,000 hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Boolean, String, Text, any_, bindparam, cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import NullType


class OneOf(ColumnElement[bool]):
    inherit_cache = False
    type = Boolean()

    def __init__(self, column: Any, values: Iterable[Any]) -> None:
        self.column = column
        self.values = list(values)


def one_of(column: Any, values: Iterable[Any]) -> OneOf:
    return OneOf(column, values)


@compiles(OneOf)
def _in_list(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(element.values), **kw))


@compiles(OneOf, "postgresql")
def _any_array(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    kind = element.column.type
    literal = text_array(element.values) if isinstance(kind, String) else None
    if literal is not None:
        # text[], not the column's varchar(n)[]: a cast to varchar(n) would cut a longer value
        # to n characters, and the cut value could name another row. The parameter goes
        # untyped (no `::VARCHAR`): PostgreSQL then reads it as the array itself, where
        # varchar -> text[] would be a run-time cast that the planner cannot see through (a
        # sequential scan per lookup: 2 s a batch).
        param = bindparam(None, literal, type_=NullType())
        return str(compiler.process(element.column == any_(cast(param, ARRAY(Text()))), **kw))
    values = bindparam(None, element.values, type_=ARRAY(kind))
    return str(compiler.process(element.column == any_(values), **kw))


def text_array(values: Sequence[Any]) -> str | None:
    """A PostgreSQL array literal of text values, or None if one is not a string: each element
    double-quoted, with backslash and double quote escaped (the array input syntax), so no
    value can end its element early."""
    try:
        plain = "".join(values)
    except TypeError:
        return None
    if not values:
        return "{}"
    if "\\" not in plain and '"' not in plain:  # nearly always (hex ids): two joins in C
        return '{"' + '","'.join(values) + '"}'
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return '{"' + '","'.join(quoted) + '"}'

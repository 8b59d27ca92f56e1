"""`column IN (values)` for long value lists, as one array parameter on PostgreSQL.

A batch of 2,000 records asks "which of these hashes, sessions, devices are stored?" with
thousands of values. Rendered as IN (...), each value is its own placeholder, and psycopg parses
such a statement in Python every time (it does not cache statements over 50 parameters): that
was the stream worker's largest cost. `= ANY(%(values)s)` is one array parameter and one short,
cached statement. SQLite keeps IN (...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Boolean, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement


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
    values = bindparam(None, element.values, type_=ARRAY(element.column.type))
    return str(compiler.process(element.column == any_(values), **kw))

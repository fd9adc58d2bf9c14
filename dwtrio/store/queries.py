"""Named SQL queries, loaded once from ``schema/queries/*.sql``.

Each query starts with ``-- name: verb_noun`` followed by a one-line ``--``
description; the SQL runs until the next ``-- name:`` line. Python never builds
SQL text.

Parameters are named: ``:task_id`` in the SQL (``::type`` casts, string
literals, quoted identifiers and comments are left alone). Each name becomes a
positional ``$n`` once, when the file is loaded, in the order names first
appear, so a name used twice is one parameter. A query may still use ``$n``
itself (then it takes positional arguments), but not both styles.

Store modules bind the queries they run at import, which fails for an unknown
name: ``_CLAIM = query("claim_activity_task", ClaimedActivity)``, and call them
with keywords, ``await _CLAIM.one(conn, namespace=..., ...)``. A keyword the
query does not name, or a name without a keyword, raises
:class:`QueryArgumentsError` (``tests/store/test_query_loader.py`` also checks every
call site's keywords statically). A bound row class is built straight from the
record, positionally (``from_record``, or ``cls(*record)``): its fields, or its
``COLUMNS``, are the query's columns in order, which the test that prepares
every query checks against the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import attrs

from dwtrio.store.pool import Conn

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

#: What the parameter scan skips (string literals, quoted identifiers, comments,
#: dollar quotes, ``::`` casts) or finds (``$n``, ``:name``). Leftmost match wins,
#: so ``::`` is consumed before its second colon could start a ``:name``.
_SCAN = re.compile(
    r"""
      '(?:[^']|'')*'                                  # string literal
    | "(?:[^"]|"")*"                                  # quoted identifier
    | --[^\n]*                                        # line comment
    | /\*.*?\*/                                       # block comment
    | \$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$   # dollar-quoted text
    | ::                                              # a cast
    | (?P<positional>\$[0-9]+)                        # positional parameter
    | (?<![A-Za-z0-9_]):(?P<param>[A-Za-z_][A-Za-z0-9_]*)   # named parameter
    """,
    re.VERBOSE | re.DOTALL,
)


def schema_dir() -> Path:
    """Where the SQL lives: inside the installed wheel, or the source tree's ``schema/``."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_schema"
    if packaged.is_dir():
        return packaged
    return here.parent / "schema"


@attrs.frozen
class NamedQuery:
    name: str
    description: str
    #: The SQL as PostgreSQL gets it: named parameters already turned into ``$n``.
    sql: str
    source: str
    #: The named parameters, ``params[i]`` being ``$i+1`` (empty for a ``$n`` query).
    params: tuple[str, ...] = ()
    #: Written with ``$n`` parameters (called positionally, through :func:`sql`).
    positional: bool = False


def number_parameters(text: str, where: str = "<string>") -> tuple[str, tuple[str, ...]]:
    """``text`` with each ``:name`` replaced by its ``$n``, and the names in ``$n`` order.

    Raises:
        ValueError: the text mixes ``:name`` and ``$n`` parameters.
    """
    converted, names, _ = _number(text, where)
    return converted, names


def _number(text: str, where: str) -> tuple[str, tuple[str, ...], bool]:
    names: dict[str, int] = {}
    positional = False

    def replace(m: re.Match[str]) -> str:
        nonlocal positional
        if m.group("positional"):
            positional = True
        elif (name := m.group("param")) is not None:
            return f"${names.setdefault(name, len(names) + 1)}"
        return m.group(0)

    converted = _SCAN.sub(replace, text)
    if positional and names:
        raise ValueError(f"{where}: mixes :name and $n parameters")
    return converted, tuple(names), positional


def parse_queries(text: str, source: str = "<string>") -> dict[str, NamedQuery]:
    """Split a .sql file into its named queries.

    Raises:
        ValueError: a name appears twice, a block is empty, text precedes the first
            name, or a query mixes ``:name`` and ``$n`` parameters.
    """
    queries: dict[str, NamedQuery] = {}
    matches = list(_NAME.finditer(text))
    head = text[: matches[0].start()] if matches else text
    if any(line.strip() and not line.strip().startswith("--") for line in head.splitlines()):
        raise ValueError(f"{source}: SQL before the first '-- name:' line")
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end() : end].strip()
        lines = body.splitlines()
        description = ""
        while lines and lines[0].startswith("--"):
            description = (description + " " + lines.pop(0).lstrip("- ")).strip()
        sql = "\n".join(lines).strip().rstrip(";")
        name = m.group(1)
        if not sql:
            raise ValueError(f"{source}: query {name!r} is empty")
        if name in queries:
            raise ValueError(f"{source}: query {name!r} defined twice")
        sql, params, positional = _number(sql, f"{source}: query {name!r}")
        queries[name] = NamedQuery(name, description, sql, source, params, positional)
    return queries


def load_queries(directory: Path | None = None) -> dict[str, NamedQuery]:
    directory = directory or schema_dir() / "queries"
    out: dict[str, NamedQuery] = {}
    for path in sorted(directory.glob("*.sql")):
        for name, q in parse_queries(path.read_text(), path.name).items():
            if name in out:
                raise ValueError(f"query {name!r} defined in {out[name].source} and {path.name}")
            out[name] = q
    return out


QUERIES = load_queries()


def sql(name: str) -> str:
    """The SQL text of a named query; KeyError at import time for an unknown name."""
    return QUERIES[name].sql


class QueryArgumentsError(TypeError):
    """A query was called with keywords that are not exactly its named parameters."""


R = TypeVar("R")


class Query:
    """A named query bound for calling with keyword arguments (one per parameter name)."""

    __slots__ = ("name", "params", "sql")

    def __init__(self, named: NamedQuery) -> None:
        self.name = named.name
        self.sql = named.sql
        self.params = named.params

    def __repr__(self) -> str:
        return f"<query {self.name}({', '.join(self.params)})>"

    def args(self, kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for ``kwargs``, which must name every parameter, no more."""
        params = self.params
        if len(kwargs) == len(params):
            try:
                return tuple([kwargs[p] for p in params])
            except KeyError:
                pass
        missing = [p for p in params if p not in kwargs]
        unknown = sorted(k for k in kwargs if k not in params)
        raise QueryArgumentsError(
            f"query {self.name!r} takes {', '.join(params) or 'no parameters'}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )

    async def execute(self, conn: Conn, **kwargs: Any) -> str:
        return await conn.execute(self.sql, *self.args(kwargs))

    async def fetch(self, conn: Conn, **kwargs: Any) -> list[Any]:
        return await conn.fetch(self.sql, *self.args(kwargs))

    async def fetchrow(self, conn: Conn, **kwargs: Any) -> Any:
        return await conn.fetchrow(self.sql, *self.args(kwargs))

    async def fetchval(self, conn: Conn, **kwargs: Any) -> Any:
        return await conn.fetchval(self.sql, *self.args(kwargs))


class RowQuery(Query, Generic[R]):
    """A named query whose records become ``row`` instances."""

    __slots__ = ("make", "row")

    def __init__(self, named: NamedQuery, row: type[R]) -> None:
        super().__init__(named)
        self.row = row
        self.make: Callable[[Any], R] = getattr(row, "from_record", None) or (
            lambda record: row(*record)
        )

    async def one(self, conn: Conn, **kwargs: Any) -> R | None:
        """The first row, or None."""
        record = await conn.fetchrow(self.sql, *self.args(kwargs))
        return None if record is None else self.make(record)

    async def all(self, conn: Conn, **kwargs: Any) -> list[R]:
        make = self.make
        return [make(r) for r in await conn.fetch(self.sql, *self.args(kwargs))]


def row_columns(row: type[Any]) -> tuple[str, ...]:
    """The columns a row class is built from, in order: its ``COLUMNS``, else its fields."""
    columns: tuple[str, ...] | None = getattr(row, "COLUMNS", None)
    return columns if columns is not None else tuple(f.name for f in attrs.fields(row))


#: Every query bound so far, by name (the tests check the row classes against the database).
BOUND: dict[str, Query] = {}


@overload
def query(name: str) -> Query: ...
@overload
def query(name: str, row: type[R]) -> RowQuery[R]: ...
def query(name: str, row: type[R] | None = None) -> Query | RowQuery[R]:
    """Bind the named query ``name`` (KeyError at import for an unknown one), with its row class."""
    named = QUERIES[name]
    bound: Query = Query(named) if row is None else RowQuery(named, row)
    BOUND[name] = bound
    return bound

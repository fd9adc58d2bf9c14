"""Named SQL queries, loaded once from ``schema/queries/*.sql``.

Each query starts with ``-- name: verb_noun`` followed by a one-line ``--``
description; the SQL runs until the next ``-- name:`` line. Python never builds
SQL text: call sites look queries up with :func:`sql`, and an unknown name fails
at import time.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


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
    sql: str
    source: str


def parse_queries(text: str, source: str = "<string>") -> dict[str, NamedQuery]:
    """Split a .sql file into its named queries.

    Raises:
        ValueError: a name appears twice, a block is empty, or text precedes the first name.
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
        queries[name] = NamedQuery(name, description, sql, source)
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

"""The visibility query language of ``GET /api/workflows?query=...`` (docs/visibility.md).

Pure: no I/O. :func:`parse` turns the text into predicates joined by AND and an
optional ``ORDER BY``; which attributes exist and what types they have is the
engine's business (``engine/visibility.py``), which never puts a name or a value
into SQL text.

Grammar (keywords are case-insensitive, attribute names are not)::

    query      := [condition] [ORDER BY name [ASC|DESC]]
    condition  := term (AND term)*
    term       := name op value | name BETWEEN value AND value
                | name STARTS_WITH string | name IN (value, ...) | ( condition )
    op         := = | != | <> | > | >= | < | <=
    value      := "string" | 'string' | number | true | false

Strings take ``\\"``, ``\\'`` and ``\\\\`` escapes (and ``\\n``, ``\\t``). OR and
NOT are not part of the language.

A ``query`` that uses none of the language's signs or keywords
(:func:`looks_like_visibility_query`) is the reference's plain substring search
on workflow id and business key instead.
"""

from __future__ import annotations

import re
from typing import Final

import attrs
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dwtrio.errors import InvalidVisibilityQueryError

#: At most this many characters in a query (and predicates in it).
MAX_QUERY_LENGTH: Final = 4096
MAX_PREDICATES: Final = 32

_GRAMMAR: Final = r"""
    start: condition? order_by?
    ?condition: term (_AND term)*
    ?term: NAME OP value                      -> compare
         | NAME _BETWEEN value _AND value     -> between
         | NAME _STARTS_WITH value            -> starts_with
         | NAME _IN "(" value ("," value)* ")" -> in_list
         | "(" condition ")"
    order_by: _ORDER _BY NAME DIRECTION?
    ?value: STRING -> string
          | NUMBER -> number
          | TRUE   -> true
          | FALSE  -> false
    OP: "!=" | "<>" | ">=" | "<=" | "=" | ">" | "<"
    _AND.2: /and\b/i
    _BETWEEN.2: /between\b/i
    _STARTS_WITH.2: /starts_with\b/i
    _IN.2: /in\b/i
    _ORDER.2: /order\b/i
    _BY.2: /by\b/i
    DIRECTION.2: /(asc|desc)\b/i
    TRUE.2: /true\b/i
    FALSE.2: /false\b/i
    NAME: /[A-Za-z_][A-Za-z0-9_]*/
    STRING: /"(?:[^"\\]|\\.)*"/s | /'(?:[^'\\]|\\.)*'/s
    NUMBER: /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/
    %import common.WS
    %ignore WS
"""

_PARSER: Final = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

#: Signs and keywords that make a ``query`` a visibility query, not a substring search.
_LANGUAGE: Final = re.compile(
    r"""[=<>!"'()]|\b(?:and|or|not|order\s+by|starts_with|between|in)\b""", re.IGNORECASE
)
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES: Final = {"n": "\n", "t": "\t"}

Value = str | int | float | bool


@attrs.frozen
class Predicate:
    """``attribute op values``; ``op`` is one of ``= != > >= < <= between starts_with in``."""

    attribute: str
    op: str
    values: tuple[Value, ...]
    position: int
    line: int
    column: int


@attrs.frozen
class VisibilityQuery:
    predicates: tuple[Predicate, ...] = ()
    #: (attribute, descending) or None for the default order.
    order_by: tuple[str, bool] | None = None
    order_position: tuple[int, int, int] | None = None


def looks_like_visibility_query(text: str) -> bool:
    """Whether ``text`` is meant as a visibility query (else: a substring search)."""
    return _LANGUAGE.search(text) is not None


def refuse(message: str, text: str, position: int | None) -> InvalidVisibilityQueryError:
    """The 422 for ``text``, pointing at ``position`` when there is one."""
    if position is None:
        return InvalidVisibilityQueryError(message)
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return InvalidVisibilityQueryError(
        f"{message} (line {line}, column {column})", position=position, line=line, column=column
    )


def _syntax_error(text: str, exc: UnexpectedInput) -> InvalidVisibilityQueryError:
    if isinstance(exc, UnexpectedEOF):
        return refuse("The visibility query ends too early", text, len(text))
    position = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        return refuse("The visibility query ends too early", text, len(text))
    if isinstance(exc, UnexpectedCharacters):
        char = text[position] if position < len(text) else ""
        if char in "\"'":
            return refuse("Unterminated string in the visibility query", text, position)
        return refuse(f"Unexpected character {char!r} in the visibility query", text, position)
    found = exc.token if isinstance(exc, UnexpectedToken) else ""
    return refuse(f"Unexpected {str(found)!r} in the visibility query", text, position)


def _value(tree: Tree[Token]) -> Value:
    token = tree.children[0]
    assert isinstance(token, Token)
    if tree.data == "string":
        return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), token.value[1:-1])
    if tree.data == "true":
        return True
    if tree.data == "false":
        return False
    number = token.value
    if re.fullmatch(r"-?\d+", number):
        return int(number)
    return float(number)


def _predicates(tree: Tree[Token] | Token, text: str, out: list[Predicate]) -> None:
    if isinstance(tree, Token):  # pragma: no cover - the grammar yields no bare tokens here
        return
    if tree.data == "condition":
        for child in tree.children:
            _predicates(child, text, out)
        return
    name = tree.children[0]
    assert isinstance(name, Token)
    position = name.start_pos if name.start_pos is not None else 0
    if tree.data == "compare":
        op_token = tree.children[1]
        assert isinstance(op_token, Token)
        op = "!=" if op_token.value == "<>" else op_token.value
        values = tree.children[2:3]
    else:
        op = "in" if tree.data == "in_list" else str(tree.data)
        values = tree.children[1:]
    parsed = tuple(_value(v) for v in values if isinstance(v, Tree))
    if tree.data == "starts_with" and not isinstance(parsed[0], str):
        raise refuse("STARTS_WITH takes a string", text, position)
    out.append(
        Predicate(
            attribute=name.value,
            op=op,
            values=parsed,
            position=position,
            line=name.line or 1,
            column=name.column or 1,
        )
    )


def parse(text: str) -> VisibilityQuery:
    """Parse a visibility query.

    Raises:
        InvalidVisibilityQueryError: malformed (with the position of the problem).
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise refuse(
            f"The visibility query is longer than {MAX_QUERY_LENGTH} characters", text, None
        )
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    predicates: list[Predicate] = []
    order_by: tuple[str, bool] | None = None
    order_position: tuple[int, int, int] | None = None
    for child in tree.children:
        if isinstance(child, Tree) and child.data == "order_by":
            name, *direction = child.children
            assert isinstance(name, Token)
            descending = not direction or str(direction[0]).lower() == "desc"
            order_by = (name.value, descending)
            order_position = (name.start_pos or 0, name.line or 1, name.column or 1)
        else:
            _predicates(child, text, predicates)
    if len(predicates) > MAX_PREDICATES:
        raise refuse(f"The visibility query has more than {MAX_PREDICATES} predicates", text, None)
    return VisibilityQuery(tuple(predicates), order_by, order_position)

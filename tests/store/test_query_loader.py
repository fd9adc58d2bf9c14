"""The named-query loader and how store modules call their queries.

The static checks read ``dwtrio/store/*.py``: every query is bound once, by
the store module named like its .sql file, and every call passes exactly the
query's parameters as keywords. (The database checks, every query prepared
and every row class matching its query's columns, are in test_migrations.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dwtrio.store import queries
from dwtrio.store.queries import QUERIES, Query, QueryArgumentsError, number_parameters

STORE_DIR = Path(queries.__file__).parent
CALL_METHODS = {"execute", "fetch", "fetchrow", "fetchval", "one", "all"}


def test_named_parameters_become_positional_in_order_of_first_use() -> None:
    text = "SELECT * FROM t WHERE a = :a AND b = :b OR a < :a"
    assert number_parameters(text) == (
        "SELECT * FROM t WHERE a = $1 AND b = $2 OR a < $1",
        ("a", "b"),
    )


def test_casts_literals_identifiers_and_comments_hold_no_parameters() -> None:
    text = (
        "SELECT :x::text, 'a:b', 'it''s :no', \"col:umn\", $$ :no $$, $t$ :no $t$,"
        " ARRAY[1:2], x[i:j] -- :no\n/* :no */ FROM t WHERE y = :y::jsonb"
    )
    converted, params = number_parameters(text)
    assert params == ("x", "y")
    assert converted == (
        "SELECT $1::text, 'a:b', 'it''s :no', \"col:umn\", $$ :no $$, $t$ :no $t$,"
        " ARRAY[1:2], x[i:j] -- :no\n/* :no */ FROM t WHERE y = $2::jsonb"
    )


def test_positional_queries_load_as_they_are_but_may_not_mix_styles() -> None:
    assert number_parameters("SELECT $1::text, $2") == ("SELECT $1::text, $2", ())
    (old,) = queries.parse_queries("-- name: a\nSELECT $1::text;\n").values()
    assert old.positional and old.params == ()
    with pytest.raises(ValueError, match="mixes"):
        queries.parse_queries("-- name: a\nSELECT :a, $2;\n")


def test_a_query_takes_exactly_its_keywords() -> None:
    (named,) = queries.parse_queries("-- name: get_thing\nSELECT :b, :a, :b;\n").values()
    q = Query(named)
    assert q.sql == "SELECT $1, $2, $1"
    assert q.args({"a": 1, "b": 2}) == (2, 1)
    with pytest.raises(QueryArgumentsError, match="missing a"):
        q.args({"b": 2})
    with pytest.raises(QueryArgumentsError, match="unknown c"):
        q.args({"a": 1, "b": 2, "c": 3})
    with pytest.raises(QueryArgumentsError, match="missing a; unknown c"):
        q.args({"b": 2, "c": 3})


def test_every_shipped_query_uses_named_parameters() -> None:
    assert [name for name, q in QUERIES.items() if q.positional] == []


def _bindings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = query("query_name", ...)`` assignments."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "query"
        ):
            (target,) = node.targets
            assert isinstance(target, ast.Name)
            first = node.value.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str)
            bound[target.id] = first.value
    return bound


def test_store_modules_bind_their_own_queries_once_and_call_them_with_their_keywords() -> None:
    seen: dict[str, str] = {}
    problems: list[str] = []
    for path in sorted(STORE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        bindings = _bindings(tree)
        for var, name in bindings.items():
            where = f"{path.name}: {var}"
            if name in seen:
                problems.append(f"{where}: {name} is bound in {seen[name]} too")
            seen[name] = path.name
            if Path(QUERIES[name].source).stem != path.stem:
                problems.append(f"{where}: {name} lives in {QUERIES[name].source}")
        calls = 0
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in bindings
                and node.func.attr in CALL_METHODS
            ):
                continue
            calls += 1
            name = bindings[node.func.value.id]
            where = f"{path.name}:{node.lineno} {name}"
            if len(node.args) != 1:
                problems.append(f"{where}: takes the connection only, then keywords")
            keywords = [k.arg for k in node.keywords]
            if None in keywords:
                problems.append(f"{where}: ** keywords cannot be checked")
            elif sorted(keywords) != sorted(QUERIES[name].params):
                problems.append(f"{where}: called with {keywords}, takes {QUERIES[name].params}")
        unused = set(bindings) - {
            n.value.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
        }
        problems += [f"{path.name}: {var} is never called" for var in sorted(unused)]
        assert calls or not bindings
    problems += [
        f"{name} ({q.source}) is bound nowhere" for name, q in QUERIES.items() if name not in seen
    ]
    assert problems == []


def test_only_the_store_runs_sql() -> None:
    package = STORE_DIR.parent
    offenders = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if STORE_DIR not in path.parents and "store.queries" in path.read_text()
    ]
    assert offenders == []

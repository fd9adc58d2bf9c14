"""The named-query loader: ``:name`` parameters and calls with keywords."""

from __future__ import annotations

import pytest

from dwtrio.store import queries
from dwtrio.store.queries import Query, QueryArgumentsError, number_parameters


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

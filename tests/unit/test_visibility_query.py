"""The visibility query parser (``protocol/visibility.py``): grammar, values, positions."""

from __future__ import annotations

import pytest

from dwtrio.errors import InvalidVisibilityQueryError
from dwtrio.protocol.visibility import (
    MAX_QUERY_LENGTH,
    Predicate,
    looks_like_visibility_query,
    parse,
)


def preds(text: str) -> list[tuple[str, str, tuple[object, ...]]]:
    return [(p.attribute, p.op, p.values) for p in parse(text).predicates]


def test_the_documented_example() -> None:
    q = parse(
        'WorkflowType = "x" AND Status = "running" AND OrderTotal > 100 ORDER BY StartTime DESC'
    )
    assert q.predicates == (
        Predicate("WorkflowType", "=", ("x",), 0, 1, 1),
        Predicate("Status", "=", ("running",), 23, 1, 24),
        Predicate("OrderTotal", ">", (100,), 46, 1, 47),
    )
    assert q.order_by == ("StartTime", True)


def test_empty_and_order_only() -> None:
    assert parse("").predicates == () and parse("").order_by is None
    assert parse("order by StartTime").order_by == ("StartTime", True)
    assert parse("ORDER BY StartTime asc").order_by == ("StartTime", False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A = 1", [("A", "=", (1,))]),
        ("A = -1.5e3", [("A", "=", (-1500.0,))]),
        ("A = .5", [("A", "=", (0.5,))]),
        ("A != 'x'", [("A", "!=", ("x",))]),
        ("A <> 'x'", [("A", "!=", ("x",))]),
        (
            "A >= 1 and B <= 2 AND C < 3 And D > 4",
            [
                ("A", ">=", (1,)),
                ("B", "<=", (2,)),
                ("C", "<", (3,)),
                ("D", ">", (4,)),
            ],
        ),
        ("A = true AND B = FALSE", [("A", "=", (True,)), ("B", "=", (False,))]),
        ("A between 1 and 'b'", [("A", "between", (1, "b"))]),
        ("A IN ('x', \"y\", 3)", [("A", "in", ("x", "y", 3))]),
        ("A starts_with 'pre'", [("A", "starts_with", ("pre",))]),
        ("((A = 1) and (B = 2 and C = 3))", [("A", "=", (1,)), ("B", "=", (2,)), ("C", "=", (3,))]),
        ("Trueish = 1", [("Trueish", "=", (1,))]),
        ("Andrew = 'a' AND Orders = 'b'", [("Andrew", "=", ("a",)), ("Orders", "=", ("b",))]),
    ],
)
def test_predicates(text: str, expected: list[tuple[str, str, tuple[object, ...]]]) -> None:
    assert preds(text) == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        (r'"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"tab\there\nline"', "tab\there\nline"),
        ('"x\'; DROP TABLE workflow_runs; --"', "x'; DROP TABLE workflow_runs; --"),
        ('"AND A = 1"', "AND A = 1"),
        ('"ünïcödé ✓"', "ünïcödé ✓"),
        ('""', ""),
    ],
)
def test_string_values_and_escapes(literal: str, value: str) -> None:
    assert preds(f"A = {literal}") == [("A", "=", (value,))]


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("A =", "ends too early", 3),
        ("A = 1 AND", "ends too early", 9),
        ("A = 'x", "Unterminated string", 4),
        ("A = 1 OR B = 2", "Unexpected 'OR'", 6),
        ("NOT A = 1", "Unexpected 'A'", 4),
        ("A = 1;", "Unexpected character ';'", 5),
        ("A = 1 -- c", "Unexpected character '-'", 6),
        ("A = @x", "Unexpected character '@'", 4),
        ("A = B", "Unexpected 'B'", 4),
        ("= 1", "Unexpected '='", 0),
        ("A STARTS_WITH 1", "STARTS_WITH takes a string", 0),
        ("A = 1 ORDER BY", "ends too early", 14),
        ("A = 1 ORDER BY StartTime DESC AND B = 2", "Unexpected 'AND'", 30),
    ],
)
def test_malformed_queries_say_where(text: str, message: str, position: int) -> None:
    with pytest.raises(InvalidVisibilityQueryError) as caught:
        parse(text)
    err = caught.value
    assert message in err.message
    assert err.reason == "invalid_visibility_query" and err.http_status == 422
    assert err.fields["position"] == position
    assert err.fields["line"] == 1 and err.fields["column"] == position + 1
    assert err.errors == {"query": [err.message]}


def test_positions_count_lines() -> None:
    with pytest.raises(InvalidVisibilityQueryError) as caught:
        parse("A = 1\nAND B = 2\n  AND C ==")
    assert caught.value.fields["line"] == 3 and caught.value.fields["column"] == 10


def test_limits() -> None:
    with pytest.raises(InvalidVisibilityQueryError, match="longer than"):
        parse("A = 'x'" + " " * MAX_QUERY_LENGTH)
    with pytest.raises(InvalidVisibilityQueryError, match="more than 32"):
        parse(" AND ".join(["A = 1"] * 33))


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("order-42", False),
        ("cust_7 2026", False),
        ("inventory", False),  # "in" only as a word
        ("standard", False),
        ("a = b", True),
        ("A > 1", True),
        ("'quoted'", True),
        ("x AND y", True),
        ("order by x", True),
        ("Id STARTS_WITH y", True),
    ],
)
def test_substring_or_language(text: str, language: bool) -> None:
    assert looks_like_visibility_query(text) is language

"""The backend-neutral filter language: what it accepts, and what it refuses clearly."""

from __future__ import annotations

from typing import Any

import pytest

from tribrid.store.filters import AnyOf, Between, Equals, parse_filter


def test_no_filter_is_no_condition() -> None:
    assert parse_filter(None) == []
    assert parse_filter({}) == []


def test_each_shape_becomes_one_condition() -> None:
    assert parse_filter(
        {"a": "x", "b": 3, "c": ["p", "q"], "d": [1, 2], "e": {"gte": 1, "lt": 2.5}, "f": 0.5}
    ) == [
        Equals("a", "x"),
        Equals("b", 3),
        AnyOf("c", ("p", "q")),
        AnyOf("d", (1, 2)),
        Between("e", gte=1.0, lt=2.5),
        Between("f", gte=0.5, lte=0.5),  # floats are matched as a closed range
    ]


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"flag": True}, "boolean values cannot be filtered on"),
        ({"x": None}, "is not a string, number"),
        ({"x": float("nan")}, "not a finite number"),
        ({"x": ["a", 1]}, "only strings or only integers"),
        ({"x": [True]}, "only strings or only integers"),
        ({"x": [1.5]}, "only strings or only integers"),
        ({"x": {}}, "a range takes gt, gte, lt and/or lte"),
        ({"x": {"ge": 1}}, "a range takes gt, gte, lt and/or lte"),
        ({"x": {"gt": "2024-01-01"}}, "is not a number"),
        ({"x": {"gt": float("inf")}}, "not a finite number"),
        ({"": 1}, "non-empty strings"),
    ],
)
def test_refuses_what_it_cannot_express(filter: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(filter)

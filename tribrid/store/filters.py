"""The filter language every store understands, defined once.

A ``filter`` argument (:data:`~tribrid.store.base.StoreFilter`) takes one of:

* the simple form, a dict of payload key to value: ``{"key": value}`` for equality,
  ``{"key": [a, b]}`` for any-of, ``{"key": {"gte": 1, "lt": 5}}`` for a range; all
  entries must hold. :func:`parse_filter` turns it into :data:`Condition` records.
* a raw Qdrant filter: a ``qdrant_client.models.Filter`` or its JSON form
  ``{"must": [...], "should": [...], "must_not": [...], "min_should": {...}}``, checked
  by :func:`qdrant_filter`.
* a ``qdrant_edge.Filter``, passed through to the embedded store only.

Each backend translates these beside itself (:mod:`tribrid.store.edge_filters`,
:mod:`tribrid.store.qdrant_filters`); callers check a user's filter up front with
:func:`validate_filter`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tribrid.store.base import MetadataFilter, StoreFilter

if TYPE_CHECKING:
    from qdrant_client import models

RANGE_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})


def validate_filter(filter: Any) -> StoreFilter | None:
    """Check a user's filter once, and return the form to keep and pass to the store.

    A bad filter then fails where it is given (a retriever's settings, a call's
    options) rather than on every query.

    Returns:
        None for no filter; a ``qdrant_edge.Filter`` unchanged; a raw Qdrant filter
        (object or JSON form) as a validated ``qdrant_client.models.Filter``; the simple
        form as a plain dict.

    Raises:
        ValueError: The filter has a type no store understands, or a shape or value the
            filter language refuses (see :func:`parse_filter` and :func:`qdrant_filter`).
    """
    if filter is None or is_edge_filter(filter):
        return filter
    raw = qdrant_filter(filter)
    if raw is not None:
        return raw
    parse_filter(filter)
    return dict(filter)


def is_edge_filter(filter: Any) -> bool:
    """Whether ``filter`` is a ``qdrant_edge.Filter`` (understood by the edge store only)."""
    import qdrant_edge

    return isinstance(filter, qdrant_edge.Filter)


@dataclass(frozen=True)
class Equals:
    """``key`` equals ``value``."""

    key: str
    value: str | int


@dataclass(frozen=True)
class AnyOf:
    """``key`` equals one of ``values`` (all strings or all integers)."""

    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Between:
    """``key`` lies in a numeric range; absent bounds are open."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Condition = Equals | AnyOf | Between


def parse_filter(filter: MetadataFilter | None) -> list[Condition]:
    """Turn a :data:`~tribrid.store.base.MetadataFilter` into conditions that all must hold.

    A float compared for equality becomes a closed range, because Qdrant matches only
    strings, integers and booleans exactly.

    Raises:
        ValueError: A value has a shape the filter language does not define.
    """
    if not filter:
        return []
    conditions: list[Condition] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings, got {key!r}")
        conditions.append(_condition(key, value))
    return conditions


def _condition(key: str, value: Any) -> Condition:
    if isinstance(value, bool):
        # qdrant-edge-py 0.9 turns MatchValue(True) into the integer 1, which matches
        # no boolean (and does match n == 1), so booleans are refused on every backend.
        raise ValueError(
            f"filter on {key!r}: boolean values cannot be filtered on (Qdrant Edge 0.9 "
            "cannot match them); store the flag as a string or a 0/1 integer"
        )
    if isinstance(value, str | int):
        return Equals(key, value)
    if isinstance(value, float):
        _check_number(key, value)
        return Between(key, gte=value, lte=value)
    if isinstance(value, Mapping):
        return _range(key, value)
    if isinstance(value, list | tuple | set | frozenset):
        return _any_of(key, list(value))
    raise ValueError(
        f"filter on {key!r}: {value!r} is not a string, number, boolean, list (any-of) "
        "or range dict (gt/gte/lt/lte)"
    )


def _range(key: str, bounds: Mapping[str, Any]) -> Between:
    unknown = set(bounds) - RANGE_OPERATORS
    if unknown or not bounds:
        raise ValueError(
            f"filter on {key!r}: a range takes gt, gte, lt and/or lte, got {sorted(bounds)}"
        )
    for op, bound in bounds.items():
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise ValueError(f"filter on {key!r}: range bound {op}={bound!r} is not a number")
        _check_number(key, float(bound))
    return Between(key, **{op: float(bound) for op, bound in bounds.items()})


def _any_of(key: str, values: list[Any]) -> AnyOf:
    if all(isinstance(v, str) for v in values):
        return AnyOf(key, tuple(values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return AnyOf(key, tuple(values))
    raise ValueError(
        f"filter on {key!r}: an any-of list must hold only strings or only integers, got {values!r}"
    )


def _check_number(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"filter on {key!r}: {value!r} is not a finite number")


# The keys of a Qdrant filter in its JSON form.
QDRANT_FILTER_KEYS = frozenset({"must", "should", "must_not", "min_should"})
_FILTER_FORMS = (
    "a dict such as {'path': 'a.md', 'page': {'gte': 2}}, a qdrant_client.models.Filter, "
    "or its JSON form {'must': [{'key': 'path', 'match': {'value': 'a.md'}}]}"
)


def is_qdrant_json(filter: Mapping[str, Any]) -> bool:
    """Whether a dict is a Qdrant filter in JSON form rather than the simple form.

    It is when every key is ``must``, ``should``, ``must_not`` or ``min_should`` and
    every value is a condition object (a dict) or a non-empty list of them. The simple
    form never has dicts of conditions there: ``{"must": ["a", "b"]}`` stays an any-of
    on a payload key called ``must``.
    """
    if not filter or not set(filter) <= QDRANT_FILTER_KEYS:
        return False
    for value in filter.values():
        if isinstance(value, Mapping):
            if not value or set(value) <= RANGE_OPERATORS:  # {"must": {"gte": 1}}: a range
                return False
        elif not (
            isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value)
        ):
            return False
    return True


def qdrant_filter(filter: Any) -> models.Filter | None:
    """The raw Qdrant filter in ``filter``, validated; None for the simple form or none.

    Accepts a ``qdrant_client.models.Filter`` and its JSON form (see
    :func:`is_qdrant_json`). Booleans are refused in match conditions, as in the
    simple form, so that both backends select the same points.

    Raises:
        ValueError: ``filter`` is of a type no tribrid store understands, a JSON filter
            is not a valid Qdrant filter, or it matches a boolean value.
    """
    if filter is None:
        return None
    from qdrant_client import models

    if isinstance(filter, models.Filter):
        raw = filter
    elif isinstance(filter, Mapping):
        if not is_qdrant_json(filter):
            return None
        try:
            raw = models.Filter.model_validate(dict(filter))
        except Exception as e:  # pydantic's ValidationError, with every bad field listed
            raise ValueError(
                f"filter {dict(filter)!r} has the keys of a Qdrant filter but is not a valid "
                f"one: {_first_error(e)}; see https://qdrant.tech/documentation/concepts/"
                "filtering/ for the JSON form, or use the simple form {'key': value}"
            ) from e
    else:
        raise ValueError(unsupported_filter_message(filter))
    refuse_boolean_matches(raw)
    return raw


def unsupported_filter_message(filter: Any) -> str:
    """The error for a filter of a type the store cannot take, naming the fix."""
    kind = f"{type(filter).__module__}.{type(filter).__qualname__}"
    if is_edge_filter(filter):
        return (
            "filter is a qdrant_edge.Filter, which only the embedded (edge) store understands; pass "
            "a qdrant_client.models.Filter or its JSON form {'must': [...]} instead, "
            "which work on both backends"
        )
    return f"filter must be {_FILTER_FORMS}; got {kind}"


def _first_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        with_loc = [
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in errors()
        ]
        if with_loc:
            return with_loc[0] + (f" (and {len(with_loc) - 1} more)" if len(with_loc) > 1 else "")
    return str(e)


def refuse_boolean_matches(raw: models.Filter) -> None:
    """Refuse ``match: {"value": true}`` anywhere in a Qdrant filter.

    Raises:
        ValueError: Naming the field; see :func:`parse_filter` for why.
    """
    from qdrant_client import models

    def walk(condition: Any) -> None:
        if isinstance(condition, models.Filter):
            for part in (condition.must, condition.should, condition.must_not):
                for c in part if isinstance(part, list) else [part] if part else []:
                    walk(c)
            if condition.min_should is not None:
                for c in condition.min_should.conditions:
                    walk(c)
        elif isinstance(condition, models.NestedCondition):
            walk(condition.nested.filter)
        elif (
            isinstance(condition, models.FieldCondition)
            and isinstance(condition.match, models.MatchValue)
            and isinstance(condition.match.value, bool)
        ):
            raise ValueError(
                f"filter on {condition.key!r}: boolean values cannot be filtered on (Qdrant "
                "Edge 0.9 cannot match them); store the flag as a string or a 0/1 integer"
            )

    walk(raw)


__all__ = [
    "QDRANT_FILTER_KEYS",
    "RANGE_OPERATORS",
    "AnyOf",
    "Between",
    "Condition",
    "Equals",
    "is_edge_filter",
    "is_qdrant_json",
    "parse_filter",
    "qdrant_filter",
    "refuse_boolean_matches",
    "unsupported_filter_message",
    "validate_filter",
]

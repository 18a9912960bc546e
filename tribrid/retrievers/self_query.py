"""Self-querying: LangChain's structured queries translated into tribrid filters.

LangChain's ``SelfQueryRetriever`` asks an LLM to turn a question into a query text and
a :class:`~langchain_core.structured_query.StructuredQuery` filter (equality, ranges,
any-of, ``and``/``or``/``not``); a *translator* turns that filter into the store's own.
:class:`TribridTranslator` writes the JSON form of a Qdrant filter (see
:mod:`tribrid.store.filters`), which both store backends and ``tribrid serve`` accept,
so the same translator serves :class:`~tribrid.retrievers.TribridVectorStore` on any
backend. :data:`METADATA_FIELDS` describes the payload keys of ingested chunks for the
LLM.

Example:
    ::

        from langchain_classic.retrievers.self_query.base import SelfQueryRetriever

        retriever = SelfQueryRetriever.from_llm(
            llm,
            vectorstore,  # a TribridVectorStore
            "Chunks of the documents in the index",
            METADATA_FIELDS,
            structured_query_translator=TribridTranslator(),
        )
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from langchain_core.structured_query import (
    Comparator,
    Comparison,
    Operation,
    Operator,
    StructuredQuery,
    Visitor,
)

#: The documented payload keys of ingested chunks, as ``SelfQueryRetriever.from_llm``
#: takes them (``metadata_field_info``): name, description and type.
METADATA_FIELDS: list[dict[str, str]] = [
    {"name": "path", "description": "Path of the document within its folder", "type": "string"},
    {"name": "source", "description": "Same as path", "type": "string"},
    {"name": "filename", "description": "File name of the document", "type": "string"},
    {"name": "filetype", "description": "MIME type, e.g. application/pdf", "type": "string"},
    {"name": "title", "description": "Title of the section the chunk is in", "type": "string"},
    {"name": "page", "description": "First page the chunk comes from", "type": "integer"},
    {"name": "languages", "description": "ISO 639-3 language codes", "type": "list[string]"},
    {"name": "last_modified", "description": "When the document changed", "type": "date"},
    {"name": "sent_from", "description": "E-mail sender addresses", "type": "list[string]"},
    {"name": "sent_to", "description": "E-mail recipient addresses", "type": "list[string]"},
    {"name": "subject", "description": "E-mail subject", "type": "string"},
]

_RANGES = {
    Comparator.GT: "gt",
    Comparator.GTE: "gte",
    Comparator.LT: "lt",
    Comparator.LTE: "lte",
}


class TribridTranslator(Visitor):
    """Translates a LangChain structured query into a tribrid filter (Qdrant JSON form).

    * ``eq`` and ``contain`` match a value (on a list field, any element); a float
      becomes the closed range ``[v, v]``, as in tribrid's simple filter form;
    * ``ne``, ``nin``: ``must_not`` a match, and a match of none of the values;
    * ``in``: any of the values; ``gt``, ``gte``, ``lt``, ``lte``: numeric ranges, or
      date ranges for date values (``{"type": "date", "date": "2024-05-14"}``); ``eq``
      on a date matches that whole day (UTC);
    * ``like``: full-text match (the words of the value, in the field's text);
    * ``and``, ``or``, ``not``: ``must``, ``should``, ``must_not``.

    Booleans are refused, as everywhere in tribrid's filters (Qdrant Edge 0.9 cannot
    match them).
    """

    allowed_comparators = (
        Comparator.EQ,
        Comparator.NE,
        Comparator.GT,
        Comparator.GTE,
        Comparator.LT,
        Comparator.LTE,
        Comparator.IN,
        Comparator.NIN,
        Comparator.CONTAIN,
        Comparator.LIKE,
    )
    allowed_operators = (Operator.AND, Operator.OR, Operator.NOT)

    def visit_operation(self, operation: Operation) -> dict[str, Any]:
        """``and``/``or``/``not`` of the translated arguments, as a nested filter."""
        self._validate_func(operation.operator)
        arguments = [argument.accept(self) for argument in operation.arguments]
        part = {Operator.AND: "must", Operator.OR: "should", Operator.NOT: "must_not"}
        return {part[operation.operator]: arguments}

    def visit_comparison(self, comparison: Comparison) -> dict[str, Any]:
        """One condition (or a nested ``must_not`` filter for ``ne``)."""
        self._validate_func(comparison.comparator)
        key, value, comparator = comparison.attribute, comparison.value, comparison.comparator
        if comparator in (Comparator.EQ, Comparator.CONTAIN):
            return _equals(key, value)
        if comparator is Comparator.NE:
            return {"must_not": [_equals(key, value)]}
        if comparator in _RANGES:
            bound = _date(value)
            if bound is not None:
                return {"key": key, "range": {_RANGES[comparator]: bound.isoformat()}}
            return {"key": key, "range": {_RANGES[comparator]: _number(key, value)}}
        if comparator in (Comparator.IN, Comparator.NIN):
            values = _values(key, value)
            match = {"any": values} if comparator is Comparator.IN else {"except": values}
            return {"key": key, "match": match}
        # LIKE: the remaining allowed comparator.
        return {"key": key, "match": {"text": str(value)}}

    def visit_structured_query(
        self, structured_query: StructuredQuery
    ) -> tuple[str, dict[str, Any]]:
        """The query text and the search keyword arguments (``filter``, ``k``)."""
        kwargs: dict[str, Any] = {}
        if structured_query.filter is not None:
            translated = structured_query.filter.accept(self)
            # A lone condition becomes a filter; an operation already is one.
            kwargs["filter"] = translated if "key" not in translated else {"must": [translated]}
        if structured_query.limit is not None:
            kwargs["k"] = structured_query.limit
        return structured_query.query, kwargs


def _equals(key: str, value: Any) -> dict[str, Any]:
    when = _date(value)
    if when is not None:
        if _is_day(value):  # the whole day
            end = when + dt.timedelta(days=1)
            return {"key": key, "range": {"gte": when.isoformat(), "lt": end.isoformat()}}
        return {"key": key, "range": {"gte": when.isoformat(), "lte": when.isoformat()}}
    if isinstance(value, float):
        number = _number(key, value)
        return {"key": key, "range": {"gte": number, "lte": number}}
    _refuse_boolean(key, value)
    if not isinstance(value, str | int):
        raise ValueError(
            f"self-query filter on {key!r}: cannot match {value!r}; compare with a string, an "
            "integer, a float or a date"
        )
    return {"key": key, "match": {"value": value}}


def _values(key: str, value: Any) -> list[Any]:
    values = list(value) if isinstance(value, list | tuple | set) else [value]
    for v in values:
        _refuse_boolean(key, v)
    if not (all(isinstance(v, str) for v in values) or all(isinstance(v, int) for v in values)):
        raise ValueError(
            f"self-query filter on {key!r}: 'in'/'nin' need only strings or only integers, "
            f"got {values!r}"
        )
    return values


def _number(key: str, value: Any) -> float:
    _refuse_boolean(key, value)
    if not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise ValueError(
            f"self-query filter on {key!r}: a range needs a finite number or a date, got {value!r}"
        )
    return float(value)


def _refuse_boolean(key: str, value: Any) -> None:
    if isinstance(value, bool):
        raise ValueError(
            f"self-query filter on {key!r}: boolean values cannot be filtered on (Qdrant Edge "
            "0.9 cannot match them); store the flag as a string or a 0/1 integer"
        )


def _is_day(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("type") == "date"


def _date(value: Any) -> dt.datetime | None:
    """The instant of a LangChain date value (``{"type": "date", "date": ...}`` or
    ``{"type": "datetime", "datetime": ...}``), in UTC when it names no zone."""
    if not isinstance(value, Mapping) or value.get("type") not in ("date", "datetime"):
        return None
    raw = value.get(value["type"])
    try:
        parsed = dt.datetime.fromisoformat(str(raw))
    except ValueError as e:
        raise ValueError(
            f"self-query date {raw!r} is not an ISO 8601 date; write e.g. 2024-05-14"
        ) from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


__all__ = ["METADATA_FIELDS", "TribridTranslator"]

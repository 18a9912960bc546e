"""What both store backends share: the schema record, mismatch messages, filters, ids.

The backends differ in the types they hand to Qdrant, not in what a filter, an id or a
schema mismatch means; keeping those meanings here is what makes the contract tests pass
identically on both.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tribrid.encoders.base import SparseVector
from tribrid.errors import SchemaMismatchError
from tribrid.store.base import (
    BinaryEncoding,
    Channel,
    CollectionSchema,
    MetadataFilter,
    Point,
    QueryEncoding,
    StoreQuery,
)

if TYPE_CHECKING:
    from qdrant_client import models

logger = logging.getLogger(__name__)

# Bumped only when the stored record changes shape; older records stay readable.
SCHEMA_FORMAT = 1
RANGE_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})

_FIELD_LABELS = {
    "dense_size": "has dense size {have} but the dense model gives {want}",
    "dense_model": "was built with dense model {have!r} but the settings use {want!r}",
    "splade_model": "was built with SPLADE model {have!r} but the settings use {want!r}",
    "bm25_model": "was built with BM25 scheme {have!r} but the settings use {want!r}",
}


def schema_record(schema: CollectionSchema) -> dict[str, Any]:
    """The JSON-safe record of ``schema`` that is stored with the collection."""
    return {
        "format": SCHEMA_FORMAT,
        "collection": schema.name,
        **schema.fingerprint(),
        "binary_encoding": schema.binary_encoding.value,
        "query_encoding": schema.query_encoding.value,
    }


def record_problems(record: Mapping[str, Any], schema: CollectionSchema) -> list[str]:
    """Differences between a stored schema record and the schema asked for.

    Returns:
        One phrase per difference, each readable after "collection 'x' ...".
    """
    fmt = record.get("format")
    if not isinstance(fmt, int) or fmt > SCHEMA_FORMAT:
        return [f"has a schema record of format {fmt!r}, which this tribrid cannot read"]
    problems = []
    for key, want in schema.fingerprint().items():
        have = record.get(key)
        if have != want:
            problems.append(_FIELD_LABELS[key].format(have=have, want=want))
    return problems


def mismatch_error(where: str, problems: Sequence[str], fix: str) -> SchemaMismatchError:
    """One error naming the collection, every difference found, and the fix."""
    return SchemaMismatchError(f"{where} {', and '.join(problems)}; {fix}")


# Qdrant's names for the encodings, the same in qdrant-client and in Edge's config files.
QDRANT_BINARY_ENCODING = {
    BinaryEncoding.ONE_BIT: "one_bit",
    BinaryEncoding.ONE_AND_HALF_BITS: "one_and_half_bits",
    BinaryEncoding.TWO_BITS: "two_bits",
}
QDRANT_QUERY_ENCODING = {
    QueryEncoding.DEFAULT: "default",
    QueryEncoding.BINARY: "binary",
    QueryEncoding.SCALAR4: "scalar4bits",
    QueryEncoding.SCALAR8: "scalar8bits",
}


def encodings_from_qdrant(
    binary: str | None, query: str | None
) -> tuple[BinaryEncoding | None, QueryEncoding | None]:
    """Our encodings from Qdrant's names; unknown or absent names give None."""
    by_binary = {v: k for k, v in QDRANT_BINARY_ENCODING.items()}
    by_query = {v: k for k, v in QDRANT_QUERY_ENCODING.items()}
    return by_binary.get(binary or ""), by_query.get(query or "")


def effective_schema(
    schema: CollectionSchema,
    stored_binary: BinaryEncoding | None,
    stored_query: QueryEncoding | None,
    where: str,
) -> CollectionSchema:
    """The schema with the quantization the collection really has.

    Quantization is not part of the fingerprint: a collection keeps the codes it was
    built with, and searches stay correct, so a different setting is reported and the
    stored one wins.
    """
    changes: dict[str, Any] = {}
    if stored_binary is not None and stored_binary != schema.binary_encoding:
        changes["binary_encoding"] = stored_binary
    if stored_query is not None and stored_query != schema.query_encoding:
        changes["query_encoding"] = stored_query
    if not changes:
        return schema
    logger.warning(
        "%s keeps its binary quantization %s/%s instead of the configured %s/%s; "
        "re-create it with `tribrid ingest --recreate` to change it",
        where,
        stored_binary or schema.binary_encoding,
        stored_query or schema.query_encoding,
        schema.binary_encoding,
        schema.query_encoding,
    )
    return replace(schema, **changes)


def canonical_id(point_id: str) -> str:
    """The canonical form of a point id, as Qdrant returns it.

    Raises:
        ValueError: ``point_id`` is not a UUID (tribrid ids are uuid5 strings).
    """
    try:
        return str(uuid.UUID(point_id))
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(
            f"point id {point_id!r} is not a UUID; tribrid point ids are uuid5 strings "
            "(see tribrid.ingestion.base.point_id)"
        ) from e


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
    import qdrant_edge

    kind = f"{type(filter).__module__}.{type(filter).__qualname__}"
    if isinstance(filter, qdrant_edge.Filter):
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


def check_query(query: StoreQuery, dense_size: int) -> None:
    """Check each channel's vector has the kind and size that channel searches.

    Raises:
        ValueError: A dense channel got a sparse vector or the wrong dimension, or a
            sparse channel got a dense vector.
    """
    for cq in query.channels:
        if cq.channel in (Channel.DENSE, Channel.BINARY):
            if isinstance(cq.vector, SparseVector):
                raise ValueError(f"channel {cq.channel.value!r} needs a dense vector")
            if len(cq.vector) != dense_size:
                raise ValueError(
                    f"channel {cq.channel.value!r} got a vector of size {len(cq.vector)} "
                    f"but the collection's dense size is {dense_size}"
                )
        elif not isinstance(cq.vector, SparseVector):
            raise ValueError(f"channel {cq.channel.value!r} needs a SparseVector")
        if not math.isfinite(cq.weight) or cq.weight < 0:
            raise ValueError(f"channel {cq.channel.value!r} has weight {cq.weight}; need >= 0")


def rrf_weights(query: StoreQuery) -> list[float] | None:
    """Channel weights for weighted RRF, or None when all are 1 (plain RRF)."""
    weights = [float(cq.weight) for cq in query.channels]
    return None if all(w == 1.0 for w in weights) else weights


def check_point(point: Point, dense_size: int) -> str:
    """Check a point fits the collection; returns its canonical id.

    Raises:
        ValueError: The id is not a UUID or the dense vector has the wrong size.
    """
    if len(point.dense) != dense_size:
        raise ValueError(
            f"point {point.id} has a dense vector of size {len(point.dense)} "
            f"but the collection's dense size is {dense_size}"
        )
    return canonical_id(point.id)

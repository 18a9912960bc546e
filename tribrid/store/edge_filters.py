"""The filter language translated for Qdrant Edge (:mod:`tribrid.store.edge`).

The simple form and raw ``qdrant_client`` filters, as defined and validated in
:mod:`tribrid.store.filters`, are rebuilt as ``qdrant_edge`` objects; a
``qdrant_edge.Filter`` passes through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import qdrant_edge as qe

from tribrid.store.base import StoreFilter
from tribrid.store.checks import canonical_id
from tribrid.store.filters import AnyOf, Between, Condition, Equals, parse_filter, qdrant_filter

if TYPE_CHECKING:
    from qdrant_client import models


def edge_filter(filter: StoreFilter | None) -> qe.Filter | None:
    """The Edge filter for any form of :data:`~tribrid.store.base.StoreFilter`; None for none.

    Raises:
        ValueError: The filter is refused by :mod:`tribrid.store.filters`, or uses a
            Qdrant condition Edge does not have.
    """
    if isinstance(filter, qe.Filter):
        return filter
    raw = qdrant_filter(filter)
    if raw is not None:
        return _edge_from_client(raw)
    conditions = parse_filter(filter)
    if not conditions:
        return None
    must: list[Any] = [_edge_condition(c) for c in conditions]
    return qe.Filter(must=must)


def _edge_condition(condition: Condition) -> qe.FieldCondition:
    match condition:
        case Equals(key=key, value=value):
            return qe.FieldCondition(key=key, match=qe.MatchValue(value))
        case AnyOf(key=key, values=values):
            return qe.FieldCondition(
                key=key, match=qe.MatchAny(cast(list[str] | list[int], list(values)))
            )
        case Between(key=key, gt=gt, gte=gte, lt=lt, lte=lte):
            return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=gte, gt=gt, lte=lte, lt=lt))
    raise AssertionError(f"unhandled condition {condition!r}")


# -- raw Qdrant filters: qdrant-client's models, rebuilt as Edge's own -------------------


def _edge_from_client(raw: models.Filter) -> qe.Filter:
    """The Edge filter equal to a qdrant-client ``Filter`` (already validated)."""
    min_should = raw.min_should
    return qe.Filter(
        must=_edge_conditions(raw.must),
        should=_edge_conditions(raw.should),
        must_not=_edge_conditions(raw.must_not),
        min_should=qe.MinShould(
            conditions=_edge_conditions(min_should.conditions) or [],
            min_count=min_should.min_count,
        )
        if min_should is not None
        else None,
    )


def _edge_conditions(part: Any) -> list[Any] | None:
    if part is None:
        return None
    return [_edge_condition_of(c) for c in (part if isinstance(part, list) else [part])]


def _edge_condition_of(c: Any) -> Any:
    from qdrant_client import models

    if isinstance(c, models.Filter):
        return _edge_from_client(c)
    if isinstance(c, models.FieldCondition):
        return qe.FieldCondition(
            key=c.key,
            match=_edge_match(c.key, c.match) if c.match is not None else None,
            range=_edge_range(c.key, c.range) if c.range is not None else None,
            geo_bounding_box=qe.GeoBoundingBox(
                _geo(c.geo_bounding_box.top_left), _geo(c.geo_bounding_box.bottom_right)
            )
            if c.geo_bounding_box is not None
            else None,
            geo_radius=qe.GeoRadius(_geo(c.geo_radius.center), c.geo_radius.radius)
            if c.geo_radius is not None
            else None,
            geo_polygon=qe.GeoPolygon(
                [_geo(p) for p in c.geo_polygon.exterior.points],
                [[_geo(p) for p in ring.points] for ring in c.geo_polygon.interiors or []] or None,
            )
            if c.geo_polygon is not None
            else None,
            values_count=qe.ValuesCount(
                lt=c.values_count.lt,
                gt=c.values_count.gt,
                lte=c.values_count.lte,
                gte=c.values_count.gte,
            )
            if c.values_count is not None
            else None,
            is_empty=c.is_empty,
            is_null=c.is_null,
        )
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({canonical_id(str(i)) for i in c.has_id})
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, _edge_from_client(c.nested.filter))
    raise ValueError(
        f"filter condition {type(c).__name__} is not supported by the embedded store; "
        "use field, is_empty, is_null, has_id, has_vector or nested conditions, or a "
        "qdrant_edge.Filter"
    )


def _edge_match(key: str, match: Any) -> Any:
    from qdrant_client import models

    if isinstance(match, models.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(cast(list[str] | list[int], list(match.any)))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(cast(list[str] | list[int], list(match.except_)))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, models.MatchPrefix):
        return qe.MatchPrefix(match.prefix)
    if isinstance(match, models.MatchSubstring):
        return qe.MatchSubstring(match.substring)
    raise ValueError(
        f"filter on {key!r}: match {type(match).__name__} is not supported by the embedded store"
    )


def _edge_range(key: str, bounds: Any) -> Any:
    from qdrant_client import models

    if isinstance(bounds, models.Range):
        return qe.RangeFloat(gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)

    def iso(value: Any) -> str | None:
        return value.isoformat() if hasattr(value, "isoformat") else value

    return qe.RangeDateTime(
        gte=iso(bounds.gte), gt=iso(bounds.gt), lte=iso(bounds.lte), lt=iso(bounds.lt)
    )


def _geo(point: Any) -> qe.GeoPoint:
    return qe.GeoPoint(lon=point.lon, lat=point.lat)


__all__ = ["edge_filter"]

"""The filter language translated for ``qdrant-client`` (:mod:`tribrid.store.qdrant`).

Raw Qdrant filters are already ``qdrant_client`` models once :mod:`tribrid.store.filters`
has validated them; the simple form is rebuilt as field conditions. qdrant-client is
imported lazily, as in the store itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from tribrid.store.base import StoreFilter
from tribrid.store.filters import AnyOf, Between, Condition, Equals, parse_filter, qdrant_filter

if TYPE_CHECKING:
    from qdrant_client import models


def client_filter(filter: StoreFilter | None) -> models.Filter | None:
    """The ``qdrant_client`` filter for a :data:`~tribrid.store.base.StoreFilter`; None for none.

    Raises:
        ValueError: The filter is refused by :mod:`tribrid.store.filters`, or is a
            ``qdrant_edge.Filter``, which only the embedded store understands.
    """
    from qdrant_client import models

    raw = qdrant_filter(filter)
    if raw is not None:
        return raw
    conditions = parse_filter(filter)
    if not conditions:
        return None
    must: list[models.Condition] = [_client_condition(c) for c in conditions]
    return models.Filter(must=must)


def _client_condition(condition: Condition) -> models.FieldCondition:
    from qdrant_client import models

    match condition:
        case Equals(key=key, value=value):
            return models.FieldCondition(key=key, match=models.MatchValue(value=value))
        case AnyOf(key=key, values=values):
            return models.FieldCondition(
                key=key, match=models.MatchAny(any=cast(list[str] | list[int], list(values)))
            )
        case Between(key=key, gt=gt, gte=gte, lt=lt, lte=lte):
            return models.FieldCondition(
                key=key, range=models.Range(gt=gt, gte=gte, lt=lt, lte=lte)
            )
    raise AssertionError(f"unhandled condition {condition!r}")


__all__ = ["client_filter"]

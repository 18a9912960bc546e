"""Checks every backend runs on what it is asked to store or search.

They raise the same ``ValueError`` on both backends, before anything reaches Qdrant.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from tribrid.encoders.base import SparseVector
from tribrid.store.base import BM25, DENSE, SPLADE, Channel, Point, StoreQuery

_F = TypeVar("_F")


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


def point_vectors(
    point: Point, dense_size: int, sparse: Callable[[SparseVector], Any]
) -> tuple[str, dict[str, Any]]:
    """A point's checked id and its three named vectors, sparse ones in a backend's form."""
    return check_point(point, dense_size), {
        DENSE: [float(x) for x in point.dense],
        SPLADE: sparse(point.splade),
        BM25: sparse(point.bm25),
    }


def required_filter(translated: _F | None) -> _F:
    """A backend's translation of a filter that must not be empty (deleting by filter).

    Raises:
        ValueError: The filter was empty.
    """
    if translated is None:
        raise ValueError(
            "delete_by_filter needs a non-empty filter; to delete everything, re-create the store"
        )
    return translated


__all__ = [
    "canonical_id",
    "check_point",
    "check_query",
    "point_vectors",
    "required_filter",
    "rrf_weights",
]

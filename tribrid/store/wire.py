"""The JSON form of the store's records: what travels between processes.

Points, queries, hits, schemas and filters cross process boundaries in two places: the
write batches a background worker sends to the store's owner, and the store operations
other processes send to ``tribrid serve``. Both use these functions, so there is one
wire form. It is plain JSON (numbers, strings, lists, objects): no pickle, and every
``*_from_json`` checks what it reads and raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tribrid.encoders.base import SparseVector
from tribrid.store.base import (
    BinaryEncoding,
    Channel,
    ChannelQuery,
    CollectionSchema,
    Fusion,
    Hit,
    Point,
    QueryEncoding,
    StoreQuery,
)
from tribrid.store.filters import is_edge_filter

Json = dict[str, Any]


def _field(data: Mapping[str, Any], name: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {type(data).__name__}")
    if name not in data:
        raise ValueError(f"{where}.{name} is missing")
    return data[name]


def _floats(values: Any, where: str) -> list[float]:
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"{where} must be a list of numbers")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{where} holds a NaN or infinite number")
    return out


def sparse_to_json(vector: SparseVector) -> list[list[Any]]:
    """``[[indices...], [values...]]``."""
    return [list(vector.indices), [float(v) for v in vector.values]]


def sparse_from_json(data: Any, where: str = "sparse") -> SparseVector:
    """The inverse of :func:`sparse_to_json`."""
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise ValueError(f"{where} must be [[indices...], [values...]]")
    indices, values = data
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
    ):
        raise ValueError(f"{where} indices must be a list of non-negative integers")
    floats = _floats(values, f"{where} values")
    if len(indices) != len(floats):
        raise ValueError(f"{where} has {len(indices)} indices but {len(floats)} values")
    return SparseVector(tuple(indices), tuple(floats))


def point_to_json(point: Point) -> Json:
    """A point as JSON: id, the three vectors and the payload."""
    return {
        "id": point.id,
        "dense": [float(v) for v in point.dense],
        "splade": sparse_to_json(point.splade),
        "bm25": sparse_to_json(point.bm25),
        "payload": dict(point.payload),
    }


def point_from_json(data: Any, where: str = "point") -> Point:
    """The inverse of :func:`point_to_json`."""
    point_id = _field(data, "id", where)
    if not isinstance(point_id, str) or not point_id:
        raise ValueError(f"{where}.id must be a non-empty string")
    payload = data.get("payload", {})
    if not isinstance(payload, Mapping):
        raise ValueError(f"{where}.payload must be a JSON object")
    return Point(
        id=point_id,
        dense=_floats(_field(data, "dense", where), f"{where}.dense"),
        splade=sparse_from_json(_field(data, "splade", where), f"{where}.splade"),
        bm25=sparse_from_json(_field(data, "bm25", where), f"{where}.bm25"),
        payload=dict(payload),
    )


def filter_to_json(filter: Any) -> Any:
    """A filter as JSON: the simple form as is, a ``qdrant_client`` filter as its JSON form.

    Raises:
        ValueError: A ``qdrant_edge.Filter``, which only the embedded store in the same
            process understands.
    """
    if filter is None or isinstance(filter, Mapping):
        return None if filter is None else dict(filter)
    if is_edge_filter(filter):
        raise ValueError(
            "a qdrant_edge.Filter cannot be sent to another process; give the filter in the "
            "simple form ({'key': value}) or as a qdrant_client.models.Filter"
        )
    dump = getattr(filter, "model_dump", None)
    if dump is None:
        raise ValueError(f"cannot send a filter of type {type(filter).__name__}")
    return dump(mode="json", exclude_none=True)


def query_to_json(query: StoreQuery) -> Json:
    """A store query as JSON."""
    return {
        "channels": [
            {
                "channel": cq.channel.value,
                "vector": (
                    sparse_to_json(cq.vector)
                    if isinstance(cq.vector, SparseVector)
                    else [float(v) for v in cq.vector]
                ),
                "weight": cq.weight,
            }
            for cq in query.channels
        ],
        "limit": query.limit,
        "prefetch_limit": query.prefetch_limit,
        "fusion": query.fusion.value,
        "rrf_k": query.rrf_k,
        "filter": filter_to_json(query.filter),
        "oversampling": query.oversampling,
        "with_payload": query.with_payload,
        "with_vectors": query.with_vectors,
    }


def query_from_json(data: Any, where: str = "query") -> StoreQuery:
    """The inverse of :func:`query_to_json` (the filter stays JSON; stores validate it)."""
    raw_channels = _field(data, "channels", where)
    if not isinstance(raw_channels, list) or not raw_channels:
        raise ValueError(f"{where}.channels must be a non-empty list")
    channels = []
    for n, item in enumerate(raw_channels):
        at = f"{where}.channels[{n}]"
        name = _field(item, "channel", at)
        try:
            channel = Channel(name)
        except ValueError as e:
            raise ValueError(
                f"{at}.channel {name!r} is not one of {[c.value for c in Channel]}"
            ) from e
        raw = _field(item, "vector", at)
        vector: Sequence[float] | SparseVector = (
            _floats(raw, f"{at}.vector")
            if channel in (Channel.DENSE, Channel.BINARY)
            else sparse_from_json(raw, f"{at}.vector")
        )
        weight = _floats([item.get("weight", 1.0)], f"{at}.weight")[0]
        channels.append(ChannelQuery(channel, vector, weight))
    try:
        fusion = Fusion(data.get("fusion", Fusion.RRF.value))
    except ValueError as e:
        raise ValueError(f"{where}.fusion must be one of {[f.value for f in Fusion]}") from e
    integers = {}
    for name, default in (("limit", 10), ("prefetch_limit", 100), ("rrf_k", 60)):
        value = data.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}.{name} must be an integer")
        integers[name] = value
    return StoreQuery(
        channels=tuple(channels),
        limit=integers["limit"],
        prefetch_limit=integers["prefetch_limit"],
        fusion=fusion,
        rrf_k=integers["rrf_k"],
        filter=data.get("filter"),
        oversampling=_floats([data.get("oversampling", 8.0)], f"{where}.oversampling")[0],
        with_payload=bool(data.get("with_payload", True)),
        with_vectors=bool(data.get("with_vectors", False)),
    )


def hit_to_json(hit: Hit) -> Json:
    """A hit as JSON (with its dense vector when it has one)."""
    data: Json = {"id": hit.id, "score": hit.score, "payload": dict(hit.payload)}
    if hit.dense is not None:
        data["dense"] = [float(v) for v in hit.dense]
    return data


def hit_from_json(data: Any, where: str = "hit") -> Hit:
    """The inverse of :func:`hit_to_json`."""
    dense = data.get("dense")
    return Hit(
        id=str(_field(data, "id", where)),
        score=float(_field(data, "score", where)),
        payload=dict(data.get("payload") or {}),
        dense=_floats(dense, f"{where}.dense") if dense is not None else None,
    )


def schema_to_json(schema: CollectionSchema) -> Json:
    """A collection schema as JSON."""
    return {
        "name": schema.name,
        "dense_size": schema.dense_size,
        "dense_model": schema.dense_model,
        "splade_model": schema.splade_model,
        "bm25_model": schema.bm25_model,
        "binary_encoding": schema.binary_encoding.value,
        "query_encoding": schema.query_encoding.value,
        "dense_on_disk": schema.dense_on_disk,
    }


def schema_from_json(data: Any, where: str = "schema") -> CollectionSchema:
    """The inverse of :func:`schema_to_json`."""
    return CollectionSchema(
        name=str(_field(data, "name", where)),
        dense_size=int(_field(data, "dense_size", where)),
        dense_model=str(_field(data, "dense_model", where)),
        splade_model=str(_field(data, "splade_model", where)),
        bm25_model=str(_field(data, "bm25_model", where)),
        binary_encoding=BinaryEncoding(_field(data, "binary_encoding", where)),
        query_encoding=QueryEncoding(_field(data, "query_encoding", where)),
        # Absent from servers older than the binary tier: theirs are in RAM.
        dense_on_disk=bool(data.get("dense_on_disk", False)) if isinstance(data, dict) else False,
    )


__all__ = [
    "filter_to_json",
    "hit_from_json",
    "hit_to_json",
    "point_from_json",
    "point_to_json",
    "query_from_json",
    "query_to_json",
    "schema_from_json",
    "schema_to_json",
    "sparse_from_json",
    "sparse_to_json",
]

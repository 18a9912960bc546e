"""The schema record kept with a collection, and the messages when it does not match.

Both backends store :func:`schema_record` with the collection (Edge in a file beside the
shard, the server in the collection's metadata) and compare it on every open with
:func:`record_problems`, so a mismatch reads the same whichever backend found it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tribrid.errors import SchemaMismatchError
from tribrid.store.base import BinaryEncoding, CollectionSchema, QueryEncoding

logger = logging.getLogger(__name__)

# Bumped only when the stored record changes shape; older records stay readable.
SCHEMA_FORMAT = 1

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
        "dense_on_disk": schema.dense_on_disk,
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
    stored_on_disk: bool | None = None,
) -> CollectionSchema:
    """The schema with the quantization and dense placement the collection really has.

    Neither is part of the fingerprint: a collection keeps the codes and the placement
    of its float vectors it was built with, and searches stay correct, so a different
    setting is reported and the stored one wins.
    """
    changes: dict[str, Any] = {}
    if stored_binary is not None and stored_binary != schema.binary_encoding:
        changes["binary_encoding"] = stored_binary
    if stored_query is not None and stored_query != schema.query_encoding:
        changes["query_encoding"] = stored_query
    if stored_on_disk is not None and stored_on_disk != schema.dense_on_disk:
        logger.warning(
            "%s keeps its float dense vectors %s instead of the configured %s; re-create "
            "it with `tribrid ingest --recreate` to change that",
            where,
            "on disk" if stored_on_disk else "in RAM",
            "on disk" if schema.dense_on_disk else "in RAM",
        )
        changes["dense_on_disk"] = stored_on_disk
    if not (changes.keys() - {"dense_on_disk"}):
        return replace(schema, **changes) if changes else schema
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


__all__ = [
    "QDRANT_BINARY_ENCODING",
    "QDRANT_QUERY_ENCODING",
    "SCHEMA_FORMAT",
    "effective_schema",
    "encodings_from_qdrant",
    "mismatch_error",
    "record_problems",
    "schema_record",
]

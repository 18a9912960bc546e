"""Builders of the ledger tests: chunk records as the pipeline makes them."""

from __future__ import annotations

from tribrid.ledger import ChunkRecord
from tribrid.store.points import content_hash, point_id


def chunks_for(source_key: str, document_key: str, *texts: str) -> list[ChunkRecord]:
    """Chunk records as the pipeline builds them: deterministic ids, positions in order."""
    return [
        ChunkRecord(
            point_id(source_key, document_key, content_hash(text)), index, content_hash(text)
        )
        for index, text in enumerate(texts)
    ]


def ids(records: list[ChunkRecord]) -> list[str]:
    """The point ids of some chunk records, in order."""
    return [record.point_id for record in records]

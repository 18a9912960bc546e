"""What a point is keyed and labelled by: deterministic ids, content hashes, payload keys.

Every writer of points (the sync's chunks, :class:`~tribrid.retrievers.TribridVectorStore`'s
``add_texts``) builds ids with :func:`point_id` and payloads with :func:`chunk_payload`,
and every reader (search results, LangChain documents) reads the keys named here. One
module owns them so that the writers and the readers cannot drift apart.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

# Fixed namespace for point ids. Changing it would re-key every index ever built.
POINT_NAMESPACE = uuid.UUID("6f1c2d1e-5b7a-4c59-9a53-2f0d6b8e1a47")

#: The chunk's text.
TEXT_KEY = "text"
#: Key of the source the point comes from (``local:/abs/root``, ``langchain:<collection>`` …).
SOURCE_KEY = "source_key"
#: Key of the document within its source (a relative path, or a LangChain id).
DOCUMENT_KEY = "document_key"
#: Position of the chunk in its document, from 0.
CHUNK_INDEX_KEY = "chunk_index"
#: SHA-256 of the text.
CONTENT_HASH_KEY = "content_hash"
#: The id a LangChain caller gave a text (see ``TribridVectorStore.add_texts``).
LANGCHAIN_ID_KEY = "langchain_id"

#: Payload keys tribrid writes itself; user metadata may not use them.
RESERVED_KEYS = frozenset(
    {TEXT_KEY, LANGCHAIN_ID_KEY, SOURCE_KEY, DOCUMENT_KEY, CHUNK_INDEX_KEY, CONTENT_HASH_KEY}
)
#: tribrid's bookkeeping keys: left out of a LangChain ``Document``'s metadata unless
#: asked for (``chunk_index`` is not among them: it is a position users read).
INTERNAL_KEYS = frozenset({TEXT_KEY, LANGCHAIN_ID_KEY, SOURCE_KEY, DOCUMENT_KEY, CONTENT_HASH_KEY})


class PayloadIndex(StrEnum):
    """The kind of payload index a key gets."""

    KEYWORD = "keyword"
    INTEGER = "integer"
    DATETIME = "datetime"


#: Every key the README documents as filterable, with its index. Ingested chunks carry
#: them (see :mod:`tribrid.ingestion.chunking`); ``source_key`` and ``document_key`` are
#: tribrid's own, for deleting and counting by source and document.
FILTERABLE_KEYS: Mapping[str, PayloadIndex] = {
    SOURCE_KEY: PayloadIndex.KEYWORD,
    DOCUMENT_KEY: PayloadIndex.KEYWORD,
    "path": PayloadIndex.KEYWORD,
    "source": PayloadIndex.KEYWORD,
    "filename": PayloadIndex.KEYWORD,
    "filetype": PayloadIndex.KEYWORD,
    "title": PayloadIndex.KEYWORD,
    "page": PayloadIndex.INTEGER,
    "page_numbers": PayloadIndex.INTEGER,
    CHUNK_INDEX_KEY: PayloadIndex.INTEGER,
    "languages": PayloadIndex.KEYWORD,
    "last_modified": PayloadIndex.DATETIME,
    "sent_from": PayloadIndex.KEYWORD,
    "sent_to": PayloadIndex.KEYWORD,
    "cc_recipient": PayloadIndex.KEYWORD,
    "subject": PayloadIndex.KEYWORD,
}


def content_hash(text: str) -> str:
    """SHA-256 of a chunk's text, the identity of its content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def point_id(source_key: str, document_key: str, chunk_hash: str, occurrence: int = 0) -> str:
    """Deterministic point id of a chunk.

    The id depends on where the chunk comes from and what it says, not on its position,
    so an unchanged paragraph keeps its point when text is inserted before it, and a
    retried upsert overwrites instead of duplicating. ``occurrence`` tells apart chunks
    with identical text in the same document.
    """
    if occurrence < 0:
        raise ValueError(f"occurrence must be >= 0, got {occurrence}")
    name = f"{source_key}\x1f{document_key}\x1f{chunk_hash}\x1f{occurrence}"
    return str(uuid.uuid5(POINT_NAMESPACE, name))


def chunk_payload(
    *,
    text: str,
    source_key: str,
    document_key: str,
    chunk_index: int,
    digest: str,
    metadata: Mapping[str, Any] | None = None,
    langchain_id: str | None = None,
) -> dict[str, Any]:
    """The payload stored with a point: its metadata, then the keys tribrid owns.

    tribrid's keys are written last, so metadata can never overwrite them.
    """
    payload: dict[str, Any] = dict(metadata or {})
    payload[TEXT_KEY] = text
    if langchain_id is not None:
        payload[LANGCHAIN_ID_KEY] = langchain_id
    payload[SOURCE_KEY] = source_key
    payload[DOCUMENT_KEY] = document_key
    payload[CHUNK_INDEX_KEY] = chunk_index
    payload[CONTENT_HASH_KEY] = digest
    return payload


__all__ = [
    "CHUNK_INDEX_KEY",
    "CONTENT_HASH_KEY",
    "DOCUMENT_KEY",
    "FILTERABLE_KEYS",
    "INTERNAL_KEYS",
    "LANGCHAIN_ID_KEY",
    "POINT_NAMESPACE",
    "RESERVED_KEYS",
    "SOURCE_KEY",
    "TEXT_KEY",
    "PayloadIndex",
    "chunk_payload",
    "content_hash",
    "point_id",
]

"""Records that flow through ingestion: ``SourceDocument → Chunk → EncodedChunk → point``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tribrid import metrics
from tribrid.store.points import chunk_payload, content_hash

#: One line per document that reached an outcome (``tribrid -v ingest`` shows them).
outcomes_log = logging.getLogger("tribrid.documents")


class FailureKind(StrEnum):
    """Why a document was not indexed. Stored in the ledger and shown by ``tribrid status``."""

    UNREADABLE = "unreadable"
    NOT_A_FILE = "not_a_file"  # a FIFO, socket or device in the folder: never opened
    BAD_NAME = "bad_name"  # a file or folder name that is not valid UTF-8
    OUTSIDE_ROOT = "outside_root"
    UNSUPPORTED_TYPE = "unsupported_type"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    EMPTY = "empty"
    NO_TEXT_LAYER = "no_text_layer"
    TOO_LARGE = "too_large"
    TOO_MANY_PAGES = "too_many_pages"
    TOO_MANY_MEMBERS = "too_many_members"  # an archive over TRIBRID_ARCHIVES__MAX_MEMBERS
    TOO_DEEP = "too_deep"  # archives nested over TRIBRID_ARCHIVES__MAX_DEPTH
    UNSAFE_MEMBER = "unsafe_member"  # an archive member with `..`, an absolute path, a link …
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    ENCODE_FAILED = "encode_failed"
    STORE_FAILED = "store_failed"


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's text, ready to encode.

    Attributes:
        point_id: Deterministic id of the point this chunk becomes.
        source_key: Key of the source the document belongs to.
        document_key: Key of the document (its relative path).
        index: Position of the chunk within its document, from 0.
        text: The text to embed and to return.
        content_hash: SHA-256 of ``text``.
        metadata: JSON-serialisable metadata (file type, section title, page numbers …).
    """

    point_id: str
    source_key: str
    document_key: str
    index: int
    text: str
    content_hash: str
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"Chunk.index must be >= 0, got {self.index} in {self.document_key!r}")
        if not self.text.strip():
            raise ValueError(f"Chunk {self.index} of {self.document_key!r} has no text")
        if self.content_hash != content_hash(self.text):
            raise ValueError(
                f"Chunk {self.index} of {self.document_key!r}: content_hash does not match text"
            )

    def payload(self) -> dict[str, Any]:
        """The payload stored with the point: the text, its keys and its metadata.

        Every chunk carries ``source`` (its ``path``, else its document key), the key
        LangChain loaders and "with sources" chains read, whichever parser made it.
        """
        source = self.metadata.get("path", self.document_key)
        return chunk_payload(
            text=self.text,
            source_key=self.source_key,
            document_key=self.document_key,
            chunk_index=self.index,
            digest=self.content_hash,
            metadata={"source": source, **self.metadata},
        )


@dataclass(frozen=True)
class ParsedDocument:
    """The chunks of one successfully parsed document."""

    document_key: str
    chunks: tuple[Chunk, ...]
    element_count: int
    page_count: int | None = None

    def __post_init__(self) -> None:
        if not self.chunks:
            raise ValueError(
                f"ParsedDocument {self.document_key!r} has no chunks; record a failure instead"
            )
        if any(c.document_key != self.document_key for c in self.chunks):
            raise ValueError(
                f"ParsedDocument {self.document_key!r} holds chunks of another document"
            )


@dataclass(frozen=True)
class DocumentFailure:
    """A document that could not be indexed, with a reason a person can act on."""

    document_key: str
    kind: FailureKind
    message: str


#: What parsing one document gives: its chunks, or why there are none.
ParseOutcome = ParsedDocument | DocumentFailure


def unreadable(key: str, error: OSError) -> DocumentFailure:
    """The failure of a document whose file cannot be stat'ed or read."""
    return DocumentFailure(
        key,
        FailureKind.UNREADABLE,
        f"{key}: cannot read: {error.strerror or error}; check it exists and is readable",
    )


def document_ended(
    key: str,
    outcome: str,
    *,
    chunks: int = 0,
    kind: str | None = None,
    message: str | None = None,
) -> None:
    """Log one line and count one document that reached ``outcome``.

    Every stage that ends a document calls this once for it (the writer, the failure
    recorder, the removers, the unchanged path), in the foreground and in workers alike:
    a failure is a warning with its kind and reason, the other outcomes are info lines.
    """
    metrics.document_ended(outcome, kind=kind)
    extra: dict[str, Any] = {"document_key": key, "outcome": outcome, "chunks": chunks}
    if outcome == "failed":
        extra["kind"] = kind
        reason = message or ""
        if reason.startswith(f"{key}: "):
            reason = reason[len(key) + 2 :]
        outcomes_log.warning("%s: failed (%s): %s", key, kind, reason, extra=extra)
    elif outcome == "indexed":
        outcomes_log.info("%s: indexed (%d chunks)", key, chunks, extra=extra)
    else:
        outcomes_log.info("%s: %s", key, outcome, extra=extra)

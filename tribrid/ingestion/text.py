"""Documents that are already text: chunked in-process, never parsed.

A connector that holds each document's text (a BEIR corpus line, a database row)
yields :class:`~tribrid.connectors.base.TextDocument` items. Their parse jobs carry the
text, and :class:`TextChunker` turns them into chunks with the same chunker and the same
settings as parsed files, in the calling process: no parse workers are started and
nothing is partitioned, so the cost is chunking alone.

Example:
    >>> pipeline = SyncPipeline(ledger=ledger, store=store, encoders=encoders,
    ...                         parser_factory=lambda: TextChunker(options))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tribrid.ingestion.base import (
    Chunk,
    DocumentFailure,
    FailureKind,
    ParsedDocument,
)
from tribrid.ingestion.chunking import chunk_elements
from tribrid.ingestion.parse_pool import ParseJob, ParseOptions, ParseOutcome
from tribrid.ingestion.parsing import prepare_unstructured
from tribrid.store.points import content_hash, point_id

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

TEXT_FILETYPE = "text/plain"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Sentence ends: chunk boundaries fall between sentences rather than inside one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
# The least room a chunk's body keeps next to its title, whatever the title's length.
_MIN_BODY_CHARS = 200


def text_elements(text: str) -> list[Element]:
    """The elements of a plain text: one per sentence, paragraph by paragraph.

    Paragraphs are separated by blank lines. Sentences are separate elements so that
    chunks end between sentences. Every element says ``text/plain``, so the chunks'
    ``filetype`` does not depend on how the document's key happens to end.
    """
    prepare_unstructured()
    from unstructured.documents.elements import ElementMetadata, NarrativeText

    elements: list[Element] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            if sentence.strip():
                metadata = ElementMetadata(filetype=TEXT_FILETYPE)
                elements.append(NarrativeText(" ".join(sentence.split()), metadata=metadata))
    return elements


def chunk_text(job: ParseJob, options: ParseOptions) -> ParseOutcome:
    """Chunk a job that carries its text, with the title at the head of every chunk.

    The body is chunked like a parsed file (same chunker, same settings), leaving room
    for the title: a chunk from the middle of a document still says what the document
    is about, which both the models and BM25 use. The title alone never makes a chunk.

    Args:
        job: A job whose ``text`` is set.
        options: The chunking options.

    Returns:
        The chunks, or an ``empty`` failure when there is no text at all.

    Raises:
        ConfigError: The chunking options contradict each other.
    """
    key = job.document_key
    assert job.text is not None, "chunk_text needs a job that carries text"
    title = " ".join(job.title.split())
    heading = f"{title}\n\n" if title else ""
    body_max = max(options.max_characters - len(heading), _MIN_BODY_CHARS)
    elements = text_elements(job.text)
    body_chunks = (
        chunk_elements(
            elements,
            source_key=job.source_key,
            document_key=key,
            max_characters=body_max,
            new_after_n_chars=min(options.new_after_n_chars, body_max),
            overlap=min(options.overlap, body_max // 2),
            overlap_all=options.overlap_all,
            combine_text_under_n_chars=min(options.combine_text_under_n_chars, body_max),
            multipage_sections=options.multipage_sections,
        )
        if elements
        else ()
    )
    texts = [heading + c.text for c in body_chunks] or ([title] if title else [])
    if not texts:
        return DocumentFailure(key, FailureKind.EMPTY, f"{key}: no text to index")
    seen: Counter[str] = Counter()
    chunks = []
    for index, text in enumerate(texts):
        digest = content_hash(text)
        occurrence = seen[digest]
        seen[digest] += 1
        metadata: dict[str, Any] = {
            "path": key,
            "filename": key,
            "filetype": TEXT_FILETYPE,
            "title": title or None,
            "page_numbers": [],
            "page": None,
        }
        chunks.append(
            Chunk(
                point_id=point_id(job.source_key, key, digest, occurrence),
                source_key=job.source_key,
                document_key=key,
                index=index,
                text=text,
                content_hash=digest,
                metadata=metadata,
            )
        )
    return ParsedDocument(document_key=key, chunks=tuple(chunks), element_count=len(elements))


class TextChunker:
    """A :class:`~tribrid.ingestion.pipeline.DocumentParser` for jobs that carry text.

    It is its own context manager (nothing to start or stop), so ``lambda:
    TextChunker(options)`` is a ``parser_factory`` for :class:`SyncPipeline`. A job
    without text (a file) fails as ``unsupported_type``: this chunker reads no files.

    Args:
        options: Chunking options (the parsing limits are not used).
    """

    def __init__(self, options: ParseOptions | None = None) -> None:
        self._options = options or ParseOptions()

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        """Chunk every job, in order."""
        for job in jobs:
            if job.text is None:
                yield (
                    job,
                    DocumentFailure(
                        job.document_key,
                        FailureKind.UNSUPPORTED_TYPE,
                        f"{job.document_key}: is a file, not a text record; index files "
                        "with `tribrid ingest`, which parses them",
                    ),
                )
                continue
            yield job, chunk_text(job, self._options)

    def __enter__(self) -> TextChunker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

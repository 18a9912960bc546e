"""The parse stage: what a parse job is, how it is parsed, and what comes out.

A :class:`ParseJob` names one document; :func:`parse_and_chunk` turns it into a
:class:`~tribrid.ingestion.base.ParsedDocument` or a
:class:`~tribrid.ingestion.base.DocumentFailure` (a :data:`ParseOutcome`) in the calling
process. A :class:`DocumentParser` does that for many jobs:
:class:`~tribrid.ingestion.parse_pool.ParsePool` in worker processes with a time and
memory limit per file, or :class:`TextChunker` in-process for documents that are already
text.

**The text path.** A connector that holds each document's text (a BEIR corpus line, a
database row) yields :class:`~tribrid.connectors.base.TextDocument` items. Their parse
jobs carry the text, and :func:`chunk_text` chunks it with the same chunker and the same
settings as parsed files: nothing is partitioned, so the cost is chunking alone.

Example:
    >>> options = ParseOptions(timeout_s=120)
    >>> outcome = parse_and_chunk(ParseJob("local:/docs", "a.md", Path("/docs/a.md")), options)  # doctest: +SKIP
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from tribrid import metrics
from tribrid.connectors.archives import (
    ArchiveLimits,
    compression_of,
    decompress_file,
    decompressed_name,
    extract_member,
    split_member_key,
)
from tribrid.errors import ConfigError, ParseError, TribridError
from tribrid.ingestion.base import (
    Chunk,
    DocumentFailure,
    FailureKind,
    ParsedDocument,
    ParseOutcome,
)
from tribrid.ingestion.parsing import DEFAULT_OCR_MAX_PAGES
from tribrid.store.points import content_hash, point_id

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

    from tribrid.settings import ArchiveSettings, ChunkingSettings, ParsingSettings

# A parse worker maps ~1 GB of address space once unstructured and its libraries are loaded.
MIN_MEMORY_LIMIT_MB: Final = 1024


class DocumentParser(Protocol):
    """Turns parse jobs into parsed documents or failures, in any order."""

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        """Parse every job; yield each with its outcome as it completes."""
        ...


#: Opens a parser for one sync (a context manager: workers start and stop with it).
ParserFactory = Callable[[], AbstractContextManager[DocumentParser]]


@dataclass(frozen=True)
class ParseJob:
    """One file to parse.

    Attributes:
        source_key: Key of the source the document belongs to.
        document_key: Key of the document within its source.
        path: The file on disk.
        text: The document's text when the connector already has it (a record such as a
            BEIR corpus line): it is chunked as is and ``path`` is not read.
        title: The title of such a text, chunked as its heading.
        member: For a member of an archive (``a.zip!/dir/m.pdf``), the member names from
            the archive at ``path`` down (``("dir/m.pdf",)``); empty for a file.
    """

    source_key: str
    document_key: str
    path: Path
    text: str | None = field(default=None, repr=False)
    title: str = field(default="", repr=False)
    member: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParseOptions:
    """How to parse and chunk; the same for every file of a run.

    Attributes:
        strategy: PDF strategy; only ``"fast"`` (text layer via pdfminer) is supported.
        timeout_s: Longest a worker may spend on one file (pool only).
        max_file_mb: Larger files are refused without being read.
        max_pages: PDFs with more pages are refused before partitioning.
        memory_limit_mb: Address-space cap of each worker (pool only); ``None`` for none.
        languages: ISO 639-3 codes of the documents' languages; empty to detect them.
        ocr: OCR images and PDFs without a text layer when Tesseract is installed.
        ocr_max_pages: PDFs without a text layer with more pages are refused, not OCRed.
        max_characters: Hard maximum chunk length.
        new_after_n_chars: Soft maximum chunk length.
        overlap: Characters repeated between consecutive split chunks.
        overlap_all: Overlap all chunks, not only split ones.
        combine_text_under_n_chars: Merge consecutive sections shorter than this.
        multipage_sections: Let sections span page breaks.
        plain_text: Chunk ``.txt`` files in the calling process, without ``unstructured``
            (see :mod:`tribrid.ingestion.plain_text`); ``False`` sends them to the parser.
        archives: What decompressing a compressed file or an archive member may cost.
    """

    strategy: str = "fast"
    timeout_s: float = 300.0
    max_file_mb: float = 200.0
    max_pages: int = 2000
    memory_limit_mb: int | None = 6144
    languages: tuple[str, ...] = ("eng",)
    ocr: bool = True
    ocr_max_pages: int = DEFAULT_OCR_MAX_PAGES
    max_characters: int = 1200
    new_after_n_chars: int = 900
    overlap: int = 100
    overlap_all: bool = False
    combine_text_under_n_chars: int = 300
    multipage_sections: bool = True
    plain_text: bool = True
    archives: ArchiveLimits = field(default_factory=ArchiveLimits)

    def __post_init__(self) -> None:
        from tribrid.ingestion.parsing import check_pdf_strategy

        check_pdf_strategy(self.strategy)
        if self.timeout_s <= 0:
            raise ConfigError(f"parsing timeout_s must be > 0, got {self.timeout_s}")
        if self.max_file_mb <= 0 or self.max_pages < 1 or self.ocr_max_pages < 1:
            raise ConfigError(
                f"parsing limits must be positive, got max_file_mb={self.max_file_mb}, "
                f"max_pages={self.max_pages}, ocr_max_pages={self.ocr_max_pages}"
            )
        if self.memory_limit_mb is not None and self.memory_limit_mb < MIN_MEMORY_LIMIT_MB:
            raise ConfigError(
                f"parsing memory_limit_mb={self.memory_limit_mb} is too small: a parser needs "
                f"about {MIN_MEMORY_LIMIT_MB} MB of address space just to start; set "
                "TRIBRID_PARSING__MEMORY_LIMIT_MB to 2048 or more"
            )
        if not 0 <= self.overlap < self.max_characters:
            raise ConfigError(
                f"chunking overlap={self.overlap} must be >= 0 and below "
                f"max_characters={self.max_characters} (TRIBRID_CHUNKING__OVERLAP)"
            )
        if self.new_after_n_chars < 0 or self.combine_text_under_n_chars < 0:
            raise ConfigError(
                "chunking new_after_n_chars and combine_text_under_n_chars must be >= 0"
            )
        object.__setattr__(self, "languages", tuple(self.languages))

    @classmethod
    def from_settings(
        cls,
        parsing: ParsingSettings,
        chunking: ChunkingSettings,
        archives: ArchiveSettings | None = None,
    ) -> ParseOptions:
        """Build options from the ``parsing``, ``chunking`` and ``archives`` parts of
        :class:`Settings` (default archive limits without the last)."""
        return cls(
            strategy=parsing.pdf_strategy,
            timeout_s=parsing.timeout_s,
            max_file_mb=parsing.max_file_mb,
            max_pages=parsing.max_pages,
            memory_limit_mb=parsing.memory_limit_mb,
            languages=tuple(parsing.languages),
            ocr=parsing.ocr,
            ocr_max_pages=parsing.ocr_max_pages,
            max_characters=chunking.max_characters,
            new_after_n_chars=chunking.new_after_n_chars,
            overlap=chunking.overlap,
            overlap_all=chunking.overlap_all,
            combine_text_under_n_chars=chunking.combine_text_under_n_chars,
            multipage_sections=chunking.multipage_sections,
            plain_text=parsing.plain_text,
            archives=archive_limits(archives),
        )


def archive_limits(archives: ArchiveSettings | None) -> ArchiveLimits:
    """The limits of the ``archives`` settings (the defaults for ``None``)."""
    return ArchiveLimits() if archives is None else ArchiveLimits(**archives.model_dump())


def parse_and_chunk(job: ParseJob, options: ParseOptions) -> ParseOutcome:
    """Parse and chunk one file in this process.

    A compressed file (``changelog.gz``) is decompressed and what it holds is parsed by
    its own type; a member of an archive (``job.member``) is read out of its archive. In
    both cases the bytes go to a private temporary folder, within
    ``options.archives``' limits, and the chunks' metadata says where they came from
    (``compression`` and ``contained``; ``archive`` and ``member``).

    Every problem with the file comes back as a :class:`DocumentFailure`; only problems
    of the installation or configuration raise. There is no time limit here: use
    :class:`ParsePool` (or the task runner's own limit) for that.

    Args:
        job: The file.
        options: How to parse and chunk it.

    Returns:
        The chunks, or why there are none.

    Raises:
        ConfigError: The chunking options contradict each other.
        MissingDependencyError: The packaged spaCy model is missing.
    """
    with metrics.timed("parse"):
        if job.text is not None:
            # Already text (a record, not a file): nothing to read or partition, only chunking.
            return chunk_text(job, options)
        outcome = _parse_source(job, options)
        return _with_last_modified(outcome, job.path)


def _with_last_modified(outcome: ParseOutcome, source: Path) -> ParseOutcome:
    """Stamp every chunk with its file's last change (the archive's, for a member).

    ``unstructured`` fills ``last_modified`` for some file types and not others, and
    not the same way in every process; the file's own mtime is the same everywhere. An
    e-mail keeps what ``unstructured`` read from it: the date it was sent.
    """
    if not isinstance(outcome, ParsedDocument):
        return outcome
    try:
        mtime = source.stat().st_mtime
    except OSError:
        return outcome
    stamp = datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds")
    chunks = tuple(
        c
        if c.metadata.get("sent_from")
        else replace(c, metadata={**c.metadata, "last_modified": stamp})
        for c in outcome.chunks
    )
    return replace(outcome, chunks=chunks)


def _parse_source(job: ParseJob, options: ParseOptions) -> ParseOutcome:
    """Parse a file, a compressed file or an archive member (see :func:`parse_and_chunk`)."""
    name = job.member[-1] if job.member else job.path.name
    if not job.member and compression_of(name) is None:
        return _parse_file(job, job.path, options)
    # A member of an archive, or a compressed file: its bytes go to a private folder
    # (removed however parsing ends) under a name chosen here, and are parsed from there.
    key = job.document_key
    origin: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tribrid-unpack-") as scratch:
        folder = Path(scratch)
        try:
            path = job.path
            if job.member:
                path = extract_member(
                    job.path, job.member, key=key, limits=options.archives, folder=folder
                )
                origin["archive"] = split_member_key(key)[0]
                origin["member"] = MEMBER_PATH_SEPARATOR.join(job.member)
            if (compression := compression_of(name)) is not None:
                inner = folder / "decompressed"
                inner.mkdir()
                path = decompress_file(
                    path, compression, key=key, limits=options.archives, folder=inner
                )
                origin["compression"] = compression.value
                origin["contained"] = decompressed_name(name)
        except ParseError as error:
            return DocumentFailure(key, FailureKind(error.kind), str(error))
        except OSError as error:
            return DocumentFailure(
                key, FailureKind.UNREADABLE, f"{key}: cannot read: {error.strerror or error}"
            )
        return _with_origin(_parse_file(job, path, options), origin)


#: Joins the member names of a nested member in its chunks' ``member`` metadata.
MEMBER_PATH_SEPARATOR: Final = "!/"


def _with_origin(outcome: ParseOutcome, origin: Mapping[str, Any]) -> ParseOutcome:
    """Add where the text came from (archive, member, compression) to every chunk."""
    if not isinstance(outcome, ParsedDocument) or not origin:
        return outcome
    chunks = tuple(replace(c, metadata={**c.metadata, **origin}) for c in outcome.chunks)
    return replace(outcome, chunks=chunks)


def _parse_file(job: ParseJob, file: Path, options: ParseOptions) -> ParseOutcome:
    """Partition and chunk the file ``file`` holding the bytes of ``job``'s document."""
    from tribrid.ingestion.chunking import chunk_elements
    from tribrid.ingestion.parsing import partition_with_page_count

    key = job.document_key
    try:
        elements, page_count = partition_with_page_count(
            file,
            document_key=key,
            strategy=options.strategy,
            max_file_mb=options.max_file_mb,
            max_pages=options.max_pages,
            languages=options.languages,
            ocr=options.ocr,
            ocr_max_pages=options.ocr_max_pages,
            limits=options.archives,
        )
        chunks = chunk_elements(
            elements,
            source_key=job.source_key,
            document_key=key,
            max_characters=options.max_characters,
            new_after_n_chars=options.new_after_n_chars,
            overlap=options.overlap,
            overlap_all=options.overlap_all,
            combine_text_under_n_chars=options.combine_text_under_n_chars,
            multipage_sections=options.multipage_sections,
        )
    except ParseError as error:
        return DocumentFailure(key, FailureKind(error.kind), str(error))
    except TribridError:
        raise
    except MemoryError:
        limit = f"{options.memory_limit_mb} MB" if options.memory_limit_mb else "available memory"
        return DocumentFailure(
            key,
            FailureKind.CRASHED,
            f"{key}: parsing ran out of memory ({limit}); raise "
            "TRIBRID_PARSING__MEMORY_LIMIT_MB or remove the file from the folder",
        )
    except Exception as error:
        return DocumentFailure(
            key,
            FailureKind.CORRUPT,
            f"{key}: could not be chunked ({type(error).__name__}: {error}); "
            "the file may be malformed; re-save it or remove it from the folder",
        )
    if not chunks:
        return DocumentFailure(key, FailureKind.EMPTY, f"{key}: no text to index after chunking")
    if page_count is None:
        pages = [c.metadata["page"] for c in chunks if c.metadata.get("page") is not None]
        page_count = max(pages) if pages else None
    return ParsedDocument(
        document_key=key, chunks=chunks, element_count=len(elements), page_count=page_count
    )


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
    from tribrid.ingestion.parsing import prepare_unstructured

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
    from tribrid.ingestion.chunking import chunk_elements

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
    """A :class:`DocumentParser` for jobs that carry text, in the calling process.

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

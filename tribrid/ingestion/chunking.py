"""Group a document's elements into :class:`~tribrid.ingestion.base.Chunk` records.

Chunks follow the document's sections: ``unstructured``'s ``chunk_by_title`` starts a new
chunk at every title and cuts sections longer than ``max_characters``. Each chunk keeps the
few metadata fields a search result needs, all JSON-serialisable:

* ``path``: the document key;
* ``source``: the same, under the key LangChain loaders and "with sources" chains use;
* ``filename``: the document's file name;
* ``filetype``: MIME type detected from the content (the extension when unknown);
* ``title``: the title of the section the chunk starts in, or ``None``;
* ``page_numbers``: sorted pages the chunk's text comes from (``[]`` when unknown);
* ``page``: the first of those pages, or ``None``;

and, only where ``unstructured`` gives them:

* ``last_modified``: ISO 8601 time of the file's last change (for an e-mail, its
  ``Date``/``Sent`` header);
* ``languages``: ISO 639-3 codes of the chunk's languages, e.g. ``["eng"]``;
* ``sent_from``, ``sent_to``, ``cc_recipient``, ``bcc_recipient`` (lists of addresses)
  and ``subject``: an e-mail's headers.

Example:
    >>> chunks = chunk_elements(elements, source_key="docs", document_key="report.pdf")
    >>> chunks[0].metadata["page_numbers"]
    [1, 2]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from tribrid.errors import ConfigError
from tribrid.ingestion.base import Chunk
from tribrid.ingestion.parsing import prepare_unstructured
from tribrid.store.points import content_hash, point_id

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

_TITLE_CATEGORY = "Title"
# A "title" is a heuristic guess; a long one is a misread paragraph, not a heading.
_MAX_TITLE_CHARS = 200


def chunk_elements(
    elements: Iterable[Element],
    *,
    source_key: str,
    document_key: str,
    max_characters: int = 1200,
    new_after_n_chars: int = 900,
    overlap: int = 100,
    overlap_all: bool = False,
    combine_text_under_n_chars: int = 300,
    multipage_sections: bool = True,
) -> tuple[Chunk, ...]:
    """Chunk one document's elements by section and give every chunk its deterministic id.

    Args:
        elements: The document's elements, in reading order (see
            :func:`tribrid.ingestion.parsing.partition_document`).
        source_key: Key of the source the document belongs to.
        document_key: Key of the document within its source.
        max_characters: Hard maximum length of a chunk; longer text is split.
        new_after_n_chars: Soft maximum: no element is added to a chunk this long.
        overlap: Characters of a split chunk's tail repeated at the start of the next.
        overlap_all: Apply ``overlap`` between all chunks, not only split ones.
        combine_text_under_n_chars: Merge consecutive small sections up to this length.
        multipage_sections: Let a section's chunks span a page break.

    Returns:
        The chunks in document order, indexed from 0. Chunks whose text is blank are
        dropped. The ``occurrence`` part of each point id counts earlier chunks of the same
        document with identical text, so repeated boilerplate still gets distinct ids.

    Raises:
        ConfigError: The chunking options contradict each other (e.g. ``overlap`` not
            below ``max_characters``).
    """
    prepare_unstructured()
    from unstructured.chunking.title import chunk_by_title

    elements = list(elements)
    try:
        raw_chunks = chunk_by_title(
            elements,
            max_characters=max_characters,
            new_after_n_chars=new_after_n_chars,
            overlap=overlap,
            overlap_all=overlap_all,
            combine_text_under_n_chars=combine_text_under_n_chars,
            multipage_sections=multipage_sections,
            include_orig_elements=True,
        )
    except ValueError as error:
        raise ConfigError(
            f"chunking options are inconsistent: {error}; fix the TRIBRID_CHUNKING__* settings"
        ) from error

    filetype = _document_filetype(elements, document_key)
    filename = PurePosixPath(document_key).name
    seen: Counter[str] = Counter()
    chunks: list[Chunk] = []
    section_title: str | None = None
    for raw in raw_chunks:
        originals = _originals(raw)
        section_title = _section_title(originals, section_title)
        chunk_title = section_title
        section_title = _last_title(originals, section_title)
        text = raw.text
        if not isinstance(text, str) or not text.strip():
            continue
        digest = content_hash(text)
        occurrence = seen[digest]
        seen[digest] += 1
        pages = _page_numbers(raw, originals)
        metadata: dict[str, Any] = {
            "path": document_key,
            "source": document_key,
            "filename": filename,
            "filetype": filetype,
            "title": chunk_title,
            "page_numbers": pages,
            "page": pages[0] if pages else None,
            **_optional_metadata(raw, originals),
        }
        chunks.append(
            Chunk(
                point_id=point_id(source_key, document_key, digest, occurrence),
                source_key=source_key,
                document_key=document_key,
                index=len(chunks),
                text=text,
                content_hash=digest,
                metadata=metadata,
            )
        )
    return tuple(chunks)


#: Fields of ``unstructured``'s element metadata kept when present: e-mail headers.
_EMAIL_FIELDS = ("sent_from", "sent_to", "cc_recipient", "bcc_recipient", "subject")


def _optional_metadata(chunk: Element, originals: Sequence[Element]) -> dict[str, Any]:
    """``last_modified``, ``languages`` and e-mail headers, where unstructured has them.

    Read from the chunk's own elements (the first that has each field), so an
    attachment's headers never label the message's chunks or the other way round.
    """
    found: dict[str, Any] = {}
    languages: list[str] = []
    for element in [*originals, chunk]:
        metadata = element.metadata
        for name in ("last_modified", *_EMAIL_FIELDS):
            value = getattr(metadata, name, None)
            if name not in found and value:
                found[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
        for language in getattr(metadata, "languages", None) or []:
            if isinstance(language, str) and language not in languages:
                languages.append(language)
    if languages:
        found["languages"] = languages
    return found


def _originals(chunk: Element) -> Sequence[Element]:
    originals = chunk.metadata.orig_elements
    return originals if originals else [chunk]


def _section_title(originals: Sequence[Element], current: str | None) -> str | None:
    """The title a chunk starts under: its own first element when that is a title."""
    first = originals[0]
    if first.category == _TITLE_CATEGORY and (text := _clean(first.text)):
        return text
    return current


def _last_title(originals: Sequence[Element], current: str | None) -> str | None:
    """The title in force after a chunk: the last one it contains, if any."""
    for element in reversed(originals):
        if element.category == _TITLE_CATEGORY and (text := _clean(element.text)):
            return text
    return current


def _page_numbers(chunk: Element, originals: Sequence[Element]) -> list[int]:
    pages = {
        page
        for element in originals
        if isinstance(page := element.metadata.page_number, int) and not isinstance(page, bool)
    }
    if not pages and isinstance(page := chunk.metadata.page_number, int):
        pages.add(page)
    return sorted(pages)


def _document_filetype(elements: Sequence[Element], document_key: str) -> str:
    """The document's own MIME type; attachments carry theirs, so they are skipped."""
    from unstructured.partition.common.metadata import is_attachment_element

    for element in elements:
        metadata = element.metadata
        attached = metadata.attached_to_filename or is_attachment_element(element)
        if metadata.filetype and not attached:
            return str(metadata.filetype)
    for element in elements:
        if element.metadata.filetype:
            return str(element.metadata.filetype)
    return PurePosixPath(document_key).suffix.lower().lstrip(".")


def _clean(text: object) -> str:
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TITLE_CHARS else text[: _MAX_TITLE_CHARS - 1] + "…"

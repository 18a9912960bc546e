"""Plain-text files chunked in the calling process, without ``unstructured``.

A ``.txt`` file sent to the parse pool costs a worker process that imports
``unstructured`` and spaCy (hundreds of MB, seconds to start), and spaCy then tags every
paragraph to tell headings from prose. On a folder of text files that parsing competes
with the encoders for the same cores. This module reads such a file and chunks it the
way the pool does, in a few milliseconds and in the calling process:

* paragraphs and lines are grouped and split as ``unstructured``'s ``partition_text``
  groups and splits them (blank-line or line-per-paragraph documents, short-line blocks
  such as licence headers kept line by line, broken lines of a paragraph joined);
* elements are chunked as ``chunk_by_title`` chunks them with the same options (sections
  start at headings, pre-chunks fill up to ``new_after_n_chars`` and never exceed
  ``max_characters``, small sections are combined, oversized paragraphs are split on a
  line break or a space with ``overlap``), and the chunks get the same metadata, ids
  and order as :func:`~tribrid.ingestion.chunking.chunk_elements` gives them.

``unstructured`` decides whether a short line (twelve words or fewer, not ending in a
comma, mostly letters) is a heading with spaCy's part-of-speech tagger: a line with a
verb is prose. Without the tagger this module uses a rule instead: such a line is a
heading when most of its words are capitalised. Chunk boundaries and text rarely depend
on it (a heading starts a section, and a section break changes chunks only where a
heading falls mid-window); the ``title`` metadata of those chunks can differ. Set
``TRIBRID_PARSING__PLAIN_TEXT=false`` to send text files to the parse pool as before.

Files this module is not sure to read like the pool does come back as ``None`` and go
to the pool: another extension, bytes that are not UTF-8 (or start with a byte-order
mark, hold NULs or carriage returns), bulleted lines, text that looks like markup, JSON
or an e-mail, only whitespace, or languages to detect.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Final

from tribrid.ingestion.base import Chunk, ParsedDocument
from tribrid.ingestion.parse import ParseJob, ParseOptions
from tribrid.store.points import content_hash, point_id

#: Extensions read here (the pool reads them as ``text/plain`` too).
PLAIN_TEXT_SUFFIXES: Final = frozenset({".txt"})
#: The ``filetype`` of every chunk from a plain-text file.
TEXT_PLAIN: Final = "text/plain"

# Characters the pool's text partitioner may treat as list bullets: their files go there.
_BULLETS: Final = frozenset(
    "\u0095\u2022\u2023\u2043\u3164\u204c\u204d\u2219\u25cb\u25cf\u25d8\u25e6\u2619"
    "\u2765\u2767\u29be\u29bf\uf0b7*·"
)
# A line opening with a dash, an en dash or a lone "e" and then a space is a bullet there.
_DASH_BULLET = re.compile(r"(?m)^[ \t\f\v]*(?:[-\u2013](?=\s|$)|e(?=\s))")
# Text that file-type detection may take for markup, JSON or an e-mail.
_NOT_PLAIN_START = re.compile(
    r"\A\s*(?:[<{]|\[\s*[\[{\"\d\]-]|From |(?:From|To|Cc|Bcc|Subject|Date|Received|Return-Path|Message-ID"
    r"|MIME-Version|Content-Type|Delivered-To|Reply-To|Sender|X-[\w-]+):)",
    re.IGNORECASE,
)
_BULLET_OR_NEWLINE = re.compile("[" + re.escape("".join(sorted(_BULLETS))) + "\n]")
_LINE_ENDS = re.compile(r"(?<=\n)")  # splits after every newline, keeping it
_BLANK_LINE_RUN = re.compile(r"(?:\s*\n\s*){2}")  # a paragraph break
_NEWLINE_RUN = re.compile(r"\s*\n\s*")  # any line break with the spaces around it
_ENDS_IN_PUNCTUATION = re.compile(r"[^\w\s]\Z")
_LANGUAGE_CODE = re.compile(r"\A[a-z]{3}\Z")
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
# Lines sampled to choose between the two groupings, and the blank-line share that
# makes a document one of blank-line separated paragraphs.
_SAMPLED_LINES: Final = 2000
_BLANK_SHARE: Final = 0.1
# Words a heading may have, and a paragraph block's lines may have to be kept line by line.
_MAX_TITLE_WORDS: Final = 12
_SHORT_LINE_WORDS: Final = 5
_SEPARATOR: Final = "\n\n"
# A "title" is a heuristic guess; a long one is a misread paragraph, not a heading.
_MAX_TITLE_CHARS: Final = 200


def is_candidate(job: ParseJob) -> bool:
    """Whether ``job`` is a file this module may read (by its name; the content decides)."""
    return (
        job.text is None
        and not job.member
        and PurePosixPath(job.document_key).suffix.lower() in PLAIN_TEXT_SUFFIXES
    )


def parse_plain_text(job: ParseJob, options: ParseOptions) -> ParsedDocument | None:
    """Chunk a plain-text file here, or return ``None`` to leave it to the parse pool.

    Args:
        job: The file (see :func:`is_candidate`).
        options: Chunking options; ``languages`` must be given codes, not detected.

    Returns:
        The chunks, or ``None`` when the file is not one this module reads exactly like
        the pool (including every case where the pool reports a failure).
    """
    if not (is_candidate(job) and options.plain_text):
        return None
    languages = list(options.languages)
    if len(languages) != 1 or not _LANGUAGE_CODE.match(languages[0]):
        return None
    try:
        stat = job.path.stat()
        if stat.st_size == 0 or stat.st_size > options.max_file_mb * 2**20:
            return None
        data = job.path.read_bytes()
    except OSError:
        return None  # the pool reports it as it always has
    if data.startswith(b"\xef\xbb\xbf") or b"\x00" in data or b"\r" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.strip() or _NOT_PLAIN_START.match(text) or _has_bullets(text):
        return None
    found = paragraphs(text)
    if not found:
        return None
    stamp = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(timespec="seconds")
    chunks = chunk_paragraphs(
        job, [(t, is_heading(t)) for t in found], options, last_modified=stamp
    )
    if not chunks:
        return None
    return ParsedDocument(document_key=job.document_key, chunks=chunks, element_count=len(found))


def paragraphs(text: str) -> list[str]:
    """The paragraph texts of a plain-text document, as the pool's partitioner finds them.

    A document with few blank lines has one paragraph per line; otherwise blank lines
    separate paragraphs, the broken lines of a paragraph are joined with spaces, and a
    block whose lines are all short (an address, a licence header) stays line by line.
    """
    lines = _LINE_ENDS.split(text)
    sampled = lines[:_SAMPLED_LINES]
    blank = sum(1 for line in sampled if not line.strip())
    if blank / len(sampled) < _BLANK_SHARE:
        grouped = _SEPARATOR.join(line for line in lines if line.strip())
    else:
        blocks: list[str] = []
        for block in _BLANK_LINE_RUN.split(text):
            if not block.strip():
                continue
            block_lines = block.split("\n")
            if all(len(line.strip().split(" ")) < _SHORT_LINE_WORDS for line in block_lines):
                blocks.extend(line for line in block_lines if line.strip())
            else:
                blocks.append(_NEWLINE_RUN.sub(" ", block))
        grouped = _SEPARATOR.join(blocks)
    found = (part.strip() for part in _NEWLINE_RUN.split(grouped.strip()))
    return [part for part in found if part]


def _has_bullets(text: str) -> bool:
    """Whether bullets may make the pool's partitioner read ``text`` another way: a line
    opening with a bullet (a list item, cleaned), or a paragraph whose pieces between
    line breaks and bullets are all short (kept line by line, split at the bullets)."""
    if _DASH_BULLET.search(text):
        return True
    if _BULLETS.isdisjoint(text):
        return False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and stripped[0] in _BULLETS:
            return True
    for block in _BLANK_LINE_RUN.split(text):
        if _BULLETS.isdisjoint(block):
            continue
        pieces = _BULLET_OR_NEWLINE.split(block)
        if all(len(piece.strip().split(" ")) < _SHORT_LINE_WORDS for piece in pieces):
            return True
    return False


def is_heading(text: str) -> bool:
    """Whether a paragraph is a heading (see the module doc for the rule)."""
    if text.isupper() and _ENDS_IN_PUNCTUATION.search(text):
        return False
    if len(text.split(" ")) > _MAX_TITLE_WORDS or text.endswith(",") or text.isnumeric():
        return False
    visible = [c for c in text if not c.isspace()]
    if visible and sum(c.isalpha() for c in visible) / len(visible) < 0.5:
        return False
    words = _WORD.findall(text)
    if not words:
        return False
    capitalised = sum(1 for w in words if w.istitle() or w.isupper())
    return capitalised / len(words) > 0.5


@dataclass(frozen=True)
class _Element:
    text: str
    heading: bool


@dataclass(frozen=True)
class _PreChunk:
    """Elements that become one chunk (or, for one oversized element, several)."""

    elements: tuple[_Element, ...]
    prefix: str  # the previous pre-chunk's tail, with ``overlap_all``

    @property
    def text(self) -> str:
        segments = [self.prefix] if self.prefix else []
        segments += [t for e in self.elements if (t := " ".join(e.text.split()))]
        return _SEPARATOR.join(segments)


def _pre_chunks(elements: Sequence[_Element], options: ParseOptions) -> Iterator[_PreChunk]:
    """Gather elements into pre-chunks: a heading starts one; one fills up to the soft
    maximum and never past the hard maximum (a lone oversized element excepted)."""
    hard = options.max_characters
    soft = min(options.new_after_n_chars, hard)
    inter_overlap = options.overlap if options.overlap_all else 0
    held: list[_Element] = []
    prefix = ""
    segments = 0
    length = 0

    def flush() -> _PreChunk:
        nonlocal held, prefix, segments, length
        pre_chunk = _PreChunk(tuple(held), prefix)
        prefix = pre_chunk.text[-inter_overlap:].strip() if inter_overlap else ""
        held, segments, length = [], (1 if prefix else 0), len(prefix)
        return pre_chunk

    for element in elements:
        if held:
            full = length + len(_SEPARATOR) * max(segments - 1, 0) > soft
            room = hard - length - len(_SEPARATOR) * segments
            if element.heading or full or room < len(element.text):
                yield flush()
        held.append(element)
        segments += 1
        length += len(element.text)
    if held:
        yield flush()


def _combined(pre_chunks: Iterator[_PreChunk], options: ParseOptions) -> Iterator[_PreChunk]:
    """Merge a small pre-chunk with the next while the two fit in one chunk."""
    limit = options.combine_text_under_n_chars
    held: _PreChunk | None = None
    for pre_chunk in pre_chunks:
        if held is not None:
            merged = _PreChunk(held.elements + pre_chunk.elements, held.prefix)
            if len(held.text) < limit and len(merged.text) <= options.max_characters:
                held = merged
                continue
            yield held
        held = pre_chunk
    if held is not None:
        yield held


def _split(text: str, options: ParseOptions) -> Iterator[str]:
    """Cut a pre-chunk's text into pieces of at most ``max_characters``: at the last line
    break that fits, else the last space, else mid-word; each piece after the first
    starts with up to ``overlap`` characters of the one before."""
    limit, overlap = options.max_characters, options.overlap
    rest = text
    while rest:
        if len(rest) <= limit:
            yield rest
            return
        for separator in ("\n", " "):
            at = rest.rfind(separator, overlap + 1, limit + len(separator))
            if at < 0:
                continue
            piece = rest[:at].rstrip()
            after = rest[at + len(separator) :].lstrip()
            if overlap > 1:
                after = piece[-(overlap - 1) :].lstrip() + " " + after
            if piece and len(after) < len(rest):
                yield piece.rstrip()
                rest = after.lstrip()
                break
        else:
            yield rest[:limit].rstrip()
            rest = rest[limit - overlap :].lstrip()


def chunk_paragraphs(
    job: ParseJob,
    found: Sequence[tuple[str, bool]],
    options: ParseOptions,
    *,
    last_modified: str,
) -> tuple[Chunk, ...]:
    """Chunk a document's paragraphs as ``chunk_by_title`` chunks the same elements.

    Args:
        job: The document.
        found: ``(text, is a heading)`` of every paragraph, in order.
        options: Chunking options and the documents' ``languages``.
        last_modified: ISO 8601 time of the file's last change.

    Returns:
        The chunks, with the ids, order and metadata the parse pool gives them.
    """
    elements = [_Element(text, heading) for text, heading in found]
    languages = list(options.languages)
    stamp = last_modified
    key = job.document_key
    filename = PurePosixPath(key).name
    seen: Counter[str] = Counter()
    chunks: list[Chunk] = []
    section: str | None = None
    for pre_chunk in _combined(_pre_chunks(elements, options), options):
        first = pre_chunk.elements[0]
        if first.heading and (cleaned := _clean(first.text)):
            section = cleaned
        chunk_title = section
        for element in reversed(pre_chunk.elements):
            if element.heading and (cleaned := _clean(element.text)):
                section = cleaned
                break
        for text in _split(pre_chunk.text, options) if pre_chunk.text else ():
            if not text.strip():
                continue
            digest = content_hash(text)
            occurrence = seen[digest]
            seen[digest] += 1
            metadata: dict[str, Any] = {
                "path": key,
                "source": key,
                "filename": filename,
                "filetype": TEXT_PLAIN,
                "title": chunk_title,
                "page_numbers": [],
                "page": None,
                "last_modified": stamp,
                "languages": list(languages),
            }
            chunks.append(
                Chunk(
                    point_id=point_id(job.source_key, key, digest, occurrence),
                    source_key=job.source_key,
                    document_key=key,
                    index=len(chunks),
                    text=text,
                    content_hash=digest,
                    metadata=metadata,
                )
            )
    return tuple(chunks)


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TITLE_CHARS else text[: _MAX_TITLE_CHARS - 1] + "…"


__all__ = [
    "PLAIN_TEXT_SUFFIXES",
    "chunk_paragraphs",
    "is_candidate",
    "is_heading",
    "paragraphs",
    "parse_plain_text",
]

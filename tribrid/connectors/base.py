"""Records and protocol shared by every connector.

A connector lists the documents of one source. It streams: it yields records as it
finds them and never holds a whole listing in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

_HASH_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hash a file in 1 MiB blocks, so large files never sit whole in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SourceDocument:
    """One document as a connector sees it, before it is read.

    Attributes:
        source_key: Stable key of the source the document belongs to.
        key: Stable key of the document within its source (its relative POSIX path).
        path: Absolute path of the file on disk.
        size: Size in bytes.
        mtime_ns: Modification time in nanoseconds.
    """

    source_key: str
    key: str
    path: Path = field(compare=False)
    size: int
    mtime_ns: int

    def __post_init__(self) -> None:
        if not self.source_key:
            raise ValueError("SourceDocument.source_key must not be empty")
        if not self.key or self.key.startswith("/") or ".." in self.key.split("/"):
            raise ValueError(
                f"SourceDocument.key must be a relative path inside the source: {self.key!r}"
            )
        if self.size < 0:
            raise ValueError(f"SourceDocument.size must be >= 0, got {self.size} for {self.key!r}")

    @property
    def relative_path(self) -> str:
        """The document's path relative to the source root."""
        return self.key

    @property
    def extension(self) -> str:
        """Lower-case file extension without the dot ('' when there is none)."""
        return Path(self.key).suffix.lower().lstrip(".")

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the file's bytes, computed on first use only.

        Raises:
            OSError: The file can no longer be read.
        """
        return file_sha256(self.path)


@dataclass(frozen=True)
class TextDocument(SourceDocument):
    """A document whose text the connector already holds (a record, not a file to parse).

    It skips parsing: the pipeline hands ``title`` and ``text`` straight to chunking.
    ``path`` is the file the record came from (for messages); ``content_hash`` is the
    SHA-256 of the title and text, so an unchanged record is never re-encoded even when
    the file around it changes.

    Attributes:
        title: The document's title ('' when it has none); chunked as a heading.
        text: The document's body.
    """

    title: str = field(default="", compare=False, repr=False)
    text: str = field(default="", compare=False, repr=False)

    @property
    def content_hash(self) -> str:  # a property here, not a cached hash of the file
        """SHA-256 of the title and the text."""
        return hashlib.sha256(f"{self.title}\x1f{self.text}".encode()).hexdigest()


@dataclass(frozen=True)
class ListingFailure:
    """A path the connector found but refused or could not read.

    It is reported, recorded in the ledger, and the listing goes on.
    """

    source_key: str
    key: str
    kind: str
    message: str

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("ListingFailure.kind must not be empty")


ListedItem = SourceDocument | ListingFailure
"""What a connector yields: a document (a :class:`TextDocument` is one) or a refusal."""


@runtime_checkable
class Connector(Protocol):
    """Lists the documents of one source."""

    @property
    def source_key(self) -> str:
        """Stable key of the source; the same source always gets the same key."""
        ...

    def list_documents(self) -> Iterator[ListedItem]:
        """Yield every document of the source, and a failure for every path refused."""
        ...


@dataclass(frozen=True)
class ConnectorOptions:
    """Options the composition root hands every connector it opens by name.

    A connector uses those that apply to it (a folder's include/exclude globs) and
    ignores the rest.

    Attributes:
        include: Glob patterns of documents to list (all when empty).
        exclude: Glob patterns of documents or folders to skip.
        follow_symlinks: Follow symlinks that stay inside the source.
        source_key: The key of the source in the ledger, when it is not the one the
            location gives (a named source that moved keeps the key it was first
            given, so its point ids stay the same).
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    source_key: str | None = None


def source_location(connector: Connector) -> str:
    """Where the connector's source is, as the ledger records it (``local:<root>``).

    A connector without a ``location`` is located by its key.
    """
    location = getattr(connector, "location", None)
    return location if isinstance(location, str) else connector.source_key


class ConnectorClass(Protocol):
    """What a connector class registered in :data:`tribrid.connectors.CONNECTORS` offers."""

    def from_location(self, location: str, options: ConnectorOptions) -> Connector:
        """The connector of the source at ``location`` (a folder, a dataset …)."""
        ...

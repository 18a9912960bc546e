"""Helpers for tests of the sync: an in-process parser and an index around a folder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from tribrid.app import SearchMode, search_store
from tribrid.connectors import LocalFolderConnector
from tribrid.encoders import EncoderSet
from tribrid.ingestion.base import ParseOutcome
from tribrid.ingestion.parse import DocumentParser, ParseJob, ParseOptions, parse_and_chunk
from tribrid.ingestion.pipeline import SyncPipeline, SyncReport
from tribrid.ledger import DocumentState, SqlLedger
from tribrid.ledger.base import DocumentStatus
from tribrid.store.base import VectorStore


class InlineParser:
    """A :class:`DocumentParser` that runs :func:`parse_and_chunk` in this process.

    Real parsing without worker processes; its own context manager.
    """

    def __init__(self, options: ParseOptions | None = None) -> None:
        self.options = options or ParseOptions(memory_limit_mb=None)

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        for job in jobs:
            yield job, parse_and_chunk(job, self.options)

    def __enter__(self) -> InlineParser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class FolderIndex:
    """A folder, a ledger, a store and a foreground pipeline between them."""

    def __init__(
        self,
        root: Path,
        ledger: SqlLedger,
        store: VectorStore,
        encoders: EncoderSet,
        parser: DocumentParser | None = None,
    ) -> None:
        self.root = root
        self.ledger = ledger
        self.store = store
        self.encoders = encoders
        chosen = parser or InlineParser()
        self.pipeline = SyncPipeline(
            ledger=ledger,
            store=store,
            encoders=encoders,
            parser_factory=lambda: _Unclosed(chosen),
            batch_chunks=64,
        )

    @property
    def connector(self) -> LocalFolderConnector:
        return LocalFolderConnector(self.root)

    def sync(self) -> SyncReport:
        report = self.pipeline.sync(self.connector)
        # The invariant of every sync: the store holds exactly the ledger's chunks.
        assert self.store.ids() == set(self.ledger.all_point_ids())
        return report

    def states(self) -> dict[str, DocumentState]:
        """The ledger's live documents of the folder, by key."""
        key = self.connector.source_key
        source_id = self.ledger.ensure_source(key, kind="local", location=key)
        return {
            s.key: s
            for s in self.ledger.document_states(source_id)
            if s.status != DocumentStatus.DELETED
        }

    def paths(self, query: str, k: int = 3) -> list[str]:
        """Document keys of the top BM25 hits."""
        hits = search_store(self.store, self.encoders, query, mode=SearchMode.BM25, k=k)
        return [h.path for h in hits]


class _Unclosed:
    """Hands a parser to the pipeline as a context manager that leaves it open."""

    def __init__(self, parser: DocumentParser) -> None:
        self._parser = parser

    def __enter__(self) -> DocumentParser:
        return self._parser

    def __exit__(self, *exc: object) -> None:
        return None

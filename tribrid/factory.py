"""The composition root: every component built from :class:`~tribrid.settings.Settings`.

The public façade (:mod:`tribrid.app`), the CLI, the background worker bootstrap, the
folder watcher and the evaluation harness all build their encoders, stores, ledgers,
connectors and sync pipelines here, so the wiring (which model, which store path, how
large a batch, which parse limits) exists once. This module sits just above the pieces
it builds and below everything that uses them; nothing below it reads settings.

Example:
    >>> settings = Settings(data_dir="/tmp/idx")                      # doctest: +SKIP
    >>> with opened(settings) as (ledger, store, encoders):            # doctest: +SKIP
    ...     sync_pipeline(settings, ledger=ledger, store=store, encoders=encoders)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tribrid.connectors import Connector, ConnectorOptions, LocalFolderConnector, open_connector
from tribrid.encoders import Bm25Encoder, EncoderSet, SentenceTransformerEncoder, SpladeEncoder
from tribrid.ingestion.parse import ParseOptions, ParserFactory
from tribrid.ingestion.pipeline import SyncPipeline
from tribrid.ledger import SqlLedger, open_ledger
from tribrid.settings import Settings
from tribrid.store import needs_single_writer, open_store
from tribrid.store.base import CollectionSchema, VectorStore


def build_encoders(settings: Settings) -> EncoderSet:
    """The encoders the settings name (models load lazily, on first use)."""
    models = settings.models
    common: dict[str, Any] = {
        "device": models.device,
        "batch_size": models.batch_size,
        "max_seq_length": models.max_seq_length,
        "torch_threads": models.torch_threads,
        "cache_dir": settings.model_cache_dir,
    }
    return EncoderSet(
        dense=SentenceTransformerEncoder(
            models.dense, backend=models.dense_backend or models.backend, **common
        ),
        splade=SpladeEncoder(
            models.splade,
            backend=models.splade_backend or models.backend,
            top_k=models.splade_top_k,
            **common,
        ),
        bm25=Bm25Encoder(
            k=settings.bm25.k,
            b=settings.bm25.b,
            avg_len=settings.bm25.avg_len,
            language=settings.bm25.language,
        ),
    )


def collection_schema(settings: Settings, encoders: EncoderSet) -> CollectionSchema:
    """The schema an index built with these settings must have."""
    return CollectionSchema(
        name=settings.store.collection,
        dense_size=encoders.dense.dimension,
        dense_model=encoders.dense.model_name,
        splade_model=encoders.splade.model_name,
        bm25_model=encoders.bm25.model_name,
        binary_encoding=settings.quantization.encoding,
        query_encoding=settings.quantization.query_encoding,
    )


def build_store(
    settings: Settings,
    encoders: EncoderSet,
    *,
    recreate: bool = False,
    schema: CollectionSchema | None = None,
) -> VectorStore:
    """Open the store the settings name, validating its schema.

    Args:
        settings: The settings.
        encoders: The encoders (their models give the schema's dense size and names).
        recreate: Drop the collection and create it again.
        schema: Another schema than the settings' (e.g. another collection name).
    """
    store = settings.store
    return open_store(
        store.backend,
        schema or collection_schema(settings, encoders),
        path=settings.store_path,
        url=store.url,
        api_key=store.api_key.get_secret_value() if store.api_key else None,
        timeout=store.timeout_s,
        recreate=recreate,
    )


def single_writer(settings: Settings) -> bool:
    """Whether the settings' store allows one writing process only (the embedded store)."""
    return needs_single_writer(settings.store.backend)


def build_ledger(settings: Settings) -> SqlLedger:
    """Open (and migrate) the ledger the settings name."""
    if settings.database.url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_ledger(settings.database_url)


def connector_options(settings: Settings) -> ConnectorOptions:
    """The connector options of the settings (include/exclude globs, symlinks)."""
    conn = settings.connector
    return ConnectorOptions(
        include=tuple(conn.include),
        exclude=tuple(conn.exclude),
        follow_symlinks=conn.follow_symlinks,
    )


def build_connector(
    settings: Settings, location: str | Path, *, connector: str = "local"
) -> Connector:
    """The connector ``connector`` (a name in :data:`tribrid.connectors.CONNECTORS`) of
    the source at ``location``, with the settings' connector options."""
    return open_connector(connector, str(location), connector_options(settings))


def local_folder(settings: Settings, root: str | Path) -> LocalFolderConnector:
    """The folder ``root`` as a source, with the settings' connector options (the watcher
    and background runs need a folder, not any connector)."""
    return LocalFolderConnector.from_location(str(root), connector_options(settings))


def parse_options(settings: Settings) -> ParseOptions:
    """How to parse and chunk, from the ``parsing`` and ``chunking`` settings."""
    return ParseOptions.from_settings(settings.parsing, settings.chunking)


def parser_factory(settings: Settings) -> ParserFactory:
    """Opens the parse worker pool the settings describe (started only when needed)."""

    def open_pool() -> Any:
        from tribrid.ingestion.parse_pool import ParsePool

        return ParsePool.from_settings(settings.parsing, settings.chunking)

    return open_pool


def max_file_bytes(settings: Settings) -> int:
    """Files larger than this fail as ``too_large`` without being read."""
    return int(settings.parsing.max_file_mb * 2**20)


def sync_pipeline(
    settings: Settings,
    *,
    ledger: SqlLedger,
    store: VectorStore,
    encoders: EncoderSet,
    retry_failed: bool = False,
    parsers: ParserFactory | None = None,
) -> SyncPipeline:
    """The foreground sync, wired as the settings say.

    Args:
        settings: The settings.
        ledger: The open ledger.
        store: The open store.
        encoders: The encoders.
        retry_failed: Parse failed documents again even when unchanged.
        parsers: Another parser factory than the settings' parse pool (the evaluation
            harness chunks text records in-process).
    """
    return SyncPipeline(
        ledger=ledger,
        store=store,
        encoders=encoders,
        parser_factory=parsers or parser_factory(settings),
        batch_chunks=settings.models.batch_size * 8,
        max_file_bytes=max_file_bytes(settings),
        retry_failed=retry_failed,
    )


@contextmanager
def opened(
    settings: Settings, *, recreate: bool = False
) -> Iterator[tuple[SqlLedger, VectorStore, EncoderSet]]:
    """The ledger, the store and the encoders of the settings, closed on exit."""
    encoders = build_encoders(settings)
    ledger = build_ledger(settings)
    try:
        store = build_store(settings, encoders, recreate=recreate)
        try:
            yield ledger, store, encoders
        finally:
            store.close()
    finally:
        ledger.close()


__all__ = [
    "build_connector",
    "build_encoders",
    "build_ledger",
    "build_store",
    "collection_schema",
    "connector_options",
    "local_folder",
    "max_file_bytes",
    "opened",
    "parse_options",
    "parser_factory",
    "single_writer",
    "sync_pipeline",
]

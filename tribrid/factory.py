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

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribrid.encoders import EncoderSet
from tribrid.errors import ConfigError, StoreError
from tribrid.store import needs_single_writer, open_store
from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.remote import RemoteStore, ServerInfo, descriptor, discover

# What each builder builds is imported inside it, so a command pays only for the parts
# it uses: `tribrid status` never imports the encoders or parsing, a search through
# `tribrid serve` never imports the ledger (tests/test_startup.py holds this).
if TYPE_CHECKING:
    from tribrid.connectors import Connector, ConnectorOptions, LocalFolderConnector
    from tribrid.connectors.archives import ArchiveLimits
    from tribrid.ingestion.parse import ParseOptions, ParserFactory
    from tribrid.ingestion.pipeline import ProgressListener, SyncPipeline
    from tribrid.ingestion.rebuild import RebuildReport
    from tribrid.ingestion.vector_cache import VectorCache
    from tribrid.ledger import Ledger, SqlLedger
    from tribrid.settings import Settings
    from tribrid.store.generations import StagedGeneration


def build_encoders(settings: Settings) -> EncoderSet:
    """The encoders the settings name (models load lazily, on first use)."""
    from tribrid.encoders.bm25 import Bm25Encoder
    from tribrid.encoders.dense import SentenceTransformerEncoder
    from tribrid.encoders.splade import SpladeEncoder

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
            models.dense,
            backend=models.dense_backend or models.backend,
            **{**common, "batch_size": models.dense_batch_size},
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


def vector_cache(settings: Settings, encoders: EncoderSet) -> VectorCache | None:
    """The cache of encoded chunks the settings ask for (``None`` when turned off).

    Its namespace names everything the vectors depend on (models, backends, truncation,
    SPLADE's top-k, BM25's parameters), so no other configuration ever reads them.
    """
    from tribrid.ingestion.vector_cache import VectorCache

    models = settings.models
    if models.vector_cache_entries == 0:
        return None
    namespace = "|".join(
        (
            f"dense={encoders.dense.model_name}@{models.dense_backend or models.backend}",
            f"splade={encoders.splade.model_name}@{models.splade_backend or models.backend}",
            f"top_k={models.splade_top_k}",
            f"max_seq={models.max_seq_length}",
            f"bm25={encoders.bm25.model_name}",
        )
    )
    return VectorCache(
        settings.vector_cache_path, namespace=namespace, max_entries=models.vector_cache_entries
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
        dense_on_disk=settings.quantization.dense_on_disk,
    )


class StoreRoute(StrEnum):
    """How :func:`build_store` treats a ``tribrid serve`` that owns the embedded store."""

    AUTO = "auto"  # through the server when one answers, else open the store here
    OWNER = "owner"  # open the store here: this process is the server
    WAIT = "wait"  # through the server when a descriptor names one; if it does not
    # answer (restarting), fail with a StoreError to retry, never open the store here


def served(settings: Settings) -> ServerInfo | None:
    """The ``tribrid serve`` the settings' store is behind, if any: the live server that
    owns the embedded store, or the one the ``remote`` backend names by URL."""
    store = settings.store
    if store.backend == "remote":
        if store.url is None:
            raise ConfigError(
                "the 'remote' store backend needs the server's URL: set TRIBRID_STORE__URL "
                "(e.g. http://127.0.0.1:8765)"
            )
        key = store.api_key.get_secret_value() if store.api_key else None
        return ServerInfo(url=store.url, pid=0, host="", store="", api_key=key)
    if store.backend != "edge":
        return None
    return discover(settings.store_path)


def build_store(
    settings: Settings,
    encoders: EncoderSet,
    *,
    recreate: bool = False,
    schema: CollectionSchema | None = None,
    route: StoreRoute = StoreRoute.AUTO,
) -> VectorStore:
    """Open the store the settings name, validating its schema.

    When ``tribrid serve`` owns the embedded store, the store returned talks to it
    (a :class:`~tribrid.store.remote.RemoteStore`) instead of failing as busy.

    Args:
        settings: The settings.
        encoders: The encoders (their models give the schema's dense size and names).
        recreate: Drop the collection and create it again.
        schema: Another schema than the settings' (e.g. another collection name).
        route: How to treat a server that owns the store (see :class:`StoreRoute`).

    Raises:
        StoreError: ``route`` is ``WAIT`` and the server named by the store's
            descriptor does not answer.
    """
    store = settings.store
    chosen = schema or collection_schema(settings, encoders)
    if store.backend == "edge" and route is not StoreRoute.OWNER:
        info = served(settings)
        if info is not None:
            return RemoteStore.open(
                chosen,
                url=info.url,
                api_key=info.api_key,
                timeout=settings.serve.timeout_s,
                recreate=recreate,
            )
        stale = descriptor(settings.store_path) if route is StoreRoute.WAIT else None
        if stale is not None:
            raise StoreError(
                f"the tribrid server that owns {settings.store_path} ({stale.url}, pid "
                f"{stale.pid}) does not answer; waiting for it to come back (start "
                "`tribrid serve` again, or remove its descriptor file if it is gone for good)"
            )
    return open_store(
        store.backend,
        chosen,
        path=settings.store_path,
        url=store.url,
        api_key=store.api_key.get_secret_value() if store.api_key else None,
        timeout=store.timeout_s,
        recreate=recreate,
    )


def single_writer(settings: Settings) -> bool:
    """Whether writes must go to the single writer queue: the store allows one process
    and no ``tribrid serve`` owns it (a server takes every process's writes, and one
    that is restarting leaves its descriptor, so writers wait for it)."""
    if not needs_single_writer(settings.store.backend):
        return False
    return descriptor(settings.store_path) is None


def build_ledger(settings: Settings) -> SqlLedger:
    """Open (and migrate) the ledger the settings name."""
    from tribrid.ledger import open_ledger

    if settings.database.url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_ledger(settings.database_url)


def connector_options(settings: Settings) -> ConnectorOptions:
    """The connector options of the settings (include/exclude globs, symlinks)."""
    from tribrid.connectors import ConnectorOptions

    conn = settings.connector
    return ConnectorOptions(
        include=tuple(conn.include),
        exclude=tuple(conn.exclude),
        follow_symlinks=conn.follow_symlinks,
    )


def build_connector(
    settings: Settings,
    location: str | Path,
    *,
    connector: str = "local",
    source_key: str | None = None,
) -> Connector:
    """The connector ``connector`` (a name in :data:`tribrid.connectors.CONNECTORS`) of
    the source at ``location``, with the settings' connector options.

    ``source_key`` is the ledger key of the source when it is not the one the location
    gives (a named source: see :mod:`tribrid.ingestion.sources`)."""
    from tribrid.connectors import open_connector

    options = replace(connector_options(settings), source_key=source_key)
    return open_connector(connector, str(location), options)


def source_connector(
    settings: Settings,
    ledger: Ledger,
    location: str | Path,
    *,
    connector: str = "local",
    source: str | None = None,
) -> Connector:
    """The connector of the source at ``location``, keyed as its ledger source is:
    under the name ``source`` (which keeps its key wherever the folder is), or by its
    location without a name.

    Raises:
        ConfigError: See :func:`~tribrid.ingestion.sources.resolve_source_key`.
    """
    from tribrid.ingestion.sources import resolve_source_key

    at_location = build_connector(settings, location, connector=connector)
    key = resolve_source_key(ledger, at_location, source)
    if key == at_location.source_key:
        return at_location
    return build_connector(settings, location, connector=connector, source_key=key)


def ledger_sources(
    settings: Settings, ledger: Ledger, *, skip: Collection[str] = ()
) -> list[Connector]:
    """A connector for every source the ledger knows (keys in ``skip`` aside), at the
    location the ledger last recorded, under its own key: what a rebuild re-syncs.

    Raises:
        ConfigError: A source cannot be listed (its folder is gone, or its kind has no
            connector); the message names it and how to remove it.
    """
    from tribrid.connectors import CONNECTORS

    found: list[Connector] = []
    for source in ledger.sources():
        if source.key in skip:
            continue
        kind, _, root = source.location.partition(":")
        if kind not in CONNECTORS or not root or not Path(root).exists():
            raise ConfigError(
                f"the index holds the source {source.label!r} at {source.location}, which "
                "cannot be listed now, so a rebuild would drop its documents; make it "
                f"available again, or remove it first with `tribrid sources remove {source.label}`"
            )
        found.append(build_connector(settings, root, connector=kind, source_key=source.key))
    return found


def begin_generation(settings: Settings, encoders: EncoderSet) -> StagedGeneration:
    """Start a new, empty generation of the settings' index beside the live one.

    Raises:
        ConfigError: The backend has no generations (``remote``: rebuild on the server's
            machine, where the store is).
    """
    from tribrid.store.generations import EdgeGenerations
    from tribrid.store.qdrant import QdrantServerStore

    schema = collection_schema(settings, encoders)
    store = settings.store
    if store.backend == "edge":
        return EdgeGenerations(settings.store_path).begin(schema)
    if store.backend == "qdrant":
        return QdrantServerStore.begin_generation(
            schema,
            url=store.url,
            api_key=store.api_key.get_secret_value() if store.api_key else None,
            timeout=store.timeout_s,
        )
    raise ConfigError(
        f"the {store.backend!r} store backend cannot build a new generation from here; run "
        "`tribrid ingest --recreate` on the machine of the store (with its data dir)"
    )


def rebuild_index(
    settings: Settings,
    *,
    ledger: Ledger,
    encoders: EncoderSet,
    sources: Sequence[Connector],
    progress: ProgressListener | None = None,
    retry_failed: bool = False,
) -> RebuildReport:
    """Rebuild the index as a new generation from ``sources``, then switch to it.

    Searches keep answering from the live generation until the switch; a failure
    leaves it live (see :mod:`tribrid.ingestion.rebuild`).
    """
    from tribrid.ingestion.rebuild import rebuild

    staged = begin_generation(settings, encoders)

    def pipeline_for(store: VectorStore) -> SyncPipeline:
        return sync_pipeline(
            settings,
            ledger=ledger,
            store=store,
            encoders=encoders,
            retry_failed=retry_failed,
            fresh=True,
        )

    return rebuild(staged, sources, pipeline_for, progress=progress)


def local_folder(settings: Settings, root: str | Path) -> LocalFolderConnector:
    """The folder ``root`` as a source, with the settings' connector options (the watcher
    and background runs need a folder, not any connector)."""
    from tribrid.connectors import LocalFolderConnector

    return LocalFolderConnector.from_location(str(root), connector_options(settings))


def parse_options(settings: Settings) -> ParseOptions:
    """How to parse and chunk, from the ``parsing``, ``chunking`` and ``archives`` settings."""
    from tribrid.ingestion.parse import ParseOptions

    return ParseOptions.from_settings(settings.parsing, settings.chunking, settings.archives)


def parser_factory(settings: Settings) -> ParserFactory:
    """Opens the parse worker pool the settings describe (started only when needed)."""

    def open_pool() -> Any:
        from tribrid.ingestion.parse_pool import ParsePool

        return ParsePool.from_settings(settings.parsing, settings.chunking, settings.archives)

    return open_pool


def archive_limits(settings: Settings) -> ArchiveLimits:
    """What reading a compressed file or an archive may cost, from the ``archives`` settings."""
    from tribrid.connectors.archives import ArchiveLimits

    return ArchiveLimits(**settings.archives.model_dump())


def max_file_bytes(settings: Settings) -> int:
    """Files larger than this fail as ``too_large`` without being read."""
    return int(settings.parsing.max_file_mb * 2**20)


def sync_pipeline(
    settings: Settings,
    *,
    ledger: Ledger,
    store: VectorStore,
    encoders: EncoderSet,
    retry_failed: bool = False,
    parsers: ParserFactory | None = None,
    fresh: bool = False,
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
        fresh: The store is a new generation being built (trust only its own points).
    """
    from tribrid.ingestion.pipeline import SyncPipeline

    return SyncPipeline(
        ledger=ledger,
        store=store,
        encoders=encoders,
        parser_factory=parsers or parser_factory(settings),
        batch_chunks=settings.models.batch_size * 8,
        max_file_bytes=max_file_bytes(settings),
        retry_failed=retry_failed,
        archives=archive_limits(settings),
        fresh=fresh,
        vector_cache=vector_cache(settings, encoders),
        plain_text=parse_options(settings)
        if parsers is None and settings.parsing.plain_text
        else None,
        chunking=settings.chunking.model_dump(),
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
    "StoreRoute",
    "archive_limits",
    "begin_generation",
    "build_connector",
    "build_encoders",
    "build_ledger",
    "build_store",
    "collection_schema",
    "connector_options",
    "ledger_sources",
    "local_folder",
    "max_file_bytes",
    "opened",
    "parse_options",
    "parser_factory",
    "rebuild_index",
    "served",
    "single_writer",
    "source_connector",
    "sync_pipeline",
    "vector_cache",
]

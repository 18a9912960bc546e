"""The public Python API: ``ingest``, ``search``, ``status`` and ``as_retriever``.

These are the only functions (with the CLI and the worker bootstrap) that read
:class:`~tribrid.settings.Settings`; everything below them takes explicit arguments.

Example:
    >>> import tribrid
    >>> report = tribrid.ingest("docs/")                      # doctest: +SKIP
    >>> for hit in tribrid.search("binary quantization", k=3):  # doctest: +SKIP
    ...     print(hit.path, hit.score)
    >>> tribrid.status().counts                               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribrid.connectors import LocalFolderConnector
from tribrid.encoders import Bm25Encoder, EncoderSet, SentenceTransformerEncoder, SpladeEncoder
from tribrid.ingestion.pipeline import ProgressListener, SyncPipeline, SyncReport
from tribrid.ledger import SqlLedger, StatusReport, open_ledger
from tribrid.settings import Settings
from tribrid.store import open_store
from tribrid.store.base import (
    Channel,
    ChannelQuery,
    CollectionSchema,
    Fusion,
    MetadataFilter,
    StoreQuery,
    VectorStore,
)

if TYPE_CHECKING:
    from tribrid.retrievers.config import RetrieverConfig
    from tribrid.retrievers.hybrid import HybridRetriever


class SearchMode(StrEnum):
    """How ``search`` ranks: one channel, or all three fused."""

    HYBRID = "hybrid"
    DENSE = "dense"
    SPLADE = "splade"
    BM25 = "bm25"
    BINARY = "binary"


@dataclass(frozen=True)
class SearchResult:
    """One hit of :func:`search`."""

    point_id: str
    score: float
    path: str
    text: str
    chunk_index: int
    page: int | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, point_id: str, score: float, payload: Mapping[str, Any]) -> SearchResult:
        """A result from a point's id, score and payload."""
        return cls(
            point_id=point_id,
            score=score,
            path=str(payload.get("path", payload.get("document_key", ""))),
            text=str(payload.get("text", "")),
            chunk_index=int(payload.get("chunk_index", 0)),
            page=payload.get("page"),
            payload=dict(payload),
        )


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    if settings is not None and overrides:
        return settings.model_copy(update=overrides)
    return settings or Settings(**overrides)


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


def build_store(settings: Settings, encoders: EncoderSet, *, recreate: bool = False) -> VectorStore:
    """Open the store the settings name, validating its schema."""
    store = settings.store
    return open_store(
        store.backend,
        collection_schema(settings, encoders),
        path=settings.store_path,
        url=store.url,
        api_key=store.api_key.get_secret_value() if store.api_key else None,
        timeout=store.timeout_s,
        recreate=recreate,
    )


def build_ledger(settings: Settings) -> SqlLedger:
    """Open (and migrate) the ledger the settings name."""
    if settings.database.url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return open_ledger(settings.database_url)


@contextmanager
def _opened(
    settings: Settings, *, recreate: bool = False
) -> Iterator[tuple[SqlLedger, VectorStore, EncoderSet]]:
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


def ingest(
    path: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    recreate: bool = False,
    retry_failed: bool = False,
    progress: ProgressListener | None = None,
    **overrides: Any,
) -> SyncReport:
    """Index a folder, incrementally: unchanged files cost nothing, deleted files leave.

    Args:
        path: The folder.
        settings: Settings to use (default: from the environment).
        recreate: Drop the collection and build it again.
        retry_failed: Parse files that failed before even if they did not change.
        progress: Receives progress events.
        **overrides: Top-level settings fields, e.g. ``data_dir="/srv/idx"``.

    Returns:
        What the sync did: counts, failures, duration.
    """
    from tribrid.ingestion.parse_pool import ParsePool

    cfg = _settings(settings, overrides)
    conn = cfg.connector
    connector = LocalFolderConnector(
        Path(path), include=conn.include, exclude=conn.exclude, follow_symlinks=conn.follow_symlinks
    )
    with _opened(cfg, recreate=recreate) as (ledger, store, encoders):
        pipeline = SyncPipeline(
            ledger=ledger,
            store=store,
            encoders=encoders,
            parser_factory=lambda: ParsePool.from_settings(cfg.parsing, cfg.chunking),
            batch_chunks=cfg.models.batch_size * 8,
            max_file_bytes=int(cfg.parsing.max_file_mb * 2**20),
            retry_failed=retry_failed,
        )
        return pipeline.sync(connector, progress=progress)


def search_store(
    store: VectorStore,
    encoders: EncoderSet,
    query: str,
    *,
    mode: SearchMode | str = SearchMode.HYBRID,
    k: int = 10,
    filter: MetadataFilter | None = None,
    prefetch_k: int | None = None,
    fusion: Fusion = Fusion.DBSF,
    rrf_k: int = 60,
    oversampling: float = 8.0,
) -> list[SearchResult]:
    """Search an open store (the function behind :func:`search`)."""
    try:
        chosen = SearchMode(mode)
    except ValueError as e:
        raise ValueError(
            f"unknown search mode {mode!r}; valid modes: {[m.value for m in SearchMode]}"
        ) from e
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    channels: list[ChannelQuery] = []
    if chosen in (SearchMode.HYBRID, SearchMode.DENSE, SearchMode.BINARY):
        channel = Channel.BINARY if chosen == SearchMode.BINARY else Channel.DENSE
        channels.append(ChannelQuery(channel, encoders.dense.encode_query(query).tolist()))
    if chosen in (SearchMode.HYBRID, SearchMode.SPLADE):
        channels.append(ChannelQuery(Channel.SPLADE, encoders.splade.encode_query(query)))
    if chosen in (SearchMode.HYBRID, SearchMode.BM25):
        channels.append(ChannelQuery(Channel.BM25, encoders.bm25.encode_query(query)))
    hits = store.query(
        StoreQuery(
            channels=tuple(channels),
            limit=k,
            prefetch_limit=prefetch_k or max(100, 5 * k),
            fusion=fusion,
            rrf_k=rrf_k,
            filter=filter,
            oversampling=oversampling,
        )
    )
    return [SearchResult.of(hit.id, hit.score, hit.payload) for hit in hits]


def search(
    query: str,
    *,
    mode: SearchMode | str = SearchMode.HYBRID,
    k: int = 10,
    filter: MetadataFilter | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> list[SearchResult]:
    """Search the index.

    Args:
        query: The query text.
        mode: ``hybrid`` (DBSF of dense, SPLADE and BM25), ``dense``, ``splade``, ``bm25``
            or ``binary`` (binary-quantized dense codes, oversampled and rescored).
        k: Number of results.
        filter: Payload filter, e.g. ``{"filetype": "application/pdf"}``.
        settings: Settings to use (default: from the environment).
        **overrides: Top-level settings fields, e.g. ``data_dir="/srv/idx"``.
    """
    cfg = _settings(settings, overrides)
    encoders = build_encoders(cfg)
    # Search needs only the store: no ledger is opened (or migrated) for it.
    store = build_store(cfg, encoders)
    try:
        return search_store(
            store,
            encoders,
            query,
            mode=mode,
            k=k,
            filter=filter,
            oversampling=cfg.quantization.oversampling,
        )
    finally:
        store.close()


def as_retriever(
    *,
    settings: Settings | None = None,
    config: RetrieverConfig | str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> HybridRetriever:
    """A LangChain retriever over the index ``tribrid ingest`` built, in one line.

    The store and models are those of the same :class:`~tribrid.settings.Settings` the
    CLI reads. The retriever holds the store open: the embedded store allows one process
    at a time, so close it (``retriever.close()`` or ``with``) before running
    ``tribrid ingest`` on the same data dir, or use the Qdrant server backend.

    Args:
        settings: Settings to use (default: from the environment).
        config: A tuned configuration (``tribrid tune`` writes one) or its path; its
            options apply first and ``overrides`` win over them.
        **overrides: Retriever options (``k``, ``channels``, ``fusion``, ``filter`` …,
            see :class:`~tribrid.retrievers.HybridRetriever`) and top-level settings
            fields (``data_dir`` …), told apart by name.

    Example:
        >>> retriever = tribrid.as_retriever(k=5, fusion="dbsf")   # doctest: +SKIP
        >>> retriever.invoke("binary quantization")                 # doctest: +SKIP
    """
    from tribrid.retrievers.hybrid import CALL_OPTIONS, HybridRetriever

    options = {k: v for k, v in overrides.items() if k in CALL_OPTIONS or k in ("tags", "metadata")}
    cfg = _settings(settings, {k: v for k, v in overrides.items() if k not in options})
    if config is not None:
        from tribrid.retrievers.config import load_config

        options = {**load_config(config).options(), **options}
    options.setdefault("oversampling", cfg.quantization.oversampling)
    encoders = build_encoders(cfg)
    store = build_store(cfg, encoders)
    try:
        retriever = HybridRetriever(store=store, encoders=encoders, **options)
    except BaseException:
        store.close()
        raise
    retriever._owned_store = True
    return retriever


def status(
    *, settings: Settings | None = None, source: str | None = None, **overrides: Any
) -> StatusReport:
    """Counts by status, every failed file with its reason, and the last run."""
    cfg = _settings(settings, overrides)
    ledger = build_ledger(cfg)
    try:
        return ledger.status(source)
    finally:
        ledger.close()

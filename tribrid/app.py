"""The public Python API: ``ingest``, ``remove``, ``search``, ``status`` and ``as_retriever``.

A façade over the composition root (:mod:`tribrid.factory`), which builds every
component from :class:`~tribrid.settings.Settings`. Each function reads the settings
(from the environment unless given) once, at the edge; nothing below them does.

Example:
    >>> import tribrid
    >>> report = tribrid.ingest("docs/")                      # doctest: +SKIP
    >>> for hit in tribrid.search("binary quantization", k=3):  # doctest: +SKIP
    ...     print(hit.path, hit.score)
    >>> tribrid.status().counts                               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribrid.errors import ConfigError, require_extras
from tribrid.ledger.base import DocumentStatus, RunCounts, SourceRecord, StatusReport
from tribrid.store.base import Channel, MetadataFilter, VectorStore

# The composition root and everything it builds (models, stores, the ledger, parsing)
# are imported inside the functions that use them: `tribrid --help`, `tribrid status`
# and a search through `tribrid serve` import only what they use (tests/test_startup.py).
if TYPE_CHECKING:
    from tribrid.encoders import EncoderSet
    from tribrid.ingestion.pipeline import ProgressListener, SyncReport
    from tribrid.ledger.base import Ledger
    from tribrid.retrievers.config import RetrieverConfig
    from tribrid.retrievers.hybrid import TribridRetriever
    from tribrid.retrievers.remote import RemoteRetriever
    from tribrid.settings import Settings


class SearchMode(StrEnum):
    """How ``search`` ranks: one channel, or all three fused."""

    HYBRID = "hybrid"
    HYBRID_PREVIOUS = "hybrid-previous"
    DENSE = "dense"
    SPLADE = "splade"
    BM25 = "bm25"
    BINARY = "binary"


#: The channels each search mode searches (all with weight 1).
MODE_CHANNELS: Mapping[SearchMode, tuple[Channel, ...]] = {
    SearchMode.HYBRID: (Channel.DENSE, Channel.SPLADE, Channel.BM25),
    SearchMode.HYBRID_PREVIOUS: (Channel.DENSE, Channel.SPLADE, Channel.BM25),
    SearchMode.DENSE: (Channel.DENSE,),
    SearchMode.SPLADE: (Channel.SPLADE,),
    SearchMode.BM25: (Channel.BM25,),
    SearchMode.BINARY: (Channel.BINARY,),
}


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
    if settings is not None:
        return settings
    from tribrid.settings import Settings  # pydantic-settings: paid by the commands that read it

    return Settings(**overrides)


def ingest(
    path: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    recreate: bool = False,
    retry_failed: bool = False,
    progress: ProgressListener | None = None,
    connector: str = "local",
    source: str | None = None,
    **overrides: Any,
) -> SyncReport:
    """Index a folder, incrementally: unchanged files cost nothing, deleted files leave.

    Args:
        path: The folder (or, with another ``connector``, what it reads).
        settings: Settings to use (default: from the environment).
        recreate: Rebuild the whole index as a new generation (every source the index
            holds, this one first), switched to when complete: searches keep answering
            from the old one meanwhile, and a failed rebuild leaves it live.
        retry_failed: Parse files that failed before even if they did not change.
        progress: Receives progress events.
        connector: Which connector lists ``path``: a name in
            :data:`tribrid.connectors.CONNECTORS` (``local`` folder by default, ``beir``
            for a BEIR dataset folder).
        source: Name of the source: its documents keep their points wherever the
            folder is (moved, mounted elsewhere), as long as it is synced under this
            name. Without it the source is the folder's location.
        **overrides: Top-level settings fields, e.g. ``data_dir="/srv/idx"``.

    Returns:
        What the sync did (with ``recreate``, the sync of ``path`` into the new
        generation): counts, failures, duration.
    """
    from tribrid import factory

    require_extras("indexing (`tribrid ingest`)", "index", "parse")
    cfg = _settings(settings, overrides)
    encoders = factory.build_encoders(cfg)
    ledger = factory.build_ledger(cfg)
    try:
        target = factory.source_connector(
            cfg, ledger, Path(path), connector=connector, source=source
        )
        if recreate:
            others = factory.ledger_sources(cfg, ledger, skip={target.source_key})
            report = factory.rebuild_index(
                cfg,
                ledger=ledger,
                encoders=encoders,
                sources=[target, *others],
                progress=progress,
                retry_failed=retry_failed,
            )
            return report.reports[0]
        store = factory.build_store(cfg, encoders)
        try:
            pipeline = factory.sync_pipeline(
                cfg, ledger=ledger, store=store, encoders=encoders, retry_failed=retry_failed
            )
            return pipeline.sync(target, progress=progress)
        finally:
            store.close()
    finally:
        ledger.close()


def remove(
    path: str | os.PathLike[str], *, settings: Settings | None = None, **overrides: Any
) -> RunCounts:
    """Remove an ingested document, or every document under a folder, from the index.

    The ledger marks the documents deleted first, then their points leave the store
    (what a sync does for a file that vanished): the ledger stays the source of truth,
    and a crash in between leaves only orphan points, which the next sync removes.
    The file itself is not touched, so the next ``tribrid ingest`` of its folder adds
    it again if it is still there; delete or exclude the file to keep it out.

    Args:
        path: The file (or a folder under an ingested folder, or an ingested folder
            itself), as it was on disk when ingested; relative paths are taken from the
            current directory.
        settings: Settings to use (default: from the environment).
        **overrides: Top-level settings fields, e.g. ``data_dir="/srv/idx"``.

    Returns:
        ``deleted`` documents and ``chunks_deleted`` points; both 0 when nothing under
        ``path`` is indexed.

    Raises:
        ConfigError: ``path`` is under no folder the ledger has ingested.

    Example:
        >>> tribrid.remove("docs/old-report.pdf").deleted   # doctest: +SKIP
        1
    """
    from tribrid import factory
    from tribrid.ingestion.write import remove_vanished

    cfg = _settings(settings, overrides)
    target = Path(path).expanduser().absolute().resolve()
    with factory.opened(cfg) as (ledger, store, _):
        matched = False
        counts = RunCounts()
        for source in ledger.sources():
            kind, _, root = source.location.partition(":")
            if kind != "local":
                continue
            try:
                relative = target.relative_to(Path(root)).as_posix()
            except ValueError:
                continue
            matched = True
            prefix = "" if relative == "." else relative
            states = [
                state
                for state in ledger.document_states(source.id)
                if state.status is not DocumentStatus.DELETED
                and (not prefix or state.key == prefix or state.key.startswith(prefix + "/"))
            ]
            counts += remove_vanished(ledger, store.delete, states)
        if not matched:
            folders = [
                s.location.partition(":")[2]
                for s in ledger.sources()
                if s.location.startswith("local:")
            ]
            raise ConfigError(
                f"{str(path)!r} is under none of the folders this index has ingested "
                f"({', '.join(folders) or 'none'}); give the path of an ingested file, or "
                "the data dir of its index (data_dir=...)"
            )
        if counts.chunks_deleted:
            store.flush()
        return counts


def search_store(
    store: VectorStore,
    encoders: EncoderSet,
    query: str,
    *,
    mode: SearchMode | str = SearchMode.HYBRID,
    k: int = 10,
    filter: MetadataFilter | None = None,
    oversampling: float = 8.0,
) -> list[SearchResult]:
    """Search an open store (the function behind :func:`search`).

    It is the hybrid retriever's own search with the store fusing the channels (one
    query; see ``store_fusion`` of :class:`~tribrid.retrievers.TribridRetriever`), so
    ``tribrid search`` and ``as_retriever(store_fusion=True)`` give the same hits.
    """
    # The search without its LangChain class: a CLI search never imports LangChain.
    from tribrid.retrievers.engine import HybridSearch

    retriever = HybridSearch(
        store=store, encoders=encoders, **_search_options(mode, k, filter, oversampling)
    )
    return [SearchResult.of(c.id, c.score, c.payload) for c in retriever.search(query)]


def _search_options(
    mode: SearchMode | str, k: int, filter: MetadataFilter | None, oversampling: float
) -> dict[str, Any]:
    """The retriever options of a ``tribrid search``.

    ``hybrid`` is the retriever with its defaults (the store fuses when the defaults
    allow it: fixed equal weights, no feedback); ``hybrid-previous`` is the hybrid
    before the seven-collection suite (DBSF of the three, equal weights, fused by the
    store); one channel is searched by the store alone.
    """
    try:
        chosen = SearchMode(mode)
    except ValueError as e:
        raise ValueError(
            f"unknown search mode {mode!r}; valid modes: {[m.value for m in SearchMode]}"
        ) from e
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    common: dict[str, Any] = {"k": k, "filter": filter, "oversampling": oversampling}
    if chosen is SearchMode.HYBRID:
        from tribrid.retrievers.config import RetrieverSettings

        defaults = RetrieverSettings()
        fusable = (
            defaults.feedback is None
            and defaults.weighting == "fixed"
            and set(defaults.channels.values()) == {1.0}
        )
        if not fusable:
            return common  # the retriever's defaults, fused on the client
    if chosen is SearchMode.HYBRID_PREVIOUS:
        from tribrid.retrievers.defaults import PREVIOUS_DEFAULTS

        return {
            **common,
            **PREVIOUS_DEFAULTS,
            "store_fusion": True,
            "prefetch_k": max(100, 5 * k),
        }
    return {
        **common,
        "channels": {c.value: 1.0 for c in MODE_CHANNELS[chosen]},
        "store_fusion": True,
        "prefetch_k": max(100, 5 * k),
        # One channel, or the hybrid whose defaults the store can fuse.
        "weighting": "fixed",
        "feedback": None,
    }


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
        mode: ``hybrid`` (the retriever's default fusion of dense, SPLADE and BM25),
            ``hybrid-previous`` (DBSF of the three with equal weights, the hybrid before
            benchmarks/results/suite.md), ``dense``, ``splade``, ``bm25`` or ``binary``
            (binary-quantized dense codes, oversampled and rescored).
        k: Number of results.
        filter: Payload filter, e.g. ``{"filetype": "application/pdf"}``.
        settings: Settings to use (default: from the environment).
        **overrides: Top-level settings fields, e.g. ``data_dir="/srv/idx"``.
    """
    from tribrid import factory

    cfg = _settings(settings, overrides)
    info = factory.served(cfg)
    if info is not None:
        from tribrid.store.remote import search_server

        # The server encodes the query: no model is loaded here, nor LangChain (the
        # request RemoteRetriever makes, made directly).
        items = search_server(
            info.url,
            query,
            _search_options(mode, k, filter, cfg.quantization.oversampling),
            api_key=info.api_key,
            timeout=cfg.serve.timeout_s,
        )
        return [
            SearchResult.of(str(i["id"]), float(i["score"]), i.get("payload") or {}) for i in items
        ]
    require_extras("searching without a running `tribrid serve`", "index")
    encoders = factory.build_encoders(cfg)
    # Search needs only the store: no ledger is opened (or migrated) for it.
    store = factory.build_store(cfg, encoders)
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
    url: str | None = None,
    api_key: str | None = None,
    **overrides: Any,
) -> TribridRetriever | RemoteRetriever:
    """A LangChain retriever over the index ``tribrid ingest`` built, in one line.

    When ``tribrid serve`` owns the data dir (or ``url`` names a server), the retriever
    asks the server (a :class:`~tribrid.retrievers.remote.RemoteRetriever`): this
    process loads no model, and ingestion can run at the same time. Otherwise it opens
    the store and the models here; within one process, retrievers on one data dir share
    the open store. Close it (``retriever.close()`` or ``with``) when done.

    Args:
        settings: Settings to use (default: from the environment).
        config: A tuned configuration (``tribrid tune`` writes one) or its path; its
            options apply first and ``overrides`` win over them.
        url: A ``tribrid serve`` URL to ask, instead of the data dir's own server.
        api_key: That server's API key, if it has one.
        **overrides: Retriever options (``k``, ``channels``, ``fusion``, ``filter`` …,
            see :class:`~tribrid.retrievers.TribridRetriever`) and top-level settings
            fields (``data_dir`` …), told apart by name.

    Example:
        >>> retriever = tribrid.as_retriever(k=5, fusion="dbsf")   # doctest: +SKIP
        >>> retriever.invoke("binary quantization")                 # doctest: +SKIP
    """
    from tribrid import factory
    from tribrid.retrievers.hybrid import CALL_OPTIONS, TribridRetriever
    from tribrid.retrievers.remote import RemoteRetriever

    options = {k: v for k, v in overrides.items() if k in CALL_OPTIONS or k in ("tags", "metadata")}
    cfg = _settings(settings, {k: v for k, v in overrides.items() if k not in options})
    if config is not None:
        from tribrid.retrievers.config import load_config

        options = {**load_config(config).options(), **options}
    options.setdefault("oversampling", cfg.quantization.oversampling)
    if url is None:
        info = factory.served(cfg)
        if info is not None:
            url, api_key = info.url, info.api_key
    if url is not None:
        return RemoteRetriever(url=url, api_key=api_key, timeout=cfg.serve.timeout_s, **options)
    require_extras("a retriever without a running `tribrid serve`", "index")
    encoders = factory.build_encoders(cfg)
    store = factory.build_store(cfg, encoders)
    try:
        retriever = TribridRetriever(store=store, encoders=encoders, **options)
    except BaseException:
        store.close()
        raise
    retriever._owned_store = True
    return retriever


def sources(*, settings: Settings | None = None, **overrides: Any) -> list[SourceRecord]:
    """Every source of the index: its name, key, location, documents, chunks, last run."""
    from tribrid import factory

    cfg = _settings(settings, overrides)
    ledger = factory.build_ledger(cfg)
    try:
        return ledger.sources()
    finally:
        ledger.close()


def _source(ledger: Ledger, name_or_key: str) -> SourceRecord:
    found = ledger.find_source(name_or_key)
    if found is None:
        known = ", ".join(s.label for s in ledger.sources()) or "none"
        raise ConfigError(
            f"the index has no source named {name_or_key!r} (sources: {known}); "
            "`tribrid sources list` shows them"
        )
    return found


def rename_source(
    name_or_key: str, new_name: str, *, settings: Settings | None = None, **overrides: Any
) -> SourceRecord:
    """Give a source a (new) name; nothing is re-embedded (its key stays).

    Args:
        name_or_key: The source's current name, or its key (``local:/srv/docs``).
        new_name: The name to sync it under from now on (``--source NEW_NAME``).

    Raises:
        ConfigError: No such source, or another source has the name.
    """
    from tribrid import factory

    cfg = _settings(settings, overrides)
    ledger = factory.build_ledger(cfg)
    try:
        source = _source(ledger, name_or_key)
        ledger.name_source(source.id, new_name)
        renamed = ledger.find_source(new_name)
        assert renamed is not None
        return renamed
    finally:
        ledger.close()


def remove_source(
    name_or_key: str, *, settings: Settings | None = None, **overrides: Any
) -> RunCounts:
    """Remove a source from the index: its points, then its documents and runs.

    Points leave the store first (those the ledger lists, and any other point carrying
    the source's key), then the ledger forgets the source: a crash in between leaves
    the source listed, and running this again finishes the job. The files are not
    touched.

    Returns:
        ``deleted`` documents and ``chunks_deleted`` points.
    """
    from tribrid import factory
    from tribrid.store.points import SOURCE_KEY

    cfg = _settings(settings, overrides)
    encoders = factory.build_encoders(cfg)
    ledger = factory.build_ledger(cfg)
    try:
        source = _source(ledger, name_or_key)
        point_ids = list(ledger.all_point_ids(source.id))
        store = factory.build_store(cfg, encoders)
        try:
            store.delete(point_ids)
            store.delete_by_filter({SOURCE_KEY: source.key})
            store.flush()
        finally:
            store.close()
        ledger.remove_source(source.id)
        return RunCounts(deleted=source.documents, chunks_deleted=len(point_ids))
    finally:
        ledger.close()


def status(
    *, settings: Settings | None = None, source: str | None = None, **overrides: Any
) -> StatusReport:
    """Counts by status, every failed file with its reason, and the last run (of every
    source, or of ``source``: a source name or key)."""
    from tribrid import factory

    cfg = _settings(settings, overrides)
    if cfg.database.url is None:
        # The default SQLite ledger, read without SQLAlchemy when it needs no migration.
        from tribrid.ledger.summary import read_sqlite_status

        report = read_sqlite_status(cfg.data_dir / "ledger.db", source)
        if report is not None:
            return report
    ledger = factory.build_ledger(cfg)
    try:
        found = ledger.find_source(source) if source is not None else None
        return ledger.status(found.key if found is not None else source)
    finally:
        ledger.close()

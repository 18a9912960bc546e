"""The server backend: one collection on a Qdrant server, through ``qdrant-client``.

Use it when several processes (CLI runs, Celery workers, a retriever service) share one
index. The schema the collection was built with is kept in the collection's own
metadata (``metadata["tribrid"]``, Qdrant ≥ 1.16) and checked on every open.
``url=":memory:"`` runs qdrant-client's in-process engine, which is meant for tests: it
ignores quantization and payload indexes and searches exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from tribrid.encoders.base import SparseVector
from tribrid.errors import StoreError, missing_extra
from tribrid.store.base import (
    BM25,
    DENSE,
    PAYLOAD_INDEXES,
    SPLADE,
    Candidates,
    Channel,
    ChannelQuery,
    CollectionSchema,
    Fusion,
    Hit,
    Point,
    StoreFilter,
    StoreQuery,
)
from tribrid.store.checks import (
    canonical_id,
    check_query,
    point_vectors,
    required_filter,
    rrf_weights,
)
from tribrid.store.generations import PinnedStore
from tribrid.store.points import PayloadIndex
from tribrid.store.qdrant_filters import client_filter
from tribrid.store.schema import (
    QDRANT_BINARY_ENCODING,
    QDRANT_QUERY_ENCODING,
    effective_schema,
    encodings_from_qdrant,
    mismatch_error,
    record_problems,
    schema_record,
)

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, QdrantClient, models

DEFAULT_URL = "http://localhost:6333"
METADATA_KEY = "tribrid"
_UPSERT_BATCH = 256
# Close tasks of async clients, kept referenced until they finish.
_CLOSING: set[asyncio.Task[None]] = set()
_SCROLL_PAGE = 1000

_FIX = (
    "use another collection (TRIBRID_STORE__COLLECTION), or rebuild it with "
    "`tribrid ingest FOLDER --recreate` (a new generation, built beside this one and "
    "switched to when complete)"
)


def _import_client() -> None:
    try:
        import qdrant_client  # noqa: F401  # lazily: it is slow to import
    except ImportError as e:
        raise missing_extra("the Qdrant server store backend", "index", "qdrant-client") from e


class QdrantServerStore:
    """A tribrid collection on a Qdrant server.

    Args:
        schema: What the collection must hold; created from it if missing, checked
            against its metadata otherwise.
        url: ``http(s)://host:6333`` (default ``http://localhost:6333``), or
            ``":memory:"`` for qdrant-client's in-process engine.
        api_key: API key of the server, if it needs one.
        timeout: Request timeout in seconds.
        recreate: Delete the collection first and start empty.
        client: An existing ``QdrantClient`` to use instead of connecting; the store
            does not close it.
        async_client: An existing ``AsyncQdrantClient`` on the same database, for the
            async methods; the store does not close it.

    The async methods (``aquery``, ``aquery_batch``, ``aretrieve``, used by the
    retriever's ``ainvoke``) go through ``AsyncQdrantClient``: the given one, or, for a
    server URL, one the store opens on first use. Where there is none (a given sync
    client alone, or ``":memory:"``, whose async twin would be a second, empty
    database and computes inside its coroutines anyway), they run the sync call in a
    worker thread.

    Raises:
        MissingDependencyError: qdrant-client is not installed.
        StoreError: The server cannot be reached or refused an operation.
        SchemaMismatchError: The collection was built for another schema.

    Example:
        ::

            with QdrantServerStore(schema, url="http://localhost:6333") as store:
                store.upsert(points)
                hits = store.query(StoreQuery(channels=(ChannelQuery(Channel.DENSE, vec),)))
    """

    single_writer: ClassVar[bool] = False

    def __init__(
        self,
        schema: CollectionSchema,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        recreate: bool = False,
        client: QdrantClient | None = None,
        async_client: AsyncQdrantClient | None = None,
        aliased: bool = True,
        create: bool = True,
    ) -> None:
        _import_client()
        from qdrant_client import QdrantClient

        self._name = schema.name
        self._aliased = aliased
        # The collection behind the name: the alias's target, or the name itself.
        self._physical = schema.name
        self._api_key = api_key
        self._seconds = max(1, math.ceil(timeout))
        self._aclient: AsyncQdrantClient | None = async_client
        self._owns_aclient = False
        self._owns_client = client is None
        if client is not None:
            self._url = url or "the given client"
            self._client: QdrantClient | None = client
        else:
            self._url = url or DEFAULT_URL
            if self._url == ":memory:":
                client = QdrantClient(location=":memory:")
            else:
                # The compatibility check would only warn on an unreachable server; the
                # first request below reports that as a StoreError instead.
                client = QdrantClient(
                    url=self._url,
                    api_key=api_key,
                    timeout=self._seconds,
                    check_compatibility=False,
                )
            self._client = client
        self._where = f"collection {schema.name!r} on {self._url}"
        self._local = _is_local(client)
        self._schema = schema
        if not create:
            return  # begin_generation opens the collection itself
        try:
            self._schema = self._open_or_create(client, schema, recreate)
        except BaseException:
            self._close_client()
            raise

    @classmethod
    def open(
        cls,
        schema: CollectionSchema,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        recreate: bool = False,
    ) -> Self:
        """Connect to ``url`` (default ``http://localhost:6333``); ``path`` is unused."""
        return cls(schema, url=url, api_key=api_key, timeout=timeout, recreate=recreate)

    # -- opening -------------------------------------------------------------------

    def _resolve(self, client: QdrantClient) -> str | None:
        """The collection behind :attr:`_name` (an alias's target), None if there is none."""
        if self._aliased:
            return self._target_of(self._name)
        with self._calling("check the collection", connecting=True):
            return self._name if client.collection_exists(self._name) else None

    def _open_or_create(
        self, client: QdrantClient, schema: CollectionSchema, recreate: bool
    ) -> CollectionSchema:
        physical = self._resolve(client)
        if physical is not None and recreate:
            with self._calling("delete the collection"):
                client.delete_collection(physical)
                if physical != self._name:
                    self._update_aliases(client, self._name, None)
            physical = None
        if physical is None:
            # A new collection is generation 1 behind an alias named as the settings
            # say, so that a rebuild can later switch the alias with no gap.
            physical = generation_name(self._name, 1) if self._aliased else self._name
            try:
                self._create(client, schema, physical)
                if physical != self._name:
                    self._update_aliases(client, self._name, physical, exists=False)
            except StoreError:
                # Another process may have created it in between; then validate theirs.
                raced = self._resolve(client)
                if raced is None:
                    raise
                physical = raced
            else:
                self._physical = physical
                return schema
        self._physical = physical
        return self._validate(client, schema)

    def _update_aliases(
        self, client: QdrantClient, alias: str, target: str | None, *, exists: bool = True
    ) -> None:
        """Point ``alias`` at ``target`` (or drop it), in one atomic request."""
        from qdrant_client import models

        actions: list[models.AliasOperations] = []
        if exists:
            actions.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
            )
        if target is not None:
            actions.append(
                models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
                )
            )
        with self._calling(f"point the alias {alias!r} at {target!r}"):
            client.update_collection_aliases(change_aliases_operations=actions)

    def _create(self, client: QdrantClient, schema: CollectionSchema, physical: str) -> None:
        from qdrant_client import models

        self._physical = physical
        with self._calling("create the collection"):
            client.create_collection(
                physical,
                vectors_config={
                    DENSE: models.VectorParams(
                        size=schema.dense_size,
                        distance=models.Distance.COSINE,
                        # The binary tier: floats on disk (``on_disk`` rather than
                        # ``memory``, which servers before Qdrant 1.19 refuse), and no
                        # graph (m = 0): searches scan the codes kept in RAM.
                        on_disk=True if schema.dense_on_disk else None,
                        hnsw_config=models.HnswConfigDiff(m=0) if schema.dense_on_disk else None,
                        quantization_config=models.BinaryQuantization(
                            binary=models.BinaryQuantizationConfig(
                                always_ram=True,
                                encoding=models.BinaryQuantizationEncoding(
                                    QDRANT_BINARY_ENCODING[schema.binary_encoding]
                                ),
                                query_encoding=models.BinaryQuantizationQueryEncoding(
                                    QDRANT_QUERY_ENCODING[schema.query_encoding]
                                ),
                            )
                        ),
                    )
                },
                sparse_vectors_config={
                    SPLADE: models.SparseVectorParams(),
                    BM25: models.SparseVectorParams(modifier=models.Modifier.IDF),
                },
                metadata={METADATA_KEY: schema_record(schema)},
            )
        if not self._local:
            self._ensure_indexes(client, set())

    def _ensure_indexes(self, client: QdrantClient, existing: set[str]) -> None:
        from qdrant_client import models

        kinds = {
            PayloadIndex.KEYWORD: models.PayloadSchemaType.KEYWORD,
            PayloadIndex.INTEGER: models.PayloadSchemaType.INTEGER,
            PayloadIndex.DATETIME: models.PayloadSchemaType.DATETIME,
        }
        with self._calling("index payload keys"):
            for key, kind in PAYLOAD_INDEXES.items():
                if key not in existing:
                    client.create_payload_index(self._physical, key, kinds[kind], wait=True)

    def _validate(self, client: QdrantClient, schema: CollectionSchema) -> CollectionSchema:
        with self._calling("read the collection"):
            info = client.get_collection(self._physical)
        record = (info.config.metadata or {}).get(METADATA_KEY)
        if not isinstance(record, dict):
            raise mismatch_error(
                self._where,
                [f"has no {METADATA_KEY!r} metadata, so it was not made by tribrid"],
                _FIX,
            )
        problems = record_problems(record, schema)
        for problem in _config_problems(info.config.params, schema):
            if problem not in problems:
                problems.append(problem)
        if problems:
            raise mismatch_error(self._where, problems, _FIX)
        if not self._local:
            self._ensure_indexes(client, set(info.payload_schema))
        binary = _dense_binary(info.config.params)
        stored_binary, stored_query = encodings_from_qdrant(
            binary.encoding.value if binary and binary.encoding else None,
            binary.query_encoding.value if binary and binary.query_encoding else None,
        )
        return effective_schema(
            schema, stored_binary, stored_query, self._where, _dense_on_disk(info.config.params)
        )

    # -- generations -----------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The generation the collection's name points at now (0: a plain collection).

        Asks the server, so a switch made by another process shows at once.
        """
        physical = self._resolve(self._open_client()) if self._aliased else self._physical
        return generation_of(self._name, physical or self._physical)

    @classmethod
    def begin_generation(
        cls,
        schema: CollectionSchema,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        client: QdrantClient | None = None,
    ) -> QdrantStaged:
        """Create the next generation of the collection ``schema.name``, empty, beside
        the live one.

        Searches keep going to the live collection (through the alias, or the plain
        collection of that name) until :meth:`QdrantStaged.publish` points the alias at
        the new one. The live collection is not opened, so its schema may differ (a
        rebuild with another model).

        Args:
            schema: What the new generation holds; its name is the alias.
            url, api_key, timeout: As for the constructor.
            client: An existing client to use (the one the live store uses, for
                ``:memory:``, whose every client is a database of its own).
        """
        alias = schema.name
        staged = cls(
            replace(schema, name=generation_name(alias, 0) + "-probe"),
            url=url,
            api_key=api_key,
            timeout=timeout,
            client=client,
            aliased=False,
            create=False,
        )
        try:
            live_client = staged._open_client()
            live = staged._target_of(alias)
            with staged._calling("list the collections"):
                names = [c.name for c in live_client.get_collections().collections]
            taken = [generation_of(alias, n) for n in names if _is_generation(alias, n)]
            current = generation_of(alias, live) if live is not None else 0
            number = max([current, *taken]) + 1
            physical = generation_name(alias, number)
            staged._name = physical
            staged._where = f"collection {physical!r} on {staged._url}"
            staged._schema = staged._open_or_create(
                live_client, replace(schema, name=physical), recreate=True
            )
        except BaseException:
            staged.close()
            raise
        return QdrantStaged(alias, number, staged)

    def _target_of(self, alias: str) -> str | None:
        """The collection the name ``alias`` stands for now (alias target or plain)."""
        client = self._open_client()
        with self._calling("read the aliases", connecting=True):
            aliases = client.get_aliases().aliases
        for found in aliases:
            if found.alias_name == alias:
                return found.collection_name
        with self._calling("check the collection", connecting=True):
            return alias if client.collection_exists(alias) else None

    def _publish_as(self, alias: str) -> None:
        """Point ``alias`` at this store's collection, then drop the one it named."""
        client = self._open_client()
        old = self._target_of(alias)
        if old == alias:
            # A plain collection of that name (made before generations existed): an
            # alias cannot take its name while it exists, so this one switch has a
            # moment with neither.
            with self._calling(f"delete the collection {alias!r}"):
                client.delete_collection(old)
            old = None
        self._update_aliases(client, alias, self._physical, exists=old is not None)
        if old is not None and old != self._physical:
            with self._calling(f"delete the old collection {old!r}"):
                client.delete_collection(old)

    # -- the protocol --------------------------------------------------------------

    @property
    def schema(self) -> CollectionSchema:
        """The schema the store was opened with, with the quantization it really has."""
        return self._schema

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite points, in batches; the same points twice leave one copy."""
        from qdrant_client import models

        size = self._schema.dense_size
        structs = []
        for p in points:
            pid, vectors = point_vectors(p, size, _sparse)
            structs.append(models.PointStruct(id=pid, vector=vectors, payload=dict(p.payload)))
        client = self._open_client()
        for start in range(0, len(structs), _UPSERT_BATCH):
            batch = structs[start : start + _UPSERT_BATCH]
            with self._calling(f"upsert {len(batch)} points"):
                client.upsert(self._name, batch, wait=True)

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payload of an existing point.

        Raises:
            StoreError: The point does not exist.
        """
        pid = canonical_id(point_id)
        with self._calling(f"set the payload of point {pid}"):
            self._open_client().set_payload(self._name, dict(payload), points=[pid], wait=True)

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id; ids that do not exist are ignored."""
        if not point_ids:
            return
        from qdrant_client import models

        ids: list[models.ExtendedPointId] = [canonical_id(i) for i in point_ids]
        with self._calling(f"delete {len(ids)} points"):
            self._open_client().delete(
                self._name, points_selector=models.PointIdsList(points=ids), wait=True
            )

    def delete_by_filter(self, filter: StoreFilter) -> None:
        """Delete every point whose payload matches ``filter``.

        Raises:
            ValueError: ``filter`` is empty; to delete everything, re-create the store.
        """
        from qdrant_client import models

        qfilter = required_filter(client_filter(filter))
        with self._calling("delete points by filter"):
            self._open_client().delete(
                self._name, points_selector=models.FilterSelector(filter=qfilter), wait=True
            )

    def query(self, query: StoreQuery) -> list[Hit]:
        """Search one channel, or several fused on the server with RRF or DBSF.

        Same semantics as :meth:`tribrid.store.edge.EdgeStore.query`: ``dense`` ignores
        quantization, ``binary`` searches the codes with oversampling and rescoring,
        several channels are prefetched under the filter and fused (weighted RRF, or
        DBSF which ignores weights).
        """
        arguments = self._query_arguments(query)
        client = self._open_client()
        for waited in _switch_waits():
            with self._calling("query"), self._missing(waited):
                return _hits(client.query_points(self._name, **arguments).points)
        raise AssertionError("unreachable")  # the last wait re-raises

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """Run several searches in one request; results in the same order."""
        if not queries:
            return []
        requests = [self._batch_request(q) for q in queries]
        client = self._open_client()
        for waited in _switch_waits():
            with self._calling(f"query a batch of {len(requests)}"), self._missing(waited):
                responses = client.query_batch_points(self._name, requests)
                return [_hits(r.points) for r in responses]
        raise AssertionError("unreachable")  # the last wait re-raises

    def candidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """Run single-channel searches in one request, without payloads or vectors."""
        if not queries:
            return []
        requests = [self._candidate_request(q) for q in queries]
        client = self._open_client()
        with self._calling(f"query a batch of {len(requests)}"):
            responses = client.query_batch_points(self._name, requests)
        return [_candidates(r.points) for r in responses]

    async def acandidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """:meth:`candidates` through ``AsyncQdrantClient`` (see the class docs)."""
        if not queries:
            return []
        requests = [self._candidate_request(q) for q in queries]
        aclient = self._async_client()
        if aclient is None:
            return await asyncio.to_thread(self.candidates, queries)
        with self._calling(f"query a batch of {len(requests)}"):
            responses = await aclient.query_batch_points(self._name, requests)
        return [_candidates(r.points) for r in responses]

    def _candidate_request(self, query: StoreQuery) -> models.QueryRequest:
        return self._batch_request(replace(query, with_payload=False, with_vectors=False))

    async def aquery(self, query: StoreQuery) -> list[Hit]:
        """:meth:`query` through ``AsyncQdrantClient`` (see the class docs)."""
        arguments = self._query_arguments(query)
        aclient = self._async_client()
        if aclient is None:
            return await asyncio.to_thread(self.query, query)
        with self._calling("query"):
            response = await aclient.query_points(self._name, **arguments)
        return _hits(response.points)

    async def aquery_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """:meth:`query_batch` through ``AsyncQdrantClient`` (see the class docs)."""
        if not queries:
            return []
        requests = [self._batch_request(q) for q in queries]
        aclient = self._async_client()
        if aclient is None:
            return await asyncio.to_thread(self.query_batch, queries)
        with self._calling(f"query a batch of {len(requests)}"):
            responses = await aclient.query_batch_points(self._name, requests)
        return [_hits(r.points) for r in responses]

    async def aretrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """:meth:`retrieve` through ``AsyncQdrantClient`` (see the class docs)."""
        if not point_ids:
            return []
        ids = [canonical_id(i) for i in point_ids]
        aclient = self._async_client()
        if aclient is None:
            return await asyncio.to_thread(self.retrieve, point_ids)
        with self._calling("retrieve points"):
            records = await aclient.retrieve(self._name, ids, with_payload=True, with_vectors=False)
        return [Hit(id=str(r.id), score=0.0, payload=r.payload or {}) for r in records]

    async def aupsert(self, points: Sequence[Point]) -> None:
        """:meth:`upsert` in a worker thread (writes wait for the server)."""
        await asyncio.to_thread(self.upsert, points)

    async def adelete(self, point_ids: Sequence[str]) -> None:
        """:meth:`delete` in a worker thread."""
        await asyncio.to_thread(self.delete, point_ids)

    async def adelete_by_filter(self, filter: StoreFilter) -> None:
        """:meth:`delete_by_filter` in a worker thread."""
        await asyncio.to_thread(self.delete_by_filter, filter)

    def _query_arguments(self, query: StoreQuery) -> dict[str, Any]:
        """Keyword arguments of ``query_points`` for ``query`` (the collection aside)."""
        from qdrant_client import models

        check_query(query, self._schema.dense_size)
        qfilter = client_filter(query.filter)
        if len(query.channels) == 1:
            cq = query.channels[0]
            return {
                "query": _query_vector(cq),
                "using": cq.channel.vector_name,
                "query_filter": qfilter,
                "search_params": self._params(cq.channel, query.oversampling),
                "limit": query.limit,
                "with_payload": query.with_payload,
                "with_vectors": [DENSE] if query.with_vectors else False,
            }
        fusion: models.RrfQuery | models.FusionQuery = (
            models.RrfQuery(rrf=models.Rrf(k=query.rrf_k, weights=rrf_weights(query)))
            if query.fusion is Fusion.RRF
            else models.FusionQuery(fusion=models.Fusion.DBSF)
        )
        return {
            "prefetch": [
                models.Prefetch(
                    query=_query_vector(cq),
                    using=cq.channel.vector_name,
                    filter=qfilter,
                    params=self._params(cq.channel, query.oversampling),
                    limit=query.prefetch_limit,
                )
                for cq in query.channels
            ],
            "query": fusion,
            "limit": query.limit,
            "with_payload": query.with_payload,
            "with_vectors": [DENSE] if query.with_vectors else False,
        }

    def _batch_request(self, query: StoreQuery) -> models.QueryRequest:
        from qdrant_client import models

        arguments = self._query_arguments(query)
        return models.QueryRequest(
            prefetch=arguments.get("prefetch"),
            query=arguments["query"],
            using=arguments.get("using"),
            filter=arguments.get("query_filter"),
            params=arguments.get("search_params"),
            limit=arguments["limit"],
            with_payload=arguments["with_payload"],
            with_vector=arguments["with_vectors"],
        )

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """Fetch points by id (score 0); missing ids are skipped."""
        if not point_ids:
            return []
        ids = [canonical_id(i) for i in point_ids]
        with self._calling("retrieve points"):
            records = self._open_client().retrieve(
                self._name, ids, with_payload=True, with_vectors=False
            )
        return [Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {})) for r in records]

    def count(self, filter: StoreFilter | None = None) -> int:
        """Number of points, optionally only those matching ``filter``."""
        qfilter = client_filter(filter)
        with self._calling("count points"):
            return self._open_client().count(self._name, count_filter=qfilter, exact=True).count

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        """Ids of all points (optionally only matching ``filter``), paging through them."""
        qfilter = client_filter(filter)
        client = self._open_client()
        found: set[str] = set()
        offset: models.ExtendedPointId | None = None
        with self._calling("list point ids"):
            while True:
                records, next_offset = client.scroll(
                    self._name,
                    scroll_filter=qfilter,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                )
                found.update(str(r.id) for r in records)
                if next_offset is None:
                    return found
                offset = next_offset

    def flush(self) -> None:
        """Nothing to do: writes wait for the server, which indexes in the background."""
        self._open_client()

    def close(self) -> None:
        """Close the connections (except clients passed in). Safe to call twice.

        An async client the store opened is closed too: at once outside an event loop,
        as a task inside one (await :meth:`aclose` there to wait for it).
        """
        aclient, self._aclient = self._aclient, None
        if aclient is not None and self._owns_aclient:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                with contextlib.suppress(Exception):
                    asyncio.run(aclient.close())
            else:
                task = loop.create_task(aclient.close())
                _CLOSING.add(task)
                task.add_done_callback(_CLOSING.discard)
        self._close_client()

    async def aclose(self) -> None:
        """Close the connections, waiting for the async client's to close."""
        aclient, self._aclient = self._aclient, None
        if aclient is not None and self._owns_aclient:
            with contextlib.suppress(Exception):
                await aclient.close()
        self._close_client()

    def __enter__(self) -> QdrantServerStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._client is None else "open"
        return f"QdrantServerStore({self._url!r}, collection={self._name!r}, {state})"

    # -- helpers -------------------------------------------------------------------

    @contextlib.contextmanager
    def _missing(self, last: bool) -> Iterator[None]:
        """Swallow a "collection not found" unless ``last``: the first switch of a plain
        collection to an alias deletes it before the alias exists (see
        :meth:`_publish_as`), and a search in that moment waits for the alias instead
        of failing."""
        try:
            yield
        except Exception as e:
            if last or not self._aliased or not _not_found(e):
                raise

    def _params(self, channel: Channel, oversampling: float) -> models.SearchParams | None:
        # The in-process engine searches exactly and warns about any search params.
        return None if self._local else _params(channel, oversampling)

    def _async_client(self) -> AsyncQdrantClient | None:
        """The async client, opened on first use for a server URL; None for a thread."""
        self._open_client()
        if self._aclient is None and self._owns_client and not self._local:
            from qdrant_client import AsyncQdrantClient

            self._aclient = AsyncQdrantClient(
                url=self._url,
                api_key=self._api_key,
                timeout=self._seconds,
                check_compatibility=False,
            )
            self._owns_aclient = True
        return self._aclient

    def _open_client(self) -> QdrantClient:
        if self._client is None:
            raise StoreError(f"{self._where} is closed; open a new QdrantServerStore")
        return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            with contextlib.suppress(Exception):
                client.close()

    @contextlib.contextmanager
    def _calling(self, what: str, *, connecting: bool = False) -> Iterator[None]:
        from qdrant_client.http.exceptions import ResponseHandlingException

        try:
            yield
        except StoreError:
            raise
        except ResponseHandlingException as e:
            # Raised when no HTTP response came back at all: refused, timed out, DNS.
            raise StoreError(
                f"cannot reach the Qdrant server at {self._url} to {what} "
                f"({e.source!r}); check the server is up and the URL is right"
            ) from e
        except Exception as e:
            hint = "; check the server is up and the URL and API key are right"
            raise StoreError(
                f"{what} failed on {self._where}: {e}{hint if connecting else ''}"
            ) from e


#: Between a collection's name and its generation number, in the collections behind
#: an alias: ``tribrid`` points at ``tribrid__g2``.
GENERATION_SEPARATOR = "__g"


def generation_name(name: str, number: int) -> str:
    """The collection of generation ``number`` behind the alias ``name``."""
    return f"{name}{GENERATION_SEPARATOR}{number}"


def _is_generation(name: str, collection: str) -> bool:
    prefix = name + GENERATION_SEPARATOR
    return collection.startswith(prefix) and collection[len(prefix) :].isdigit()


def generation_of(name: str, collection: str) -> int:
    """The generation number of ``collection`` behind ``name`` (0 for a plain one)."""
    if _is_generation(name, collection):
        return int(collection[len(name) + len(GENERATION_SEPARATOR) :])
    return 0


class QdrantStaged:
    """A generation of a Qdrant collection being built (see
    :meth:`QdrantServerStore.begin_generation`)."""

    def __init__(self, alias: str, number: int, store: QdrantServerStore) -> None:
        self._alias = alias
        self._number = number
        self._store: QdrantServerStore | None = store

    @property
    def number(self) -> int:
        """The generation's number."""
        return self._number

    @property
    def store(self) -> PinnedStore:
        """The new generation's collection."""
        if self._store is None:
            raise StoreError(f"generation {self._number} was already published or abandoned")
        return PinnedStore(self._store, self._number)

    def publish(self) -> None:
        """Switch the alias to the new collection in one request, then drop the old one."""
        store = self._store
        if store is None:
            raise StoreError(f"generation {self._number} was already published or abandoned")
        store._publish_as(self._alias)
        self._store = None
        store.close()

    def abandon(self) -> None:
        """Delete the new collection; the alias keeps pointing at the live one."""
        store, self._store = self._store, None
        if store is None:
            return
        try:
            client = store._open_client()
            with store._calling(f"delete the abandoned collection {store._physical!r}"):
                client.delete_collection(store._physical)
        finally:
            store.close()


#: Seconds a search waits, in steps, for the alias of a collection being switched.
_SWITCH_WAITS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _switch_waits() -> Iterator[bool]:
    """Attempts of a search: yields whether it is the last, sleeping between them."""
    for pause in _SWITCH_WAITS:
        yield False
        time.sleep(pause)
    yield True


def _not_found(error: BaseException) -> bool:
    """Whether ``error`` says the collection does not exist (server 404, or local mode)."""
    status = getattr(error, "status_code", None)
    if status == 404:
        return True
    return isinstance(error, ValueError) and "not found" in str(error)


def _is_local(client: QdrantClient) -> bool:
    """Whether ``client`` runs qdrant-client's in-process engine.

    That engine has no payload indexes or quantization and warns when asked for them,
    so the store leaves them out there.
    """
    options = client.init_options
    return options.get("location") == ":memory:" or options.get("path") is not None


def _config_problems(params: models.CollectionParams, schema: CollectionSchema) -> list[str]:
    """Differences between the collection's vector config and what tribrid needs."""
    from qdrant_client import models

    problems = []
    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    dense = vectors.get(DENSE)
    if dense is None:
        problems.append(f"has no {DENSE!r} vector")
    else:
        if dense.size != schema.dense_size:
            problems.append(
                f"has dense size {dense.size} but the dense model gives {schema.dense_size}"
            )
        if dense.distance != models.Distance.COSINE:
            problems.append(f"compares {DENSE!r} vectors by {dense.distance.value}, not Cosine")
        if _dense_binary(params) is None:
            problems.append(f"has no binary quantization on its {DENSE!r} vector")
    sparse = params.sparse_vectors or {}
    for name in (SPLADE, BM25):
        if name not in sparse:
            problems.append(f"has no {name!r} sparse vector")
    bm25 = sparse.get(BM25)
    if bm25 is not None and bm25.modifier != models.Modifier.IDF:
        problems.append(f"has no IDF modifier on its {BM25!r} vector")
    return problems


def _dense_on_disk(params: models.CollectionParams) -> bool:
    """Whether the collection keeps its float dense vectors on disk (cold)."""
    from qdrant_client import models

    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    dense = vectors.get(DENSE)
    if dense is None:
        return False
    if dense.memory is not None:
        return dense.memory is models.Memory.COLD
    return dense.on_disk is True


def _dense_binary(params: models.CollectionParams) -> models.BinaryQuantizationConfig | None:
    from qdrant_client import models

    vectors = params.vectors if isinstance(params.vectors, dict) else {}
    dense = vectors.get(DENSE)
    quantization = dense.quantization_config if dense is not None else None
    return quantization.binary if isinstance(quantization, models.BinaryQuantization) else None


def _hits(points: Sequence[models.ScoredPoint]) -> list[Hit]:
    return [Hit(str(sp.id), sp.score, sp.payload or {}, _dense_of(sp.vector)) for sp in points]


def _candidates(points: Sequence[models.ScoredPoint]) -> Candidates:
    return Candidates([sp.id for sp in points], [sp.score for sp in points])


def _dense_of(vector: Any) -> list[float] | None:
    dense = vector.get(DENSE) if isinstance(vector, dict) else None
    return [float(x) for x in dense] if isinstance(dense, list) else None


def _sparse(vector: SparseVector) -> models.SparseVector:
    from qdrant_client import models

    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _query_vector(cq: ChannelQuery) -> list[float] | models.SparseVector:
    vector = cq.vector
    return _sparse(vector) if isinstance(vector, SparseVector) else [float(x) for x in vector]


def _params(channel: Channel, oversampling: float) -> models.SearchParams | None:
    from qdrant_client import models

    if channel is Channel.DENSE:
        return models.SearchParams(quantization=models.QuantizationSearchParams(ignore=True))
    if channel is Channel.BINARY:
        return models.SearchParams(
            quantization=models.QuantizationSearchParams(
                ignore=False, rescore=True, oversampling=oversampling
            )
        )
    return None

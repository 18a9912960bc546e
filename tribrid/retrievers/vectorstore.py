"""The LangChain vector store: add, search, delete and fetch texts in a tribrid store.

Texts added here are encoded by the same three encoders as ``tribrid ingest`` uses and
get deterministic point ids: ``point_id("langchain:<collection>", <id>)``, where ``<id>``
is the caller's id, or the SHA-256 of the text when none is given. Adding the same text
twice therefore leaves one point, and re-adding a given id replaces its point.

Searches are the hybrid retriever's (DBSF of dense, SPLADE and BM25 by default), so a
vector store built over an index that ``tribrid ingest`` made returns its chunks too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from tribrid.encoders import EncoderSet
from tribrid.retrievers.embeddings import EmbeddingsDenseEncoder, EncoderEmbeddings
from tribrid.retrievers.hybrid import RetrievedChunk, TribridRetriever, async_store
from tribrid.retrievers.relevance import RELEVANCE_THRESHOLD
from tribrid.settings import Settings
from tribrid.store.base import Channel, ChannelQuery, Hit, Point, StoreFilter, StoreQuery
from tribrid.store.base import VectorStore as TribridStore
from tribrid.store.filters import is_edge_filter, validate_filter
from tribrid.store.points import (
    INTERNAL_KEYS,
    LANGCHAIN_ID_KEY,
    RESERVED_KEYS,
    SOURCE_KEY,
    TEXT_KEY,
    chunk_payload,
    content_hash,
    point_id,
)
from tribrid.store.qdrant_filters import client_filter
from tribrid.store.wire import filter_to_json

DEFAULT_COLLECTION = "langchain"
_ADD_BATCH = 64


class TribridVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over a tribrid store, searched with hybrid fusion.

    Args:
        store: An open tribrid store.
        encoders: The encoders the store's collection was built with.
        retriever_options: Defaults for searches and :meth:`as_retriever`: any
            :class:`~tribrid.retrievers.hybrid.TribridRetriever` option, e.g.
            ``{"fusion": "dbsf", "channels": {"dense": 1, "bm25": 1}}``.
        owns_store: Close ``store`` in :meth:`close` (set by :meth:`open`).
        internal_metadata: Keep tribrid's bookkeeping keys (``source_key``,
            ``document_key``, ``content_hash``) in the metadata of ingested chunks.

    Example:
        ::

            vs = TribridVectorStore.from_texts(["alpha", "beta"], path="/tmp/vs")
            vs.similarity_search("alpha", k=1)
            retriever = vs.as_retriever(search_kwargs={"k": 5, "fusion": "dbsf"})
    """

    def __init__(
        self,
        store: TribridStore,
        encoders: EncoderSet,
        *,
        retriever_options: Mapping[str, Any] | None = None,
        owns_store: bool = False,
        internal_metadata: bool = False,
    ) -> None:
        self.store = store
        self.internal_metadata = internal_metadata
        self.encoders = encoders
        self.source_key = f"langchain:{store.schema.name}"
        # A vector store returns texts (chunks), as LangChain's do: no per-document cap
        # unless the options ask for one (the retriever's own default is one per document).
        options = {"chunks_per_document": None, **dict(retriever_options or {})}
        self._retriever = TribridRetriever(store=store, encoders=encoders, **options)
        self._owns_store = owns_store

    # -- construction --------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        path: str | Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        embedding: Embeddings | None = None,
        encoders: EncoderSet | None = None,
        settings: Settings | None = None,
        recreate: bool = False,
        **retriever_options: Any,
    ) -> TribridVectorStore:
        """Open (or create) a collection and wrap it.

        Args:
            path: Folder of an embedded store (Qdrant Edge). When ``tribrid serve`` owns
                it, the vector store goes through the server.
            url: A Qdrant server URL, or ``":memory:"`` (the default without ``path``).
            api_key: API key of the Qdrant server.
            collection: Collection name.
            embedding: LangChain embeddings to use for the dense (and binary) channel
                instead of tribrid's dense model; SPLADE and BM25 stay tribrid's.
            encoders: The encoders; default: those of ``settings``.
            settings: Model and quantization settings (default: from the environment).
            recreate: Delete the collection's points first.
            **retriever_options: Search defaults, as for ``retriever_options``.

        Raises:
            ValueError: Both ``path`` and ``url`` were given.
        """
        # A public factory: it reads the settings (its edge) through the composition root.
        from tribrid.factory import build_encoders, collection_schema
        from tribrid.store import open_store
        from tribrid.store.remote import RemoteStore, discover

        if path is not None and url is not None:
            raise ValueError("give either path (embedded store) or url (Qdrant server), not both")
        cfg = settings or Settings()
        chosen = encoders or build_encoders(cfg)
        if embedding is not None:
            chosen = replace(chosen, dense=EmbeddingsDenseEncoder(embedding))
        schema = replace(collection_schema(cfg, chosen), name=collection)
        # An embedded store that `tribrid serve` owns is used through the server.
        served = discover(Path(path)) if path is not None else None
        if served is not None:
            store: TribridStore = RemoteStore.open(
                schema, url=served.url, api_key=served.api_key, recreate=recreate
            )
        else:
            store = open_store(
                "edge" if path is not None else "qdrant",
                schema,
                path=Path(path) if path is not None else None,
                url=url or ":memory:",
                api_key=api_key,
                recreate=recreate,
            )
        try:
            return cls(store, chosen, retriever_options=retriever_options, owns_store=True)
        except BaseException:
            store.close()
            raise

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> TribridVectorStore:
        """Open a store with :meth:`open` (``kwargs``) and add ``texts`` to it.

        ``embedding`` is optional: without it the dense channel uses tribrid's model.
        """
        vs = cls.open(embedding=embedding, **kwargs)
        vs.add_texts(texts, metadatas, ids=ids)
        return vs

    @classmethod
    def from_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> TribridVectorStore:
        """Open a store with :meth:`open` (``kwargs``) and add ``documents`` (their ids kept)."""
        if "ids" not in kwargs and any(d.id for d in documents):
            kwargs["ids"] = [d.id for d in documents]
        return cls.from_texts(
            [d.page_content for d in documents],
            embedding,
            [dict(d.metadata) for d in documents],
            **kwargs,
        )

    @property
    def embeddings(self) -> Embeddings:
        """The dense channel's model as LangChain ``Embeddings``."""
        dense = self.encoders.dense
        if isinstance(dense, EmbeddingsDenseEncoder):
            return dense.embeddings
        return EncoderEmbeddings(dense)

    # -- writing -------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode and upsert texts; returns their ids (given, or the text's SHA-256).

        Raises:
            ValueError: Lengths differ, or metadata uses a key tribrid reserves.
        """
        rows, out = self._rows(texts, metadatas, ids)
        for start in range(0, len(rows), _ADD_BATCH):
            self.store.upsert(self._points(rows[start : start + _ADD_BATCH]))
        return out

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`add_texts` without blocking the event loop.

        Encoding runs in a worker thread; the upsert goes through the store's async
        write, which for the embedded store is the one thread its async reads use.
        """
        rows, out = self._rows(texts, metadatas, ids)
        store = async_store(self.store)
        for start in range(0, len(rows), _ADD_BATCH):
            points = await asyncio.to_thread(self._points, rows[start : start + _ADD_BATCH])
            await store.aupsert(points)
        return out

    def delete(
        self, ids: list[str] | None = None, filter: StoreFilter | None = None, **kwargs: Any
    ) -> bool | None:
        """Delete texts added through LangChain, by id or by metadata filter.

        Args:
            ids: LangChain ids (or point ids); ids that do not exist are ignored.
            filter: A payload filter in any form the retriever takes (the simple form
                ``{"topic": "pumps"}`` or a ``qdrant_client`` filter): deletes the texts
                added through LangChain to this collection that match it.

        With neither, deletes every text added through LangChain to this collection.
        Chunks from ``tribrid ingest`` are never deleted here, since the ledger would no
        longer match the store: remove an ingested document with ``tribrid.remove(path)``.

        Raises:
            ValueError: Both ``ids`` and ``filter`` were given, or the filter is invalid
                or a ``qdrant_edge.Filter`` (which cannot be combined).
        """
        if ids is not None and filter is not None:
            raise ValueError("delete takes ids or a filter, not both; call it twice")
        if ids is not None:
            self.store.delete(self._candidates(ids))
        else:
            self.store.delete_by_filter(self._own(filter))
        return True

    async def adelete(
        self, ids: list[str] | None = None, filter: StoreFilter | None = None, **kwargs: Any
    ) -> bool | None:
        """:meth:`delete` through the store's async writes."""
        if ids is not None and filter is not None:
            raise ValueError("delete takes ids or a filter, not both; call it twice")
        store = async_store(self.store)
        if ids is not None:
            await store.adelete(self._candidates(ids))
        else:
            await store.adelete_by_filter(self._own(filter))
        return True

    def flush(self) -> None:
        """Make writes durable and optimise the index (embedded store: builds the codes)."""
        self.store.flush()

    # -- reading -------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids (LangChain ids or point ids), in no order."""
        return [
            self._document(hit.id, hit.payload)
            for hit in self.store.retrieve(self._candidates(ids))
        ]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """:meth:`get_by_ids` through the store's async reads."""
        hits = await async_store(self.store).aretrieve(self._candidates(ids))
        return [self._document(hit.id, hit.payload) for hit in hits]

    def similarity_search(
        self, query: str, k: int = 4, filter: StoreFilter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Hybrid search; ``kwargs`` override retriever options (``fusion``, ``channels`` …)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: StoreFilter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Hybrid search with the fused score of each document."""
        chunks = self._retriever.search(query, k=k, filter=filter, **kwargs)
        return [(self._chunk_document(c), c.score) for c in chunks]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: StoreFilter | None = None, **kwargs: Any
    ) -> list[Document]:
        """:meth:`similarity_search` without blocking the event loop (see ``asearch``)."""
        scored = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in scored]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: StoreFilter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_with_score` through the retriever's async path."""
        chunks = await self._retriever.asearch(query, k=k, filter=filter, **kwargs)
        return [(self._chunk_document(c), c.score) for c in chunks]

    def similarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Dense-channel search with a ready query vector."""
        hits = self.store.query(self._dense_query(embedding, k, filter))
        return [self._document(h.id, h.payload) for h in hits]

    async def asimilarity_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`similarity_search_by_vector` through the store's async reads."""
        hits = await async_store(self.store).aquery(self._dense_query(embedding, k, filter))
        return [self._document(h.id, h.payload) for h in hits]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The documents of :meth:`similarity_search`, in its order, with their relevance.

        Relevance is in [0, 1] and means the same for every query: each channel's score
        read on its absolute scale (see :mod:`tribrid.retrievers.relevance`), so a
        ``score_threshold`` (LangChain's argument) drops an off-topic query's hits.
        The order stays the fused ranking's, so the scores need not be sorted.
        """
        return _with_relevance(self._retriever.search(query, k=k, **kwargs), self._document)

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """:meth:`_similarity_search_with_relevance_scores` for an event loop."""
        chunks = await self._retriever.asearch(query, k=k, **kwargs)
        return _with_relevance(chunks, self._document)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        raise NotImplementedError(
            "TribridVectorStore has no one function from a score to a relevance: relevance "
            "comes from each channel's own score; call similarity_search_with_relevance_scores"
        )

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Maximal marginal relevance over the dense channel's ``fetch_k`` best.

        Only the query is encoded: the candidates' vectors come from the store.
        """
        vector = [float(x) for x in self.encoders.dense.encode_query(query)]
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter=filter
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` without blocking the event loop."""
        encoded = await asyncio.to_thread(self.encoders.dense.encode_query, query)
        return await self.amax_marginal_relevance_search_by_vector(
            [float(x) for x in encoded], k, fetch_k, lambda_mult, filter=filter
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR from a query vector, over the candidates' stored dense vectors."""
        hits = self.store.query(self._dense_query(embedding, max(fetch_k, k), filter, True))
        return self._mmr(embedding, hits, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: StoreFilter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search_by_vector` through the store's async reads."""
        query = self._dense_query(embedding, max(fetch_k, k), filter, True)
        hits = await async_store(self.store).aquery(query)
        return self._mmr(embedding, hits, k, lambda_mult)

    def _mmr(
        self, embedding: Sequence[float], hits: Sequence[Hit], k: int, lambda_mult: float
    ) -> list[Document]:
        if not hits:
            return []
        vectors = [h.dense for h in hits]
        if any(v is None for v in vectors):
            raise ValueError(
                f"the store {type(self.store).__name__} returned no stored vectors for "
                "maximal marginal relevance; use a tribrid store (EdgeStore, "
                "QdrantServerStore, or tribrid serve's RemoteStore)"
            )
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, dtype=np.float32),
            [[float(x) for x in v or ()] for v in vectors],
            lambda_mult=lambda_mult,
            k=k,
        )
        return [self._document(hits[i].id, hits[i].payload) for i in chosen]

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:  # type: ignore[override]
        """A :class:`TribridRetriever` over this store (or LangChain's, for ``mmr``).

        Args:
            **kwargs: ``search_type``: ``similarity`` or ``hybrid`` (the default hybrid
                search), ``similarity_score_threshold`` (needs ``score_threshold``), or
                ``mmr`` (LangChain's retriever over :meth:`max_marginal_relevance_search`).
                ``similarity_score_threshold`` keeps the fusion and drops documents whose
                relevance (see :meth:`similarity_search_with_relevance_scores`) is
                below ``score_threshold``.
                ``search_kwargs``: any ``TribridRetriever`` option (``k``, ``filter``,
                ``channels``, ``fusion`` …). ``tags`` and ``metadata`` as for any
                retriever.

        Raises:
            ValueError: Unknown ``search_type``, or invalid options.
        """
        search_type = kwargs.pop("search_type", "similarity")
        search_kwargs = dict(kwargs.pop("search_kwargs", None) or {})
        if search_type == "mmr":
            return super().as_retriever(search_type="mmr", search_kwargs=search_kwargs, **kwargs)
        if search_type not in ("similarity", "hybrid", "similarity_score_threshold"):
            raise ValueError(
                f"unknown search_type {search_type!r}; valid types: "
                "['similarity', 'hybrid', 'similarity_score_threshold', 'mmr']"
            )
        if search_type == "similarity_score_threshold":
            threshold = search_kwargs.pop("score_threshold", None)
            if threshold is None:
                raise ValueError(
                    "search_type='similarity_score_threshold' needs "
                    "search_kwargs={'score_threshold': ...}, a relevance in [0, 1] "
                    f"({RELEVANCE_THRESHOLD} separates relevant from not on the shipped models)"
                )
            # LangChain's thresholds are relevance scores in [0, 1], the same for every
            # query: tribrid's relevance, not a fused score rescaled within one query.
            search_kwargs["relevance_threshold"] = threshold
        unknown = set(kwargs) - {"tags", "metadata"}
        if unknown:
            raise ValueError(
                f"unknown as_retriever argument(s) {sorted(unknown)}; put search options "
                "in search_kwargs={...}"
            )
        return self._retriever.with_options(**search_kwargs).model_copy(update=kwargs)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if :meth:`open` opened it."""
        if self._owns_store:
            self._owns_store = False
            self.store.close()

    def __enter__(self) -> TribridVectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------

    def _point_id(self, external_id: str) -> str:
        # The text is deliberately not part of the id: a given id keeps its point when
        # its text changes, and a text without an id is keyed by its hash anyway.
        return point_id(self.source_key, external_id, "")

    def _candidates(self, ids: Sequence[str]) -> list[str]:
        """Point ids a caller's ids may name: LangChain ids, and raw point ids."""
        found = []
        for external in ids:
            found.append(self._point_id(str(external)))
            with contextlib.suppress(ValueError):
                found.append(str(uuid.UUID(str(external))))
        return list(dict.fromkeys(found))

    def _dense_query(
        self,
        vector: Sequence[float],
        k: int,
        filter: StoreFilter | None,
        with_vectors: bool = False,
    ) -> StoreQuery:
        return StoreQuery(
            channels=(ChannelQuery(Channel.DENSE, [float(x) for x in vector]),),
            limit=k,
            filter=validate_filter(filter),
            with_vectors=with_vectors,
        )

    def _rows(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None,
        ids: list[str] | None,
    ) -> tuple[list[tuple[str, dict[str, Any], str]], list[str]]:
        """``(text, metadata, id)`` of each text, checked; and the ids to return."""
        texts = list(texts)
        metadatas = metadatas if metadatas is not None else [{} for _ in texts]
        given: Sequence[str | None] = ids if ids is not None else [None] * len(texts)
        if not len(texts) == len(metadatas) == len(given):
            raise ValueError(
                f"add_texts got {len(texts)} texts, {len(metadatas)} metadatas and "
                f"{len(given)} ids; give one of each per text"
            )
        rows = []
        for text, metadata, external in zip(texts, metadatas, given, strict=True):
            clash = RESERVED_KEYS.intersection(metadata or {})
            if clash:
                raise ValueError(
                    f"metadata keys {sorted(clash)} are reserved by tribrid (it stores "
                    "the text and its keys under them); rename them"
                )
            rows.append((text, dict(metadata or {}), external or content_hash(text)))
        return rows, [external for _, _, external in rows]

    def _points(self, rows: Sequence[tuple[str, dict[str, Any], str]]) -> list[Point]:
        """Encode rows of :meth:`_rows` into points."""
        encoded = self.encoders.encode_documents([text for text, _, _ in rows])
        return [
            Point(
                id=self._point_id(external),
                dense=encoded.dense[row].tolist(),
                splade=encoded.splade[row],
                bm25=encoded.bm25[row],
                payload=chunk_payload(
                    text=text,
                    source_key=self.source_key,
                    document_key=external,
                    chunk_index=0,
                    digest=content_hash(text),
                    metadata=metadata,
                    langchain_id=external,
                ),
            )
            for row, (text, metadata, external) in enumerate(rows)
        ]

    def _own(self, filter: StoreFilter | None) -> Any:
        """``filter`` narrowed to the texts added through LangChain to this collection."""
        mine = {"key": SOURCE_KEY, "match": {"value": self.source_key}}
        checked = validate_filter(filter)
        if checked is None:
            return {"must": [mine]}
        if is_edge_filter(checked):
            raise ValueError(
                "delete(filter=...) cannot narrow a qdrant_edge.Filter to this collection's "
                "texts; give the filter in the simple form ({'key': value}) or as a "
                "qdrant_client.models.Filter"
            )
        # The simple form and raw filters alike become one qdrant_client filter, nested.
        return {"must": [mine, filter_to_json(client_filter(checked))]}

    def _chunk_document(self, chunk: RetrievedChunk) -> Document:
        return self._document(chunk.id, chunk.payload)

    def _document(self, point: str, payload: Mapping[str, Any]) -> Document:
        """A document with the metadata as added: tribrid's own keys left out."""
        if LANGCHAIN_ID_KEY in payload:
            metadata = {k: v for k, v in payload.items() if k not in RESERVED_KEYS}
            doc_id = str(payload[LANGCHAIN_ID_KEY])
        else:  # a chunk from `tribrid ingest`: its payload but the bookkeeping keys
            hidden = {TEXT_KEY} if self.internal_metadata else INTERNAL_KEYS
            metadata = {k: v for k, v in payload.items() if k not in hidden}
            doc_id = point
        return Document(page_content=str(payload.get(TEXT_KEY, "")), id=doc_id, metadata=metadata)


def _with_relevance(
    chunks: Sequence[RetrievedChunk], document: Callable[[str, Mapping[str, Any]], Document]
) -> list[tuple[Document, float]]:
    out = []
    for chunk in chunks:
        if chunk.relevance is None:
            raise ValueError(
                "relevance needs each channel's score, which store_fusion=True over several "
                "channels does not return; leave store_fusion off for relevance scores"
            )
        out.append((document(chunk.id, chunk.payload), chunk.relevance))
    return out


__all__ = ["RESERVED_KEYS", "TribridVectorStore"]

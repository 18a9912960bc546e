"""The retriever's async path, raw Qdrant filters, and concurrent queries, with the real models.

There is no Qdrant server here, so ``AsyncQdrantClient`` is exercised in qdrant-client's
local mode. Its in-memory database is a different one from the sync client's, so the
test copies the collection into it through the public API; then both clients hold the
same points and the async path can be compared with the sync one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from langchain_core.documents import Document
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from tests.support.retrievers import corpus_points
from tribrid.encoders import EncoderSet
from tribrid.factory import collection_schema
from tribrid.retrievers import HybridRetriever, TribridVectorStore
from tribrid.settings import Settings
from tribrid.store import QdrantServerStore
from tribrid.store.base import VectorStore

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py

QUERIES = [
    ("ZX-9000 gasket", {}),
    ("tomato sauce basil", {"k": 3, "fusion": "dbsf"}),
    ("binary quantization bits", {"k": 2, "channels": ["dense", "bm25"]}),
    ("pump valves", {"filter": {"path": "pump.pdf"}, "fusion": "convex"}),
    ("rank fusion", {"store_fusion": True, "k": 4}),
]


def ids(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


@pytest.fixture(scope="module")
def sync_client(encoders: EncoderSet) -> Iterator[QdrantClient]:
    client = QdrantClient(location=":memory:")
    store = QdrantServerStore(collection_schema(Settings(), encoders), client=client)
    store.upsert(corpus_points(encoders))
    yield client
    client.close()


@pytest_asyncio.fixture
async def async_store(
    sync_client: QdrantClient, encoders: EncoderSet
) -> AsyncIterator[QdrantServerStore]:
    """A server store whose async calls go through a real ``AsyncQdrantClient``."""
    schema = collection_schema(Settings(), encoders)
    aclient = AsyncQdrantClient(location=":memory:")
    info = sync_client.get_collection(schema.name)
    await aclient.create_collection(
        schema.name,
        vectors_config=info.config.params.vectors,
        sparse_vectors_config=info.config.params.sparse_vectors,
        metadata=info.config.metadata,
    )
    records, _ = sync_client.scroll(schema.name, limit=1000, with_vectors=True)
    await aclient.upsert(
        schema.name,
        [models.PointStruct(id=r.id, vector=r.vector or {}, payload=r.payload) for r in records],
    )
    store = QdrantServerStore(schema, client=sync_client, async_client=aclient)
    yield store
    store.close()
    await aclient.close()


def spy_on(aclient: AsyncQdrantClient, calls: list[str]) -> None:
    for name in ("query_points", "query_batch_points", "retrieve"):
        method = getattr(aclient, name)

        async def call(*args: Any, _method: Any = method, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return await _method(*args, **kw)

        setattr(aclient, name, call)


@pytest.mark.asyncio
async def test_async_client_path_equals_the_sync_path(
    async_store: QdrantServerStore, encoders: EncoderSet
) -> None:
    calls: list[str] = []
    assert async_store._aclient is not None
    spy_on(async_store._aclient, calls)
    r = HybridRetriever(store=async_store, encoders=encoders, k=5)
    for text, options in QUERIES:
        expected = r.invoke(text, **options)
        got = await r.ainvoke(text, **options)
        assert ids(got) == ids(expected), (text, options)
        for a, b in zip(got, expected, strict=True):
            assert a.metadata.get("channel_ranks") == b.metadata.get("channel_ranks")
            assert a.metadata["score"] == pytest.approx(b.metadata["score"], rel=1e-5)
            assert a.page_content == b.page_content
    # Every search and fetch went through the async client: none fell back to a thread.
    assert calls.count("query_batch_points") == 4
    assert calls.count("query_points") == 1  # the store_fusion query
    assert calls.count("retrieve") == 4


@pytest.mark.asyncio
async def test_concurrent_ainvokes_each_get_their_own_results(
    async_store: QdrantServerStore, corpus_stores: dict[str, VectorStore], encoders: EncoderSet
) -> None:
    # Edge (its worker thread) and the AsyncQdrantClient path; the in-memory store's
    # thread fallback is covered by test_hybrid's abatch.
    for store in (corpus_stores["edge"], async_store):
        r = HybridRetriever(store=store, encoders=encoders, k=5)
        expected = [ids(r.invoke(text, **options)) for text, options in QUERIES[:3]]
        got = await asyncio.gather(*(r.ainvoke(text, **options) for text, options in QUERIES[:3]))
        assert [ids(d) for d in got] == expected
        assert len(set(map(tuple, expected))) == 3  # different queries, different answers
        texts = [q for q, _ in QUERIES[:3]]
        batched = await r.abatch(texts, k=2)
        assert [ids(d) for d in batched] == [ids(d) for d in r.batch(texts, k=2)]


@pytest.mark.asyncio
async def test_vector_store_async_search(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    vs = TribridVectorStore(corpus_store, encoders)
    scored = await vs.asimilarity_search_with_score("ZX-9000 gasket", k=2, fusion="dbsf")
    expected = vs.similarity_search_with_score("ZX-9000 gasket", k=2, fusion="dbsf")
    assert [d for d, _ in scored] == [d for d, _ in expected]
    # Encoding in a worker thread may round the last float bits differently.
    assert [s for _, s in scored] == pytest.approx([s for _, s in expected], rel=1e-5)
    assert await vs.asimilarity_search("tomato", k=1) == vs.similarity_search("tomato", k=1)


def test_raw_filters_equal_the_simple_form(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    # Every chunk (no per-document cap): the filter is what is compared.
    r = HybridRetriever(store=corpus_store, encoders=encoders, k=10, chunks_per_document=None)
    simple = r.invoke("pump tomato fusion", filter={"path": "pump.pdf"})
    assert len(simple) == 3
    condition = models.FieldCondition(key="path", match=models.MatchValue(value="pump.pdf"))
    for raw in (
        {"must": [condition.model_dump(exclude_none=True)]},
        models.Filter(must=[condition]),
    ):
        assert ids(r.invoke("pump tomato fusion", filter=raw)) == ids(simple)
    with_not = {"must_not": [{"key": "path", "match": {"any": ["pump.pdf", "fusion.md"]}}]}
    docs = r.invoke("pump tomato fusion", filter=with_not)
    assert docs and not {d.metadata["path"] for d in docs} & {"pump.pdf", "fusion.md"}

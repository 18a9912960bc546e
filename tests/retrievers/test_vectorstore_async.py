"""The vector store's async methods and its MMR, with the fake encoders (fast).

These are about threads and calls, not about retrieval quality (test_vectorstore.py and
test_relevance.py use the real models): every ``a*`` method runs its encoders off the
event loop's thread, the embedded store's writes run on the one thread its async reads
use, and MMR never encodes a candidate.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document

from tests.fakes import HashingDenseEncoder, fake_encoders
from tests.support.retrievers import BACKENDS, open_backend
from tribrid.encoders import EncoderSet
from tribrid.encoders.base import DenseMatrix
from tribrid.retrievers import TribridVectorStore
from tribrid.store import EdgeStore


class CountingDense(HashingDenseEncoder):
    """The hashing encoder, counting its calls and the threads they run on."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0
        self.documents = 0
        self.threads: set[str] = set()

    def encode_documents(self, texts: Any) -> DenseMatrix:
        self.documents += len(texts)
        self.threads.add(threading.current_thread().name)
        return super().encode_documents(texts)

    def encode_query(self, text: str) -> DenseMatrix:
        self.queries += 1
        self.threads.add(threading.current_thread().name)
        # The parent's encode_query calls encode_documents: bypass the count there.
        return HashingDenseEncoder.encode_documents(self, [text])[0]


TEXTS = [
    "The pump needs a new gasket.",
    "The pump needs a new gasket soon.",
    "Gaskets on pumps wear out after 500 hours.",
    "Tomato sauce with basil.",
    "Binary quantization keeps one bit per dimension.",
]


@pytest.fixture(params=BACKENDS)
def counted(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TribridVectorStore, CountingDense]]:
    dense = CountingDense()
    base = fake_encoders()
    encoders = EncoderSet(dense=dense, splade=base.splade, bm25=base.bm25)
    store = open_backend(request.param, encoders, tmp_path / "store")
    yield TribridVectorStore(store, encoders), dense
    store.close()


def test_mmr_encodes_the_query_only(counted: tuple[TribridVectorStore, CountingDense]) -> None:
    vs, dense = counted
    vs.add_texts(TEXTS, [{"n": i} for i in range(len(TEXTS))])
    dense.documents = dense.queries = 0
    docs = vs.max_marginal_relevance_search("pump gasket", k=3, fetch_k=5)
    assert len(docs) == 3 and dense.queries == 1 and dense.documents == 0
    by_vector = vs.max_marginal_relevance_search_by_vector(
        vs.embeddings.embed_query("pump gasket"), k=3, fetch_k=5
    )
    assert by_vector == docs
    assert dense.documents == 0
    filtered = vs.max_marginal_relevance_search("pump", k=5, filter={"n": [0, 3]})
    assert sorted(d.metadata["n"] for d in filtered) == [0, 3]


def test_mmr_picks_from_the_stored_vectors(
    counted: tuple[TribridVectorStore, CountingDense],
) -> None:
    """With lambda 0 MMR maximises diversity only: after the best candidate it takes the
    one farthest from it, which needs the candidates' real vectors."""
    vs, _ = counted
    vs.add_texts(TEXTS)
    query = vs.embeddings.embed_query(TEXTS[0])
    best, second = vs.max_marginal_relevance_search_by_vector(
        query, k=2, fetch_k=5, lambda_mult=0.0
    )
    assert best.page_content == TEXTS[0]
    vectors = vs.embeddings.embed_documents(TEXTS)
    similarity = [sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors]
    assert second.page_content == TEXTS[min(range(1, 5), key=lambda i: similarity[i])]


@pytest.mark.asyncio
async def test_every_async_method_leaves_the_event_loop_free(
    counted: tuple[TribridVectorStore, CountingDense],
) -> None:
    vs, dense = counted
    loop_thread = threading.current_thread().name
    ids = await vs.aadd_texts(TEXTS[:3], [{"n": 0}, {"n": 1}, {"n": 2}], ids=["a", "b", "c"])
    assert ids == ["a", "b", "c"]
    await vs.aadd_documents([Document(page_content=TEXTS[3], id="d", metadata={"n": 3})])
    assert sorted(d.id or "" for d in await vs.aget_by_ids(["a", "d", "zz"])) == ["a", "d"]
    found = await vs.asimilarity_search("pump gasket", k=2)
    assert found == vs.similarity_search("pump gasket", k=2)
    relevance = await vs.asimilarity_search_with_relevance_scores("pump gasket", k=2)
    assert [d for d, _ in relevance] == found
    by_vector = await vs.asimilarity_search_by_vector(vs.embeddings.embed_query("basil"), k=1)
    assert by_vector == vs.similarity_search_by_vector(vs.embeddings.embed_query("basil"), k=1)
    mmr = await vs.amax_marginal_relevance_search("pump gasket", k=2, fetch_k=4)
    assert mmr == vs.max_marginal_relevance_search("pump gasket", k=2, fetch_k=4)
    assert await vs.adelete(["a"])
    assert await vs.adelete(filter={"n": 1})
    assert sorted(d.id or "" for d in vs.get_by_ids(["a", "b", "c", "d"])) == ["c", "d"]
    # The encoders never ran on the event loop's thread (the sync calls above aside,
    # which ran on it: they are not counted).
    dense.threads.clear()
    await vs.aadd_texts(["one more"])
    await vs.asimilarity_search("more", k=1)
    await vs.amax_marginal_relevance_search("more", k=1)
    assert dense.threads and loop_thread not in dense.threads


@pytest.mark.asyncio
async def test_embedded_writes_go_through_the_reads_thread(tmp_path: Path) -> None:
    encoders = fake_encoders()
    store = open_backend("edge", encoders, tmp_path / "store")
    assert isinstance(store, EdgeStore)
    seen: dict[str, set[str]] = {}
    for name in ("upsert", "delete", "delete_by_filter", "query", "retrieve"):
        original = getattr(store, name)

        def spy(*args: Any, _original: Any = original, _name: str = name) -> Any:
            seen.setdefault(_name, set()).add(threading.current_thread().name)
            return _original(*args)

        setattr(store, name, spy)
    try:
        vs = TribridVectorStore(store, encoders)
        await vs.aadd_texts(["alpha", "beta"], ids=["a", "b"])
        await vs.aget_by_ids(["a"])
        await vs.amax_marginal_relevance_search("alpha", k=1)
        await vs.adelete(["a"])
        await vs.adelete(filter={"missing": "x"})
        await asyncio.gather(vs.aadd_texts(["gamma"]), vs.aget_by_ids(["b"]))
    finally:
        store.close()
    threads = set().union(*seen.values())
    assert set(seen) == {"upsert", "delete", "delete_by_filter", "query", "retrieve"}
    assert len(threads) == 1 and next(iter(threads)).startswith("tribrid-edge")

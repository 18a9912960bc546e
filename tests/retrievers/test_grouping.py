"""Grouping (at most N chunks per document), the path filter, and the metadata documents
carry, on both backends with the real models."""

from __future__ import annotations

from collections import Counter

import pytest

from tribrid.encoders import EncoderSet
from tribrid.retrievers import TribridRetriever, TribridVectorStore
from tribrid.store.base import VectorStore
from tribrid.store.points import INTERNAL_KEYS

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py

QUERY = "pump gasket valves warranty fusion"


def test_at_most_n_chunks_per_document_best_first(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    r = TribridRetriever(store=corpus_store, encoders=encoders, k=4)
    plain = r.invoke(QUERY, k=10, chunks_per_document=None)  # every chunk, as before
    assert Counter(d.metadata["path"] for d in plain)["pump.pdf"] == 3
    # The default is one chunk per document (benchmarks/results/suite.md).
    assert r.chunks_per_document == 1
    assert [d.id for d in r.invoke(QUERY)] == [d.id for d in r.invoke(QUERY, chunks_per_document=1)]
    for n in (1, 2):
        grouped = r.invoke(QUERY, chunks_per_document=n)
        counts = Counter(d.metadata["path"] for d in grouped)
        assert len(grouped) == 4 and max(counts.values()) == n
        # The best chunks of each document, in the fused order, per-channel scores kept.
        expected = []
        seen: Counter[str] = Counter()
        for d in plain:
            if seen[d.metadata["path"]] < n:
                seen[d.metadata["path"]] += 1
                expected.append(d.id)
        assert [d.id for d in grouped] == expected[:4]
        assert all(d.metadata["channel_ranks"] for d in grouped)


@pytest.mark.asyncio
async def test_grouping_async_and_with_store_fusion(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    r = TribridRetriever(store=corpus_store, encoders=encoders, k=3, chunks_per_document=1)
    sync = [d.id for d in r.invoke(QUERY)]
    assert [d.id for d in await r.ainvoke(QUERY)] == sync
    fused = r.invoke(QUERY, store_fusion=True, fusion="rrf")
    assert len(fused) == 3
    assert len({d.metadata["path"] for d in fused}) == 3


def test_a_path_filter_returns_exactly_that_documents_chunks(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    r = TribridRetriever(store=corpus_store, encoders=encoders, k=10, chunks_per_document=None)
    for path, count in (("pump.pdf", 3), ("fusion.md", 2), ("quant.md", 1)):
        docs = r.invoke("tomato fusion pump quantization", filter={"path": path})
        assert len(docs) == count and {d.metadata["path"] for d in docs} == {path}
        assert sorted(d.metadata["chunk_index"] for d in docs) == list(range(count))


def test_documents_carry_source_and_no_bookkeeping_keys(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    r = TribridRetriever(store=corpus_store, encoders=encoders, k=3)
    for doc in r.invoke("pump"):
        assert doc.metadata["source"] == doc.metadata["path"]
        assert not INTERNAL_KEYS & set(doc.metadata)
    (full,) = r.invoke("pump", k=1, internal_metadata=True)
    assert {"source_key", "document_key", "content_hash"} <= set(full.metadata)
    vs = TribridVectorStore(corpus_store, encoders)
    doc = vs.similarity_search("pump", k=1)[0]
    assert doc.metadata["source"] == "pump.pdf" and not INTERNAL_KEYS & set(doc.metadata)
    kept = TribridVectorStore(corpus_store, encoders, internal_metadata=True)
    assert "document_key" in kept.similarity_search("pump", k=1)[0].metadata

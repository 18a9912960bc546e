"""Relevance: the same documents as ``similarity_search``, scores that mean the same for
every query, sync and async, with the real models."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from tribrid.encoders import EncoderSet
from tribrid.retrievers import TribridRetriever, TribridVectorStore
from tribrid.retrievers.relevance import RELEVANCE_THRESHOLD
from tribrid.store.base import VectorStore

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py

ON_TOPIC = [
    "How often does the pump need a new gasket?",
    "tomato sauce with basil",
    "how many bits does binary quantization keep",
    "reciprocal rank fusion formula",
    "what is SPLADE",
    "watering tomato plants",
]
OFF_TOPIC = [
    "recipe for chocolate cake",
    "who won the football world cup",
    "cheap flights to paris",
    "how to learn the violin",
    "car insurance quote",
    "the history of the roman empire",
]


def ids(docs: list[Document]) -> list[str | None]:
    return [d.id for d in docs]


@pytest.mark.parametrize("options", [{}, {"fusion": "rrf"}, {"fusion": "convex", "k": 6}])
def test_relevance_ranks_as_similarity_search(
    corpus_store: VectorStore, encoders: EncoderSet, options: dict[str, object]
) -> None:
    vs = TribridVectorStore(corpus_store, encoders)
    for query in ON_TOPIC + OFF_TOPIC:
        plain = vs.similarity_search(query, **options)  # type: ignore[arg-type]
        scored = vs.similarity_search_with_relevance_scores(query, **options)  # type: ignore[arg-type]
        assert [d for d, _ in scored] == plain
        assert all(0.0 <= s <= 1.0 for _, s in scored)


@pytest.mark.asyncio
async def test_async_relevance_equals_the_sync_one(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    vs = TribridVectorStore(corpus_store, encoders)
    for query in ON_TOPIC[:3] + OFF_TOPIC[:2]:
        expected = vs.similarity_search_with_relevance_scores(query, k=3)
        got = await vs.asimilarity_search_with_relevance_scores(query, k=3)
        assert [d for d, _ in got] == [d for d, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_off_topic_queries_fall_below_the_threshold(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    vs = TribridVectorStore(corpus_store, encoders)
    for query in ON_TOPIC:
        best = vs.similarity_search_with_relevance_scores(query, k=1)[0][1]
        assert best >= RELEVANCE_THRESHOLD, (query, best)
    for query in OFF_TOPIC:
        scores = [s for _, s in vs.similarity_search_with_relevance_scores(query, k=4)]
        assert max(scores) < RELEVANCE_THRESHOLD, (query, scores)
    # LangChain's own threshold argument, and the threshold retriever, drop them all.
    assert (
        vs.similarity_search_with_relevance_scores(
            OFF_TOPIC[0], k=4, score_threshold=RELEVANCE_THRESHOLD
        )
        == []
    )
    kept = vs.similarity_search_with_relevance_scores(
        ON_TOPIC[0], k=4, score_threshold=RELEVANCE_THRESHOLD
    )
    assert kept and kept[0][0].metadata["path"] == "pump.pdf"


@pytest.mark.asyncio
async def test_threshold_retriever_works_in_async_chains(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    vs = TribridVectorStore(corpus_store, encoders)
    retriever = vs.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"score_threshold": RELEVANCE_THRESHOLD, "k": 4},
    )
    assert isinstance(retriever, TribridRetriever)
    assert retriever.fusion == "dbsf"  # the fusion stays; the threshold is on relevance
    assert await retriever.ainvoke(OFF_TOPIC[0]) == []
    docs = await retriever.ainvoke(ON_TOPIC[0])
    assert docs and docs[0].metadata["path"] == "pump.pdf"
    assert all(d.metadata["relevance"] >= RELEVANCE_THRESHOLD for d in docs)
    assert ids(docs) == ids(retriever.invoke(ON_TOPIC[0]))


def test_relevance_does_not_depend_on_the_other_candidates(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    """A document's relevance is its own: the same with k=1 as with k=10, whatever the
    fusion (min-max scores the best of any query high)."""
    r = TribridRetriever(store=corpus_store, encoders=encoders)
    query = ON_TOPIC[1]
    by_id = {d.id: d.metadata["relevance"] for d in r.invoke(query, k=10)}
    for fusion in ("rrf", "dbsf", "convex"):
        top = r.invoke(query, k=1, fusion=fusion)[0]
        assert top.metadata["relevance"] == pytest.approx(by_id[top.id])
    alone = r.invoke(OFF_TOPIC[0], k=1, fusion="convex")[0]
    assert alone.metadata["score"] >= RELEVANCE_THRESHOLD  # min-max: "best" of nothing
    assert alone.metadata["relevance"] < RELEVANCE_THRESHOLD


def test_relevance_threshold_with_store_fusion(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    r = TribridRetriever(store=corpus_store, encoders=encoders, store_fusion=True)
    lone = r.invoke(ON_TOPIC[0], channels=["dense"], relevance_threshold=0.5, k=3)
    assert lone and all(d.metadata["relevance"] >= 0.5 for d in lone)
    assert r.invoke(OFF_TOPIC[0], channels=["dense"], relevance_threshold=0.5) == []
    with pytest.raises(ValueError, match="relevance_threshold cannot be used with store_fusion"):
        r.invoke(ON_TOPIC[0], relevance_threshold=0.5)

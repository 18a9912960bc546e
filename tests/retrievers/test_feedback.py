"""Pseudo-relevance feedback and per-query weights: the pure functions, then the retriever."""

from __future__ import annotations

import math

import pytest

from tribrid.encoders import EncoderSet, SparseVector
from tribrid.retrievers import HybridRetriever
from tribrid.retrievers.feedback import Feedback, expand_bm25, feedback_chunks, rocchio
from tribrid.retrievers.fusion import Weighting, query_weights
from tribrid.store.base import Channel, VectorStore


def test_expand_bm25_adds_the_strongest_words_with_weights_up_to_beta() -> None:
    query = SparseVector.from_pairs({1: 1.0})
    docs = [
        SparseVector.from_pairs({1: 1.0, 2: 3.0}),  # P(t|d): 1 -> .25, 2 -> .75
        SparseVector.from_pairs({2: 1.0, 3: 1.0}),  # 2 -> .5, 3 -> .5
    ]
    out = dict(
        zip(
            expand_bm25(query, docs, beta=0.5, terms=2).indices,
            expand_bm25(query, docs, beta=0.5, terms=2).values,
            strict=True,
        )
    )
    # word 2 weighs 1.25 (the strongest: beta), word 3 0.5 (0.5 / 1.25 · beta); word 1
    # (0.25) is not among the two strongest, so keeps its query weight.
    assert out == pytest.approx({1: 1.0, 2: 0.5, 3: 0.2})


def test_expand_bm25_without_documents_is_the_query() -> None:
    query = SparseVector.from_pairs({4: 1.0, 9: 1.0})
    assert expand_bm25(query, [], beta=1.0, terms=5) == query


def test_rocchio_moves_the_query_and_keeps_it_unit_length() -> None:
    moved = rocchio([1.0, 0.0], [[0.0, 1.0], [0.0, 1.0]], beta=1.0)
    assert moved == pytest.approx([math.sqrt(0.5), math.sqrt(0.5)])
    assert rocchio([0.6, 0.8], [], beta=1.0) == pytest.approx([0.6, 0.8])


def test_feedback_chunks_takes_the_best_chunk_of_each_top_document() -> None:
    fused = [("a1", 0.9), ("a2", 0.8), ("b1", 0.7), ("x", 0.6), ("c1", 0.5)]
    documents = {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}
    assert feedback_chunks(fused, documents, 2) == ["a1", "b1"]
    # a chunk without a known document is a document of its own
    assert feedback_chunks(fused, documents, 3) == ["a1", "b1", "x"]


def test_feedback_changes_only_the_channels_it_names() -> None:
    assert Feedback(bm25=0.5).channels() == {Channel.BM25}
    assert Feedback(dense=0.5).channels() == {Channel.DENSE, Channel.BINARY}
    assert Feedback().channels() == set()
    with pytest.raises(ValueError):
        Feedback(documents=0)


def test_spread_weights_favour_the_channel_whose_best_hit_stands_out() -> None:
    flat = [("a", 0.50), ("b", 0.49), ("c", 0.48), ("d", 0.47)]
    peaked = [("a", 9.0), ("b", 1.0), ("c", 0.9), ("d", 0.8)]
    weights = query_weights({"dense": flat, "bm25": peaked}, {"dense": 1.0, "bm25": 1.0}, "spread")
    assert weights["bm25"] > weights["dense"] > 0
    assert sum(weights.values()) == pytest.approx(2.0)  # the configured sum is kept
    fixed = query_weights({"dense": flat, "bm25": peaked}, {"dense": 1.0, "bm25": 2.0})
    assert fixed == {"dense": 1.0, "bm25": 2.0}


def test_spread_weights_keep_zero_weights_and_short_lists() -> None:
    lists = {"dense": [("a", 1.0)], "bm25": [("a", 3.0), ("b", 1.0), ("c", 0.5)], "splade": []}
    weights = query_weights(lists, {"dense": 1.0, "bm25": 1.0, "splade": 0.0}, Weighting.SPREAD)
    assert weights["splade"] == 0.0
    # dense (one hit) gets the mean spread of the others, i.e. bm25's: equal weights
    assert weights["dense"] == pytest.approx(weights["bm25"])
    with pytest.raises(ValueError, match="unknown weighting"):
        query_weights(lists, None, "peaky")


@pytest.mark.slow
def test_retriever_feedback_round_changes_the_bm25_query(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    plain = HybridRetriever(
        store=corpus_store, encoders=encoders, k=5, feedback=None, weighting="fixed"
    )
    # One feedback document: the gasket chunk, whose own words expand the BM25 query.
    fed = plain.with_options(feedback=Feedback(documents=1, bm25=1.0, dense=0.5, terms=5))
    before = plain.invoke("pump gasket")[0]
    after = fed.invoke("pump gasket")[0]
    assert before.id == after.id and after.metadata["path"] == "pump.pdf"
    # the second round searched BM25 with the query's words plus the chunk's strongest
    # ones, all of which the chunk has: its BM25 score grows; dense moved toward it too
    first, second = before.metadata["channel_scores"], after.metadata["channel_scores"]
    assert second["bm25"] > first["bm25"]
    assert second["dense"] > first["dense"]
    assert second["splade"] == pytest.approx(first["splade"])  # not fed back


@pytest.mark.slow
def test_retriever_feedback_is_refused_with_store_fusion(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    with pytest.raises(ValueError, match="store_fusion"):
        HybridRetriever(
            store=corpus_store, encoders=encoders, store_fusion=True, feedback=Feedback(bm25=1.0)
        )
    with pytest.raises(ValueError, match="store_fusion"):
        HybridRetriever(
            store=corpus_store,
            encoders=encoders,
            store_fusion=True,
            weighting="spread",
            feedback=None,
        )

"""HybridRetriever on both backends, with the real models."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from langchain_core.documents import Document

from tribrid.encoders import EncoderSet
from tribrid.retrievers import HybridRetriever
from tribrid.store.base import VectorStore

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py


def retriever(store: VectorStore, encoders: EncoderSet, **options: object) -> HybridRetriever:
    return HybridRetriever(store=store, encoders=encoders, **options)  # type: ignore[arg-type]


def test_documents_carry_text_ids_payload_and_scores(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    docs = retriever(corpus_store, encoders, k=3).invoke("ZX-9000 gasket")
    assert len(docs) == 3
    top = docs[0]
    assert top.page_content.startswith("The ZX-9000 pump needs a new gasket")
    assert top.id is not None and len(top.id) == 36
    assert top.metadata["path"] == "pump.pdf"
    assert top.metadata["page"] == 1
    assert top.metadata["chunk_index"] == 0
    assert "text" not in top.metadata
    assert top.metadata["channel_ranks"] == {"dense": 1, "splade": 1, "bm25": 1}
    assert set(top.metadata["channel_scores"]) == {"dense", "splade", "bm25"}
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_rrf_score_is_the_formula_over_channel_ranks(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    weights = {"dense": 1.0, "splade": 0.5, "bm25": 2.0}
    docs = retriever(corpus_store, encoders, fusion="rrf", channels=weights, rrf_k=10, k=10).invoke(
        "pump valves"
    )
    assert docs
    for doc in docs:
        ranks = doc.metadata["channel_ranks"]
        expected = sum(weights[c] / (10 + r) for c, r in ranks.items())
        assert doc.metadata["score"] == pytest.approx(expected)


def test_zero_weight_channel_is_not_searched(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    docs = retriever(corpus_store, encoders, channels={"dense": 0, "bm25": 1}).invoke("tomato")
    assert {d.metadata["path"] for d in docs} == {"cooking.txt", "garden.txt"}
    assert all(set(d.metadata["channel_ranks"]) == {"bm25"} for d in docs)


@pytest.mark.parametrize("channel", ["dense", "binary", "splade", "bm25"])
def test_each_channel_alone(corpus_store: VectorStore, encoders: EncoderSet, channel: str) -> None:
    docs = retriever(corpus_store, encoders, channels=[channel], k=2).invoke(
        "gasket of the ZX-9000 pump"
    )
    assert docs[0].metadata["path"] == "pump.pdf"
    assert docs[0].metadata["channel_ranks"] == {channel: 1}


def test_convex_minmax_scores_lie_in_unit_interval(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    docs = retriever(corpus_store, encoders, fusion="convex", k=10).invoke("sparse term weights")
    assert docs[0].metadata["path"] == "splade.md"
    assert all(0.0 <= d.metadata["score"] <= 1.0 for d in docs)
    zdocs = retriever(corpus_store, encoders, fusion="convex", normalization="zscore").invoke(
        "sparse term weights"
    )
    assert zdocs[0].metadata["path"] == "splade.md"


def test_dbsf_and_score_threshold(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    r = retriever(corpus_store, encoders, fusion="dbsf", k=10)
    docs = r.invoke("tomato sauce basil")
    assert docs[0].metadata["path"] == "cooking.txt"
    cut = docs[2].metadata["score"]
    kept = r.invoke("tomato sauce basil", score_threshold=cut)
    assert [d.id for d in kept] == [d.id for d in docs[:3]]


def test_score_threshold_with_rrf_is_refused(
    corpus_store: VectorStore, encoders: EncoderSet
) -> None:
    with pytest.raises(ValueError, match="no absolute meaning"):
        retriever(corpus_store, encoders, fusion="rrf", score_threshold=0.5)
    with pytest.raises(ValueError, match="no absolute meaning"):
        retriever(corpus_store, encoders, fusion="rrf").invoke("x", score_threshold=0.5)


def test_store_fusion_matches_client_rrf(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    client = retriever(corpus_store, encoders, k=5, fusion="rrf").invoke("rank fusion")
    store = retriever(corpus_store, encoders, k=5, fusion="rrf", store_fusion=True).invoke(
        "rank fusion"
    )
    assert [d.id for d in store] == [d.id for d in client]
    assert [d.metadata["score"] for d in store] == pytest.approx(
        [d.metadata["score"] for d in client], rel=1e-5
    )
    assert "channel_ranks" not in store[0].metadata


def test_store_fusion_dbsf_matches_client(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    client = retriever(corpus_store, encoders, k=5, fusion="dbsf").invoke("pump warranty")
    store = retriever(corpus_store, encoders, k=5, fusion="dbsf", store_fusion=True).invoke(
        "pump warranty"
    )
    assert [d.id for d in store] == [d.id for d in client]
    assert [d.metadata["score"] for d in store] == pytest.approx(
        [d.metadata["score"] for d in client], rel=1e-4
    )


@pytest.mark.parametrize(
    ("filter", "allowed"),
    [
        ({"path": "pump.pdf"}, {"pump.pdf"}),
        ({"filetype": ["txt", "pdf"]}, {"pump.pdf", "cooking.txt", "garden.txt"}),
        ({"page": {"gte": 2}}, {"pump.pdf"}),
    ],
)
def test_filters_apply_in_every_channel(
    corpus_store: VectorStore, encoders: EncoderSet, filter: dict[str, object], allowed: set[str]
) -> None:
    # Every chunk, not one per document: the pages of pump.pdf are what is checked.
    docs = retriever(corpus_store, encoders, filter=filter, chunks_per_document=None).invoke(
        "pump tomato fusion"
    )
    assert docs
    assert {d.metadata["path"] for d in docs} <= allowed
    if "page" in filter:
        assert sorted(d.metadata["page"] for d in docs) == [2, 3]


def test_both_backends_return_the_same(
    corpus_stores: dict[str, VectorStore], encoders: EncoderSet
) -> None:
    for options in ({}, {"fusion": "dbsf"}, {"fusion": "convex", "filter": {"filetype": "md"}}):
        edge, memory = (
            retriever(corpus_stores[b], encoders, k=4, **options).invoke("fusion of scores")
            for b in ("edge", "memory")
        )
        assert [d.id for d in edge] == [d.id for d in memory]


def test_invoke_overrides_and_validation(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    r = retriever(corpus_store, encoders, k=5)
    assert len(r.invoke("pump", k=2)) == 2
    # k chunks even with prefetch 1 (every chunk; the default caps one per document)
    assert (
        len(
            r.invoke(
                "pump",
                k=4,
                prefetch_k=1,
                channels=["dense"],
                fusion="dbsf",
                chunks_per_document=None,
            )
        )
        == 4
    )
    assert len(r.invoke("pump")) == 5
    with pytest.raises(ValueError, match="unknown retriever option"):
        r.invoke("pump", top_k=2)
    with pytest.raises(ValueError, match="valid channels"):
        retriever(corpus_store, encoders, channels=["dense", "colbert"])
    with pytest.raises(ValueError, match="no channel to search"):
        retriever(corpus_store, encoders, channels={"dense": 0})
    with pytest.raises(ValueError, match=r"filter must be a dict such as .*models\.Filter"):
        retriever(corpus_store, encoders, filter=object())
    with pytest.raises(ValueError, match="not a valid one: must"):
        retriever(corpus_store, encoders, filter={"must": [{"key": "path", "match": {}}]})
    with pytest.raises(ValueError, match="convex"):
        retriever(corpus_store, encoders, fusion="convex", store_fusion=True)
    with pytest.raises(ValueError, match="tribrid store"):
        retriever(object(), encoders)  # type: ignore[arg-type]


def test_batch_abatch_and_ainvoke(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    r = retriever(corpus_store, encoders, k=2)
    queries = ["ZX-9000 gasket", "tomato sauce", "binary quantization bits"]
    expected = [r.invoke(q) for q in queries]
    assert r.batch(queries) == expected

    async def run() -> tuple[list[list[Document]], list[Document]]:
        return await r.abatch(queries), await r.ainvoke(queries[0], k=1)

    batched, single = asyncio.run(run())
    assert batched == expected
    assert single == expected[0][:1]


def test_binary_tier_searches_dense_through_the_codes(encoders: EncoderSet, tmp_path: Path) -> None:
    from tests.support.retrievers import corpus_points
    from tribrid.factory import collection_schema
    from tribrid.settings import Settings
    from tribrid.store import EdgeStore

    schema = replace(collection_schema(Settings(), encoders), dense_on_disk=True)
    with EdgeStore(tmp_path / "tier", schema) as store:
        store.upsert(corpus_points(encoders))
        store.flush()
        docs = retriever(store, encoders, k=3).invoke("ZX-9000 gasket")
        assert docs[0].metadata["path"] == "pump.pdf"
        # Floats on disk: the dense channel ran as binary, rescored from the floats.
        assert set(docs[0].metadata["channel_scores"]) == {"binary", "splade", "bm25"}
        both = retriever(store, encoders, channels=["dense", "binary"], k=2).invoke("gasket")
        assert set(both[0].metadata["channel_ranks"]) == {"dense", "binary"}

"""TribridVectorStore on both backends, with the real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStoreRetriever

from tests.support.retrievers import BACKENDS, corpus_points, open_backend
from tribrid.encoders import EncoderSet
from tribrid.retrievers import EncoderEmbeddings, HybridRetriever, TribridVectorStore
from tribrid.store.points import content_hash

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py


@pytest.fixture(params=BACKENDS)
def vs(
    request: pytest.FixtureRequest, encoders: EncoderSet, tmp_path: Path
) -> Iterator[TribridVectorStore]:
    """An empty vector store on each backend."""
    store = open_backend(request.param, encoders, tmp_path / "store")
    yield TribridVectorStore(store, encoders)
    store.close()


def test_same_text_twice_is_one_point(vs: TribridVectorStore) -> None:
    ids = vs.add_texts(["alpha beta", "gamma"])
    again = vs.add_texts(["alpha beta"])
    assert ids[0] == again[0] == content_hash("alpha beta")
    assert vs.store.count() == 2


def test_given_ids_are_kept_and_replace_their_point(vs: TribridVectorStore) -> None:
    assert vs.add_texts(["first"], [{"n": 1}], ids=["doc-1"]) == ["doc-1"]
    vs.add_texts(["second version"], [{"n": 2}], ids=["doc-1"])
    assert vs.store.count() == 1
    assert vs.get_by_ids(["doc-1"]) == [
        Document(id="doc-1", page_content="second version", metadata={"n": 2})
    ]


def test_search_returns_metadata_as_added(vs: TribridVectorStore) -> None:
    vs.add_texts(
        ["The ZX-9000 pump needs a gasket.", "Tomato sauce with basil."],
        [{"kind": "manual", "page": 4}, {"kind": "recipe"}],
        ids=["pump", "sauce"],
    )
    docs = vs.similarity_search("ZX-9000 gasket", k=1)
    assert docs == [
        Document(
            id="pump",
            page_content="The ZX-9000 pump needs a gasket.",
            metadata={"kind": "manual", "page": 4},
        )
    ]
    scored = vs.similarity_search_with_score("tomato", k=2, fusion="convex")
    assert scored[0][0].id == "sauce" and scored[0][1] == pytest.approx(1.0)
    assert vs.similarity_search("tomato", k=2, filter={"kind": "manual"})[0].id == "pump"
    by_vector = vs.similarity_search_by_vector(vs.embeddings.embed_query("basil sauce"), k=1)
    assert by_vector[0].id == "sauce"
    relevance = vs.similarity_search_with_relevance_scores("basil sauce", k=2)
    assert relevance[0][0].id == "sauce" and 0 < relevance[1][1] < relevance[0][1] <= 1


def test_delete_and_get_by_ids(vs: TribridVectorStore) -> None:
    ids = vs.add_texts(["one", "two", "three"], ids=["1", "2", "3"])
    vs.delete(["1", "missing"])
    assert sorted(d.id or "" for d in vs.get_by_ids(ids)) == ["2", "3"]
    vs.delete()
    assert vs.store.count() == 0


def test_chunks_from_ingest_are_visible(vs: TribridVectorStore, encoders: EncoderSet) -> None:
    vs.store.upsert(corpus_points(encoders)[:4])
    doc = vs.similarity_search("ZX-9000 gasket", k=1)[0]
    assert doc.metadata["path"] == "pump.pdf" and doc.metadata["chunk_index"] == 0
    assert doc.id is not None
    assert vs.get_by_ids([doc.id]) == [doc]


def test_reserved_metadata_keys_are_refused(vs: TribridVectorStore) -> None:
    with pytest.raises(ValueError, match=r"\['text'\] are reserved"):
        vs.add_texts(["x"], [{"text": "y"}])
    with pytest.raises(ValueError, match="1 texts, 1 metadatas and 2 ids"):
        vs.add_texts(["x"], [{}], ids=["a", "b"])


def test_max_marginal_relevance_prefers_diverse_results(vs: TribridVectorStore) -> None:
    vs.add_texts(
        [
            "The pump needs a new gasket.",
            "The pump needs a new gasket soon.",
            "Gaskets on pumps wear out after 500 hours.",
            "Tomato sauce with basil.",
        ]
    )
    plain = vs.similarity_search_by_vector(vs.embeddings.embed_query("pump gasket"), k=2)
    mmr = vs.max_marginal_relevance_search("pump gasket", k=2, fetch_k=4, lambda_mult=0.3)
    assert len(mmr) == 2
    assert mmr[0] == plain[0]
    assert mmr[1].page_content != "The pump needs a new gasket soon."


def test_as_retriever(vs: TribridVectorStore) -> None:
    vs.add_texts(["alpha", "beta", "gamma"])
    hybrid = vs.as_retriever(search_kwargs={"k": 2, "fusion": "dbsf"}, tags=["t"])
    assert isinstance(hybrid, HybridRetriever)
    assert (hybrid.k, hybrid.fusion, hybrid.tags) == (2, "dbsf", ["t"])
    assert len(hybrid.invoke("alpha")) == 2
    threshold = vs.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.5}
    )
    # The threshold is on relevance (issue 14), no longer on min-max convex scores.
    assert isinstance(threshold, HybridRetriever) and threshold.fusion == "dbsf"
    assert threshold.relevance_threshold == 0.5 and threshold.score_threshold is None
    assert all(d.metadata["relevance"] >= 0.5 for d in threshold.invoke("alpha"))
    mmr = vs.as_retriever(search_type="mmr", search_kwargs={"k": 1})
    assert isinstance(mmr, VectorStoreRetriever)
    assert len(mmr.invoke("gamma")) == 1
    with pytest.raises(ValueError, match="valid types"):
        vs.as_retriever(search_type="nearest")
    with pytest.raises(ValueError, match="search_kwargs"):
        vs.as_retriever(k=3)


def test_embeddings_adapter(vs: TribridVectorStore) -> None:
    embeddings = vs.embeddings
    assert isinstance(embeddings, EncoderEmbeddings)
    assert len(embeddings.embed_query("hello")) == 384
    assert len(embeddings.embed_documents(["a", "b"])) == 2


def test_from_texts_and_from_documents(encoders: EncoderSet, tmp_path: Path) -> None:
    with TribridVectorStore.from_texts(
        ["alpha", "beta"], metadatas=[{"n": 1}, {"n": 2}], ids=["a", "b"], encoders=encoders
    ) as memory:
        assert memory.similarity_search("beta", k=1)[0] == Document(
            id="b", page_content="beta", metadata={"n": 2}
        )
    docs = [Document(page_content="gamma", id="g"), Document(page_content="delta")]
    with TribridVectorStore.from_documents(
        docs, path=tmp_path / "vs", collection="notes", encoders=encoders
    ) as edge:
        assert edge.source_key == "langchain:notes"
        assert sorted(d.id or "" for d in edge.get_by_ids(["g", content_hash("delta")])) == sorted(
            ["g", content_hash("delta")]
        )
    # Closed, so the folder can be opened again; the points persisted.
    with TribridVectorStore.open(
        path=tmp_path / "vs", collection="notes", encoders=encoders
    ) as again:
        assert again.store.count() == 2
    with pytest.raises(ValueError, match="either path"):
        TribridVectorStore.open(path=tmp_path, url=":memory:", encoders=encoders)


def test_delete_by_filter_touches_only_langchain_texts(
    vs: TribridVectorStore, encoders: EncoderSet
) -> None:
    vs.store.upsert(corpus_points(encoders)[:4])  # ingested chunks: fusion.md, quant.md, pump.pdf
    vs.add_texts(["pump a", "pump b", "sauce"], [{"topic": "pumps"}] * 2 + [{"topic": "food"}])
    vs.add_texts(["fusion note"], [{"path": "fusion.md"}], ids=["note"])
    vs.delete(filter={"topic": "pumps"})
    vs.delete(filter={"must": [{"key": "path", "match": {"value": "fusion.md"}}]})
    left = vs.similarity_search("pump fusion sauce", k=10)
    assert sorted(d.metadata.get("topic", d.metadata.get("path")) for d in left) == [
        "food",
        "fusion.md",
        "fusion.md",
        "pump.pdf",
        "quant.md",
    ]
    with pytest.raises(ValueError, match="ids or a filter, not both"):
        vs.delete(["x"], filter={"topic": "food"})

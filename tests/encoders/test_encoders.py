"""Real encoders: MiniLM (dense), splade-tiny (SPLADE) and BM25, all shipped offline."""

from __future__ import annotations

import numpy as np
import pytest

from tribrid.encoders import Bm25Encoder, EncoderSet, SentenceTransformerEncoder, SpladeEncoder
from tribrid.encoders.base import SparseVector
from tribrid.errors import EncoderError

PASSAGES = [
    "The cat sat on the warm windowsill and purred in the afternoon sun.",
    "Quarterly revenue grew by twelve percent, driven by cloud subscriptions.",
    "Photosynthesis converts light energy into chemical energy in plants.",
]


@pytest.fixture(scope="module")
def dense() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder()


@pytest.fixture(scope="module")
def splade() -> SpladeEncoder:
    return SpladeEncoder()


@pytest.mark.slow
def test_dense_vectors_are_normalised_and_semantic(dense: SentenceTransformerEncoder) -> None:
    vectors = dense.encode_documents(PASSAGES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    query = dense.encode_query("how do plants make energy from sunlight")
    assert query.shape == (384,)
    assert int(np.argmax(vectors @ query)) == 2
    assert dense.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert dense.dimension == 384


@pytest.mark.slow
def test_dense_batching_does_not_change_vectors(dense: SentenceTransformerEncoder) -> None:
    together = dense.encode_documents(PASSAGES)
    alone = np.stack([dense.encode_documents([p])[0] for p in PASSAGES])
    assert np.allclose(together, alone, atol=1e-5)


@pytest.mark.slow
def test_models_load_once_per_process() -> None:
    a, b = SentenceTransformerEncoder(), SentenceTransformerEncoder()
    a.warm_up()
    b.warm_up()
    assert a._model is b._model


@pytest.mark.slow
def test_splade_weights_expand_and_rank(splade: SpladeEncoder) -> None:
    docs = splade.encode_documents(PASSAGES)
    assert all(isinstance(v, SparseVector) and len(v) > 5 for v in docs)
    assert all(min(v.values) > 0 for v in docs)
    query = splade.encode_query("cat purring by the window")
    scores = [query.dot(d) for d in docs]
    assert int(np.argmax(scores)) == 0
    # The tokenizer is BERT's: the id of "cat" is 4937 and must carry weight in passage 0.
    assert 4937 in docs[0].indices
    assert splade.model_name == "splade-tiny"


@pytest.mark.slow
def test_splade_batch_rows_match_single_rows(splade: SpladeEncoder) -> None:
    together = splade.encode_documents(PASSAGES)
    for text, row in zip(PASSAGES, together, strict=True):
        alone = splade.encode_documents([text])[0]
        assert alone.indices == row.indices
        assert np.allclose(alone.values, row.values, atol=1e-4)


def test_bm25_is_identical_for_the_same_text_and_queries_are_binary() -> None:
    bm25 = Bm25Encoder()
    first = bm25.encode_documents(["Binary quantization keeps one bit per dimension."])[0]
    again = Bm25Encoder().encode_documents(["Binary quantization keeps one bit per dimension."])[0]
    assert first == again
    query = bm25.encode_query("binary quantization quantization")
    assert set(query.values) == {1.0} and len(query) == 2
    assert set(query.indices) <= set(first.indices)


def test_bm25_parameters_change_identity_and_weights() -> None:
    text = ["alpha alpha alpha beta"]
    a, b = Bm25Encoder(k=1.2), Bm25Encoder(k=2.0)
    assert a.model_name != b.model_name
    assert a.encode_documents(text)[0].values != b.encode_documents(text)[0].values
    with pytest.raises(ValueError, match="TRIBRID_BM25"):
        Bm25Encoder(b=2.0)


@pytest.mark.slow
def test_encoder_set_rows_align(dense: SentenceTransformerEncoder, splade: SpladeEncoder) -> None:
    encoders = EncoderSet(dense=dense, splade=splade, bm25=Bm25Encoder())
    batch = encoders.encode_documents(PASSAGES)
    assert len(batch.dense) == len(batch.splade) == len(batch.bm25) == 3
    query = encoders.encode_query("revenue growth")
    assert len(query.splade) > 0 and len(query.bm25) == 2


def test_unknown_model_says_what_to_set(tmp_path: object) -> None:
    encoder = SentenceTransformerEncoder("/nonexistent/model-folder-xyz")
    with pytest.raises(EncoderError, match="TRIBRID_MODELS__DENSE"):
        encoder.warm_up()


@pytest.mark.slow
def test_declared_dimension_matches_the_loaded_model() -> None:
    fresh = SentenceTransformerEncoder(max_seq_length=128)  # another cache key: not loaded yet
    declared = fresh.dimension
    assert fresh._model is None  # answered from the folder's JSON, without torch
    fresh.warm_up()
    assert declared == int(fresh._model.get_embedding_dimension()) == 384

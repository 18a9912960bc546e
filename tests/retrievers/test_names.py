"""The public names: ``TribridRetriever`` (``HybridRetriever`` kept), ``TribridReranker``."""

from __future__ import annotations

import pytest

import tribrid
import tribrid.retrievers as retrievers
from tribrid.retrievers import HybridRetriever, TribridReranker, TribridRetriever


def test_the_retriever_keeps_its_old_name_as_an_alias() -> None:
    assert HybridRetriever is TribridRetriever
    assert tribrid.TribridRetriever is tribrid.HybridRetriever is TribridRetriever


def test_the_reranker_does_not_shadow_langchains_name() -> None:
    assert "CrossEncoderReranker" not in retrievers.__all__
    assert TribridReranker.__name__ == "TribridReranker"
    with pytest.warns(DeprecationWarning, match="now TribridReranker"):
        old = retrievers.CrossEncoderReranker  # type: ignore[attr-defined]
    assert old is TribridReranker

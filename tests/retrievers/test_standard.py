"""LangChain's standard suites against HybridRetriever and TribridVectorStore.

Both run on the embedded store (Qdrant Edge in a temporary folder) and on
qdrant-client's ``:memory:`` engine.

The vector-store suite hands the store its own ``DeterministicFakeEmbedding`` and
expects it to be used: the store takes it as ``embedding=`` and uses it for the dense
channel only, while SPLADE and BM25 stay tribrid's real models, so searches are still
hybrid. A second pair of classes runs the same suite with every channel on tribrid's
real models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from tribrid.encoders import EncoderSet
from tribrid.retrievers import HybridRetriever, TribridVectorStore
from tribrid.store.base import VectorStore as TribridStore

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py


class _HybridRetrieverSuite(RetrieversIntegrationTests):
    backend: str
    _store: TribridStore
    _encoders: EncoderSet

    @pytest.fixture(autouse=True)
    def _corpus(self, corpus_stores: dict[str, TribridStore], encoders: EncoderSet) -> None:
        # The suite builds retrievers from a property, which cannot take fixtures.
        type(self)._store = corpus_stores[self.backend]
        type(self)._encoders = encoders

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": self._store, "encoders": self._encoders}

    @property
    def retriever_query_example(self) -> str:
        return "how often does the pump need a new gasket?"


class TestHybridRetrieverEdge(_HybridRetrieverSuite):
    backend = "edge"


class TestHybridRetrieverMemory(_HybridRetrieverSuite):
    backend = "memory"


class _VectorStoreSuite(VectorStoreIntegrationTests):
    backend: str
    fake_dense: bool

    @pytest.fixture
    def vectorstore(self, encoders: EncoderSet, tmp_path: Path) -> Iterator[VectorStore]:  # type: ignore[override]
        """An empty store: a fresh Edge folder, or a fresh in-memory engine."""
        location: dict[str, Any] = (
            {"path": tmp_path / "store"} if self.backend == "edge" else {"url": ":memory:"}
        )
        store = TribridVectorStore.open(
            embedding=self.get_embeddings() if self.fake_dense else None,
            encoders=encoders,
            **location,
        )
        try:
            yield store
        finally:
            store.close()


class TestVectorStoreEdge(_VectorStoreSuite):
    backend, fake_dense = "edge", True


class TestVectorStoreMemory(_VectorStoreSuite):
    backend, fake_dense = "memory", True


class TestVectorStoreEdgeRealModels(_VectorStoreSuite):
    backend, fake_dense = "edge", False


class TestVectorStoreMemoryRealModels(_VectorStoreSuite):
    backend, fake_dense = "memory", False

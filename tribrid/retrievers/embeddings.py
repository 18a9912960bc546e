"""Adapters between LangChain's ``Embeddings`` and tribrid's dense encoder protocol."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from tribrid.encoders.base import DenseEncoder, DenseMatrix


class EncoderEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over a tribrid dense encoder.

    Example:
        >>> from tribrid.encoders import SentenceTransformerEncoder
        >>> embeddings = EncoderEmbeddings(SentenceTransformerEncoder())  # doctest: +SKIP
        >>> len(embeddings.embed_query("hello"))                          # doctest: +SKIP
        384
    """

    def __init__(self, encoder: DenseEncoder) -> None:
        self.encoder = encoder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages with the encoder's document side."""
        return [[float(x) for x in row] for row in self.encoder.encode_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the encoder's query side."""
        return [float(x) for x in self.encoder.encode_query(text)]


class EmbeddingsDenseEncoder:
    """A tribrid dense encoder over any LangChain ``Embeddings``.

    Lets :class:`~tribrid.retrievers.vectorstore.TribridVectorStore` use an embedding
    model it does not ship (or LangChain's deterministic fake embeddings in tests) for
    the dense and binary channels, while SPLADE and BM25 stay tribrid's own. Vectors
    are L2-normalised, as the protocol promises; the dimension is learned from one
    query on first use.

    Args:
        embeddings: The LangChain embeddings.
        model_name: Identity recorded in the collection schema; default from the class.
    """

    def __init__(self, embeddings: Embeddings, *, model_name: str | None = None) -> None:
        self.embeddings = embeddings
        cls = type(embeddings)
        self._model_name = model_name or f"langchain:{cls.__module__}.{cls.__qualname__}"
        self._dimension: int | None = None

    def warm_up(self) -> None:
        """Nothing to load; learns the dimension."""
        _ = self.dimension

    @property
    def model_name(self) -> str:
        """Identity of the embeddings, recorded in the collection schema."""
        return self._model_name

    @property
    def dimension(self) -> int:
        """Length of the vectors, measured once with a probe query."""
        if self._dimension is None:
            self._dimension = len(self.embeddings.embed_query("dimension probe"))
        return self._dimension

    def encode_documents(self, texts: Sequence[str]) -> DenseMatrix:
        """Embed passages; rows are L2-normalised."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _normalised(np.asarray(self.embeddings.embed_documents(list(texts)), np.float32))

    def encode_query(self, text: str) -> DenseMatrix:
        """Embed one query, L2-normalised."""
        return _normalised(np.asarray([self.embeddings.embed_query(text)], np.float32))[0]


def _normalised(matrix: DenseMatrix) -> DenseMatrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms == 0, 1.0, norms), dtype=np.float32)

"""Lexical sparse encoder: BM25 term frequencies, with IDF applied by Qdrant.

Vectors are computed on the client with Qdrant Edge's model-free ``Bm25`` so the
embedded and the server backends store and query exactly the same vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tribrid.encoders.base import SparseVector


def _to_record(vector: Any) -> SparseVector:
    pairs: dict[int, float] = {}
    for index, value in zip(vector.indices, vector.values, strict=True):
        pairs[int(index)] = pairs.get(int(index), 0.0) + float(value)
    return SparseVector.from_pairs(pairs)


class Bm25Encoder:
    """BM25 document weights (saturated, length-normalised term frequency) and query terms.

    The IDF factor is not part of the vectors: the ``bm25`` vector is stored with
    Qdrant's IDF modifier, which computes it over the collection at query time.

    Example:
        >>> Bm25Encoder().encode_query("binary quantization").indices != ()
        True

    Args:
        k: Term-frequency saturation.
        b: Length normalisation, 0 (none) to 1 (full).
        avg_len: Expected average chunk length, in tokens.
        language: Stop words and stemmer language (e.g. ``"english"``).
    """

    def __init__(
        self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 150.0, language: str = "english"
    ) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._identity = (
            f"qdrant-edge-bm25(k={k:g},b={b:g},avg_len={avg_len:g},language={language})"
        )
        try:
            self._model = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
        except ValueError as e:
            raise ValueError(f"invalid BM25 settings (TRIBRID_BM25__*): {e}") from e

    def warm_up(self) -> None:
        """Nothing to load: BM25 has no model."""

    @property
    def model_name(self) -> str:
        """Identity of the scheme and its parameters."""
        return self._identity

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode passages as BM25 term-frequency weights."""
        return [_to_record(self._model.embed_document(text)) for text in texts]

    def encode_query(self, text: str) -> SparseVector:
        """Encode a query: weight 1 for each distinct term."""
        return _to_record(self._model.embed_query(text))

"""The one set of fake encoders, for tests that are about something other than the models.

Deterministic and model-free: a dense encoder that turns a text's SHA-256 into a unit
vector of :data:`DIM` dimensions, and a sparse encoder that hashes words into term
indices. BM25 needs no model, so :func:`fake_encoders` uses the real
:class:`~tribrid.encoders.Bm25Encoder` and lexical searches behave as in production.
Tests about retrieval quality or the encoders themselves use the real models (and are
marked ``slow``).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from tribrid.encoders import Bm25Encoder, EncoderSet
from tribrid.encoders.base import DenseMatrix, SparseVector

DIM = 8
_WORD = re.compile(r"\w+")
_VOCABULARY = 1 << 20


class HashingDenseEncoder:
    """A stand-in dense model: a positive unit vector from the text's SHA-256.

    Equal texts get equal vectors, different texts unrelated ones; there is no semantics.
    """

    def __init__(self, dimension: int = DIM) -> None:
        if not 1 <= dimension <= 8:
            raise ValueError(f"HashingDenseEncoder takes 1 to 8 dimensions, not {dimension}")
        self._dimension = dimension

    @property
    def model_name(self) -> str:
        return f"hashed-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def warm_up(self) -> None:
        pass

    def encode_documents(self, texts: Sequence[str]) -> DenseMatrix:
        rows = np.empty((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).digest()[: self._dimension * 4]
            vector = np.frombuffer(digest, dtype=np.uint32).astype(np.float32) + 1.0
            rows[row] = vector / np.linalg.norm(vector)
        return rows

    def encode_query(self, text: str) -> DenseMatrix:
        return self.encode_documents([text])[0]


class HashingSparseEncoder:
    """A stand-in SPLADE: each lower-cased word hashed to a term index.

    Documents weigh a term by its count; queries give each of their terms weight 1.
    """

    model_name = "hashed-terms"

    def warm_up(self) -> None:
        pass

    @staticmethod
    def _counts(text: str) -> Counter[int]:
        return Counter(
            int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest()) % _VOCABULARY
            for word in _WORD.findall(text.lower())
        )

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [
            SparseVector.from_pairs({term: float(n) for term, n in self._counts(text).items()})
            for text in texts
        ]

    def encode_query(self, text: str) -> SparseVector:
        return SparseVector.from_pairs(dict.fromkeys(self._counts(text), 1.0))


def fake_encoders(dimension: int = DIM) -> EncoderSet:
    """Hashing dense and sparse encoders, with the real (model-free) BM25."""
    return EncoderSet(
        dense=HashingDenseEncoder(dimension),
        splade=HashingSparseEncoder(),
        bm25=Bm25Encoder(),
    )

"""Encoders: dense (sentence-transformers), learned sparse (SPLADE) and lexical (BM25).

Each encoder is one module implementing :class:`~tribrid.encoders.base.DenseEncoder` or
:class:`~tribrid.encoders.base.SparseEncoder`; :func:`tribrid.factory.build_encoders`
chooses and configures them from the settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tribrid.encoders._memory import release_memory
from tribrid.encoders.base import (
    DenseEncoder,
    EncoderBackend,
    SparseEncoder,
    SparseVector,
)

if TYPE_CHECKING:
    from tribrid.encoders.base import DenseMatrix
    from tribrid.encoders.bm25 import Bm25Encoder
    from tribrid.encoders.dense import SentenceTransformerEncoder
    from tribrid.encoders.splade import SpladeEncoder

# The encoder classes, imported on first use: importing the records of this package (as
# settings, the CLI and remote clients do) must not import numpy or the model runtimes.
_LAZY = {
    "Bm25Encoder": "tribrid.encoders.bm25",
    "SentenceTransformerEncoder": "tribrid.encoders.dense",
    "SpladeEncoder": "tribrid.encoders.splade",
    "DenseMatrix": "tribrid.encoders.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class EncodedBatch:
    """The three vectors of a batch of texts, row-aligned with the input."""

    dense: DenseMatrix
    splade: list[SparseVector]
    bm25: list[SparseVector]

    def __post_init__(self) -> None:
        if not (len(self.dense) == len(self.splade) == len(self.bm25)):
            raise ValueError(
                f"EncodedBatch rows disagree: dense {len(self.dense)}, splade {len(self.splade)}, "
                f"bm25 {len(self.bm25)}"
            )


@dataclass(frozen=True)
class QueryVectors:
    """One query encoded for every channel."""

    dense: DenseMatrix
    splade: SparseVector
    bm25: SparseVector


@dataclass(frozen=True)
class EncoderSet:
    """The three encoders an index is built with, used together."""

    dense: DenseEncoder
    splade: SparseEncoder
    bm25: SparseEncoder

    def warm_up(self) -> None:
        """Load every model now rather than on the first encode."""
        for encoder in (self.dense, self.splade, self.bm25):
            encoder.warm_up()

    def encode_documents(self, texts: Sequence[str]) -> EncodedBatch:
        """Encode passages with all three encoders.

        The memory the batch freed goes back to the operating system, so a long run
        does not stay at the size of its largest batch.
        """
        batch = EncodedBatch(
            dense=self.dense.encode_documents(texts),
            splade=self.splade.encode_documents(texts),
            bm25=self.bm25.encode_documents(texts),
        )
        release_memory()
        return batch

    def encode_query(self, text: str) -> QueryVectors:
        """Encode a query with all three encoders."""
        return QueryVectors(
            dense=self.dense.encode_query(text),
            splade=self.splade.encode_query(text),
            bm25=self.bm25.encode_query(text),
        )


__all__ = [
    "Bm25Encoder",
    "DenseEncoder",
    "EncodedBatch",
    "EncoderBackend",
    "EncoderSet",
    "QueryVectors",
    "SentenceTransformerEncoder",
    "SparseEncoder",
    "SparseVector",
    "SpladeEncoder",
]

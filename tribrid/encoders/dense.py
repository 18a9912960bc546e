"""Dense encoder: any sentence-transformers model, L2-normalised for cosine search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tribrid.encoders._torch import SentenceTransformersModel
from tribrid.encoders.base import DenseMatrix
from tribrid.encoders.models import declared_dimension


class SentenceTransformerEncoder(SentenceTransformersModel):
    """Dense passage and query vectors from a sentence-transformers model.

    Construction is cheap; the model loads on first use (or :meth:`warm_up`) and is
    shared by every encoder of the same model in the process.

    Example:
        >>> encoder = SentenceTransformerEncoder()  # all-MiniLM-L6-v2, shipped offline
        >>> encoder.encode_documents(["a passage"]).shape
        (1, 384)

    Args:
        model: ``"default"``, a local folder, or a Hugging Face id.
        device: Torch device.
        batch_size: Passages per forward pass.
        max_seq_length: Truncate inputs to this many tokens (None keeps the model's).
        torch_threads: Cap on torch's threads in this process.
    """

    _kind = "dense"
    _class_name = "SentenceTransformer"

    @property
    def dimension(self) -> int:
        """Length of the vectors: as the model folder declares it, else by loading it."""
        if self._model is None:
            declared = declared_dimension(self._resolved.location)
            if declared is not None:
                return declared
        self.warm_up()
        return int(self._model.get_embedding_dimension())

    def encode_documents(self, texts: Sequence[str]) -> DenseMatrix:
        """Encode passages into a ``(len(texts), dimension)`` float32 array."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode_document(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> DenseMatrix:
        """Encode one query into a ``(dimension,)`` float32 array."""
        self.warm_up()
        vector = self._model.encode_query(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vector[0], dtype=np.float32)

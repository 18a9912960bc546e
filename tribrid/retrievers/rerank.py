"""An optional reranking stage: a cross-encoder rescoring the fused top candidates.

No cross-encoder ships offline with tribrid, so reranking is off unless a retriever is
given a :class:`TribridReranker` with a local folder (or a Hugging Face id where
the network allows it).

The class was called ``CrossEncoderReranker``, the name of LangChain's own document
compressor; that name still works here but warns, so code importing both stays clear.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tribrid.encoders._torch import configure_threads, load_model


class TribridReranker:
    """Scores (query, passage) pairs with a sentence-transformers ``CrossEncoder``.

    Construction is cheap; the model loads on first use (or :meth:`warm_up`), once per
    process.

    Args:
        model: A local folder or a Hugging Face id of a cross-encoder.
        device: Torch device.
        batch_size: Pairs per forward pass.
        torch_threads: Cap on torch's threads in this process.

    Example:
        ::

            reranker = TribridReranker("/models/ms-marco-MiniLM-L-6-v2")
            retriever = HybridRetriever(store=store, encoders=encoders, reranker=reranker)
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        torch_threads: int | None = None,
    ) -> None:
        self._location = (
            str(Path(model).expanduser()) if Path(model).expanduser().exists() else str(model)
        )
        self._device = device
        self._batch_size = batch_size
        self._threads = torch_threads
        self._model: Any = None

    @property
    def model_name(self) -> str:
        """Where the model comes from."""
        return self._location

    def warm_up(self) -> None:
        """Load the model now rather than on the first rerank."""
        if self._model is None:
            configure_threads(self._threads)
            self._model = load_model(
                "CrossEncoder", self._location, device=self._device, max_seq_length=None
            )

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to ``query``, higher is better."""
        if not passages:
            return []
        self.warm_up()
        scores = self._model.predict(
            [(query, p) for p in passages],
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores]

    def __repr__(self) -> str:
        return f"TribridReranker({self._location!r})"


def __getattr__(name: str) -> Any:
    if name == "CrossEncoderReranker":
        warnings.warn(
            "tribrid.retrievers.CrossEncoderReranker is now TribridReranker (the old name is "
            "LangChain's own CrossEncoderReranker); import TribridReranker instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return TribridReranker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TribridReranker"]

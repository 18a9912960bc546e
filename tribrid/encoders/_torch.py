"""Loading sentence-transformers models once per process."""

from __future__ import annotations

import os
import threading
from typing import Any

from tribrid.encoders.models import resolve_model
from tribrid.errors import EncoderError, MissingDependencyError

_lock = threading.Lock()
_cache: dict[tuple[str, str, str, int | None], Any] = {}


def configure_threads(threads: int | None) -> None:
    """Cap torch's intra-op threads, so parallel workers do not oversubscribe the cores."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def load_model(cls_name: str, location: str, *, device: str, max_seq_length: int | None) -> Any:
    """Load a ``SentenceTransformer`` or ``SparseEncoder`` once per process and cache it.

    Raises:
        EncoderError: The model cannot be loaded; the message names it and says why.
    """
    key = (cls_name, location, device, max_seq_length)
    with _lock:
        if key in _cache:
            return _cache[key]
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import sentence_transformers
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise MissingDependencyError(
                "sentence-transformers is required for encoding; install tribrid with its "
                "dependencies (see README: install torch first, then `pip install tribrid`)"
            ) from e
        hf_logging.disable_progress_bar()
        cls = getattr(sentence_transformers, cls_name)
        try:
            model = cls(location, device=device)
        except Exception as e:  # sentence-transformers raises many kinds; all mean "cannot load"
            raise EncoderError(
                f"cannot load {cls_name} model {location!r}: {e}. Give a local folder or a "
                "Hugging Face id reachable from this machine (TRIBRID_MODELS__DENSE / __SPLADE)"
            ) from e
        if max_seq_length is not None:
            model.max_seq_length = min(max_seq_length, model.max_seq_length or max_seq_length)
        model.eval()
        _cache[key] = model
        return model


class SentenceTransformersModel:
    """What the dense and the SPLADE encoder share: a lazily loaded, process-wide model.

    Subclasses set ``_kind`` (``"dense"`` or ``"splade"``) and ``_class_name`` (the
    sentence-transformers class that loads it).
    """

    _kind: str
    _class_name: str

    def __init__(
        self,
        model: str = "default",
        *,
        device: str = "cpu",
        batch_size: int = 32,
        max_seq_length: int | None = 256,
        torch_threads: int | None = None,
    ) -> None:
        self._resolved = resolve_model(model, kind=self._kind)
        self._device = device
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        self._threads = torch_threads
        self._model: Any = None

    @property
    def model_name(self) -> str:
        """Stable identity of the model."""
        return self._resolved.identity

    def warm_up(self) -> None:
        """Load the model now rather than on the first encode."""
        if self._model is None:
            configure_threads(self._threads)
            self._model = load_model(
                self._class_name,
                self._resolved.location,
                device=self._device,
                max_seq_length=self._max_seq_length,
            )

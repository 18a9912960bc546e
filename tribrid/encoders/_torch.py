"""Loading sentence-transformers models once per process."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from tribrid.encoders.base import EncoderBackend
from tribrid.encoders.models import PINNED, resolve_model, verify_model
from tribrid.errors import ConfigError, EncoderError, missing_extra

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
            raise missing_extra(
                "exporting or running a model with torch",
                "torch",
                "sentence-transformers",
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

    With the ``torch`` backend the model is a sentence-transformers object. With the ONNX
    backends it is an export (see :mod:`tribrid.encoders._onnx`), made from the torch model
    the first time and then reused from ``cache_dir`` by every process.

    Subclasses set ``_kind`` (``"dense"`` or ``"splade"``) and ``_class_name`` (the
    sentence-transformers class that loads it), and implement ``_export`` and
    ``_load_onnx``.
    """

    _kind: str
    _class_name: str

    def __init__(
        self,
        model: str = "default",
        *,
        backend: EncoderBackend | str = EncoderBackend.TORCH,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        max_seq_length: int | None = 256,
        torch_threads: int | None = None,
    ) -> None:
        try:
            self._backend = EncoderBackend(backend)
        except ValueError as e:
            valid = ", ".join(b.value for b in EncoderBackend)
            raise ConfigError(
                f"unknown encoder backend {backend!r}; valid backends: {valid} "
                "(TRIBRID_MODELS__BACKEND)"
            ) from e
        if self._backend is not EncoderBackend.TORCH and device != "cpu":
            raise ConfigError(
                f"the {self._backend.value} backend runs on the CPU only, but device is "
                f"{device!r}; set TRIBRID_MODELS__BACKEND=torch to use {device}"
            )
        self._resolved = resolve_model(model, kind=self._kind)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._device = device
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        self._threads = torch_threads
        self._model: Any = None

    @property
    def model_name(self) -> str:
        """Stable identity of the model (the same for every backend)."""
        return self._resolved.identity

    @property
    def backend(self) -> EncoderBackend:
        """What runs the network."""
        return self._backend

    def warm_up(self) -> None:
        """Load the model (exporting it first if an ONNX backend needs it) now."""
        if self._model is not None:
            return
        if self._backend is EncoderBackend.TORCH:
            verify_model(self._resolved)
            self._model = self._torch_model()
        else:
            from tribrid.encoders import _onnx

            folder = self.export_folder()
            _onnx.verify_export(folder, source=PINNED.get(self._resolved.identity))
            self._model = self._load_onnx(folder)

    def _torch_model(self) -> Any:
        configure_threads(self._threads)
        return load_model(
            self._class_name,
            self._resolved.location,
            device=self._device,
            max_seq_length=self._max_seq_length,
        )

    def export_folder(self, backend: EncoderBackend | None = None) -> Path:
        """The folder of this model's ONNX export, exporting it first if it is missing."""
        from tribrid.encoders import _onnx

        backend = backend or self._backend
        if backend is EncoderBackend.TORCH:
            raise ConfigError("the torch backend has no export folder")
        cache = self._cache_dir or _onnx.default_cache_dir()
        target = _onnx.export_dir(cache, self._resolved, backend)
        if backend is EncoderBackend.ONNX:

            def export(folder: Path) -> dict[str, Any]:
                # Export only from the pinned files; the manifest records which they were.
                source = verify_model(self._resolved)
                manifest = self._export(folder)
                if source:
                    manifest["source_sha256"] = source
                return manifest

            return _onnx.ensure_export(target, export)
        source = self.export_folder(EncoderBackend.ONNX)

        def build(folder: Path) -> dict[str, Any]:
            manifest = _onnx.read_manifest(source)
            # The files the fp32 export was made of, not what its folder gained since
            # (its verification record, optimized graphs).
            for name in manifest["files"]:
                item = source / name
                if item.suffix == ".onnx":
                    _onnx.quantize(item, folder / item.name)
                else:
                    shutil.copy2(item, folder / item.name)
            manifest["backend"] = backend.value
            return manifest

        return _onnx.ensure_export(target, build)

    def _export(self, folder: Path) -> dict[str, Any]:
        """Write the fp32 ONNX files into ``folder`` and return the manifest."""
        raise NotImplementedError

    def _load_onnx(self, folder: Path) -> Any:
        """Load an export into whatever the subclass encodes with."""
        raise NotImplementedError

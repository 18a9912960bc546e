"""Dense encoder: any sentence-transformers model, L2-normalised for cosine search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tribrid.encoders import _onnx
from tribrid.encoders._tokens import TokenBatcher
from tribrid.encoders._torch import SentenceTransformersModel
from tribrid.encoders.base import DenseMatrix
from tribrid.encoders.models import declared_dimension
from tribrid.errors import EncoderError

# sentence-transformers' encode_document uses the first of these prompts the model defines.
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


def _pipeline(model: Any, input_names: list[str]) -> Any:
    """The whole sentence-transformers module chain as a module of positional tensors."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(input_names, tensors, strict=True))
            return self.model(features)["sentence_embedding"]

    return Pipeline().eval()


def model_inputs(model: Any) -> list[str]:
    """The tokenizer outputs a sentence-transformers model consumes, in a fixed order."""
    names = list(getattr(model[0].tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names]


def prompts_of(model: Any) -> tuple[str, str]:
    """The query and the document prompt sentence-transformers would prepend."""
    prompts = dict(getattr(model, "prompts", None) or {})
    document = next((prompts[k] for k in _DOCUMENT_PROMPTS if k in prompts), "")
    return str(prompts.get("query", "")), str(document)


def save_tokenizer(model: Any, folder: Path) -> int:
    """Write the model's fast tokenizer to ``folder/tokenizer.json``; returns the pad id."""
    tokenizer = model[0].tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise EncoderError(
            f"{model[0].auto_model.config._name_or_path!r} has no fast tokenizer, which the ONNX "
            "backends need; set TRIBRID_MODELS__BACKEND=torch"
        )
    backend.save(str(folder / "tokenizer.json"))
    return int(tokenizer.pad_token_id or 0)


@dataclass(frozen=True)
class _OnnxDense:
    session: Any
    batcher: TokenBatcher
    query_prompt: str
    document_prompt: str
    dimension: int

    def encode(self, texts: Sequence[str], batch_size: int) -> DenseMatrix:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for batch in self.batcher.batches(texts, batch_size):
            out[batch.rows] = self.session.run(None, batch.inputs)[0]
        # Normalise here too: int8 weights leave the graph's own normalisation slightly off.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


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
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (see :class:`EncoderBackend`).
        cache_dir: Where ONNX exports are kept (default: the user's cache folder).
        device: Torch device.
        batch_size: Passages per forward pass.
        max_seq_length: Truncate inputs to this many tokens (None keeps the model's).
        torch_threads: Cap on torch's (or ONNX Runtime's) threads in this process.
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
        if isinstance(self._model, _OnnxDense):
            return self._model.dimension
        return int(self._model.get_embedding_dimension())

    def _export(self, folder: Path) -> dict[str, Any]:
        model = self._torch_model()
        names = model_inputs(model)
        _onnx.export_torch(
            _pipeline(model, names),
            folder,
            input_names=names,
            output_name="embedding",
            output_axes={0: "batch"},
        )
        query_prompt, document_prompt = prompts_of(model)
        return {
            "kind": "dense",
            "identity": self.model_name,
            "input_names": names,
            "pad_id": save_tokenizer(model, folder),
            "max_seq_length": int(model.max_seq_length or 512),
            "dimension": int(model.get_embedding_dimension()),
            "query_prompt": query_prompt,
            "document_prompt": document_prompt,
        }

    def _load_onnx(self, folder: Path) -> _OnnxDense:
        from tokenizers import Tokenizer

        manifest = _onnx.read_manifest(folder)
        limit = int(manifest["max_seq_length"])
        return _OnnxDense(
            session=_onnx.session(folder / "model.onnx", self._threads),
            batcher=TokenBatcher(
                Tokenizer.from_file(str(folder / "tokenizer.json")),
                max_length=min(self._max_seq_length or limit, limit),
                input_names=manifest["input_names"],
                pad_id=int(manifest["pad_id"]),
            ),
            query_prompt=manifest["query_prompt"],
            document_prompt=manifest["document_prompt"],
            dimension=int(manifest["dimension"]),
        )

    def encode_documents(self, texts: Sequence[str]) -> DenseMatrix:
        """Encode passages into a ``(len(texts), dimension)`` float32 array."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if isinstance(self._model, _OnnxDense):
            prompt = self._model.document_prompt
            return self._model.encode([prompt + t for t in texts], self._batch_size)
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
        if isinstance(self._model, _OnnxDense):
            return self._model.encode([self._model.query_prompt + text], 1)[0]
        vector = self._model.encode_query(
            [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vector[0], dtype=np.float32)

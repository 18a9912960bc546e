"""The ledger's records check themselves."""

from __future__ import annotations

import pytest

from tribrid.ledger import ChunkRecord, RunCounts


def test_run_counts_add_up() -> None:
    a = RunCounts(seen=2, indexed=1, chunks_embedded=5)
    b = RunCounts(seen=1, failed=1, chunks_reused=3)
    assert (
        a + b
        == a.add(b)
        == RunCounts(seen=3, indexed=1, failed=1, chunks_embedded=5, chunks_reused=3)
    )
    assert sum([a, b], RunCounts()) == a + b
    assert a.as_dict()["chunks_embedded"] == 5


def test_run_counts_are_never_negative() -> None:
    with pytest.raises(ValueError, match=r"RunCounts\.deleted must be >= 0"):
        RunCounts(deleted=-1)


@pytest.mark.parametrize(
    ("point_id", "index", "content_hash", "expected"),
    [("", 0, "h", "point_id"), ("p", -1, "h", "chunk_index"), ("p", 0, "", "content_hash")],
)
def test_chunk_record_checks_itself(
    point_id: str, index: int, content_hash: str, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        ChunkRecord(point_id, index, content_hash)

"""tribrid.remove: an ingested document (or folder) leaves the ledger, then the store."""

from __future__ import annotations

from pathlib import Path

import pytest

import tribrid
from tribrid.errors import ConfigError
from tribrid.factory import build_encoders, build_store

pytestmark = pytest.mark.slow  # real models and parse workers


def _paths(data_dir: Path) -> set[str]:
    settings = tribrid.Settings(data_dir=data_dir)
    store = build_store(settings, build_encoders(settings))
    try:
        return {str(h.payload["path"]) for h in store.retrieve(sorted(store.ids()))}
    finally:
        store.close()


def test_remove_keeps_the_ledger_and_the_store_in_step(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Pumps\n\nThe ZX-9000 pump needs a new gasket.\n")
    (docs / "sub" / "b.md").write_text("# Sauce\n\nSimmer the tomato sauce with basil.\n")
    (docs / "sub" / "c.txt").write_text("Binary quantization keeps one bit per dimension.\n")
    data_dir = tmp_path / "index"
    assert tribrid.ingest(docs, data_dir=data_dir).counts.indexed == 3

    removed = tribrid.remove(docs / "a.md", data_dir=data_dir)
    assert (removed.deleted, removed.chunks_deleted) == (1, 1)
    assert _paths(data_dir) == {"sub/b.md", "sub/c.txt"}
    status = tribrid.status(data_dir=data_dir)
    assert (status.counts["indexed"], status.counts["deleted"], status.chunks) == (2, 1, 2)
    assert all(h.path != "a.md" for h in tribrid.search("pump gasket", data_dir=data_dir))
    # Again: nothing left to remove, and no error.
    assert tribrid.remove(docs / "a.md", data_dir=data_dir).deleted == 0

    # A folder removes what is under it.
    assert tribrid.remove(docs / "sub", data_dir=data_dir).deleted == 2
    assert _paths(data_dir) == set()
    assert tribrid.status(data_dir=data_dir).chunks == 0

    # The files are still there: the next ingest adds them back, as new documents.
    again = tribrid.ingest(docs, data_dir=data_dir)
    assert again.counts.indexed == 3
    assert _paths(data_dir) == {"a.md", "sub/b.md", "sub/c.txt"}

    with pytest.raises(ConfigError, match="under none of the folders"):
        tribrid.remove(tmp_path / "elsewhere.md", data_dir=data_dir)

"""Source identity: a named source keeps its points when its folder moves.

The folder is parsed for real (the parse pool); the encoders are the hashing fakes,
wrapped to count every text they encode, which is what the tests are about.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from alembic import command

from tests.fakes import fake_encoders
from tribrid.encoders import EncodedBatch, EncoderSet
from tribrid.errors import ConfigError
from tribrid.factory import collection_schema, source_connector
from tribrid.ingestion.parse_pool import ParsePool
from tribrid.ingestion.pipeline import SyncPipeline, SyncReport
from tribrid.ledger import SqlLedger
from tribrid.ledger.database import alembic_config
from tribrid.settings import Settings
from tribrid.store import open_store
from tribrid.store.base import VectorStore

DOCUMENTS = {
    "notes/harbour.md": "# Harbour\n\nThe harbour master logs every ship at dawn. " * 20,
    "notes/gulls.txt": "Herring gulls nest on the warehouse roofs and raid the market. " * 20,
    "ferries.md": "# Ferries\n\nThe island ferry leaves at seven and returns at dusk. " * 20,
}


class Counting(EncoderSet):
    """The fakes, counting the texts they encode."""

    encoded = 0

    def encode_documents(self, texts: Sequence[str]) -> EncodedBatch:
        type(self).encoded += len(texts)
        return super().encode_documents(texts)


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    settings = Settings()
    with ParsePool.from_settings(settings.parsing, settings.chunking) as started:
        yield started


class _Shared:
    def __init__(self, pool: ParsePool) -> None:
        self._pool = pool

    def __enter__(self) -> ParsePool:
        return self._pool

    def __exit__(self, *exc: object) -> None:
        return None


def _folder(root: Path) -> Path:
    for key, text in DOCUMENTS.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
    return root


class Index:
    def __init__(self, tmp_path: Path, pool: ParsePool) -> None:
        fakes = fake_encoders()
        Counting.encoded = 0
        self.encoders = Counting(fakes.dense, fakes.splade, fakes.bm25)
        self.settings = Settings(data_dir=tmp_path / "data")
        self.url = f"sqlite:///{tmp_path / 'ledger.db'}"
        self.ledger = SqlLedger(self.url)
        schema = collection_schema(self.settings, self.encoders)
        self.store: VectorStore = open_store("edge", schema, path=tmp_path / "store")
        self.pool = pool

    def sync(self, folder: Path, source: str | None) -> SyncReport:
        before = Counting.encoded
        connector = source_connector(self.settings, self.ledger, folder, source=source)
        pipeline = SyncPipeline(
            ledger=self.ledger,
            store=self.store,
            encoders=self.encoders,
            parser_factory=lambda: _Shared(self.pool),
            batch_chunks=64,
        )
        report = pipeline.sync(connector)
        self.encoded = Counting.encoded - before
        assert self.encoded == report.counts.chunks_embedded
        assert self.store.ids() == set(self.ledger.all_point_ids())
        return report

    def close(self) -> None:
        self.store.close()
        self.ledger.close()


@pytest.fixture
def index(tmp_path: Path, pool: ParsePool) -> Iterator[Index]:
    made = Index(tmp_path, pool)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.slow
def test_a_moved_folder_synced_under_its_name_embeds_nothing(index: Index, tmp_path: Path) -> None:
    first = _folder(tmp_path / "srv" / "docs")
    report = index.sync(first, "docs")
    assert report.counts.indexed == len(DOCUMENTS) and index.encoded > 0
    ids = index.store.ids()

    moved = tmp_path / "documents"
    shutil.move(first, moved)  # the same folder, mounted or moved elsewhere
    again = index.sync(moved, "docs")
    assert index.encoded == 0
    assert again.counts.deleted == 0 and again.counts.indexed == 0
    assert again.counts.unchanged == len(DOCUMENTS)
    assert index.store.ids() == ids
    [source] = index.ledger.sources()
    assert source.name == "docs" and source.location == f"local:{moved.resolve().as_posix()}"
    assert source.documents == len(DOCUMENTS)

    # A new folder at the old place, synced without a name, is not taken for "docs".
    first.mkdir()
    with pytest.raises(ConfigError, match="--source docs"):
        source_connector(index.settings, index.ledger, first, source=None)


@pytest.mark.slow
def test_an_existing_ledger_migrates_and_its_folder_can_be_named(
    index: Index, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "srv" / "docs")
    index.sync(folder, None)  # an index made before sources had names
    ids = index.store.ids()
    index.ledger.close()
    command.downgrade(alembic_config(index.url), "0002")  # as an older tribrid left it

    index.ledger = SqlLedger(index.url)  # migrates to the head again
    index.sync(folder, None)
    assert index.encoded == 0
    # Naming it keeps its key, so its points; then it can move.
    index.sync(folder, "docs")
    assert index.encoded == 0
    moved = tmp_path / "mnt" / "documents"
    moved.parent.mkdir()
    shutil.move(folder, moved)
    index.sync(moved, "docs")
    assert index.encoded == 0
    assert index.store.ids() == ids
    [source] = index.ledger.sources()
    assert source.key == f"local:{folder.resolve().as_posix()}" and source.name == "docs"


@pytest.mark.slow
def test_renaming_and_removing_a_source(index: Index, tmp_path: Path) -> None:
    a = index.sync(_folder(tmp_path / "a"), "alpha")
    index.sync(_folder(tmp_path / "b"), None)
    [alpha] = [s for s in index.ledger.sources() if s.name == "alpha"]
    index.ledger.name_source(alpha.id, "renamed")
    with pytest.raises(ConfigError, match="taken"):
        [other] = [s for s in index.ledger.sources() if s.name is None]
        index.ledger.name_source(other.id, "renamed")
    again = index.sync(tmp_path / "a", "renamed")
    assert index.encoded == 0 and again.counts.unchanged == a.counts.indexed

    found = index.ledger.find_source("renamed")
    assert found is not None
    point_ids = index.ledger.remove_source(found.id)
    index.store.delete(point_ids)
    assert index.ledger.find_source("renamed") is None
    assert index.store.ids() == set(index.ledger.all_point_ids())
    assert len(index.ledger.sources()) == 1

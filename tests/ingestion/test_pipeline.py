"""The whole sync, end to end: real parsing, real Qdrant and real ledgers.

Each scenario runs on the two store backends (Qdrant Edge on disk, qdrant-client
``:memory:``) and on the two ledgers (SQLite, PostgreSQL). The models are the fakes of
``tests/fakes.py`` (with the real BM25), except in the test of every search mode, which
is about retrieval and runs on the real models.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tribrid.app import SearchMode, search_store
from tribrid.connectors import LocalFolderConnector
from tribrid.encoders import EncoderSet
from tribrid.factory import build_encoders, collection_schema
from tribrid.ingestion.base import Chunk
from tribrid.ingestion.parse_pool import ParsePool
from tribrid.ingestion.pipeline import SyncPipeline, SyncReport
from tribrid.ingestion.write import encode_chunks
from tribrid.ledger import DocumentState, SqlLedger
from tribrid.settings import Settings
from tribrid.store import open_store
from tribrid.store.base import VectorStore
from tribrid.store.points import content_hash, point_id

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"

# Five sections of distinct prose; each becomes its own chunk.
SECTIONS = {
    "Harbour": "The harbour master logs every vessel that enters after dusk. " * 14,
    "Lanterns": "Brass lanterns hang from the pier and are refilled with paraffin weekly. " * 12,
    "Tides": "Spring tides reach four metres, so the lower moorings flood twice a month. " * 12,
    "Gulls": "Herring gulls nest on the warehouse roofs and raid the fish market at dawn. " * 12,
    "Ferries": "The island ferry leaves at seven and returns before the evening gale. " * 12,
}


def _write_sections(path: Path, sections: dict[str, str]) -> None:
    path.write_text("\n\n".join(f"# {title}\n\n{body.strip()}" for title, body in sections.items()))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def encoders(request: pytest.FixtureRequest, settings: Settings) -> EncoderSet:
    """The fakes; ``real`` (by indirect parametrisation) for the configured models."""
    if getattr(request, "param", "fake") == "real":
        return build_encoders(settings)
    return fake_encoders()


@pytest.fixture(scope="session")
def parse_pool(settings: Settings) -> Iterator[ParsePool]:
    # One pool for the whole session: starting parse workers costs seconds.
    with ParsePool.from_settings(settings.parsing, settings.chunking) as pool:
        yield pool


class _Shared:
    """Hands the session pool to the pipeline as a context manager that does not close it."""

    def __init__(self, pool: ParsePool) -> None:
        self._pool = pool

    def __enter__(self) -> ParsePool:
        return self._pool

    def __exit__(self, *exc: object) -> None:
        return None


class Index:
    """A folder, a ledger, a store, and the pipeline between them."""

    def __init__(
        self,
        root: Path,
        ledger: SqlLedger,
        store: VectorStore,
        encoders: EncoderSet,
        pool: ParsePool,
    ) -> None:
        self.root = root
        self.ledger = ledger
        self.store = store
        self.encoders = encoders
        self.pipeline = SyncPipeline(
            ledger=ledger,
            store=store,
            encoders=encoders,
            parser_factory=lambda: _Shared(pool),
            batch_chunks=64,
        )

    def sync(self) -> SyncReport:
        report = self.pipeline.sync(LocalFolderConnector(self.root))
        # The invariant of every sync: the store holds exactly the ledger's chunks.
        assert self.store.ids() == set(self.ledger.all_point_ids())
        return report

    def document(self, key: str) -> DocumentState:
        """The ledger's state of one document of the folder (which must be known)."""
        source_key = f"local:{self.root.resolve().as_posix()}"
        source_id = self.ledger.ensure_source(source_key, kind="local", location=source_key)
        state = self.ledger.get_document(source_id, key)
        assert state is not None, key
        return state

    def paths(self, query: str, mode: SearchMode, k: int = 3) -> list[str]:
        return [r.path for r in search_store(self.store, self.encoders, query, mode=mode, k=k)]


# The qdrant-client + PostgreSQL twin is `slow`: the quick subset runs each behaviour
# once, on Edge and SQLite.
@pytest.fixture(
    params=[
        "edge+sqlite",
        pytest.param("memory+postgres", marks=[pytest.mark.postgres, pytest.mark.slow]),
    ]
)
def index(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    encoders: EncoderSet,
    parse_pool: ParsePool,
) -> Iterator[Index]:
    root = tmp_path / "docs"
    shutil.copytree(EXAMPLES, root)
    schema = collection_schema(settings, encoders)
    if request.param == "edge+sqlite":
        ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
        store = open_store("edge", schema, path=tmp_path / "store")
    else:
        ledger = SqlLedger(request.getfixturevalue("postgres_url"))
        store = open_store("qdrant", schema, url=":memory:")
    try:
        yield Index(root, ledger, store, encoders, parse_pool)
    finally:
        store.close()
        ledger.close()


def test_first_sync_indexes_everything_and_second_is_a_no_op(index: Index) -> None:
    first = index.sync()
    assert first.counts.indexed == 6 and first.counts.failed == 0, first.failures
    assert first.counts.chunks_embedded == index.store.count() > 0
    second = index.sync()
    assert second.counts.unchanged == 6
    assert (second.counts.indexed, second.counts.chunks_embedded, second.counts.deleted) == (
        0,
        0,
        0,
    )
    assert index.ledger.status().counts["indexed"] == 6


def test_touch_without_change_re_embeds_nothing(index: Index) -> None:
    index.sync()
    target = index.root / "rank-fusion.md"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    report = index.sync()
    assert report.counts.unchanged == 6 and report.counts.chunks_embedded == 0
    doc = index.document("rank-fusion.md")
    assert doc.mtime_ns == target.stat().st_mtime_ns


def test_changing_one_paragraph_re_embeds_only_its_chunk(index: Index) -> None:
    harbour = index.root / "harbour.md"
    _write_sections(harbour, SECTIONS)
    first = index.sync()
    chunks_before = first.counts.chunks_embedded
    assert chunks_before >= 5 + 6
    edited = dict(
        SECTIONS, Tides="Neap tides barely cover the slipway, and the dredger works then. " * 12
    )
    _write_sections(harbour, edited)
    report = index.sync()
    assert report.counts.indexed == 1 and report.counts.unchanged == 6
    assert report.counts.chunks_embedded == 1
    assert report.counts.chunks_deleted == 1
    assert report.counts.chunks_reused == index.document("harbour.md").chunk_count - 1
    assert index.paths("dredger working the slipway at neap tide", SearchMode.BM25, k=1) == [
        "harbour.md"
    ]
    texts = [h.payload["text"] for h in index.store.retrieve(list(index.store.ids()))]
    assert not any("Spring tides reach four metres" in t for t in texts)


def test_inserting_a_section_keeps_existing_points_and_fixes_their_positions(index: Index) -> None:
    harbour = index.root / "harbour.md"
    _write_sections(harbour, SECTIONS)
    index.sync()
    _write_sections(
        harbour, {"Preface": "A short history of the port and its people. " * 15, **SECTIONS}
    )
    report = index.sync()
    assert report.counts.chunks_embedded == 1 and report.counts.chunks_deleted == 0
    hits = [
        h
        for h in index.store.retrieve(list(index.store.ids()))
        if h.payload["document_key"] == "harbour.md"
    ]
    by_index = sorted((h.payload["chunk_index"], h.payload["text"]) for h in hits)
    assert [i for i, _ in by_index] == list(range(len(hits)))
    assert "history of the port" in by_index[0][1]
    assert "harbour master" in by_index[1][1]


def test_deleted_file_leaves_the_index(index: Index) -> None:
    index.sync()
    (index.root / "tomato-growing.rst").unlink()
    report = index.sync()
    assert report.counts.deleted == 1 and report.counts.chunks_deleted >= 1
    assert index.store.count({"document_key": "tomato-growing.rst"}) == 0
    assert index.ledger.status().counts["deleted"] == 1
    assert "tomato-growing.rst" not in index.paths(
        "blossom-end rot calcium", SearchMode.HYBRID, k=6
    )


def test_rename_is_a_delete_plus_an_add_without_duplicates(index: Index) -> None:
    index.sync()
    points = index.store.count()
    (index.root / "sourdough.csv").rename(index.root / "bread.csv")
    report = index.sync()
    assert (report.counts.deleted, report.counts.indexed) == (1, 1)
    assert index.store.count() == points
    assert index.store.count({"document_key": "sourdough.csv"}) == 0
    assert index.paths("cold proof the shaped loaf in the fridge", SearchMode.BM25, k=1) == [
        "bread.csv"
    ]


def test_bad_and_vanished_files_fail_without_stopping_the_run(index: Index) -> None:
    (index.root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (index.root / "empty.txt").write_text("")
    report = index.sync()
    failed = {f.key: f.kind for f in report.failures}
    assert set(failed) == {"broken.pdf", "empty.txt"}
    assert failed["empty.txt"] == "empty"
    assert report.counts.indexed == 6
    # Failed files are not retried until they change.
    again = index.sync()
    assert again.counts.failed == 0 and again.counts.unchanged == 8
    (index.root / "empty.txt").write_text("Now the file has words about lighthouses and keepers.")
    fixed = index.sync()
    assert fixed.counts.indexed == 1
    assert index.ledger.status().counts["failed"] == 1


QUERIES = [
    ("how does reciprocal rank fusion combine rankings", SearchMode.HYBRID, "rank-fusion.md"),
    ("merging the rankings of several retrievers", SearchMode.DENSE, "rank-fusion.md"),
    ("hamming distance between compact codes", SearchMode.BINARY, "binary-quantization.txt"),
    ("calcium deficiency blackens fruit", SearchMode.SPLADE, "tomato-growing.rst"),
    ("ZX-9000", SearchMode.BM25, "lexical-search.html"),
    ("dutch oven bake temperature", SearchMode.HYBRID, "sourdough.csv"),
    ("keeper trimmed the lamp during the gale", SearchMode.DENSE, "lighthouse-log.json"),
]


@pytest.mark.slow
@pytest.mark.parametrize("encoders", ["real"], indirect=True)
def test_every_mode_finds_the_expected_document(index: Index) -> None:
    index.sync()
    found = {(query, mode.value): index.paths(query, mode, k=1) for query, mode, _ in QUERIES}
    expected = {(query, mode.value): [doc] for query, mode, doc in QUERIES}
    assert found == expected


def test_orphan_points_of_an_interrupted_run_are_removed(index: Index) -> None:
    index.sync()
    # A run killed after its upsert but before its ledger commit leaves points the
    # ledger does not know, here for a file that is gone by the next sync.
    source_key = f"local:{index.root.resolve().as_posix()}"
    orphan = Chunk(
        point_id=point_id(source_key, "gone.md", content_hash("lost words"), 0),
        source_key=source_key,
        document_key="gone.md",
        index=0,
        text="lost words",
        content_hash=content_hash("lost words"),
    )
    index.store.upsert(encode_chunks(index.encoders, [orphan]))
    report = index.sync()
    assert report.counts.chunks_deleted == 1
    assert orphan.point_id not in index.store.ids()


def test_points_lost_from_the_store_are_rebuilt_from_the_ledger(index: Index) -> None:
    first = index.sync()
    lost = sorted(index.store.ids({"document_key": "rank-fusion.md"}))
    index.store.delete(lost)
    report = index.sync()
    # Only the damaged document is parsed and embedded again.
    assert (report.counts.indexed, report.counts.unchanged) == (1, 5)
    assert report.counts.chunks_embedded == len(lost) and report.counts.chunks_reused == 0
    assert index.store.count() == first.counts.chunks_embedded
    assert index.paths("reciprocal rank fusion", SearchMode.BM25, k=1) == ["rank-fusion.md"]


def test_parsing_runs_ahead_on_its_own_thread_and_hands_errors_back(tmp_path: Path) -> None:
    """While the caller is busy (encoding), the parser keeps going up to the chunk bound;
    an error of the parser is raised on the caller's thread."""
    import contextlib
    import threading
    from typing import Any

    from tribrid.ingestion.base import Chunk, ParsedDocument
    from tribrid.ingestion.parse import ParseJob
    from tribrid.ingestion.pipeline import _LazyParser, _ParseAhead
    from tribrid.store.points import content_hash

    parsed: list[str] = []

    class Parser:
        def imap(self, jobs: Any) -> Any:
            for job in jobs:
                if job.document_key == "bad":
                    raise RuntimeError("the parse pool broke")
                parsed.append(job.document_key)
                digest = content_hash("text")
                chunk = Chunk(job.document_key, "s", job.document_key, 0, "text", digest)
                yield job, ParsedDocument(job.document_key, (chunk,), element_count=1)

    def ahead(keys: list[str], max_chunks: int) -> _ParseAhead:
        jobs = [ParseJob("s", key, tmp_path / key) for key in keys]
        return _ParseAhead(
            _LazyParser(lambda: contextlib.nullcontext(Parser()), []), jobs, max_chunks=max_chunks
        )

    parsing = ahead([f"d{i}" for i in range(10)], max_chunks=4)
    results = iter(parsing)
    first = next(results)
    assert first[0].document_key == "d0"
    deadline = threading.Event()
    while len(parsed) < 6 and not deadline.wait(0.01):
        pass
    deadline.wait(0.2)
    # One taken, four waiting (the bound), one parsed and held: parsing stops there.
    assert len(parsed) == 6
    assert [job.document_key for job, _ in results] == [f"d{i}" for i in range(1, 10)]
    parsing.close()

    broken = ahead(["d0", "bad", "d2"], max_chunks=4)
    with pytest.raises(RuntimeError, match="the parse pool broke"):
        list(broken)
    broken.close()

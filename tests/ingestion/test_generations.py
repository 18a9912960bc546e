"""Rebuilding an index as a new generation while searches keep answering from the old.

Both backends: the embedded store (Qdrant Edge, a new shard folder and an atomic switch
of the live file) and qdrant-client (its local mode, ``:memory:``: no Qdrant server runs
here; its local mode implements collection aliases, atomic alias updates included, so
the switch is the one a server makes), on a collection made with generations and on a
plain one made before them (whose first switch deletes it before the alias exists:
searches wait for the alias). The corpus is real text (the first records of
SciFact), chunked in-process; the encoders are the hashing fakes, because what is under
test is the switch, not the models.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.fakes import fake_encoders
from tribrid.app import SearchMode, search_store
from tribrid.connectors import BeirCorpusConnector
from tribrid.encoders import EncodedBatch, EncoderSet
from tribrid.errors import ChunkingChangedError
from tribrid.factory import collection_schema
from tribrid.ingestion.parse import ParseOptions, TextChunker
from tribrid.ingestion.pipeline import SyncPipeline
from tribrid.ingestion.rebuild import rebuild
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings
from tribrid.store import open_store
from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.generations import EdgeGenerations, LiveEdgeStore, StagedGeneration
from tribrid.store.qdrant import QdrantServerStore, generation_name, generation_of

SCIFACT = Path("/work/shared/data/scifact/corpus.jsonl")
RECORDS = 120
QUERIES = ["cancer cells", "protein binding", "gene expression", "immune response", "mice"]


@pytest.fixture(scope="module")
def encoders() -> EncoderSet:
    return fake_encoders()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    if not SCIFACT.exists():
        pytest.skip(f"{SCIFACT} is not here")
    folder = tmp_path / "corpus"
    folder.mkdir()
    with SCIFACT.open() as source, (folder / "corpus.jsonl").open("w") as target:
        for line in itertools.islice(source, RECORDS):
            target.write(line)
    return folder


def pipeline(
    ledger: SqlLedger,
    store: VectorStore,
    encoders: EncoderSet,
    chars: int,
    *,
    fresh: bool = False,
    checked: bool = True,
) -> SyncPipeline:
    chunking = {"max_characters": chars, "new_after_n_chars": chars * 3 // 4, "overlap": 0}
    options = ParseOptions(**chunking, languages=())
    return SyncPipeline(
        ledger=ledger,
        store=store,
        encoders=encoders,
        parser_factory=lambda: TextChunker(options),
        batch_chunks=64,
        fresh=fresh,
        chunking=chunking if checked else None,
    )


@dataclass
class Searcher:
    """Searches without pause on a thread of its own, recording every answer."""

    store: VectorStore
    encoders: EncoderSet
    answers: list[tuple[float, frozenset[str]]] = field(default_factory=list)  # (t, hit ids)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for query in itertools.cycle(QUERIES):
            if self._stop.is_set():
                return
            try:
                hits = search_store(self.store, self.encoders, query, mode=SearchMode.HYBRID, k=5)
            except BaseException as e:  # recorded, and the test fails on it
                self.errors.append(e)
                continue
            self.answers.append((time.monotonic(), frozenset(h.point_id for h in hits)))

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)


@dataclass
class Backend:
    """One backend's live store and how to start a generation of it."""

    name: str
    store: VectorStore
    begin: object  # () -> StagedGeneration
    generations: object  # () -> list[int]: the generations that exist

    def begin_generation(self) -> StagedGeneration:
        return self.begin()  # type: ignore[operator,no-any-return]

    def existing(self) -> list[int]:
        return self.generations()  # type: ignore[operator,no-any-return]


@pytest.fixture(params=["edge", "qdrant", "qdrant-plain"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, encoders: EncoderSet
) -> Iterator[Backend]:
    schema = collection_schema(Settings(), encoders)
    if request.param == "edge":
        path = tmp_path / "store"
        store = open_store("edge", schema, path=path)
        folders = EdgeGenerations(path)
        made = Backend("edge", store, lambda: folders.begin(schema), folders.numbers)
    else:
        client = QdrantClient(location=":memory:")
        if request.param == "qdrant-plain":
            # A collection made before generations: a plain one, named as the settings say.
            QdrantServerStore(schema, client=client, aliased=False).close()
        store = QdrantServerStore(schema, client=client)

        def collections() -> list[int]:
            names = sorted(c.name for c in client.get_collections().collections)
            return [generation_of(schema.name, n) for n in names]

        made = Backend(
            "qdrant",
            store,
            lambda: QdrantServerStore.begin_generation(schema, client=client),
            collections,
        )
    try:
        yield made
    finally:
        store.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _generation_of(store: VectorStore) -> int:
    assert isinstance(store, LiveEdgeStore | QdrantServerStore)
    return store.generation


@pytest.mark.slow
def test_rebuild_with_another_chunk_size_never_leaves_searches_empty(
    backend: Backend, corpus: Path, tmp_path: Path, encoders: EncoderSet
) -> None:
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        connector = BeirCorpusConnector(corpus)
        first = pipeline(ledger, backend.store, encoders, 1200).sync(connector)
        assert first.counts.indexed == RECORDS
        old_ids = set(ledger.all_point_ids())
        assert backend.store.ids() == old_ids
        before = _generation_of(backend.store)
        # A plain sync with another chunk size would mix two chunkings: refused, untouched.
        with pytest.raises(ChunkingChangedError, match=r"max_characters 1200 -> 300.*--recreate"):
            pipeline(ledger, backend.store, encoders, 300).sync(connector)
        assert backend.store.ids() == old_ids

        searcher = Searcher(backend.store, encoders)
        searcher.start()
        _wait_for(lambda: len(searcher.answers) >= 5)  # answering from the live generation
        staged = backend.begin_generation()
        assert staged.number == before + 1
        report = rebuild(
            staged, [connector], lambda store: pipeline(ledger, store, encoders, 300, fresh=True)
        )
        switched = time.monotonic()
        _wait_for(lambda: sum(t > switched for t, _ in searcher.answers) >= 10)  # and after it
        searcher.stop()

        assert searcher.errors == []
        new_ids = set(ledger.all_point_ids())
        only_old, only_new = old_ids - new_ids, new_ids - old_ids
        assert len(only_new) > len(new_ids) // 2  # most chunks changed with the size
        answers = searcher.answers
        assert [t for t, ids in answers if not ids] == [], "a search returned nothing"
        # Every answer came whole from one generation: the old one, then the new one.
        assert all(ids <= old_ids or ids <= new_ids for _, ids in answers)
        old = [t for t, ids in answers if ids & only_old]
        new = [t for t, ids in answers if ids & only_new]
        assert len(old) >= 5 and len(new) >= 5, (len(old), len(new))
        assert max(old) < min(new) < switched + 5  # it followed the switch at once

        assert report.generation == staged.number == _generation_of(backend.store)
        assert backend.store.ids() == new_ids  # only the new generation's points
        assert backend.existing() == [staged.number]  # the old generation is gone
        source_id = ledger.ensure_source(connector.source_key, kind="beir", location="x")
        generations = {s.generation for s in ledger.document_states(source_id)}
        assert generations == {staged.number}  # the ledger says where the points are

        # The next sync of the live generation has nothing to do.
        again = pipeline(ledger, backend.store, encoders, 300).sync(connector)
        assert again.counts.chunks_embedded == 0 and again.counts.unchanged == RECORDS
    finally:
        ledger.close()


class _Broken(RuntimeError):
    pass


def _failing(encoders: EncoderSet) -> EncoderSet:
    """``encoders``, failing on their third batch, as a disk or a model might."""
    calls = itertools.count()

    class Failing(EncoderSet):
        def encode_documents(self, texts: Sequence[str]) -> EncodedBatch:
            if next(calls) == 2:
                raise _Broken("the disk filled up")
            return super().encode_documents(texts)

    return Failing(encoders.dense, encoders.splade, encoders.bm25)


@pytest.mark.slow
def test_failed_rebuild_leaves_the_live_generation(
    backend: Backend, corpus: Path, tmp_path: Path, encoders: EncoderSet
) -> None:
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        connector = BeirCorpusConnector(corpus)
        pipeline(ledger, backend.store, encoders, 1200).sync(connector)
        old_ids = backend.store.ids()
        before = _generation_of(backend.store)

        staged = backend.begin_generation()
        broken = _failing(encoders)
        with pytest.raises(_Broken):
            rebuild(
                staged, [connector], lambda store: pipeline(ledger, store, broken, 300, fresh=True)
            )

        assert _generation_of(backend.store) == before
        assert backend.existing() == [before]  # the new generation was dropped
        assert backend.store.ids() == old_ids
        hits = search_store(backend.store, encoders, "cancer cells", k=5)
        assert len(hits) == 5

        # The ledger recorded some documents in the dropped generation; one sync of the
        # live one indexes them again and leaves the store and the ledger agreeing.
        healed = pipeline(ledger, backend.store, encoders, 1200).sync(connector)
        assert healed.counts.indexed > 0
        assert backend.store.ids() == set(ledger.all_point_ids())
        source_id = ledger.ensure_source(connector.source_key, kind="beir", location="x")
        assert {s.generation for s in ledger.document_states(source_id)} == {before}
    finally:
        ledger.close()


def test_a_new_qdrant_collection_is_generation_one_behind_an_alias(
    encoders: EncoderSet,
) -> None:
    schema: CollectionSchema = collection_schema(Settings(), encoders)
    client = QdrantClient(location=":memory:")
    with QdrantServerStore(schema, client=client) as store:
        assert store.generation == 1
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
        assert aliases == {schema.name: generation_name(schema.name, 1)}


def test_a_source_keeps_the_chunking_of_its_syncs(
    corpus: Path, tmp_path: Path, encoders: EncoderSet
) -> None:
    """A ledger from before the record adopts the next sync's chunking; from then on a
    sync with other chunking is refused, naming the setting, and writes nothing."""
    schema = collection_schema(Settings(), encoders)
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with open_store("edge", schema, path=tmp_path / "store") as store:
            connector = BeirCorpusConnector(corpus)
            # as a sync before the record was kept
            pipeline(ledger, store, encoders, 1200, checked=False).sync(connector)
            source_id = ledger.ensure_source(connector.source_key, kind="beir", location="x")
            assert ledger.source_chunking(source_id) is None

            adopted = pipeline(ledger, store, encoders, 1000).sync(connector)
            assert adopted.counts.unchanged == RECORDS  # nothing cut again
            assert json.loads(ledger.source_chunking(source_id) or "")["max_characters"] == 1000

            ids, runs = store.ids(), len(ledger.runs())
            with pytest.raises(ChunkingChangedError) as refused:
                pipeline(ledger, store, encoders, 1200).sync(connector)
            message = str(refused.value)
            assert connector.source_key in message
            assert "max_characters 1000 -> 1200 (TRIBRID_CHUNKING__MAX_CHARACTERS)" in message
            assert "new_after_n_chars 750 -> 900" in message and "overlap" not in message
            assert store.ids() == ids and len(ledger.runs()) == runs  # no run, no write
            assert pipeline(ledger, store, encoders, 1000).sync(connector).counts.unchanged
    finally:
        ledger.close()


def test_the_live_file_names_the_generation(tmp_path: Path) -> None:
    folders = EdgeGenerations(tmp_path)
    assert folders.live() == 0
    (tmp_path / "tribrid-live.json").write_text(json.dumps({"generation": 3}))
    assert folders.live() == 3
    assert folders.folder(3) == tmp_path / "generations" / "3"


@pytest.mark.slow
def test_tribrid_serve_follows_a_rebuild_made_beside_it(
    corpus: Path, tmp_path: Path, encoders: EncoderSet
) -> None:
    from tests.support.server import running_server
    from tribrid import factory
    from tribrid.store.remote import RemoteStore

    with running_server(tmp_path / "data", encoders=encoders) as (_, settings):
        ledger = factory.build_ledger(settings)
        store = factory.build_store(settings, encoders)  # through the server
        try:
            assert isinstance(store, RemoteStore)
            connector = BeirCorpusConnector(corpus)
            pipeline(ledger, store, encoders, 1200).sync(connector)
            old_ids = store.ids()
            searcher = Searcher(store, encoders)
            searcher.start()
            _wait_for(lambda: len(searcher.answers) >= 5)
            # The rebuild opens the new generation's shard here, beside the server,
            # which keeps the live one open.
            staged = factory.begin_generation(settings, encoders)
            rebuild(
                staged,
                [connector],
                lambda built: pipeline(ledger, built, encoders, 300, fresh=True),
            )
            switched = time.monotonic()
            _wait_for(lambda: sum(t > switched for t, _ in searcher.answers) >= 10)
            searcher.stop()
            assert searcher.errors == []
            assert all(ids for _, ids in searcher.answers)
            new_ids = set(ledger.all_point_ids())
            assert store.ids() == new_ids != old_ids  # the server answers from it
            _wait_for(lambda: EdgeGenerations(settings.store_path).numbers() == [1])
        finally:
            store.close()
            ledger.close()


def test_a_search_waits_for_the_alias_of_a_collection_being_switched(
    encoders: EncoderSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = collection_schema(Settings(), encoders)
    client = QdrantClient(location=":memory:")
    with QdrantServerStore(schema, client=client) as store:
        real = client.query_points
        failures = iter([ValueError(f"Collection {schema.name} not found")] * 2)

        def switching(*args: object, **kwargs: object) -> object:
            error = next(failures, None)
            if error is not None:  # the moment between deleting and aliasing
                raise error
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(client, "query_points", switching)
        assert search_store(store, encoders, "anything", mode=SearchMode.BM25, k=3) == []
        assert next(failures, None) is None  # both failures were met, and waited out

"""Contract tests of SqlLedger, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.ledger import chunks_for, ids
from tribrid.errors import ConfigError, LedgerError
from tribrid.ingestion.base import FailureKind
from tribrid.ledger import (
    ChunkRecord,
    DocumentState,
    IndexedDocument,
    Ledger,
    QueueLedger,
    RunCounts,
    RunQueue,
    RunStatus,
    SqlLedger,
)
from tribrid.ledger import database as ledger_module
from tribrid.ledger.base import DocumentStatus
from tribrid.ledger.bookkeeping import SqlBookkeeping
from tribrid.ledger.database import Database
from tribrid.ledger.runs import SqlRunQueue

SOURCE = "docs"


@pytest.fixture
def source_id(ledger: SqlLedger) -> int:
    return ledger.ensure_source(SOURCE, kind="local", location="/srv/docs")


def index(
    ledger: SqlLedger,
    source_id: int,
    key: str,
    chunks: list[ChunkRecord],
    *,
    content_hash: str = "c0",
    size: int = 10,
    mtime_ns: int = 1_000,
) -> list[str]:
    return ledger.record_indexed(
        source_id,
        key,
        path=f"/srv/docs/{key}",
        size=size,
        mtime_ns=mtime_ns,
        content_hash=content_hash,
        chunks=chunks,
    )


def fail(
    ledger: SqlLedger,
    source_id: int,
    key: str,
    *,
    kind: str = FailureKind.CORRUPT,
    message: str = "broken",
    content_hash: str | None = "bad",
) -> list[str]:
    return ledger.record_failed(
        source_id,
        key,
        path=f"/srv/docs/{key}",
        size=5,
        mtime_ns=2_000,
        content_hash=content_hash,
        kind=kind,
        message=message,
    )


def state(ledger: SqlLedger, source_id: int, key: str) -> DocumentState:
    found = ledger.get_document(source_id, key)
    assert found is not None, key
    return found


@pytest.fixture
def statements(ledger: SqlLedger) -> Iterator[list[str]]:
    """Every SQL statement the ledger sends while the test runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    engine = ledger._engine
    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


class TestSqlLedger:
    def test_is_a_ledger(self, ledger: SqlLedger) -> None:
        assert isinstance(ledger, Ledger)
        for name, member in inspect.getmembers(Ledger, inspect.isfunction):
            if name.startswith("_"):
                continue
            assert inspect.signature(getattr(SqlLedger, name)) == inspect.signature(member), name

    def test_is_a_queue_ledger(self, ledger: SqlLedger) -> None:
        assert isinstance(ledger, QueueLedger)
        for name, member in inspect.getmembers(QueueLedger, inspect.isfunction):
            if name.startswith("_"):
                continue
            assert inspect.signature(getattr(SqlLedger, name)) == inspect.signature(member), name

    def test_each_role_stands_alone(self, ledger_url: str) -> None:
        with Database(ledger_url) as db:
            bookkeeping, queue = SqlBookkeeping(db), SqlRunQueue(db)
            assert isinstance(bookkeeping, Ledger) and not isinstance(bookkeeping, RunQueue)
            assert isinstance(queue, RunQueue) and not isinstance(queue, Ledger)
            source_id = bookkeeping.ensure_source(SOURCE, kind="local", location="/srv/docs")
            run_id = bookkeeping.start_run(source_id)
            assert queue.queue_documents(source_id, run_id, [("a.md", "/srv/docs/a.md", 1, 1)])
            assert queue.run_progress(run_id).queued == 1
        with pytest.raises(LedgerError, match="is closed"):
            bookkeeping.count_chunks()

    # -- sources and documents ----------------------------------------------------

    def test_ensure_source_is_idempotent_and_follows_moves(self, ledger: SqlLedger) -> None:
        first = ledger.ensure_source("a", kind="local", location="/one")
        assert ledger.ensure_source("a", kind="local", location="/one") == first
        assert ledger.ensure_source("a", kind="local", location="/two") == first
        assert ledger.ensure_source("b", kind="local", location="/b") != first
        assert ledger.status().sources == ["a", "b"]

    def test_ensure_source_refuses_another_kind(self, ledger: SqlLedger) -> None:
        ledger.ensure_source("a", kind="local", location="/one")
        with pytest.raises(ConfigError, match="'a' is recorded in the ledger as kind 'local'"):
            ledger.ensure_source("a", kind="s3", location="/one")

    def test_unknown_document(self, ledger: SqlLedger, source_id: int) -> None:
        assert ledger.get_document(source_id, "nope.txt") is None
        assert ledger.chunks_of(12345) == []
        with pytest.raises(LedgerError, match="no document with id 12345"):
            ledger.mark_deleted(12345)
        with pytest.raises(LedgerError, match="no document with id 12345"):
            ledger.record_unchanged(12345, mtime_ns=1, size=1)

    def test_record_indexed_creates_the_document(self, ledger: SqlLedger, source_id: int) -> None:
        chunks = chunks_for(SOURCE, "a.txt", "one", "two", "three")
        assert index(ledger, source_id, "a.txt", chunks, content_hash="h1") == []

        doc = state(ledger, source_id, "a.txt")
        assert doc == DocumentState(
            id=doc.id,
            key="a.txt",
            size=10,
            mtime_ns=1_000,
            content_hash="h1",
            status=DocumentStatus.INDEXED,
            error_kind=None,
            chunk_count=3,
        )
        assert ledger.chunks_of(doc.id) == chunks

    def test_record_indexed_replaces_chunks_and_returns_exactly_the_stale_ids(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        before = chunks_for(SOURCE, "a.txt", "intro", "body", "old end", "footer")
        index(ledger, source_id, "a.txt", before)
        # A paragraph is inserted at the top, one is rewritten, one disappears.
        after = chunks_for(SOURCE, "a.txt", "new top", "intro", "body", "new end")

        stale = index(ledger, source_id, "a.txt", after, content_hash="c1")

        assert stale == [before[2].point_id, before[3].point_id]
        doc = state(ledger, source_id, "a.txt")
        assert ledger.chunks_of(doc.id) == after  # kept points have their new positions
        assert doc.chunk_count == 4
        assert doc.content_hash == "c1"
        assert sorted(ledger.all_point_ids(source_id)) == sorted(ids(after))

    def test_record_indexed_again_with_the_same_chunks_returns_nothing(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        chunks = chunks_for(SOURCE, "a.txt", "one", "two")
        index(ledger, source_id, "a.txt", chunks)
        assert index(ledger, source_id, "a.txt", chunks) == []
        assert index(ledger, source_id, "a.txt", []) == ids(chunks)
        assert state(ledger, source_id, "a.txt").chunk_count == 0

    def test_record_indexed_refuses_duplicate_point_ids(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        chunk = chunks_for(SOURCE, "a.txt", "one")[0]
        with pytest.raises(ValueError, match="twice"):
            index(ledger, source_id, "a.txt", [chunk, ChunkRecord(chunk.point_id, 1, "x")])
        assert ledger.get_document(source_id, "a.txt") is None

    def test_record_indexed_many_records_each_as_record_indexed_would(
        self, ledger: SqlLedger
    ) -> None:
        """One batch call, and the same calls one by one on another source, leave the
        same documents, chunks and stale ids."""
        results = []
        for name, batched in (("batched", True), ("one-by-one", False)):
            sid = ledger.ensure_source(name, kind="local", location=f"/srv/{name}")
            old_a = chunks_for(name, "a.txt", "intro", "body", "old end")
            index(ledger, sid, "a.txt", old_a)
            index(ledger, sid, "b.txt", chunks_for(name, "b.txt", "b"))
            ledger.mark_deleted(state(ledger, sid, "b.txt").id)
            docs = [
                IndexedDocument(
                    "a.txt",
                    path="/a",
                    size=3,
                    mtime_ns=3,
                    content_hash="a2",
                    chunks=chunks_for(name, "a.txt", "new top", "intro", "body"),
                ),
                IndexedDocument(
                    "c.txt", path="/c", size=1, mtime_ns=1, content_hash="c", chunks=[]
                ),
                IndexedDocument(
                    "b.txt",  # deleted, now back
                    path="/b",
                    size=2,
                    mtime_ns=2,
                    content_hash="b2",
                    chunks=chunks_for(name, "b.txt", "b", "b more"),
                ),
            ]
            if batched:
                stale = ledger.record_indexed_many(sid, docs, generation=2)
            else:
                stale = [
                    ledger.record_indexed(
                        sid,
                        d.key,
                        path=d.path,
                        size=d.size,
                        mtime_ns=d.mtime_ns,
                        content_hash=d.content_hash,
                        chunks=d.chunks,
                        generation=2,
                    )
                    for d in docs
                ]
            assert stale[0] == [old_a[2].point_id]
            states = {d.key: state(ledger, sid, d.key) for d in docs}
            assert {s.status for s in states.values()} == {DocumentStatus.INDEXED}
            chunks = {
                k: [(c.chunk_index, c.content_hash) for c in ledger.chunks_of(s.id)]
                for k, s in states.items()
            }
            shape = {k: (s.size, s.content_hash, s.chunk_count) for k, s in states.items()}
            results.append((stale[1:], chunks, shape))
        assert results[0] == results[1]
        assert ledger.record_indexed_many(source_id_of(ledger, "batched"), []) == []

    def test_record_indexed_many_is_one_transaction(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        a_chunks = chunks_for(SOURCE, "a.txt", "a")
        index(ledger, source_id, "a.txt", a_chunks)
        fresh = IndexedDocument(
            "new.txt",
            path="/n",
            size=1,
            mtime_ns=1,
            content_hash="n",
            chunks=chunks_for(SOURCE, "new.txt", "n"),
        )
        thief = IndexedDocument(
            "b.txt",
            path="/b",
            size=1,
            mtime_ns=1,
            content_hash="b",
            chunks=[ChunkRecord(a_chunks[0].point_id, 0, "h")],  # a.txt's point
        )
        with pytest.raises(LedgerError, match=r"record 2 documents as indexed"):
            ledger.record_indexed_many(source_id, [fresh, thief])
        assert ledger.get_document(source_id, "new.txt") is None
        with pytest.raises(ValueError, match=r"\['new.txt'\] are listed twice"):
            ledger.record_indexed_many(source_id, [fresh, fresh])

    def test_record_indexed_is_one_transaction(self, ledger: SqlLedger, source_id: int) -> None:
        a_chunks = chunks_for(SOURCE, "a.txt", "a")
        b_chunks = chunks_for(SOURCE, "b.txt", "b1", "b2")
        index(ledger, source_id, "a.txt", a_chunks)
        index(ledger, source_id, "b.txt", b_chunks, content_hash="b")

        # A point id that belongs to another document violates the primary key.
        with pytest.raises(LedgerError, match=r"could not record 'b.txt' as indexed"):
            index(
                ledger, source_id, "b.txt", [b_chunks[0], ChunkRecord(a_chunks[0].point_id, 1, "h")]
            )

        doc = state(ledger, source_id, "b.txt")
        assert doc.content_hash == "b"
        assert ledger.chunks_of(doc.id) == b_chunks

    def test_record_failed_returns_the_old_chunks(self, ledger: SqlLedger, source_id: int) -> None:
        chunks = chunks_for(SOURCE, "a.pdf", "one", "two")
        index(ledger, source_id, "a.pdf", chunks)

        stale = fail(ledger, source_id, "a.pdf", kind=FailureKind.ENCRYPTED, message="locked")

        assert stale == ids(chunks)
        doc = state(ledger, source_id, "a.pdf")
        assert doc.status is DocumentStatus.FAILED
        assert doc.error_kind == "encrypted"
        assert doc.content_hash == "bad"
        assert doc.chunk_count == 0
        assert ledger.chunks_of(doc.id) == []
        assert ledger.count_chunks(source_id) == 0

    def test_record_failed_counts_attempts_and_indexing_clears_the_error(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        assert fail(ledger, source_id, "a.pdf", content_hash=None) == []
        assert fail(ledger, source_id, "a.pdf", message="still broken") == []
        report = ledger.status(SOURCE)
        assert [(f.key, f.error_message) for f in report.failures] == [("a.pdf", "still broken")]

        index(ledger, source_id, "a.pdf", chunks_for(SOURCE, "a.pdf", "fixed"))

        doc = state(ledger, source_id, "a.pdf")
        assert doc.status is DocumentStatus.INDEXED
        assert doc.error_kind is None
        assert ledger.status(SOURCE).failures == []

    def test_record_failed_truncates_huge_messages(self, ledger: SqlLedger, source_id: int) -> None:
        fail(ledger, source_id, "a.pdf", message="x" * 100_000)
        message = ledger.status().failures[0].error_message
        assert message is not None
        assert len(message) < 10_000
        assert message.endswith("(truncated)")

    def test_mark_deleted_returns_the_chunks_and_is_idempotent(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        chunks = chunks_for(SOURCE, "a.txt", "one", "two")
        index(ledger, source_id, "a.txt", chunks)
        doc_id = state(ledger, source_id, "a.txt").id

        assert ledger.mark_deleted(doc_id) == ids(chunks)
        assert ledger.mark_deleted(doc_id) == []

        doc = state(ledger, source_id, "a.txt")
        assert doc.status is DocumentStatus.DELETED
        assert doc.content_hash is None  # a re-appearing file can never look unchanged
        assert doc.chunk_count == 0
        assert ledger.chunks_of(doc_id) == []

    def test_a_deleted_key_that_reappears_gets_its_row_back(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        index(ledger, source_id, "a.txt", chunks_for(SOURCE, "a.txt", "one"))
        doc_id = state(ledger, source_id, "a.txt").id
        ledger.mark_deleted(doc_id)

        again = chunks_for(SOURCE, "a.txt", "one", "two")
        assert index(ledger, source_id, "a.txt", again, content_hash="c2") == []

        doc = state(ledger, source_id, "a.txt")
        assert doc.id == doc_id
        assert doc.status is DocumentStatus.INDEXED
        assert doc.content_hash == "c2"
        assert ledger.chunks_of(doc_id) == again
        assert ledger.status().counts["deleted"] == 0

    def test_a_failed_key_that_was_deleted_can_fail_again(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        fail(ledger, source_id, "a.pdf")
        doc_id = state(ledger, source_id, "a.pdf").id
        assert ledger.mark_deleted(doc_id) == []
        fail(ledger, source_id, "a.pdf")
        doc = state(ledger, source_id, "a.pdf")
        assert (doc.id, doc.status) == (doc_id, DocumentStatus.FAILED)

    def test_record_unchanged_touches_mtime_and_size_only(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        chunks = chunks_for(SOURCE, "a.txt", "one")
        index(ledger, source_id, "a.txt", chunks, content_hash="c1", size=10, mtime_ns=1_000)
        doc = state(ledger, source_id, "a.txt")

        ledger.record_unchanged(doc.id, mtime_ns=5_000_000_000_000_000_000, size=11)

        touched = state(ledger, source_id, "a.txt")
        assert touched.mtime_ns == 5_000_000_000_000_000_000  # needs a 64-bit column
        assert touched.size == 11
        assert touched == DocumentState(
            **{**doc.__dict__, "mtime_ns": touched.mtime_ns, "size": 11}
        )
        assert ledger.chunks_of(doc.id) == chunks

    def test_documents_are_per_source(self, ledger: SqlLedger, source_id: int) -> None:
        other = ledger.ensure_source("other", kind="local", location="/srv/other")
        index(ledger, source_id, "a.txt", chunks_for(SOURCE, "a.txt", "one"))
        index(ledger, other, "a.txt", chunks_for("other", "a.txt", "one", "two"))

        assert state(ledger, source_id, "a.txt").id != state(ledger, other, "a.txt").id
        assert ledger.count_chunks(source_id) == 1
        assert ledger.count_chunks(other) == 2
        assert ledger.count_chunks() == 3
        assert [d.key for d in ledger.document_states(other)] == ["a.txt"]

    # -- reading in bulk -------------------------------------------------------------

    def test_chunks_of_many_uses_one_query(
        self, ledger: SqlLedger, source_id: int, statements: list[str]
    ) -> None:
        a = chunks_for(SOURCE, "a.txt", "a1", "a2", "a3")
        b = chunks_for(SOURCE, "b.txt", "b1")
        index(ledger, source_id, "a.txt", a)
        index(ledger, source_id, "b.txt", b)
        fail(ledger, source_id, "c.pdf")
        a_id, b_id, c_id = (state(ledger, source_id, k).id for k in ("a.txt", "b.txt", "c.pdf"))

        statements.clear()
        found = ledger.chunks_of_many([b_id, a_id, c_id, 999_999])

        assert found == {a_id: a, b_id: b, c_id: [], 999_999: []}
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
        assert ledger.chunks_of_many([]) == {}

    def test_document_states_streams_every_row(
        self, ledger: SqlLedger, source_id: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(ledger_module, "_STREAM_BATCH", 2)
        keys = [f"doc{i:02}.txt" for i in range(7)]
        for key in keys:
            index(ledger, source_id, key, chunks_for(SOURCE, key, key))
        ledger.mark_deleted(state(ledger, source_id, "doc03.txt").id)
        fail(ledger, source_id, "doc05.txt")

        states = ledger.document_states(source_id)
        assert isinstance(states, Iterator)
        seen = []
        for doc in states:
            # Writing while streaming must neither deadlock nor disturb the stream.
            ledger.record_unchanged(doc.id, mtime_ns=doc.mtime_ns + 1, size=doc.size)
            seen.append((doc.key, doc.status))

        assert [key for key, _ in seen] == keys
        assert dict(seen)["doc03.txt"] is DocumentStatus.DELETED
        assert dict(seen)["doc05.txt"] is DocumentStatus.FAILED
        assert all(d.mtime_ns == 1_001 for d in ledger.document_states(source_id) if d.size == 10)

    def test_an_abandoned_stream_gives_its_connection_back(
        self, ledger: SqlLedger, source_id: int
    ) -> None:
        for key in ("a", "b", "c"):
            index(ledger, source_id, key, chunks_for(SOURCE, key, key))
        pool = ledger._engine.pool
        states = ledger.document_states(source_id)
        assert inspect.isgenerator(states)
        next(states)
        assert pool.checkedout() == 1  # type: ignore[attr-defined]
        states.close()
        assert pool.checkedout() == 0  # type: ignore[attr-defined]

    def test_all_point_ids(self, ledger: SqlLedger, source_id: int) -> None:
        other = ledger.ensure_source("other", kind="local", location="/srv/other")
        a = chunks_for(SOURCE, "a.txt", "a1", "a2")
        b = chunks_for("other", "b.txt", "b1")
        index(ledger, source_id, "a.txt", a)
        index(ledger, other, "b.txt", b)

        assert list(ledger.all_point_ids(source_id)) == sorted(ids(a))
        assert list(ledger.all_point_ids(other)) == ids(b)
        assert list(ledger.all_point_ids()) == sorted(ids(a) + ids(b))

    # -- runs and status -------------------------------------------------------------

    def test_runs_record_counts_and_duration(self, ledger: SqlLedger, source_id: int) -> None:
        first = ledger.start_run(source_id)
        ledger.finish_run(first, RunCounts(seen=3, indexed=2, failed=1, chunks_embedded=9))
        second = ledger.start_run(source_id)
        ledger.finish_run(second, RunCounts(seen=3), status="failed", error="store down")
        running = ledger.start_run(source_id)

        runs = ledger.runs()
        assert [r.id for r in runs] == [running, second, first]
        latest, failed, done = runs
        assert (latest.status, latest.finished_at, latest.duration_s) == (
            RunStatus.RUNNING,
            None,
            None,
        )
        assert latest.counts == RunCounts()
        assert (failed.status, failed.error) == ("failed", "store down")
        assert done.status is RunStatus.COMPLETED
        assert done.counts == RunCounts(seen=3, indexed=2, failed=1, chunks_embedded=9)
        assert done.source_key == SOURCE
        assert done.finished_at is not None
        assert done.started_at <= done.finished_at
        assert done.duration_s is not None
        assert done.duration_s >= 0
        now = datetime.now(UTC)
        for stamp in (done.started_at, done.finished_at):
            assert stamp.utcoffset() == timedelta(0)
            assert now - timedelta(minutes=5) < stamp <= now
        assert [r.id for r in ledger.runs(limit=1)] == [running]

    def test_finish_run_checks_its_arguments(self, ledger: SqlLedger, source_id: int) -> None:
        run = ledger.start_run(source_id)
        with pytest.raises(ValueError, match="completed, failed"):
            ledger.finish_run(run, RunCounts(), status="running")
        with pytest.raises(LedgerError, match="no run with id 424242"):
            ledger.finish_run(424242, RunCounts())
        with pytest.raises(LedgerError, match="no source with id 424242"):
            ledger.start_run(424242)

    def test_status_counts_failures_and_last_run(self, ledger: SqlLedger, source_id: int) -> None:
        other = ledger.ensure_source("other", kind="local", location="/srv/other")
        ledger.start_run(other)
        run = ledger.start_run(source_id)
        index(ledger, source_id, "a.txt", chunks_for(SOURCE, "a.txt", "one", "two"))
        index(ledger, source_id, "b.txt", chunks_for(SOURCE, "b.txt", "one"))
        ledger.mark_deleted(state(ledger, source_id, "b.txt").id)
        fail(ledger, source_id, "c.pdf", kind=FailureKind.NO_TEXT_LAYER, message="scanned")
        fail(ledger, source_id, "d.pdf", kind=FailureKind.TIMEOUT, message="too slow")
        index(ledger, other, "x.txt", chunks_for("other", "x.txt", "x"))
        ledger.finish_run(run, RunCounts(seen=4, indexed=2, failed=2))

        report = ledger.status(SOURCE)
        assert report.counts == {"pending": 0, "indexed": 1, "failed": 2, "deleted": 1}
        assert report.chunks == 2
        assert report.sources == [SOURCE]
        assert [(f.key, f.error_kind, f.error_message) for f in report.failures] == [
            ("d.pdf", "timeout", "too slow"),
            ("c.pdf", "no_text_layer", "scanned"),
        ]
        failure = report.failures[0]
        assert (failure.source_key, failure.path) == (SOURCE, "/srv/docs/d.pdf")
        assert failure.updated_at.utcoffset() == timedelta(0)
        assert report.last_run is not None
        assert (report.last_run.id, report.last_run.counts.failed) == (run, 2)

        everything = ledger.status()
        assert everything.counts == {"pending": 0, "indexed": 2, "failed": 2, "deleted": 1}
        assert everything.chunks == 3
        assert everything.sources == [SOURCE, "other"]
        assert everything.last_run is not None
        assert everything.last_run.id == run

        assert [f.key for f in ledger.status(max_failures=1).failures] == ["d.pdf"]

    def test_status_of_an_empty_or_unknown_source(self, ledger: SqlLedger) -> None:
        empty = ledger.status()
        assert empty.counts == {s.value: 0 for s in DocumentStatus}
        assert (empty.chunks, empty.failures, empty.last_run, empty.sources) == (0, [], None, [])
        assert ledger.status("nope").sources == []

    # -- lifecycle -------------------------------------------------------------------

    def test_a_closed_ledger_says_so(self, ledger_url: str) -> None:
        ledger = SqlLedger(ledger_url)
        ledger.close()
        ledger.close()
        with pytest.raises(LedgerError, match="is closed"):
            ledger.status()

    def test_two_ledgers_on_one_database(self, ledger: SqlLedger, ledger_url: str) -> None:
        """Two processes (here two ledgers) share one database: reads never block writes."""
        source_id = ledger.ensure_source(SOURCE, kind="local", location="/srv/docs")
        for key in ("a", "b", "c"):
            index(ledger, source_id, key, chunks_for(SOURCE, key, key))
        with SqlLedger(ledger_url) as second:
            stream = ledger.document_states(source_id)
            first = next(stream)
            second.mark_deleted(first.id)
            index(second, source_id, "d", chunks_for(SOURCE, "d", "d"))
            assert [d.key for d in stream] == ["b", "c"]  # the snapshot the stream started on
        assert state(ledger, source_id, "a").status is DocumentStatus.DELETED
        assert ledger.count_chunks() == 3

    def test_concurrent_writers(self, ledger: SqlLedger, source_id: int) -> None:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for n in range(10):
                    key = f"w{worker}-{n}.txt"
                    index(ledger, source_id, key, chunks_for(SOURCE, key, key))
                    if n % 3 == 0:
                        fail(ledger, source_id, key)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert ledger.status().counts == {"pending": 0, "indexed": 24, "failed": 16, "deleted": 0}
        assert ledger.count_chunks() == 24


def source_id_of(ledger: SqlLedger, key: str) -> int:
    found = ledger.find_source(key)
    assert found is not None
    return found.id

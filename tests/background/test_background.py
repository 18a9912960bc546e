"""The plain functions behind the Celery tasks: queueing, leases, writes, crashes, retries.

No Celery here. The models are faked (``tests/fakes.py``: hashed dense and sparse
vectors, real BM25) and so is parsing (paragraphs of text files), because these tests
are about who processes what, not about parsing or encoding; the store is a real Qdrant Edge and
the ledgers are real SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import DIM, fake_encoders
from tests.support.connectors import write_zip
from tests.support.ingestion import InlineParser
from tribrid.background import jobs, leases
from tribrid.background.jobs import Batching
from tribrid.background.sinks import DirectSink, adopt_leases
from tribrid.connectors import LocalFolderConnector
from tribrid.connectors.archives import extract_member
from tribrid.connectors.base import SourceDocument
from tribrid.errors import LedgerError, SourceBusyError, StoreError
from tribrid.ingestion.base import Chunk, DocumentFailure, FailureKind, ParsedDocument
from tribrid.ingestion.parse import ParseJob, ParseOptions
from tribrid.ingestion.pipeline import SyncPipeline
from tribrid.ingestion.plan import PlanAction, plan_document
from tribrid.ingestion.write import WriteBatch, batch_from_json, batch_to_json
from tribrid.ledger import SqlLedger
from tribrid.ledger.base import DocumentState, DocumentStatus, RunCounts
from tribrid.store import open_store
from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.points import content_hash, point_id

OPTIONS = ParseOptions(memory_limit_mb=None)


def paragraphs(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
    """Parse a text file into one chunk per paragraph; ``BROKEN`` files fail."""
    text = job.path.read_text()
    if "BROKEN" in text:
        return DocumentFailure(job.document_key, FailureKind.CORRUPT, f"{job.document_key}: bad")
    seen: Counter[str] = Counter()
    chunks = []
    for index, part in enumerate(p.strip() for p in text.split("\n\n") if p.strip()):
        digest = content_hash(part)
        chunks.append(
            Chunk(
                point_id=point_id(job.source_key, job.document_key, digest, seen[digest]),
                source_key=job.source_key,
                document_key=job.document_key,
                index=index,
                text=part,
                content_hash=digest,
            )
        )
        seen[digest] += 1
    return ParsedDocument(job.document_key, tuple(chunks), element_count=len(chunks))


class LockedStore:
    """Serialises calls to a store shared by threads (each worker has its own in real life)."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


class Env:
    """A folder, a ledger, an Edge store and the sink between them."""

    def __init__(self, root: Path, ledger: SqlLedger, store: VectorStore) -> None:
        self.root = root
        self.ledger = ledger
        self.store = store
        self.encoders = fake_encoders()
        self.sink = DirectSink(ledger, lambda: self.store)
        self.queued: list[list[int]] = []

    @property
    def connector(self) -> LocalFolderConnector:
        return LocalFolderConnector(self.root)

    def start_run(self) -> int:
        key = self.connector.source_key
        return self.ledger.start_run(self.ledger.ensure_source(key, kind="local", location=key))

    def queue(self, run_id: int | None = None, **kwargs: Any) -> int:
        run_id = run_id or self.start_run()
        self.queued = []
        jobs.queue_sync(
            self.connector,
            ledger=self.ledger,
            run_id=run_id,
            sink=self.sink,
            enqueue=self.queued.append,
            batching=Batching(max_documents=4),
            **kwargs,
        )
        return run_id

    def process(self, ids: Sequence[int], **kwargs: Any) -> jobs.ProcessReport:
        kwargs.setdefault("parse", paragraphs)
        kwargs.setdefault("sink", self.sink)
        kwargs.setdefault("options", OPTIONS)
        return jobs.process_documents(ids, ledger=self.ledger, encoders=self.encoders, **kwargs)

    def process_all(self, **kwargs: Any) -> None:
        for ids in self.queued:
            self.process(ids, **kwargs)

    def statuses(self) -> dict[str, str]:
        source_id = self.ledger.ensure_source(
            self.connector.source_key, kind="local", location=self.connector.source_key
        )
        return {s.key: s.status.value for s in self.ledger.document_states(source_id)}

    def assert_exactly_once(self) -> None:
        listed = list(self.ledger.all_point_ids())
        assert len(listed) == len(set(listed))
        assert self.store.ids() == set(listed)
        assert self.store.count() == self.ledger.count_chunks()


def write_docs(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"doc{i:02}.txt").write_text(
            f"Document {i} opens here.\n\nIts second paragraph, number {i}.\n\nAnd a third {i}."
        )


# The PostgreSQL twin of each test is `slow`: the quick subset runs every background
# behaviour once, on SQLite; tests/ledger/ runs the ledger itself on both in it.
@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "docs"
    write_docs(root, 10)
    url = (
        f"sqlite:///{tmp_path / 'ledger.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    ledger = SqlLedger(url)
    encoders = fake_encoders()
    schema = CollectionSchema(
        name="bg",
        dense_size=DIM,
        dense_model=encoders.dense.model_name,
        splade_model=encoders.splade.model_name,
        bm25_model=encoders.bm25.model_name,
    )
    store = open_store("edge", schema, path=tmp_path / "store")
    try:
        yield Env(root, ledger, store)
    finally:
        store.close()
        ledger.close()


# -- the planning rule ----------------------------------------------------------------------


def _state(status: DocumentStatus, kind: str | None, doc: SourceDocument) -> DocumentState:
    return DocumentState(1, doc.key, doc.size, doc.mtime_ns, "x", status, kind, 0)


def test_unchanged_documents_that_failed_for_a_transient_reason_are_parsed_again(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("hello")
    info = (tmp_path / "a.txt").stat()
    doc = SourceDocument("local:x", "a.txt", tmp_path / "a.txt", info.st_size, info.st_mtime_ns)
    for kind in (FailureKind.STORE_FAILED, FailureKind.ENCODE_FAILED):
        plan = plan_document(doc, _state(DocumentStatus.FAILED, kind, doc))
        assert plan.action == PlanAction.PARSE and plan.content_hash
    for kind in (FailureKind.CORRUPT, FailureKind.CRASHED, FailureKind.TIMEOUT):
        assert plan_document(doc, _state(DocumentStatus.FAILED, kind, doc)).action == (
            PlanAction.UNCHANGED
        )
    pending = plan_document(doc, _state(DocumentStatus.PENDING, None, doc))
    assert pending.action == PlanAction.PARSE


def test_batches_close_on_documents_or_on_estimated_chunks() -> None:
    batching = Batching(max_documents=32, max_chunks=10, bytes_per_chunk=1000)
    assert batching.estimate(10) == 1 and batching.estimate(25_000) == 25


def test_a_write_batch_survives_json(env: Env) -> None:
    run_id = env.queue()
    ids = env.queued[0]
    items = env.ledger.work_items(ids)
    parsed = []
    for item in items:
        path = jobs.document_path(item)
        info = path.stat()
        doc = SourceDocument(item.source_key, item.key, path, info.st_size, info.st_mtime_ns)
        job = ParseJob(item.source_key, item.key, path)
        result = paragraphs(job, OPTIONS)
        assert isinstance(result, ParsedDocument)
        parsed.append((doc, doc.content_hash, result))
    from tribrid.ingestion.write import encode_batch

    batch = encode_batch(env.ledger, env.encoders, items[0].source_id, parsed, existing={})
    import json

    again = batch_from_json(json.loads(json.dumps(batch_to_json(batch))))
    assert again == batch
    assert run_id


# -- the whole background flow, without Celery -------------------------------------------


def test_a_queued_run_indexes_every_document_exactly_once(env: Env) -> None:
    run_id = env.queue()
    assert [len(ids) for ids in env.queued] == [4, 4, 2]
    progress = env.ledger.run_progress(run_id)
    assert (progress.queued, progress.listed, progress.finished) == (10, True, False)
    env.process_all()
    progress = env.ledger.run_progress(run_id)
    assert progress.finished and progress.indexed == 10 and progress.remaining == 0
    assert progress.run.counts.chunks_embedded == 30
    assert set(env.statuses().values()) == {"indexed"}
    env.assert_exactly_once()
    # Processing the same ids again (a redelivered message) does nothing.
    report = env.process(env.queued[0])
    assert len(report.skipped) == 4 and not report.committed
    # The next sync finds nothing to do and completes at once.
    second = env.queue()
    assert env.queued == [] and env.ledger.run_progress(second).finished


def test_a_crash_between_upsert_and_ledger_leaves_no_duplicate(env: Env) -> None:
    env.queue()

    class Dies(Exception):
        pass

    class CrashAfterUpsert(DirectSink):
        def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> Any:
            env.store.upsert(batch.points)
            raise Dies

    with pytest.raises(Dies):
        env.process(env.queued[0], sink=CrashAfterUpsert(env.ledger, lambda: env.store))
    assert env.store.count() == 12 and env.ledger.count_chunks() == 0  # orphans, for now
    items = env.ledger.work_items(env.queued[0])
    assert all(i.status == DocumentStatus.PENDING and i.lease_owner is None for i in items)
    env.process_all()
    env.assert_exactly_once()
    assert env.store.count() == 30


def test_a_poison_file_is_quarantined_after_killing_its_workers(env: Env) -> None:
    (env.root / "doc03.txt").write_text("POISON")
    env.queue()

    class WorkerDied(BaseException):
        """What a segfault looks like from the ledger: the parse never finishes."""

    def deadly(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
        if "POISON" in job.path.read_text():
            raise WorkerDied
        return paragraphs(job, options)

    first = env.queued[0]
    for _ in range(3):  # each delivery dies on the poison file, after parsing the ones before it
        with pytest.raises(WorkerDied):
            env.process(first, parse=deadly, max_attempts=3)
    report = env.process(first, parse=deadly, max_attempts=3)
    assert len(report.failed) == 1 and len(report.committed) == 3
    env.process_all(parse=deadly)
    states = env.statuses()
    assert states.pop("doc03.txt") == "failed"
    assert set(states.values()) == {"indexed"}
    failure = env.ledger.status().failures[0]
    assert failure.error_kind == "crashed" and "died while parsing it, 3 time(s)" in (
        failure.error_message or ""
    )
    env.assert_exactly_once()
    # It stays quarantined until it changes.
    env.queue()
    assert env.queued == []


def test_a_bad_file_fails_once_and_the_rest_index(env: Env) -> None:
    (env.root / "doc05.txt").write_text("BROKEN")
    run_id = env.queue()
    env.process_all()
    progress = env.ledger.run_progress(run_id)
    assert (progress.indexed, progress.failed, progress.finished) == (9, 1, True)
    assert env.ledger.status().failures[0].error_kind == "corrupt"
    env.queue()
    assert env.queued == []  # a bad file is not retried until it changes


def test_a_store_outage_fails_the_documents_and_the_next_sync_recovers_them(env: Env) -> None:
    run_id = env.queue()

    class Down(DirectSink):
        def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> Any:
            raise StoreError("Qdrant at http://127.0.0.1:1 is unreachable")

    down = Down(env.ledger, lambda: env.store)
    for ids in env.queued:
        with pytest.raises(StoreError) as caught:
            env.process(ids, sink=down)
        assert jobs.is_transient(caught.value)
        # The task's retries are exhausted: the documents are recorded failed.
        jobs.fail_documents(
            ids,
            ledger=env.ledger,
            sink=env.sink,
            kind=jobs.failure_kind(caught.value),
            message=str(caught.value),
        )
    progress = env.ledger.run_progress(run_id)
    assert progress.finished and progress.failed == 10
    assert {f.error_kind for f in env.ledger.status().failures} == {"store_failed"}
    env.queue()  # the files did not change, but store_failed is retried
    assert sum(len(ids) for ids in env.queued) == 10
    env.process_all()
    assert set(env.statuses().values()) == {"indexed"}
    env.assert_exactly_once()


def test_vanished_and_changed_files_between_syncs(env: Env) -> None:
    env.queue()
    env.process_all()
    (env.root / "doc00.txt").unlink()
    (env.root / "doc01.txt").write_text("Document 1 opens here.\n\nA new second paragraph.")
    run_id = env.queue()
    assert sum(len(ids) for ids in env.queued) == 1
    env.process_all()
    progress = env.ledger.run_progress(run_id)
    assert progress.run.counts.deleted == 1 and progress.indexed == 1
    assert progress.run.counts.chunks_embedded == 1 and progress.run.counts.chunks_reused == 1
    env.assert_exactly_once()
    assert env.store.count({"document_key": "doc00.txt"}) == 0


def test_a_file_gone_before_its_worker_came_is_deleted(env: Env) -> None:
    env.queue()
    (env.root / "doc00.txt").unlink()
    report = env.process(env.queued[0])
    assert len(report.deleted) == 1
    assert env.statuses()["doc00.txt"] == "deleted"


def test_racing_workers_never_process_a_document_twice(env: Env) -> None:
    write_docs(env.root, 40)
    env.queue()
    all_ids = [i for ids in env.queued for i in ids]
    parsed: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
        with lock:
            parsed[job.document_key] += 1
        return paragraphs(job, options)

    shared = LockedStore(env.store)
    sink = DirectSink(env.ledger, lambda: shared)  # type: ignore[arg-type, return-value]
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for start in range(0, len(all_ids), 3):  # everyone gets every message
                env.process(all_ids[start : start + 3], owner=name, parse=counting, sink=sink)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(parsed) == set(env.statuses()) and set(parsed.values()) == {1}
    assert set(env.statuses().values()) == {"indexed"}
    env.assert_exactly_once()


def test_a_dead_workers_lease_is_taken_over(env: Env, tmp_path: Path) -> None:
    import subprocess
    import sys

    env.queue()
    ids = env.queued[0]
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    import socket

    dead = f"{socket.gethostname()}:{int(child.stdout)}:gone"
    assert leases.owner_is_dead(dead)
    assert not leases.owner_is_dead(leases.lease_owner())
    assert not leases.owner_is_dead(leases.call_owner())
    assert leases.owner_is_dead(f"{dead}:call")
    assert not leases.owner_is_dead("elsewhere:1:abc")
    env.ledger.acquire_leases(ids, dead, 600)
    env.ledger.acquire_leases(env.queued[1], "elsewhere:1:abc", 600)
    report = env.process(ids + env.queued[1])
    assert len(report.committed) == 4 and report.busy == env.queued[1]


def test_a_file_changed_while_it_was_parsed_is_picked_up_by_the_next_sync(env: Env) -> None:
    import os

    target = env.root / "doc02.txt"

    def editing(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
        result = paragraphs(job, options)  # what was read: the old text
        if job.document_key == "doc02.txt":
            target.write_text("Rewritten while its worker was busy.")
            info = target.stat()
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))
        return result

    env.queue()
    env.process_all(parse=editing)
    assert env.store.count({"document_key": "doc02.txt"}) == 3  # the old text, for now
    env.queue()
    assert [len(ids) for ids in env.queued] == [1]
    env.process_all()
    hits = [
        h
        for h in env.store.retrieve(list(env.store.ids()))
        if h.payload["document_key"] == "doc02.txt"
    ]
    assert [h.payload["text"] for h in hits] == ["Rewritten while its worker was busy."]
    env.assert_exactly_once()


def test_a_parse_that_overruns_its_time_limit_fails_as_timeout(env: Env) -> None:
    import time as clock

    def stuck(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
        if job.document_key == "doc01.txt":
            # Parsers swallow Exception; the time limit must get through that.
            with contextlib.suppress(Exception):
                clock.sleep(30)
        return paragraphs(job, options)

    env.queue()
    report = env.process(
        env.queued[0], parse=stuck, options=ParseOptions(timeout_s=0.5, memory_limit_mb=None)
    )
    assert len(report.failed) == 1 and len(report.committed) == 3
    failure = env.ledger.status().failures[0]
    assert failure.key == "doc01.txt" and failure.error_kind == "timeout"
    assert env.ledger.work_items(report.failed)[0].open_attempts == 0  # finished, not a crash


def test_a_listing_delivered_twice_at_once_sends_no_document_round_again(env: Env) -> None:
    """A second copy of a ``sync_source`` message starts before the first has finished
    (a broker redelivery): its guard sees the run unlisted. Were it to list too, documents
    the first copy's workers have finished must not become pending again; the listing
    claim keeps it from listing at all."""
    run_id = env.start_run()
    again: list[list[int]] = []

    class Late(LocalFolderConnector):
        def list_documents(self) -> Iterator[Any]:
            # The second copy has read the ledger (everything pending); now the first
            # copy's first batch gets indexed, then this copy lists the folder.
            env.process(env.queued[0])
            yield from super().list_documents()

    class Interrupted(LocalFolderConnector):
        def list_documents(self) -> Iterator[Any]:
            yield from super().list_documents()
            # Before this copy marks the run listed, the second copy runs.
            jobs.queue_sync(
                Late(env.root),
                ledger=env.ledger,
                run_id=run_id,
                sink=env.sink,
                enqueue=again.append,
                batching=Batching(max_documents=4),
            )

    env.queued = []
    jobs.queue_sync(
        Interrupted(env.root),
        ledger=env.ledger,
        run_id=run_id,
        sink=env.sink,
        enqueue=env.queued.append,
        batching=Batching(max_documents=4),
    )
    # The second copy finds the run being listed (the ledger's listing claim) and steps
    # aside: it neither lists nor sends anything.
    assert again == []
    reports = [env.process(ids) for ids in env.queued]
    assert sum(len(r.committed) for r in reports) == 10  # each document once, in all
    progress = env.ledger.run_progress(run_id)
    assert progress.finished and progress.indexed == 10
    assert progress.run.counts.seen == 10 and progress.run.counts.indexed == 10
    assert progress.run.counts.chunks_embedded == 30
    env.assert_exactly_once()


def test_a_listing_refuses_a_source_cut_with_other_chunking(env: Env) -> None:
    """The workers' chunking settings are checked like a foreground sync's: a source cut
    another way fails the run with the setting and the fix, and nothing is queued."""
    run_id = env.queue(chunking={"max_characters": 1200, "overlap": 100})
    env.process_all()
    assert env.ledger.run_progress(run_id).finished
    (env.root / "doc00.txt").write_text("Changed, to be cut with other settings.")
    refused = env.queue(chunking={"max_characters": 600, "overlap": 100})
    assert env.queued == []
    run = env.ledger.run_progress(refused).run
    assert run.status == "failed"
    assert "max_characters 1200 -> 600" in (run.error or "")
    assert "--recreate" in (run.error or "")
    assert env.statuses()["doc00.txt"] == "indexed"  # the change waits for the rebuild
    again = env.queue(chunking={"max_characters": 1200, "overlap": 100})
    assert len(env.queued) == 1 and env.ledger.run_progress(again).queued == 1


def _foreground(env: Env) -> SyncPipeline:
    return SyncPipeline(
        ledger=env.ledger,
        store=env.store,
        encoders=env.encoders,
        parser_factory=lambda: InlineParser(OPTIONS),
    )


@pytest.mark.slow
def test_foreground_and_background_syncs_of_one_source_never_both_work(env: Env) -> None:
    """The fault drill of two `tribrid ingest` of one folder started at once (foreground
    and background): whichever comes second does nothing and says why."""
    # A background run listed and at work: a foreground sync refuses, naming the run.
    run_id = env.queue()
    with pytest.raises(SourceBusyError, match=rf"background run #{run_id} still at work"):
        _foreground(env).sync(env.connector)
    env.process_all()
    assert env.ledger.run_progress(run_id).finished
    # A foreground sync holds the source: a background listing fails its run at once.
    source_id = env.ledger.ensure_source(
        env.connector.source_key, kind="local", location=env.connector.source_key
    )
    (env.root / "doc00.txt").write_text("Changed while the foreground sync holds the source.")
    with env.ledger.hold_source(source_id) as held:
        assert held
        late = env.queue()
        with pytest.raises(SourceBusyError, match="being synced by another process"):
            _foreground(env).sync(env.connector)
    assert env.queued == []
    progress = env.ledger.run_progress(late)
    assert progress.run.status == "failed" and "nothing was queued" in (progress.run.error or "")
    # Free again: the change is picked up once.
    report = _foreground(env).sync(env.connector)
    assert report.counts.indexed == 1 and report.counts.unchanged == 9
    env.assert_exactly_once()


def test_a_background_run_whose_workers_died_long_ago_does_not_block_a_sync(env: Env) -> None:
    run_id = env.queue()
    key = env.connector.source_key
    source_id = env.ledger.ensure_source(key, kind="local", location=key)
    assert [r.id for r in env.ledger.busy_runs(source_id)] == [run_id]
    assert env.ledger.busy_runs(source_id, quiet_s=0) == []  # quiet: its workers are gone
    env.process_all()
    assert env.ledger.busy_runs(source_id) == []  # finished


def test_a_retry_takes_over_the_leases_its_failed_call_could_not_give_back(env: Env) -> None:
    """Fault drill finding 2: the ledger drops mid-batch, so the call can neither finish
    nor release its leases; the Celery retry runs in the same process as a new call and
    must not wait for those leases to expire."""
    env.queue()
    ids = env.queued[0]

    class Away:
        """The env's ledger, unreachable for lease bookkeeping while ``down``."""

        down = False

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(env.ledger, name)
            if name in {"renew_leases", "release_leases"}:

                def guarded(*args: Any, **kwargs: Any) -> Any:
                    if self.down:
                        raise LedgerError("ledger postgresql://…: connection failed")
                    return attribute(*args, **kwargs)

                return guarded
            return attribute

    away = Away()
    away.down = True
    with pytest.raises(LedgerError):
        jobs.process_documents(
            ids, ledger=away, encoders=env.encoders, parse=paragraphs, sink=env.sink,
            options=OPTIONS,
        )  # fmt: skip
    assert all(i.lease_owner for i in env.ledger.work_items(ids))  # still held
    away.down = False
    retry = env.process(ids)
    assert retry.committed == ids and retry.busy == []
    env.process_all()
    env.assert_exactly_once()


def test_a_second_delivery_to_the_same_process_finds_its_documents_taken(env: Env) -> None:
    """With the embedded store, a batch waits in the writer's queue with its documents
    still leased. The same message delivered again to the same worker process (a Redis
    visibility timeout shorter than the task) must not parse and encode them again."""
    env.queue()
    waiting: list[tuple[WriteBatch, str, int | None]] = []

    class WriterQueue:
        def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> None:
            waiting.append((batch, owner, run_id))

        def delete(self, point_ids: Sequence[str]) -> None:
            pass

        def run_completed(self, run_id: int, source_id: int, source_key: str) -> None:
            pass

    ids = env.queued[0]
    first = env.process(ids, sink=WriterQueue())
    again = env.process(ids, sink=WriterQueue())
    assert first.committed == ids and again.busy == ids and len(waiting) == 1
    batch, owner, run_id = waiting[0]
    env.sink.commit(batch, owner=owner, run_id=run_id)  # the writer gets to it
    assert env.process(ids).skipped == ids
    assert all(i.lease_owner is None for i in env.ledger.work_items(ids))
    env.process_all()
    assert env.ledger.run_progress(run_id or 0).run.counts.indexed == 10
    env.assert_exactly_once()


def test_a_writer_killed_with_a_batch_in_hand_is_seen_dead_by_the_reaper(env: Env) -> None:
    """Fault drill finding 1: the writer takes the batch's leases over, so when it is
    killed holding the batch the reaper sees a dead owner, instead of the encode
    worker's finished call (alive) holding them until the lease expires."""
    env.queue()
    waiting: list[tuple[WriteBatch, str]] = []

    class WriterQueue:
        def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> None:
            waiting.append((batch, owner))

        def delete(self, point_ids: Sequence[str]) -> None:
            pass

        def run_completed(self, run_id: int, source_id: int, source_key: str) -> None:
            pass

    ids = env.queued[0]
    assert env.process(ids, sink=WriterQueue()).committed == ids
    batch, sender = waiting[0]
    assert {i.lease_owner for i in env.ledger.work_items(ids)} == {sender}
    assert jobs.reap(env.ledger, enqueue=lambda _: None).requeued == []  # the sender lives
    # The writer (here a process that has since been killed) receives the batch.
    killed_writer = f"{socket.gethostname()}:{2**22 + 77}:dead"
    assert adopt_leases(env.ledger, batch, sender=sender, writer=killed_writer, lease_s=900) == ids
    sent: list[list[int]] = []
    report = jobs.reap(env.ledger, enqueue=sent.append)
    assert report.owners == [killed_writer] and sorted(report.requeued) == sorted(ids)
    for part in sent:
        assert env.process(part).committed == part
    env.process_all()
    env.assert_exactly_once()


def _leased_run(ledger: SqlLedger, owner: str, *, ttl_s: float = 900.0) -> tuple[int, list[int]]:
    key = "local:/srv/reap"
    source_id = ledger.ensure_source(key, kind="local", location=key)
    run_id = ledger.start_run(source_id)
    ids = ledger.queue_documents(
        source_id, run_id, [(f"d{i}.md", f"d{i}.md", 10, 1) for i in range(3)]
    )
    ledger.add_run_counts(run_id, RunCounts(seen=3), listed=True)
    assert ledger.acquire_leases(ids, owner, ttl_s, take_over=set()) == ids
    return run_id, ids


def test_the_reaper_queues_again_what_a_dead_worker_held(tmp_path: Path) -> None:
    dead = f"{socket.gethostname()}:{2**22 + 4321}:abcd:ef01"  # no such pid here
    with SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        run_id, ids = _leased_run(ledger, dead)
        stalled = jobs.stall_reason(ledger.run_progress(run_id))
        assert stalled is not None and f"pid {2**22 + 4321}" in stalled and "died" in stalled
        sent: list[list[int]] = []
        report = jobs.reap(ledger, enqueue=sent.append, batch_documents=2)
        assert sent == [ids[:2], ids[2:]] and report.owners == [dead]
        assert all(item.lease_owner is None for item in ledger.work_items(ids))
        assert jobs.reap(ledger, enqueue=sent.append).requeued == []  # nothing twice
        assert jobs.stall_reason(ledger.run_progress(run_id), quiet_s=3600) is None


def test_the_reaper_leaves_live_workers_alone_and_takes_expired_leases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        run_id, ids = _leased_run(ledger, leases.call_owner())
        sent: list[list[int]] = []
        assert jobs.reap(ledger, enqueue=sent.append).requeued == [] and sent == []
        assert jobs.stall_reason(ledger.run_progress(run_id)) is None  # a live worker has them
        later = datetime.now(UTC) + timedelta(hours=1)  # the lease lapsed (a worker elsewhere)
        with caplog.at_level(logging.WARNING, logger=jobs.log.name):
            assert jobs.reap(ledger, enqueue=sent.append, now=later).requeued == ids
        # The owner is alive: the log says the lease lapsed, not that the worker died.
        assert "whose lease expired; queued again" in caplog.text
        assert "which is gone" not in caplog.text


def test_queued_work_that_nobody_takes_is_reported_stalled(tmp_path: Path) -> None:
    with SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        key = "local:/srv/idle"
        source_id = ledger.ensure_source(key, kind="local", location=key)
        run_id = ledger.start_run(source_id)
        ledger.queue_documents(source_id, run_id, [("a.md", "a.md", 1, 1)])
        ledger.add_run_counts(run_id, RunCounts(seen=1), listed=True)
        progress = ledger.run_progress(run_id)
        assert jobs.stall_reason(progress) is None  # just queued
        later = datetime.now(UTC) + timedelta(seconds=90)
        reason = jobs.stall_reason(progress, now=later)
        assert reason is not None and "1 document(s) queued and none taken for 90 s" in reason


def test_the_reaper_queues_again_a_quiet_run_whose_messages_were_lost(tmp_path: Path) -> None:
    with SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        key = "local:/srv/lost"
        source_id = ledger.ensure_source(key, kind="local", location=key)
        run_id = ledger.start_run(source_id)
        ids = ledger.queue_documents(
            source_id, run_id, [(f"d{i}.md", f"d{i}.md", 10, 1) for i in range(3)]
        )
        sent: list[list[int]] = []
        # Not listed yet: the lister may still be queuing.
        assert jobs.reap(ledger, enqueue=sent.append, stranded_after_s=0).requeued == []
        ledger.add_run_counts(run_id, RunCounts(seen=3), listed=True)
        # Something happened within the last hour: messages may still be on their way.
        assert jobs.reap(ledger, enqueue=sent.append, stranded_after_s=3600).requeued == []
        # A live worker holds one of them: the run is moving, leave it alone.
        owner = leases.call_owner()
        assert ledger.acquire_leases(ids[:1], owner, 900, take_over=set())
        assert jobs.reap(ledger, enqueue=sent.append, stranded_after_s=0).requeued == []
        ledger.release_leases(ids[:1], owner)
        report = jobs.reap(ledger, enqueue=sent.append, batch_documents=2, stranded_after_s=0)
        assert report.stranded == ids and sent == [ids[:2], ids[2:]]
        # Claimed documents count as touched: the same quiet spell is not claimed twice.
        assert jobs.reap(ledger, enqueue=sent.append, stranded_after_s=60).requeued == []
        # Without the setting the reaper leaves queued documents to the broker.
        assert jobs.reap(ledger, enqueue=sent.append).stranded == []


# -- archives -------------------------------------------------------------------------------


def member_paragraphs(job: ParseJob, options: ParseOptions) -> ParsedDocument | DocumentFailure:
    """:func:`paragraphs` of a file, or of an archive member read out of its archive."""
    if not job.member:
        return paragraphs(job, options)
    with tempfile.TemporaryDirectory() as folder:
        path = extract_member(
            job.path, job.member, key=job.document_key, limits=options.archives, folder=Path(folder)
        )
        return paragraphs(replace(job, path=path, member=()), options)


def test_workers_find_archive_members_by_key_and_index_only_changed_ones(env: Env) -> None:
    archive = env.root / "box.zip"
    members = {"a.txt": "alpha one\n\nalpha two", "b/c.txt": "gamma", "../up.txt": "evil"}
    write_zip(archive, members)
    env.queue()
    env.process_all(parse=member_paragraphs)
    statuses = {k: v for k, v in env.statuses().items() if k.startswith("box.zip")}
    assert statuses == {
        "box.zip!/a.txt": "indexed",
        "box.zip!/b/c.txt": "indexed",
        "box.zip!/..%2Fup.txt": "failed",
    }
    env.assert_exactly_once()
    points = env.store.count()

    write_zip(archive, {**members, "b/c.txt": "gamma changed"})
    os.utime(archive, ns=(time.time_ns(), archive.stat().st_mtime_ns + 10**9))
    env.queue()
    queued = [i for ids in env.queued for i in ids]
    assert [w.key for w in env.ledger.work_items(queued)] == ["box.zip!/b/c.txt"]
    env.process_all(parse=member_paragraphs)
    env.assert_exactly_once()
    assert env.store.count() == points

    archive.unlink()
    env.queue()
    assert not any(v != "deleted" for k, v in env.statuses().items() if k.startswith("box.zip"))
    env.assert_exactly_once()

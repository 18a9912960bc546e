"""Background runs in the ledger: queueing, leases, attempts and run progress.

Run against SQLite and PostgreSQL alike; the race test is where PostgreSQL's row locks
and SQLite's single writer must both give the same answer: each document leased once.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from tests.support.ledger import chunks_for
from tribrid.errors import LedgerError
from tribrid.ledger import RunCounts, RunStatus, SqlLedger
from tribrid.ledger.base import DocumentStatus

SOURCE = "local:/srv/docs"


@pytest.fixture
def source_id(ledger: SqlLedger) -> int:
    return ledger.ensure_source(SOURCE, kind="local", location=SOURCE)


def queue(ledger: SqlLedger, source_id: int, run_id: int, *keys: str) -> list[int]:
    return ledger.queue_documents(source_id, run_id, [(k, k, 10, 1) for k in keys])


def test_queueing_makes_documents_pending_for_the_run(ledger: SqlLedger, source_id: int) -> None:
    ledger.record_indexed(
        source_id,
        "old.md",
        path="old.md",
        size=1,
        mtime_ns=1,
        content_hash="h",
        chunks=chunks_for(SOURCE, "old.md", "one", "two"),
    )
    run_id = ledger.start_run(source_id)
    ids = queue(ledger, source_id, run_id, "new.md", "old.md")
    items = ledger.work_items(ids)
    assert [i.key for i in items] == ["new.md", "old.md"]
    assert all(i.status == DocumentStatus.PENDING and i.run_id == run_id for i in items)
    assert items[0].source_location == SOURCE and items[0].lease_owner is None
    # A queued document keeps its points searchable until a worker replaces them.
    assert len(ledger.chunks_of(ids[1])) == 2
    assert queue(ledger, source_id, run_id, "new.md") == ids[:1]  # idempotent


def test_a_lease_is_exclusive_until_released_or_expired(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    a, b = queue(ledger, source_id, run_id, "a.md", "b.md")
    assert ledger.acquire_leases([a, b], "w1", 60) == [a, b]
    assert ledger.acquire_leases([a, b], "w2", 60) == []
    assert ledger.acquire_leases([a], "w1", 60) == [a]  # the owner may claim again
    ledger.release_leases([a], "w2")  # not w2's: nothing happens
    assert ledger.acquire_leases([a], "w2", 60) == []
    ledger.release_leases([a], "w1")
    assert ledger.acquire_leases([a], "w2", 60) == [a]
    # b's lease expires: anyone takes it over.
    assert ledger.acquire_leases([b], "w1", 0.2) == [b]
    time.sleep(0.3)
    assert ledger.acquire_leases([b], "w2", 60) == [b]
    # A dead owner's lease is taken over before it expires, when the caller says so.
    assert ledger.acquire_leases([b], "w3", 60, take_over=["w1"]) == []
    assert ledger.acquire_leases([b], "w3", 60, take_over=["w2"]) == [b]
    assert ledger.renew_leases([a, b], "w3", 60) == 1


def test_only_pending_documents_are_leased(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    (a,) = queue(ledger, source_id, run_id, "a.md")
    ledger.record_indexed(
        source_id,
        "a.md",
        path="a.md",
        size=1,
        mtime_ns=1,
        content_hash="h",
        chunks=chunks_for(SOURCE, "a.md", "one"),
    )
    assert ledger.acquire_leases([a], "w1", 60) == []


def test_racing_workers_lease_each_document_once(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    ids = queue(ledger, source_id, run_id, *(f"d{i:03}.md" for i in range(60)))
    won: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(owner: str) -> None:
        try:
            start.wait()
            mine: list[int] = []
            for document_id in ids:  # everyone goes for every document, in the same order
                mine += ledger.acquire_leases([document_id], owner, 60)
            won[owner] = mine
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    leased = [d for mine in won.values() for d in mine]
    assert sorted(leased) == sorted(ids)  # every document once, none twice


def test_attempts_count_parses_that_never_finished(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    (a,) = queue(ledger, source_id, run_id, "poison.pdf")
    assert ledger.begin_attempt(a) == 1
    assert ledger.begin_attempt(a) == 2  # the first worker died on it
    assert ledger.work_items([a])[0].open_attempts == 2
    ledger.end_attempt(a)
    assert ledger.work_items([a])[0].open_attempts == 0


def test_a_run_completes_once_listed_and_nothing_is_pending(
    ledger: SqlLedger, source_id: int
) -> None:
    run_id = ledger.start_run(source_id)
    a, _ = queue(ledger, source_id, run_id, "a.md", "b.md")
    ledger.acquire_leases([a], "w1", 60)
    progress = ledger.run_progress(run_id)
    assert (progress.queued, progress.in_progress, progress.done, progress.listed) == (
        1,
        1,
        0,
        False,
    )
    assert not ledger.complete_run_if_done(run_id)
    ledger.record_indexed(
        source_id,
        "a.md",
        path="a.md",
        size=1,
        mtime_ns=1,
        content_hash="h",
        chunks=chunks_for(SOURCE, "a.md", "one"),
    )
    ledger.record_failed(
        source_id,
        "b.md",
        path="b.md",
        size=1,
        mtime_ns=1,
        content_hash=None,
        kind="corrupt",
        message="bad",
    )
    ledger.add_run_counts(run_id, RunCounts(indexed=1, failed=1, chunks_embedded=1))
    assert not ledger.complete_run_if_done(run_id)  # the listing is not done yet
    ledger.add_run_counts(run_id, RunCounts(seen=2), listed=True)
    progress = ledger.run_progress(run_id)
    assert (progress.indexed, progress.failed, progress.remaining, progress.listed) == (
        1,
        1,
        0,
        True,
    )
    assert progress.run.counts == RunCounts(seen=2, indexed=1, failed=1, chunks_embedded=1)
    assert ledger.complete_run_if_done(run_id)
    assert not ledger.complete_run_if_done(run_id)  # exactly one caller completes it
    done = ledger.run_progress(run_id)
    assert done.finished and done.run.status == RunStatus.COMPLETED
    assert done.eta_s(datetime.now(UTC)) == 0.0
    assert ledger.work_items([a])[0].lease_owner is None  # leases left behind are cleared


def test_progress_of_an_unknown_run_says_so(ledger: SqlLedger) -> None:
    with pytest.raises(LedgerError, match="no run 99"):
        ledger.run_progress(99)


def test_a_failed_run_keeps_its_error(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    ledger.fail_run(run_id, "folder vanished")
    run = ledger.run_progress(run_id).run
    assert run.status == RunStatus.FAILED and run.error == "folder vanished"


def test_lease_columns_survive_in_the_schema(ledger: SqlLedger, source_id: int) -> None:
    run_id = ledger.start_run(source_id)
    (a,) = queue(ledger, source_id, run_id, "a.md")
    ledger.acquire_leases([a], "host:1:abc", 60)
    engine = ledger._engine
    with engine.connect() as connection:
        owner = connection.execute(
            text("SELECT lease_owner FROM documents WHERE id = :id"), {"id": a}
        ).scalar_one()
    assert owner == "host:1:abc"

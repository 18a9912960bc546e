"""``tribrid status`` without SQLAlchemy: the standard-library reader of an SQLite ledger
gives the same report as the SQL ledger, and steps aside whenever it cannot."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.ledger import chunks_for
from tribrid.connectors.archives import MEMBER_SEPARATOR
from tribrid.ingestion.base import FailureKind
from tribrid.ledger import RunCounts, SqlLedger
from tribrid.ledger.summary import MEMBER_LIKE, read_sqlite_status


def _record(ledger: SqlLedger, source_id: int, key: str, *texts: str) -> None:
    ledger.record_indexed(
        source_id,
        key,
        path=f"/srv/{key}",
        size=len(key),
        mtime_ns=1,
        content_hash=f"h-{key}",
        chunks=chunks_for(str(source_id), key, *texts),
    )


def _fail(ledger: SqlLedger, source_id: int, key: str, kind: str, message: str) -> None:
    ledger.record_failed(
        source_id,
        key,
        path=f"/srv/{key}",
        size=1,
        mtime_ns=1,
        content_hash=None,
        kind=kind,
        message=message,
    )


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    """A ledger with two sources, failures, deletions, archives and runs."""
    path = tmp_path / "ledger.db"
    with SqlLedger(f"sqlite:///{path}") as ledger:
        docs = ledger.ensure_source("local:/srv/docs", kind="local", location="/srv/docs")
        other = ledger.ensure_source("local:/srv/other", kind="local", location="/srv/other")
        ledger.name_source(other, "notes")
        first = ledger.start_run(docs)
        _record(ledger, docs, "a.txt", "one", "two")
        _record(ledger, docs, "gone.txt", "x")
        gone = next(d for d in ledger.document_states(docs) if d.key == "gone.txt")
        ledger.mark_deleted(gone.id)
        _fail(ledger, docs, "scan.pdf", FailureKind.NO_TEXT_LAYER, "scanned; enable OCR")
        _record(ledger, docs, f"pack.zip{MEMBER_SEPARATOR}a.md", "member a")
        _fail(ledger, docs, f"pack.zip{MEMBER_SEPARATOR}b.pdf", FailureKind.CORRUPT, "broken")
        _fail(ledger, docs, f"bad.zip{MEMBER_SEPARATOR}c.md", FailureKind.CORRUPT, "broken too")
        _fail(ledger, docs, "bad.zip", FailureKind.CORRUPT, "not a zip")
        _record(ledger, docs, "news!/story.txt", "not an archive member")
        ledger.finish_run(first, RunCounts(seen=8, indexed=3, failed=4, deleted=1))
        ledger.start_run(other)  # the newest run, still running
        _record(ledger, other, "n.md", "note")
        _fail(ledger, other, "n2.md", FailureKind.TIMEOUT, "too slow")
    return path


@pytest.mark.parametrize("source", [None, "local:/srv/docs", "notes", "local:/srv/other", "no"])
@pytest.mark.parametrize("max_failures", [100, 1, None])
def test_the_sqlite_reader_gives_the_sql_ledgers_report(
    ledger_file: Path, source: str | None, max_failures: int | None
) -> None:
    with SqlLedger(f"sqlite:///{ledger_file}") as ledger:
        found = ledger.find_source(source) if source is not None else None
        expected = ledger.status(
            found.key if found is not None else source, max_failures=max_failures
        )
    report = read_sqlite_status(ledger_file, source, max_failures=max_failures)
    assert report == expected
    if source is None:
        # The fixture is rich enough for the comparison to mean something.
        assert report is not None
        assert report.counts == {"pending": 0, "indexed": 4, "failed": 5, "deleted": 1}
        assert [a.key for a in report.archives] == ["bad.zip", "pack.zip"]
        assert [a.status for a in report.archives] == ["failed", "indexed"]
        assert report.last_run is not None and report.last_run.status == "running"
        assert report.failures[0].updated_at.tzinfo is not None


def test_it_steps_aside_for_a_missing_or_outdated_ledger(tmp_path: Path, ledger_file: Path) -> None:
    missing = tmp_path / "nothing" / "ledger.db"
    assert read_sqlite_status(missing) is None
    assert not missing.parent.exists()

    with sqlite3.connect(ledger_file) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    assert read_sqlite_status(ledger_file) is None

    not_a_ledger = tmp_path / "garbage.db"
    not_a_ledger.write_bytes(b"this is no database at all" * 100)
    assert read_sqlite_status(not_a_ledger) is None


def test_the_member_pattern_matches_the_key_format() -> None:
    assert f"%{MEMBER_SEPARATOR}%" == MEMBER_LIKE

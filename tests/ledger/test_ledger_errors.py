"""A ledger that cannot be opened says which one and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribrid.errors import LedgerError
from tribrid.ledger import SqlLedger, open_ledger
from tribrid.settings import Settings


def test_unreachable_postgres() -> None:
    url = "postgresql+psycopg://tribrid:s3cret@127.0.0.1:1/tribrid"
    with pytest.raises(LedgerError) as caught:
        SqlLedger(url)
    message = str(caught.value)
    assert "postgresql+psycopg://tribrid:***@127.0.0.1:1/tribrid" in message
    assert "s3cret" not in message
    assert "check that PostgreSQL is running at 127.0.0.1:1" in message
    assert "TRIBRID_DATABASE__URL" in message


def test_plain_postgresql_urls_mean_psycopg() -> None:
    with pytest.raises(LedgerError, match=r"postgresql\+psycopg://tribrid@127.0.0.1:1/x"):
        SqlLedger("postgresql://tribrid@127.0.0.1:1/x")


def test_unwritable_sqlite_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    url = f"sqlite:///{blocker / 'ledger.db'}"
    with pytest.raises(LedgerError) as caught:
        SqlLedger(url)
    message = str(caught.value)
    assert url in message
    assert f"check that the folder {blocker} exists and is writable" in message


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(LedgerError, match=r"cannot open the ledger at sqlite:///.*not a database"):
        SqlLedger(f"sqlite:///{path}")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(LedgerError, match=r"use sqlite:///path/ledger\.db"):
        SqlLedger(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("not a url", "is not a database URL"), ("mysql://u@h/db", "supports sqlite and postgresql")],
)
def test_bad_urls(url: str, expected: str) -> None:
    with pytest.raises(LedgerError, match=expected):
        SqlLedger(url)


def test_open_ledger_opens_the_url_the_settings_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIBRID_DATA_DIR", str(tmp_path / "idx"))
    monkeypatch.delenv("TRIBRID_DATABASE__URL", raising=False)
    with open_ledger(Settings().database_url) as ledger:
        assert ledger.url == f"sqlite:///{tmp_path / 'idx' / 'ledger.db'}"
    assert (tmp_path / "idx" / "ledger.db").is_file()


def test_open_ledger_needs_a_url() -> None:
    # Only the edges read the settings; the ledger never falls back to them.
    with pytest.raises(TypeError):
        open_ledger()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="database_url"):
        open_ledger(None)  # type: ignore[arg-type]

"""Database fixtures for the ledger tests: one SQLite file per test, and the session's
PostgreSQL database (``postgres_url``, from ``tests/conftest.py``) reset before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tribrid.ledger import SqlLedger


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a ledger file that does not exist yet, in a folder that does not either."""
    return f"sqlite:///{tmp_path / 'data' / 'ledger.db'}"


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def ledger_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty ledger database, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SqlLedger]:
    """A ledger migrated to head on an empty database."""
    opened = SqlLedger(ledger_url)
    try:
        yield opened
    finally:
        opened.close()

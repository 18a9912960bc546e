"""The Alembic migrations: they build the schema the models describe, on every backend."""

from __future__ import annotations

import fnmatch
import threading
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tribrid.errors import LedgerError
from tribrid.ledger import SqlLedger
from tribrid.ledger.database import MIGRATIONS_DIR, alembic_config, head_revision
from tribrid.ledger.models import Base

ROOT = Path(__file__).resolve().parents[2]


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_there_is_one_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_the_head_read_from_file_names_is_alembics() -> None:
    """An up-to-date ledger opens without Alembic, comparing its revision with
    ``head_revision()``: every migration file must be named for its revision, in one line."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == head()
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert Path(script.path).name.startswith(f"v{script.revision}_"), script.path
        assert len(script.revision) == 4 and script.revision.isdigit(), script.revision


def test_an_up_to_date_ledger_opens_without_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    SqlLedger(url).close()  # creates and migrates it
    code = (
        "import sys; from tribrid.ledger import SqlLedger; "
        f"SqlLedger({url!r}).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"


def test_migrations_ship_with_the_package() -> None:
    """Every file Alembic needs at run time is covered by the package-data globs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["tribrid"]
    package = ROOT / "tribrid"
    needed = [
        p.relative_to(package).as_posix()
        for p in MIGRATIONS_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "ledger/migrations/env.py" in needed
    assert "ledger/migrations/script.py.mako" in needed
    assert any(n.startswith("ledger/migrations/versions/") for n in needed)
    uncovered = [n for n in needed if not any(fnmatch.fnmatch(n, g) for g in globs)]
    assert uncovered == []


@pytest.mark.parametrize(
    "ledger_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
class TestMigrations:
    def test_an_empty_database_is_migrated_to_head(self, ledger_url: str) -> None:
        if ledger_url.startswith("sqlite"):
            database = make_url(ledger_url).database
            assert database is not None
            assert not Path(database).parent.exists()  # the ledger creates its folder
        else:
            assert current_revision(ledger_url) is None
        SqlLedger(ledger_url).close()
        assert current_revision(ledger_url) == head()

        engine = create_engine(ledger_url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert tables == {"alembic_version", "sources", "documents", "chunks", "runs"}

    def test_reopening_keeps_the_data(self, ledger_url: str) -> None:
        with SqlLedger(ledger_url) as ledger:
            ledger.ensure_source("docs", kind="local", location="/srv/docs")
        with SqlLedger(ledger_url) as ledger:
            assert ledger.status().sources == ["docs"]
        assert current_revision(ledger_url) == head()

    def test_models_match_the_migration_head(self, ledger_url: str) -> None:
        SqlLedger(ledger_url).close()
        engine = create_engine(ledger_url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(
                    connection, opts={"compare_type": True, "compare_server_default": True}
                )
                diff = compare_metadata(context, Base.metadata)
        finally:
            engine.dispose()
        assert diff == []

    def test_concurrent_first_opens(self, ledger_url: str) -> None:
        errors: list[BaseException] = []

        def open_close() -> None:
            try:
                SqlLedger(ledger_url).close()
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=open_close) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert current_revision(ledger_url) == head()

    def test_a_database_from_a_newer_tribrid_is_refused(self, ledger_url: str) -> None:
        SqlLedger(ledger_url).close()
        engine = create_engine(ledger_url)
        try:
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        finally:
            engine.dispose()
        with pytest.raises(LedgerError, match="upgrade tribrid"):
            SqlLedger(ledger_url)

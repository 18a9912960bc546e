"""Test-wide environment and fixtures.

Where test code lives:

- Test modules mirror the package (``tests/store/``, ``tests/ingestion/``, ...).
- Fixtures live in the ``conftest.py`` of the narrowest folder that uses them; this one
  holds only the session-wide ones. Test modules never import from a ``conftest.py``.
- Plain helpers (builders, constants, corpora, openers) shared by several test modules
  live in ``tests/support/<room>.py`` and are imported as ``tests.support.<room>``; a
  helper used by one module stays in that module.
- The model fakes are ``tests/fakes.py`` (the only ones; real models mean ``slow``).
- Marks: ``slow`` (a second or more: real models or corpora, subprocesses, waiting; and the
  PostgreSQL twin of a background or pipeline test), ``postgres``, ``celery``. The quick
  subset ``-m "not slow"`` stays under 2 minutes on an idle machine.

Everything runs offline. PostgreSQL is expected at ``TRIBRID_TEST_POSTGRES`` (a libpq URL
of a superuser on the ``postgres`` database; default
``postgresql://postgres@127.0.0.1:5432/postgres``). If it is not reachable the PostgreSQL
tests fail with a message; deselect them with ``-m "not postgres"`` on a machine without it.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Generator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

# Set before any model or parser is imported: this machine has no internet, and a test
# that silently tried to download would hang until its timeout instead of failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One ONNX export cache for the whole session (and the workers it starts): tests make many
# data directories, and exporting the models again into each would cost seconds apiece.
_OWN_MODEL_CACHE = "TRIBRID_MODELS__CACHE_DIR" not in os.environ
if _OWN_MODEL_CACHE:
    os.environ["TRIBRID_MODELS__CACHE_DIR"] = tempfile.mkdtemp(prefix="tribrid-test-models-")
MODEL_CACHE_DIR = os.environ["TRIBRID_MODELS__CACHE_DIR"]


@pytest.fixture(scope="session", autouse=True)
def _remove_model_cache() -> Iterator[None]:
    yield
    if _OWN_MODEL_CACHE:
        shutil.rmtree(MODEL_CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what a command run in this process did to logging (``tribrid -v …`` through
    typer's CliRunner sets the root logger up as a real run does)."""
    root, ours = logging.getLogger(), logging.getLogger("tribrid")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(our_level)
    logging.captureWarnings(False)


@pytest.fixture(scope="session")
def model_cache_dir() -> str:
    """The session's shared ONNX export cache (``TRIBRID_MODELS__CACHE_DIR``)."""
    return MODEL_CACHE_DIR


ADMIN_URL = os.environ.get("TRIBRID_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _connect(dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
    conninfo = make_conninfo(ADMIN_URL, dbname=dbname) if dbname else ADMIN_URL
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this session, dropped at the end."""
    name = f"tribrid_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = _connect()
    except psycopg.OperationalError as e:
        unreachable = str(e).strip().splitlines()[0]
    else:
        unreachable = ""
    if unreachable:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_URL} ({unreachable}); start it, point "
            "TRIBRID_TEST_POSTGRES at a server, or deselect these tests with -m 'not postgres'",
            pytrace=False,
        )
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield name
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.close()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """SQLAlchemy URL of the session database, emptied before the test."""
    with _connect(postgres_database) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    admin = make_url(ADMIN_URL)
    url = admin.set(drivername="postgresql+psycopg", database=postgres_database)
    return url.render_as_string(hide_password=False)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, None]:
    """Mark LangChain's standard async tests for pytest-asyncio (strict mode here).

    The suites define them unmarked and forbid overriding them; this wrapper runs
    inside pytest-asyncio's, so the mark is there when it looks for one.
    """
    outcome = yield
    items = outcome.get_result()
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio)

"""Fixtures of the store tests: every backend, a fresh store, a filled store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.store import BACKENDS, StoreOpener, corpus
from tribrid.store.base import VectorStore


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opener of one backend: Edge in ``tmp_path``, or an in-memory Qdrant."""
    opener = StoreOpener.new(request.param, tmp_path)
    yield opener
    opener.close_all()


@pytest.fixture
def store(open_store: StoreOpener) -> VectorStore:
    """A fresh, empty store of each backend."""
    return open_store()


@pytest.fixture
def filled(store: VectorStore) -> VectorStore:
    """A store holding :func:`corpus`, flushed."""
    store.upsert(corpus())
    store.flush()
    return store

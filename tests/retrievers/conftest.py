"""Fixtures of the retriever tests: the real encoders, and a small corpus on both backends.

The models load once per session. The corpus (``tests/support/retrievers.py``) is stored
in an embedded Qdrant Edge store and in qdrant-client's in-memory engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.retrievers import BACKENDS, corpus_points, open_backend
from tribrid.encoders import EncoderSet
from tribrid.factory import build_encoders
from tribrid.settings import Settings
from tribrid.store.base import VectorStore


@pytest.fixture(scope="session")
def encoders() -> EncoderSet:
    """The default encoders (MiniLM, splade-tiny, BM25), loaded once."""
    encoders = build_encoders(Settings())
    encoders.warm_up()
    return encoders


@pytest.fixture(scope="session")
def corpus_stores(
    encoders: EncoderSet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, VectorStore]]:
    """The corpus on both backends, built once."""
    points = corpus_points(encoders)
    stores = {}
    for backend in BACKENDS:
        store = open_backend(backend, encoders, tmp_path_factory.mktemp(f"corpus-{backend}"))
        store.upsert(points)
        store.flush()
        stores[backend] = store
    yield stores
    for store in stores.values():
        store.close()


@pytest.fixture(params=BACKENDS)
def corpus_store(
    request: pytest.FixtureRequest, corpus_stores: dict[str, VectorStore]
) -> VectorStore:
    """The corpus store of each backend."""
    return corpus_stores[request.param]

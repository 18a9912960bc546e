"""The backend registry and ``open_store``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tests.support.server import running_server
from tests.support.store import SCHEMA, corpus
from tribrid.factory import collection_schema
from tribrid.store import (
    STORES,
    LiveEdgeStore,
    QdrantServerStore,
    needs_single_writer,
    open_store,
)
from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.remote import RemoteStore


def test_registry_names_every_backend() -> None:
    # ``edge`` opens the live generation of the store folder (see store/generations.py).
    assert {"edge": LiveEdgeStore, "qdrant": QdrantServerStore, "remote": RemoteStore} == STORES


def test_unknown_backend_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown store backend 'chroma'.*'edge', 'qdrant'"):
        open_store("chroma", SCHEMA)


def test_single_writer_is_read_from_the_registry() -> None:
    assert needs_single_writer("edge") is True
    assert needs_single_writer("qdrant") is False
    assert needs_single_writer("remote") is False  # the server takes every writer
    with pytest.raises(ValueError, match=r"unknown store backend 'chroma'.*'edge', 'qdrant'"):
        needs_single_writer("chroma")


def test_edge_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        open_store("edge", SCHEMA)


def test_opens_each_backend(tmp_path: Path) -> None:
    edge = open_store("edge", SCHEMA, path=tmp_path / "store")
    server = open_store("qdrant", SCHEMA, url=":memory:")
    try:
        assert isinstance(edge, LiveEdgeStore)
        assert isinstance(server, QdrantServerStore)
        assert isinstance(edge, VectorStore)
        assert isinstance(server, VectorStore)
        assert edge.schema == server.schema == SCHEMA
    finally:
        edge.close()
        server.close()


def test_recreate_is_passed_through(tmp_path: Path) -> None:
    store = open_store("edge", SCHEMA, path=tmp_path)
    store.upsert(corpus())
    store.close()
    store = open_store("edge", SCHEMA, path=tmp_path, recreate=True)
    assert store.count() == 0
    store.close()


def test_each_backend_opens_the_same_way(tmp_path: Path) -> None:
    with running_server(tmp_path / "served") as (info, settings):
        schemas = {"remote": collection_schema(settings, fake_encoders())}
        urls = {"remote": info.url}
        for name, store_class in STORES.items():
            _open_and_check(name, store_class, schemas.get(name, SCHEMA), tmp_path, urls)


def _open_and_check(
    name: str,
    store_class: type[VectorStore],
    schema: CollectionSchema,
    tmp_path: Path,
    urls: dict[str, str],
) -> None:
    store = store_class.open(schema, path=tmp_path / name, url=urls.get(name, ":memory:"))
    try:
        assert isinstance(store, store_class)
        assert store.single_writer is needs_single_writer(name)
    finally:
        store.close()

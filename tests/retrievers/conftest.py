"""Fixtures of the retriever tests: the real encoders, and a small corpus on both backends.

The models load once per session. The corpus is stored the way ``tribrid ingest`` stores
chunks (payload from :meth:`Chunk.payload`), in an embedded Qdrant Edge store and in
qdrant-client's in-memory engine.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tribrid.encoders import EncoderSet
from tribrid.factory import build_encoders, collection_schema
from tribrid.ingestion.base import Chunk
from tribrid.ingestion.write import encode_chunks
from tribrid.settings import Settings
from tribrid.store import EdgeStore, QdrantServerStore
from tribrid.store.base import Point, VectorStore
from tribrid.store.points import content_hash, point_id

BACKENDS = ("edge", "memory")

CORPUS: list[tuple[str, str, int | None]] = [
    ("fusion.md", "Reciprocal rank fusion adds 1/(k + rank) over the rankings it fuses.", None),
    ("fusion.md", "Distribution-based score fusion rescales scores by mean and 3 sigma.", None),
    ("quant.md", "Binary quantization keeps one or two bits per dimension of each vector.", None),
    ("pump.pdf", "The ZX-9000 pump needs a new gasket every 500 operating hours.", 1),
    ("pump.pdf", "Before servicing the pump, close both valves and drain the housing.", 2),
    ("pump.pdf", "Warranty claims for the pump require the service log.", 3),
    ("bm25.md", "BM25 scores a document by term frequency and inverse document frequency.", None),
    ("splade.md", "SPLADE expands a text into learned sparse term weights.", None),
    ("cooking.txt", "Simmer the tomato sauce for twenty minutes and season with basil.", None),
    ("garden.txt", "Water the tomato plants in the morning, never at noon.", None),
]


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


@pytest.fixture(scope="session")
def encoders() -> EncoderSet:
    """The default encoders (MiniLM, splade-tiny, BM25), loaded once."""
    encoders = build_encoders(Settings())
    encoders.warm_up()
    return encoders


def corpus_points(encoders: EncoderSet) -> list[Point]:
    """:data:`CORPUS` as points, with the payload the ingestion pipeline writes."""
    chunks = []
    index: dict[str, int] = {}
    for path, text, page in CORPUS:
        i = index[path] = index.get(path, -1) + 1
        digest = content_hash(text)
        metadata = {"path": path, "filetype": path.rsplit(".", 1)[1]}
        if page is not None:
            metadata["page"] = page
        chunks.append(
            Chunk(
                point_id=point_id("test", path, digest),
                source_key="test",
                document_key=path,
                index=i,
                text=text,
                content_hash=digest,
                metadata=metadata,
            )
        )
    return encode_chunks(encoders, chunks)


def open_backend(backend: str, encoders: EncoderSet, folder: Path) -> VectorStore:
    """An empty store of ``backend`` (``edge`` or ``memory``) for these encoders."""
    schema = collection_schema(Settings(), encoders)
    if backend == "edge":
        return EdgeStore(folder, schema)
    return QdrantServerStore(schema, url=":memory:")


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

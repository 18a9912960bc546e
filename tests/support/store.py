"""Helpers of the store tests: a schema, a small corpus, and a store opener."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient

from tribrid.encoders.base import SparseVector
from tribrid.store.base import CollectionSchema, Point, VectorStore

SCHEMA = CollectionSchema(
    name="tribrid-test",
    dense_size=8,
    dense_model="dense-a",
    splade_model="splade-a",
    bm25_model="bm25-a",
)
BACKENDS = ("edge", "qdrant")
_NAMESPACE = uuid.UUID("0b7a7a52-6a38-4d3f-9a52-9a0f1b6d2c11")
COMMON_TERM = 1


def pid(i: int) -> str:
    """The deterministic id of test point ``i``."""
    return str(uuid.uuid5(_NAMESPACE, f"point-{i}"))


def make_point(
    i: int,
    dense: Any,
    *,
    splade: SparseVector | None = None,
    bm25: SparseVector | None = None,
    payload: dict[str, Any] | None = None,
) -> Point:
    """A point with id ``pid(i)``; sparse vectors default to one unique term."""
    return Point(
        id=pid(i),
        dense=[float(x) for x in dense],
        splade=splade or SparseVector.from_pairs({1000 + i: 1.0}),
        bm25=bm25 or SparseVector.from_pairs({1000 + i: 1.0}),
        payload=payload or {},
    )


def corpus_payload(i: int) -> dict[str, Any]:
    """Payload of corpus point ``i``: keyword, int, float and bool fields."""
    return {
        "source_key": f"src-{i % 3}",
        "document_key": f"doc-{i}",
        "n": i,
        "score": i * 0.5,
        "lang": "en" if i % 2 == 0 else "de",
        "flag": i % 4 == 0,
        "text": f"chunk {i}",
    }


CORPUS_SIZE = 12


def corpus() -> list[Point]:
    """Twelve points with random dense vectors and hand-made sparse ones.

    SPLADE: a unique term ``100+i`` (weight growing with i) and a shared term
    ``200 + i % 3``. BM25: the common term in all but the last point, plus a unique
    term ``300+i``.
    """
    rng = np.random.default_rng(7)
    dense = rng.standard_normal((CORPUS_SIZE, SCHEMA.dense_size))
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    points = []
    for i in range(CORPUS_SIZE):
        splade = SparseVector.from_pairs({100 + i: 1.0 + 0.1 * i, 200 + i % 3: 0.5})
        bm25_terms = {300 + i: 1.0}
        if i < CORPUS_SIZE - 1:
            bm25_terms[COMMON_TERM] = 1.0
        points.append(
            make_point(
                i,
                dense[i],
                splade=splade,
                bm25=SparseVector.from_pairs(bm25_terms),
                payload=corpus_payload(i),
            )
        )
    return points


@dataclass
class StoreOpener:
    """Opens stores of one backend over the same underlying data, and closes them all."""

    backend: str
    tmp_path: Path
    client: QdrantClient | None = None
    opened: list[VectorStore] = field(default_factory=list)

    @classmethod
    def new(cls, backend: str, tmp_path: Path) -> StoreOpener:
        """An opener of ``backend``: Edge under ``tmp_path``, or a fresh in-memory Qdrant."""
        client = QdrantClient(location=":memory:") if backend == "qdrant" else None
        return cls(backend, tmp_path, client)

    def __call__(self, schema: CollectionSchema = SCHEMA, *, recreate: bool = False) -> VectorStore:
        from tribrid.store.edge import EdgeStore
        from tribrid.store.qdrant import QdrantServerStore

        store: VectorStore
        if self.backend == "edge":
            store = EdgeStore(self.tmp_path / "store", schema, recreate=recreate)
        else:
            store = QdrantServerStore(schema, client=self.client, recreate=recreate)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            with contextlib.suppress(Exception):
                store.close()
        if self.client is not None:
            self.client.close()


@contextlib.contextmanager
def filled_store(backend: str, tmp_path: Path, points: Sequence[Point]) -> Iterator[VectorStore]:
    """A store of ``backend`` holding ``points``, flushed, closed when the block ends (for
    module-scoped fixtures of tests that only read)."""
    opener = StoreOpener.new(backend, tmp_path)
    try:
        store = opener()
        store.upsert(points)
        store.flush()
        yield store
    finally:
        opener.close_all()

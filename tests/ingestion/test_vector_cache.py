"""Identical content is encoded once: within a batch, across documents and across runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import fake_encoders
from tribrid.connectors import LocalFolderConnector
from tribrid.encoders import EncodedBatch, EncoderSet
from tribrid.encoders.base import SparseVector
from tribrid.ingestion.parse import ParseOptions
from tribrid.ingestion.pipeline import SyncPipeline
from tribrid.ingestion.vector_cache import CachedVectors, VectorCache
from tribrid.ledger import SqlLedger
from tribrid.store import open_store
from tribrid.store.base import CollectionSchema, VectorStore


@dataclass(frozen=True)
class CountingEncoders(EncoderSet):
    """The fake encoders, remembering every text they were asked to encode."""

    texts: list[str] = field(default_factory=list)

    def encode_documents(self, texts: Sequence[str]) -> EncodedBatch:
        self.texts.extend(texts)
        return super().encode_documents(texts)


def counting() -> CountingEncoders:
    fakes = fake_encoders()
    return CountingEncoders(dense=fakes.dense, splade=fakes.splade, bm25=fakes.bm25)


def _no_parser() -> object:
    raise AssertionError("plain-text files must not start the parser")


def _large_text() -> str:
    paragraphs = [
        f"Paragraph {n}: the ferry to the island leaves at {n % 12 + 1} and returns before "
        f"the evening gale; gulls follow it past lighthouse number {n}. " * 3
        for n in range(150)
    ]
    return "Harbour log\n\n" + "\n\n".join(paragraphs) + "\n"


@dataclass
class Index:
    ledger: SqlLedger
    store: VectorStore
    encoders: CountingEncoders
    cache: VectorCache

    def pipeline(self) -> SyncPipeline:
        return SyncPipeline(
            ledger=self.ledger,
            store=self.store,
            encoders=self.encoders,
            parser_factory=_no_parser,  # type: ignore[arg-type]
            batch_chunks=64,
            vector_cache=self.cache,
            plain_text=ParseOptions(memory_limit_mb=None),
        )


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    encoders = counting()
    schema = CollectionSchema(
        name="t",
        dense_size=encoders.dense.dimension,
        dense_model=encoders.dense.model_name,
        splade_model=encoders.splade.model_name,
        bm25_model=encoders.bm25.model_name,
    )
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = open_store("edge", schema, path=tmp_path / "store")
    cache = VectorCache(tmp_path / "vector-cache.sqlite", namespace="fake")
    try:
        yield Index(ledger, store, encoders, cache)
    finally:
        cache.close()
        store.close()
        ledger.close()


def test_ten_copies_of_a_large_file_encode_its_chunks_once(index: Index, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    text = _large_text()
    for n in range(10):
        (folder / f"copy-{n}.txt").write_text(text)

    report = index.pipeline().sync(LocalFolderConnector(folder))

    assert report.counts.indexed == 10 and report.counts.failed == 0
    chunks_per_copy = report.counts.chunks_embedded
    assert chunks_per_copy > 40  # a large file: many chunks, over several batches
    # Every distinct chunk text went through the encoders exactly once.
    assert len(index.encoders.texts) == len(set(index.encoders.texts)) == chunks_per_copy
    assert report.counts.chunks_reused == 9 * chunks_per_copy
    # Each copy has its own points, with the vectors of the one encoding.
    assert index.store.count() == 10 * chunks_per_copy
    hits = index.store.retrieve(sorted(index.store.ids()))
    copies: dict[str, set[str]] = {}
    for hit in hits:
        copies.setdefault(str(hit.payload["text"]), set()).add(str(hit.payload["document_key"]))
    assert len(copies) == chunks_per_copy
    assert all(len(keys) == 10 for keys in copies.values())


def test_a_copy_of_an_indexed_file_in_another_folder_costs_no_encoding(
    index: Index, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "report.txt").write_text(_large_text())
    index.pipeline().sync(LocalFolderConnector(first))
    encoded_once = len(index.encoders.texts)
    assert encoded_once > 0

    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "report.txt").rename(second / "renamed.txt")
    report = index.pipeline().sync(LocalFolderConnector(second))

    assert report.counts.indexed == 1
    assert report.counts.chunks_embedded == 0
    assert report.counts.chunks_reused == encoded_once
    assert len(index.encoders.texts) == encoded_once


def test_a_chunk_shared_with_another_document_reuses_its_vectors(
    index: Index, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    # Each paragraph is a chunk of its own: the first is past the soft maximum.
    licence = "Permission is hereby granted, free of charge, to any person. " * 10
    alpha = "Alpha project notes about ferries and gulls in the harbour. " * 17
    beta = "Beta project notes about lighthouses and the spring tides. " * 17
    (folder / "a.txt").write_text(f"{alpha}\n\n{licence}\n")
    index.pipeline().sync(LocalFolderConnector(folder))
    (folder / "b.txt").write_text(f"{beta}\n\n{licence}\n")
    before = len(index.encoders.texts)

    report = index.pipeline().sync(LocalFolderConnector(folder))

    assert (report.counts.indexed, report.counts.unchanged) == (1, 1)
    assert index.encoders.texts[before:] == [beta.strip()]
    assert (report.counts.chunks_embedded, report.counts.chunks_reused) == (1, 1)
    assert index.store.count() == 4


def _vectors(seed: int) -> CachedVectors:
    rng = np.random.default_rng(seed)
    return CachedVectors(
        dense=rng.random(8, dtype=np.float32).tolist(),
        splade=SparseVector((1, 5, 9), (0.5, 1.25, 3.0)),
        bm25=SparseVector((seed,), (1.0,)),
    )


def test_cached_vectors_come_back_exactly_and_only_in_their_namespace(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    cache = VectorCache(path, namespace="models-a")
    cache.put_many({"h1": _vectors(1), "h2": _vectors(2)})
    assert cache.get_many(["h1", "h2", "h3"]) == {"h1": _vectors(1), "h2": _vectors(2)}
    other = VectorCache(path, namespace="models-b")
    assert other.get_many(["h1", "h2"]) == {}
    cache.close()
    other.close()


def test_the_cache_stays_within_its_bound_and_keeps_what_was_used_last(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "cache.sqlite", namespace="n", max_entries=20)
    cache.put_many({f"old{n}": _vectors(n) for n in range(20)})
    assert cache.get_many(["old0"])  # used again: now newer than the other old ones
    for n in range(10):
        cache.put_many({f"new{n}": _vectors(n)})
    assert len(cache) == 20
    kept = cache.get_many([*(f"old{n}" for n in range(20)), *(f"new{n}" for n in range(10))])
    assert "old0" in kept and all(f"new{n}" in kept for n in range(10))
    assert sum(key.startswith("old") for key in kept) == 10
    cache.close()


# A writer process: imports only tribrid (the spawned interpreter may not see `tests`).
_WRITER = """
import sys
import numpy as np
from tribrid.encoders.base import SparseVector
from tribrid.ingestion.vector_cache import CachedVectors, VectorCache

path, worker = sys.argv[1], int(sys.argv[2])


def vectors(seed):
    rng = np.random.default_rng(seed)
    return CachedVectors(
        dense=rng.random(8, dtype=np.float32).tolist(),
        splade=SparseVector((1, 5, 9), (0.5, 1.25, 3.0)),
        bm25=SparseVector((seed,), (1.0,)),
    )


cache = VectorCache(path, namespace="n")
for n in range(50):
    # Half the keys are shared by both workers: the same text encoded twice at once.
    cache.put_many({f"shared{n}": vectors(n), f"own{worker}-{n}": vectors(n)})
cache.close()
"""


def test_processes_can_share_one_cache(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.sqlite")
    workers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, path, str(w)], stderr=subprocess.PIPE)
        for w in range(2)
    ]
    for process in workers:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    cache = VectorCache(path, namespace="n")
    assert len(cache) == 150
    assert cache.get_many(["shared7"]) == {"shared7": _vectors(7)}
    cache.close()

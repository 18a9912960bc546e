"""What only the embedded Qdrant Edge store does: files, locks, and optimizing."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

from tests.support.store import CORPUS_SIZE, SCHEMA, corpus, corpus_payload, make_point, pid
from tribrid.errors import SchemaMismatchError, StoreBusyError, StoreError
from tribrid.store import edge as edge_module
from tribrid.store import open_store
from tribrid.store.base import (
    AsyncSearch,
    BinaryEncoding,
    Channel,
    ChannelQuery,
    StoreQuery,
    VectorStore,
)
from tribrid.store.edge import LOCK_FILE, SCHEMA_FILE, EdgeStore
from tribrid.store.generations import LiveEdgeStore
from tribrid.store.points import FILTERABLE_KEYS, PayloadIndex
from tribrid.store.schema import schema_record

# Opens the store in a child process; exit 3 and the message when it is busy.
CHILD = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    from tribrid.errors import StoreBusyError
    from tribrid.store.base import CollectionSchema
    from tribrid.store.edge import EdgeStore

    schema = CollectionSchema(
        name={SCHEMA.name!r}, dense_size={SCHEMA.dense_size}, dense_model={SCHEMA.dense_model!r},
        splade_model={SCHEMA.splade_model!r}, bm25_model={SCHEMA.bm25_model!r},
    )
    try:
        store = EdgeStore(Path(sys.argv[1]), schema)
    except StoreBusyError as e:
        print(e)
        sys.exit(3)
    print("opened", store.count(), flush=True)
    if len(sys.argv) > 2:
        time.sleep(float(sys.argv[2]))
    store.close()
    """
)


def run_child(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=60
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime and (for small files) content hash of every file but the lock."""
    state = {}
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.name != LOCK_FILE:
            stat = file.stat()
            digest = hashlib.sha256(file.read_bytes()).hexdigest() if stat.st_size < 1 << 20 else ""
            state[str(file.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns, digest)
    return state


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_points_survive_close_and_reopen(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())  # no flush: close must make them durable
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == CORPUS_SIZE
        assert store.retrieve([pid(7)])[0].payload == corpus_payload(7)
        target = corpus()[7]
        hits = store.query(StoreQuery(channels=(ChannelQuery(Channel.DENSE, target.dense),)))
        assert hits[0].id == pid(7)
        store.delete([pid(7)])
        store.flush()
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == CORPUS_SIZE - 1
        assert store.count({"source_key": "src-0"}) == 4


@pytest.mark.slow
def test_second_process_gets_store_busy_until_close(folder: Path) -> None:
    store = EdgeStore(folder, SCHEMA)
    store.upsert(corpus())
    busy = run_child(folder)
    assert busy.returncode == 3, busy.stderr
    assert str(folder) in busy.stdout
    assert f"pid {os.getpid()}" in busy.stdout
    assert "run `tribrid serve --data-dir DIR` once" in busy.stdout  # the first remedy
    assert "stop the other tribrid process" in busy.stdout
    assert "Qdrant server backend" in busy.stdout
    store.close()
    free = run_child(folder)
    assert free.returncode == 0, free.stderr
    assert free.stdout.strip() == f"opened {CORPUS_SIZE}"


def test_second_open_in_the_same_process_is_refused(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA):
        with pytest.raises(StoreBusyError, match="already open in this process"):
            EdgeStore(folder, SCHEMA)
        with pytest.raises(StoreBusyError):
            EdgeStore(folder, SCHEMA, recreate=True)  # and it deletes nothing
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == 0


def test_opens_of_one_folder_share_one_store(folder: Path) -> None:
    first = EdgeStore.open(SCHEMA, path=folder)
    # Another spelling of the same folder: sharing is keyed by the resolved path.
    second = open_store("edge", SCHEMA, path=folder / ".." / folder.name)
    try:
        assert isinstance(second, LiveEdgeStore)  # the live generation of the folder
        assert isinstance(second, VectorStore) and isinstance(second, AsyncSearch)
        assert "shared by 2 handle(s)" in repr(second)
        first.upsert(corpus())
        assert second.count() == CORPUS_SIZE
        assert second.retrieve([pid(3)])[0].payload == corpus_payload(3)
        assert {p.id for p in second.points()} == {pid(i) for i in range(CORPUS_SIZE)}
    finally:
        first.close()
        second.close()


def test_closing_one_handle_leaves_the_others_working(folder: Path) -> None:
    first = EdgeStore.open(SCHEMA, path=folder)
    with EdgeStore.open(SCHEMA, path=folder) as second:
        first.upsert(corpus())
        first.close()
        first.close()  # twice is harmless
        assert "closed" in repr(first)
        with pytest.raises(StoreError, match="is closed"):
            first.count()
        target = corpus()[5]
        hits = second.query(StoreQuery(channels=(ChannelQuery(Channel.DENSE, target.dense),)))
        assert hits[0].id == pid(5)
        second.delete([pid(5)])
        assert second.count() == CORPUS_SIZE - 1
    with pytest.raises(StoreError, match="is closed"):
        second.count()


def test_the_last_close_releases_the_folder_lock(folder: Path) -> None:
    first = EdgeStore.open(SCHEMA, path=folder)
    second = EdgeStore.open(SCHEMA, path=folder)
    first.upsert(corpus())
    first.close()
    busy = run_child(folder)  # one handle is still open: the folder stays locked
    assert busy.returncode == 3, busy.stderr
    assert f"pid {os.getpid()}" in busy.stdout
    second.close()
    free = run_child(folder)
    assert free.returncode == 0, free.stderr
    assert free.stdout.strip() == f"opened {CORPUS_SIZE}"  # and the writes were flushed


def test_a_shared_open_with_another_schema_is_refused(folder: Path) -> None:
    with EdgeStore.open(SCHEMA, path=folder) as store:
        store.upsert(corpus())
        other = replace(SCHEMA, name="other", dense_size=16)
        with pytest.raises(SchemaMismatchError) as caught:
            EdgeStore.open(other, path=folder)
        message = str(caught.value)
        assert "already open in this process" in message
        assert "'tribrid-test'" in message and "'other'" in message
        assert "dense size 8 but the dense model gives 16" in message
        with pytest.raises(SchemaMismatchError, match="'splade-a' but the settings use 'x'"):
            EdgeStore.open(replace(SCHEMA, splade_model="x"), path=folder)
        assert store.count() == CORPUS_SIZE
    # The refused opens took no reference: the last close above released the folder.
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == CORPUS_SIZE


def test_recreate_while_shared_is_refused_and_deletes_nothing(folder: Path) -> None:
    with EdgeStore.open(SCHEMA, path=folder) as store:
        store.upsert(corpus())
        store.flush()
        before = snapshot(folder)
        with pytest.raises(StoreBusyError, match="open elsewhere in this process") as caught:
            EdgeStore.open(SCHEMA, path=folder, recreate=True)
        assert "nothing was deleted" in str(caught.value)
        assert snapshot(folder) == before
        assert store.count() == CORPUS_SIZE
    with EdgeStore.open(SCHEMA, path=folder, recreate=True) as store:
        assert store.count() == 0


def test_the_constructor_does_not_share(folder: Path) -> None:
    busy = pytest.raises(StoreBusyError, match="already open in this process")
    with EdgeStore.open(SCHEMA, path=folder), busy:
        EdgeStore(folder, SCHEMA)
    with EdgeStore(folder, SCHEMA), busy:
        EdgeStore.open(SCHEMA, path=folder)


@pytest.mark.slow
def test_a_dropped_handle_releases_its_reference(folder: Path) -> None:
    first = EdgeStore.open(SCHEMA, path=folder)
    second = EdgeStore.open(SCHEMA, path=folder)
    first.upsert(corpus())
    del first
    gc.collect()
    assert second.count() == CORPUS_SIZE
    del second  # the last handle: its finalizer closes the shard and drops the lock
    gc.collect()
    with EdgeStore(folder, SCHEMA) as again:
        assert again.count() == CORPUS_SIZE


def test_threads_open_and_close_one_folder_concurrently(folder: Path) -> None:
    EdgeStore.open(SCHEMA, path=folder).close()  # created once, so every open loads
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            for _ in range(15):
                store = EdgeStore.open(SCHEMA, path=folder)
                try:
                    store.count()
                finally:
                    store.close()
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    with EdgeStore(folder, SCHEMA) as store:  # every reference released: the lock is free
        assert store.count() == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_reuse_the_parents_store(folder: Path) -> None:
    with EdgeStore.open(SCHEMA, path=folder) as store:
        store.upsert(corpus())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
            child = os.fork()
        if child == 0:  # the child touches no shard: both calls are refused up front
            code = 0
            try:
                EdgeStore.open(SCHEMA, path=folder)
                code = 1  # got the parent's store
            except StoreBusyError as e:
                code = 0 if f"pid {os.getppid()}" in str(e) else 2
            try:
                store.count()
                code = code or 3
            except StoreError as e:
                code = code or (0 if "forked" in str(e) else 4)
            store.close()  # not the child's to close: a no-op
            os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.count() == CORPUS_SIZE  # the child's close did not close it


def test_a_dropped_store_releases_its_lock(folder: Path) -> None:
    store = EdgeStore(folder, SCHEMA)
    store.upsert(corpus())
    del store  # never closed: the finalizer closes the shard and drops the lock
    with EdgeStore(folder, SCHEMA) as again:
        assert again.count() == CORPUS_SIZE


def test_lock_is_released_when_the_holder_dies(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == f"opened {CORPUS_SIZE}"
        with pytest.raises(StoreBusyError, match=f"pid {child.pid}"):
            EdgeStore(folder, SCHEMA)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == CORPUS_SIZE


def test_a_mismatch_touches_no_file(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())
        store.flush()
    before = snapshot(folder)
    with pytest.raises(SchemaMismatchError, match=str(folder)):
        EdgeStore(folder, replace(SCHEMA, dense_size=4, splade_model="other"))
    assert snapshot(folder) == before


def test_a_folder_without_schema_record_is_refused(folder: Path) -> None:
    EdgeStore(folder, SCHEMA).close()
    (folder / SCHEMA_FILE).unlink()
    with pytest.raises(SchemaMismatchError, match="no schema record"):
        EdgeStore(folder, SCHEMA)


def test_the_shard_config_is_checked_not_only_the_record(folder: Path) -> None:
    # A shard whose record looks right but whose bm25 vector lacks the IDF modifier
    # and whose dense vector has no binary quantization.
    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=SCHEMA.dense_size, distance=qe.Distance.Cosine)},
        sparse_vectors={"splade": qe.EdgeSparseVectorParams(), "bm25": qe.EdgeSparseVectorParams()},
    )
    qe.EdgeShard.create(str(folder), config).close()
    (folder / SCHEMA_FILE).write_text(json.dumps(schema_record(SCHEMA)))
    with pytest.raises(SchemaMismatchError) as caught:
        EdgeStore(folder, SCHEMA)
    assert "no IDF modifier on its 'bm25' vector" in str(caught.value)
    assert "no binary quantization" in str(caught.value)


def test_recreate_leaves_foreign_files_alone(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())
    (folder / "notes.txt").write_text("mine")
    with EdgeStore(folder, SCHEMA, recreate=True) as store:
        assert store.count() == 0
    assert (folder / "notes.txt").read_text() == "mine"


def test_flush_builds_the_multi_bit_codes(folder: Path) -> None:
    """Before optimizing, Edge's appendable segment encodes 2-bit codes without vector
    statistics, and they rank like 1-bit codes; flush must optimize small stores too."""
    n_points, n_queries, dim = 2000, 40, 384
    rng = np.random.default_rng(42)
    vectors = rng.standard_normal((n_points, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    schema = replace(SCHEMA, dense_size=dim, binary_encoding=BinaryEncoding.TWO_BITS)

    def codes_recall(store: EdgeStore) -> float:
        found = 0
        for q, truth in zip(queries, exact, strict=True):
            query = StoreQuery(
                channels=(ChannelQuery(Channel.BINARY, q.tolist()),),
                limit=10,
                oversampling=1.0,
                with_payload=False,
            )
            found += len({h.id for h in store.query(query)} & {pid(int(i)) for i in truth})
        return found / (10 * n_queries)

    with EdgeStore(folder, schema) as store:
        store.upsert([make_point(i, v) for i, v in enumerate(vectors)])
        before = codes_recall(store)
        store.flush()
        after = codes_recall(store)
    print(
        f"\nedge 2bit codes recall@10 without rescoring: before flush {before:.3f}, after {after:.3f}"
    )
    assert after > before + 0.08


def test_edge_still_cannot_match_booleans() -> None:
    """Canary: qdrant-edge-py 0.9 turns MatchValue(True) into the integer 1.

    That is why filters refuse booleans on every backend; when this fails, Edge has
    fixed it and the restriction in tribrid.store.filters can go.
    """
    assert type(qe.MatchValue(True).value) is int


def test_an_edge_filter_is_passed_through(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())
        edge_filter = qe.Filter(
            must=[qe.FieldCondition(key="source_key", match=qe.MatchValue("src-1"))]
        )
        assert store.ids(edge_filter) == {pid(i) for i in range(CORPUS_SIZE) if i % 3 == 1}


def _indexes(store: EdgeStore) -> dict[str, str]:
    shard = store._open_shard()
    return {key: str(info.data_type) for key, info in shard.info().payload_schema.items()}


def test_every_documented_filter_key_is_indexed(folder: Path) -> None:
    with EdgeStore(folder, SCHEMA) as store:
        indexed = _indexes(store)
    assert set(indexed) == set(FILTERABLE_KEYS)
    for key, kind in FILTERABLE_KEYS.items():
        assert kind.value in indexed[key].lower(), (key, indexed[key])


def test_an_old_store_gets_the_missing_indexes_on_open(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(
            edge_module,
            "PAYLOAD_INDEXES",
            {"source_key": PayloadIndex.KEYWORD, "document_key": PayloadIndex.KEYWORD},
        )
        with EdgeStore(folder, SCHEMA) as store:
            assert set(_indexes(store)) == {"source_key", "document_key"}
    with EdgeStore(folder, SCHEMA) as store:
        assert set(_indexes(store)) == set(FILTERABLE_KEYS)


def test_a_nearly_full_disk_refuses_the_write_with_its_reason(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk a memory-mapped write is a SIGBUS, not an error: refuse it first."""
    points = corpus()
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(points[:1])
        free = shutil.disk_usage(folder).free
        monkeypatch.setattr(edge_module, "MIN_FREE_BYTES", free + 2**30)
        with pytest.raises(StoreError, match="no space left to upsert 1 points") as refused:
            store.upsert(points[1:2])
        assert str(folder) in str(refused.value) and "free space on that disk" in str(refused.value)
        assert store.count() == 1  # nothing was written
        monkeypatch.setattr(edge_module, "MIN_FREE_BYTES", 0)
        store.upsert(points[1:2])  # space again: the write goes ahead
        assert store.count() == 2


@pytest.mark.slow
def test_binary_tier_leaves_the_float_vectors_cold_on_disk(tmp_path: Path) -> None:
    """The optimised segment maps its floats without loading them (``Mmap``), while the
    default store loads them into the page cache (``InRamMmap``)."""
    kinds = {}
    for on_disk in (True, False):
        folder = tmp_path / str(on_disk)
        store = EdgeStore(folder, replace(SCHEMA, dense_on_disk=on_disk))
        rng = np.random.default_rng(7)
        store.upsert([make_point(i, rng.standard_normal(8).tolist()) for i in range(300)])
        store.flush()
        store.close()
        config = json.loads((folder / "edge_config.json").read_text())
        assert (config["vectors"]["dense"].get("memory") == "cold") is on_disk
        optimised = [
            json.loads(p.read_text())["config"]["vector_data"]["dense"]
            for p in folder.glob("segments/*/segment.json")
        ]
        kinds[on_disk] = {d["storage_type"] for d in optimised if d["index"]["type"] == "hnsw"}
    assert kinds == {True: {"Mmap"}, False: {"InRamMmap"}}


class _CountedFlushes:
    """Stands in for an open shard (a Rust object, not patchable) and counts flushes."""

    def __init__(self, shard: qe.EdgeShard) -> None:
        self.shard = shard
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.shard.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.shard, name)


def _count_flushes(store: EdgeStore) -> _CountedFlushes:
    core = store._core
    assert core is not None and core.shard is not None
    counted = _CountedFlushes(core.shard)
    core.shard = counted  # type: ignore[assignment]
    return counted


def test_closing_flushes_only_after_a_write(folder: Path) -> None:
    """A search (tribrid search, a retriever) pays for no flush when it closes the store;
    a write is still made durable by closing."""
    with EdgeStore(folder, SCHEMA) as store:
        store.upsert(corpus())
        store.flush()
    target = corpus()[3]
    with EdgeStore(folder, SCHEMA) as store:
        searched = _count_flushes(store)
        hits = store.query(StoreQuery(channels=(ChannelQuery(Channel.DENSE, target.dense),)))
        assert hits[0].id == pid(3)
        store.retrieve([pid(3)])
    assert searched.flushes == 0
    with EdgeStore(folder, SCHEMA) as store:
        written = _count_flushes(store)
        store.delete([pid(3)])  # no flush: close must make it durable
    assert written.flushes == 1
    with EdgeStore(folder, SCHEMA) as store:
        assert store.count() == CORPUS_SIZE - 1

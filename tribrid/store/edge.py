"""The embedded backend: one Qdrant Edge shard in a local folder.

Qdrant Edge has no collections and no collection metadata, so the folder *is* the
collection and the schema it was built with lives next to the shard in
``tribrid-schema.json``. Edge lets one process open a shard at a time; tribrid takes
its own lock first (``tribrid.lock``) so that a second opener gets a clear
:class:`~tribrid.errors.StoreBusyError` before anything on disk is touched.

Within one process, :meth:`EdgeStore.open` shares: every open of the same folder gets
its own :class:`EdgeStore` handle onto one open shard, and the last handle closed
closes it. Between processes, ``tribrid serve`` owns the store and the others talk to
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, cast

import qdrant_edge as qe

from tribrid.encoders.base import SparseVector
from tribrid.errors import StoreBusyError, StoreError
from tribrid.store.base import (
    BM25,
    DENSE,
    PAYLOAD_INDEXES,
    SPLADE,
    BinaryEncoding,
    Candidates,
    Channel,
    ChannelQuery,
    CollectionSchema,
    Fusion,
    Hit,
    Point,
    QueryEncoding,
    StoreFilter,
    StoreQuery,
)
from tribrid.store.checks import (
    canonical_id,
    check_query,
    point_vectors,
    required_filter,
    rrf_weights,
)
from tribrid.store.edge_filters import edge_filter
from tribrid.store.points import PayloadIndex
from tribrid.store.schema import (
    effective_schema,
    encodings_from_qdrant,
    mismatch_error,
    record_problems,
    schema_record,
)

logger = logging.getLogger(__name__)

_A = TypeVar("_A")
_R = TypeVar("_R")

SCHEMA_FILE = "tribrid-schema.json"
LOCK_FILE = "tribrid.lock"
# What Qdrant Edge writes into a shard folder; only these are removed on re-create, so
# pointing the store at a folder holding other files never deletes them.
_EDGE_ENTRIES = ("edge_config.json", "segments", "wal")
# Edge builds indexes and proper quantized codes only for segments above this size (KB).
# Its default (about 10 MB) leaves small collections in the appendable segment, whose
# codes are encoded without vector statistics: 1.5- and 2-bit codes then rank like
# 1-bit ones. 1 KB makes ``optimize()`` index anything but a toy collection.
INDEXING_THRESHOLD_KB = 1
_SCROLL_PAGE = 1000

_FIX = (
    "use another data dir, or rebuild it with `tribrid ingest FOLDER --recreate` (a new "
    "generation, built beside this one and switched to when complete)"
)
_BUSY_FIX = (
    "Qdrant Edge lets one process open a store at a time: run `tribrid serve --data-dir "
    "DIR` once for the data dir of this store, which owns the store and lets every other "
    "tribrid process (ingest, search, workers, LangChain retrievers) use it; or stop the "
    "other tribrid process (or wait for it to finish); or use the Qdrant server backend "
    "(TRIBRID_STORE__BACKEND=qdrant)"
)

_EDGE_BINARY = {
    BinaryEncoding.ONE_BIT: qe.BinaryQuantizationEncoding.OneBit,
    BinaryEncoding.ONE_AND_HALF_BITS: qe.BinaryQuantizationEncoding.OneAndHalfBits,
    BinaryEncoding.TWO_BITS: qe.BinaryQuantizationEncoding.TwoBits,
}
#: HNSW with m = 0: Qdrant builds no graph and searches by scanning (here: the codes).
_NO_GRAPH = qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000)
_PROBE_PARAMS = qe.SearchParams(
    quantization=qe.QuantizationSearchParams(ignore=False, rescore=False)
)
_EDGE_INDEX = {
    PayloadIndex.KEYWORD: qe.PayloadSchemaType.Keyword,
    PayloadIndex.INTEGER: qe.PayloadSchemaType.Integer,
    PayloadIndex.DATETIME: qe.PayloadSchemaType.Datetime,
}
_EDGE_QUERY = {
    QueryEncoding.DEFAULT: qe.BinaryQuantizationQueryEncoding.Default,
    QueryEncoding.BINARY: qe.BinaryQuantizationQueryEncoding.Binary,
    QueryEncoding.SCALAR4: qe.BinaryQuantizationQueryEncoding.Scalar4Bits,
    QueryEncoding.SCALAR8: qe.BinaryQuantizationQueryEncoding.Scalar8Bits,
}


#: Free bytes the store's disk must keep for a write to go ahead (see ``_check_free_space``).
MIN_FREE_BYTES = 64 * 2**20


class _FolderLock:
    """An exclusive ``flock`` on ``<folder>/tribrid.lock``.

    The kernel drops the lock when the process dies, and ``flock`` treats two opens of
    the file in one process as two owners, so a second store in the same process is
    refused too. The holder writes its pid into the file for the error message.
    """

    def __init__(self, folder: Path) -> None:
        self._path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreBusyError(_busy_message(self._path.parent, holder)) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _busy_message(folder: Path, holder: int | None) -> str:
    if holder == os.getpid():
        who = (
            "this process (close the other EdgeStore first, or open both with "
            "EdgeStore.open, which shares one open store)"
        )
    elif holder is not None:
        who = f"another process (pid {holder})"
    else:
        who = "another process"
    return f"the embedded store at {folder} is already open in {who}; {_BUSY_FIX}"


class _OpenShard:
    """One open shard, its folder lock and its worker thread: what handles share.

    ``refs`` counts the :class:`EdgeStore` handles on it; ``key`` is its place in
    :data:`_SHARED` (None for a store opened with the constructor, which is never
    shared). ``pid`` is the process that opened it: a forked child inherits the
    object but must neither use nor close the parent's shard.
    """

    def __init__(
        self, shard: qe.EdgeShard, lock: _FolderLock, schema: CollectionSchema, *, written: bool
    ) -> None:
        self.shard: qe.EdgeShard | None = shard
        # Whether anything was written since the shard was loaded: closing flushes only
        # then, so a search (``tribrid search``, a retriever) never pays for a flush.
        self.written = written
        self.lock = lock
        self.schema = schema
        self.key: Path | None = None
        self.refs = 1
        self.pid = os.getpid()
        # The async methods run here: one thread, so async callers never touch the
        # shard from two threads at once and the event loop is never blocked by it.
        self.worker: ThreadPoolExecutor | None = None
        self.worker_lock = threading.Lock()

    def close(self, *, flush: bool = True, wait: bool = True) -> None:
        """Close the shard and release the lock; a second call does nothing."""
        shard, self.shard = self.shard, None
        if shard is None:
            return
        worker, self.worker = self.worker, None
        try:
            if worker is not None:
                worker.shutdown(wait=wait)  # let a running search finish before closing
            try:
                if flush and self.written:
                    shard.flush()
            finally:
                shard.close()
        finally:
            self.lock.release()


class _SharedShards:
    """The shards :meth:`EdgeStore.open` has open in this process, by resolved folder.

    One lock guards the table and every shared shard's ``refs``; opening and the last
    close happen under it, so a folder is never opened twice at once. A handle dropped
    without :meth:`EdgeStore.close` is released by its finalizer, which may run inside
    garbage collection at any point, even in a thread holding the lock: it only tries
    the lock, and otherwise leaves the shard in ``dropped`` for the next caller.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[Path, _OpenShard] = {}
        self.dropped: list[_OpenShard] = []

    def reset(self) -> None:
        """Forget the parent's shards in a forked child, and the state of its lock."""
        self.lock = threading.Lock()
        self.open = {}
        self.dropped = []

    def release(self, core: _OpenShard, *, dropped: bool = False) -> None:
        """Drop one reference; the last closes the shard. Call with the lock held.

        A ``dropped`` handle's shard is closed as the finalizer of a store always has:
        without a flush (its writes are in Edge's write-ahead log) and without waiting
        for the worker thread, which may be the thread running the finalizer.
        """
        core.refs -= 1
        if core.refs > 0:
            return
        if core.key is not None and self.open.get(core.key) is core:
            del self.open[core.key]
        core.close(flush=not dropped, wait=not dropped)

    def release_dropped(self, core: _OpenShard) -> None:
        """Release the reference of a garbage-collected handle, now or later."""
        if not self.lock.acquire(blocking=False):
            self.dropped.append(core)
            return
        try:
            self.dropped.append(core)
            self.drain()
        finally:
            self.lock.release()

    def drain(self) -> None:
        """Release the references left by finalizers. Call with the lock held."""
        while self.dropped:
            core = self.dropped.pop()
            with contextlib.suppress(Exception):
                self.release(core, dropped=True)


_SHARED = _SharedShards()
os.register_at_fork(after_in_child=_SHARED.reset)


def _drop(core: _OpenShard) -> None:
    """The finalizer of a handle that was garbage-collected or left open at exit."""
    if core.pid != os.getpid():
        return  # inherited through a fork: the parent's shard is not ours to close
    if core.key is None:
        with contextlib.suppress(Exception):
            core.close(flush=False, wait=False)
    else:
        _SHARED.release_dropped(core)


def _sharing_problems(opened: CollectionSchema, wanted: CollectionSchema) -> list[str]:
    problems = []
    if wanted.name != opened.name:
        problems.append(f"is open as collection {opened.name!r}, not {wanted.name!r}")
    return problems + record_problems(schema_record(opened), wanted)


class EdgeStore:
    """A tribrid collection in an embedded Qdrant Edge shard.

    Writes are visible to searches at once; :meth:`flush` makes them durable and runs
    Edge's optimizers, which build the HNSW and payload indexes and the binary codes
    with their vector statistics. Call it at the end of an ingestion run.

    The constructor opens the folder for this object alone: a second opener, in this
    process or another, gets :class:`~tribrid.errors.StoreBusyError`. :meth:`open`
    (what :func:`tribrid.store.open_store` calls) shares instead: each call returns a
    new handle onto the one shard this process has open in that folder, and
    :meth:`close` of the last handle closes the shard and releases the folder lock.

    Args:
        path: Folder of the shard (created if missing).
        schema: What the collection must hold; checked against the folder on open.
        recreate: Delete the existing shard and start empty.

    Raises:
        StoreBusyError: Another process, or another store in this process, has the
            folder open.
        SchemaMismatchError: The folder holds a shard built for another schema.
        StoreError: Qdrant Edge failed to open or create the shard.

    Example:
        ::

            with EdgeStore(Path(".tribrid/store"), schema) as store:
                store.upsert(points)
                store.flush()
                hits = store.query(StoreQuery(channels=(ChannelQuery(Channel.BM25, vec),)))

            reader = EdgeStore.open(schema, path=Path(".tribrid/store"))
            writer = EdgeStore.open(schema, path=Path(".tribrid/store"))  # the same shard
    """

    single_writer: ClassVar[bool] = True

    def __init__(self, path: Path, schema: CollectionSchema, *, recreate: bool = False) -> None:
        self._path = Path(path).expanduser().absolute()
        self._where = f"collection {schema.name!r} at {self._path}"
        try:
            self._path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store folder {self._path}: {e}") from e
        lock = _FolderLock(self._path)
        try:
            lock.acquire()
        except OSError as e:
            raise StoreError(f"cannot lock the store folder {self._path}: {e}") from e
        try:
            if recreate:
                self._wipe()
            shard, effective, written = self._open_or_create(schema)
        except BaseException:
            lock.release()
            raise
        self._attach(_OpenShard(shard, lock, effective, written=written))

    @classmethod
    def open(
        cls,
        schema: CollectionSchema,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        recreate: bool = False,
    ) -> Self:
        """A handle onto the store in the folder ``path``, shared within this process.

        The first open of a folder opens it as the constructor does; later opens of the
        same (resolved) folder return further handles onto that store, until the last
        one is closed. ``url``, ``api_key`` and ``timeout`` are unused.

        Raises:
            ValueError: ``path`` is None.
            SchemaMismatchError: The folder is open in this process with another
                schema (collection name, dense size or models).
            StoreBusyError: ``recreate`` while the folder is open in this process
                (nothing is deleted), or another process has it open.
        """
        if path is None:
            raise ValueError("the 'edge' store backend needs a path (the store folder)")
        key = Path(path).expanduser().resolve()
        with _SHARED.lock:
            _SHARED.drain()
            core = _SHARED.open.get(key)
            if core is None:
                store = cls(path, schema, recreate=recreate)
                opened = store._live_core()
                opened.key = key
                _SHARED.open[key] = opened
                return store
            where = f"the embedded store at {key}"
            if recreate:
                raise StoreBusyError(
                    f"{where} is already open elsewhere in this process "
                    f"({core.refs} open handle(s)), so it was not re-created and nothing "
                    "was deleted; close every other handle on it first"
                )
            problems = _sharing_problems(core.schema, schema)
            if problems:
                raise mismatch_error(
                    f"{where}, already open in this process,",
                    problems,
                    "open it with the same settings as the open handles, or use another data dir",
                )
            effective_schema(
                schema,
                core.schema.binary_encoding,
                core.schema.query_encoding,
                where,
                core.schema.dense_on_disk,
            )
            handle = cls.__new__(cls)
            handle._path = Path(path).expanduser().absolute()
            handle._where = f"collection {core.schema.name!r} at {handle._path}"
            core.refs += 1
            handle._attach(core)
            return handle

    def _attach(self, core: _OpenShard) -> None:
        self._core: _OpenShard | None = core
        self._schema = core.schema
        self._finalizer = weakref.finalize(self, _drop, core)

    # -- opening -------------------------------------------------------------------

    def _wipe(self) -> None:
        for name in (*_EDGE_ENTRIES, SCHEMA_FILE):
            entry = self._path / name
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()

    def _open_or_create(
        self, schema: CollectionSchema
    ) -> tuple[qe.EdgeShard, CollectionSchema, bool]:
        """The shard, its effective schema, and whether opening it wrote anything."""
        if not (self._path / "edge_config.json").exists():
            return self._create(schema), schema, True
        effective = self._validate(schema)
        try:
            shard = qe.EdgeShard.load(str(self._path))
        except Exception as e:
            raise self._open_error(e) from e
        try:
            self._probe(shard, schema.dense_size)
            indexed = self._ensure_indexes(shard)
        except BaseException:
            shard.close()
            raise
        return shard, effective, indexed

    def _create(self, schema: CollectionSchema) -> qe.EdgeShard:
        # The record goes first: a crash before the shard exists leaves a folder that
        # the next open treats as new, never a shard without a record.
        self._write_record(schema)
        try:
            shard = qe.EdgeShard.create(str(self._path), _edge_config(schema))
        except Exception as e:
            raise StoreError(
                f"cannot create the Qdrant Edge shard at {self._path}: {e}; if a create was "
                "interrupted, re-create it with `tribrid ingest --recreate`"
            ) from e
        try:
            self._ensure_indexes(shard)
        except BaseException:
            shard.close()
            raise
        return shard

    def _write_record(self, schema: CollectionSchema) -> None:
        target = self._path / SCHEMA_FILE
        tmp = target.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(schema_record(schema), indent=2) + "\n")
            os.replace(tmp, target)
        except OSError as e:
            raise StoreError(f"cannot write the schema record {target}: {e}") from e

    def _validate(self, schema: CollectionSchema) -> CollectionSchema:
        """Compare the stored record and the shard's own config with ``schema``."""
        record_path = self._path / SCHEMA_FILE
        try:
            record = json.loads(record_path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            raise mismatch_error(
                self._where,
                [f"has no schema record ({SCHEMA_FILE}), so it was not made by tribrid"],
                _FIX,
            ) from None
        except (OSError, ValueError) as e:
            raise mismatch_error(
                self._where, [f"has an unreadable schema record {record_path} ({e})"], _FIX
            ) from e
        problems = record_problems(record, schema)
        stored_name = record.get("collection")
        if stored_name != schema.name:
            problems.insert(
                0,
                f"was created as collection {stored_name!r} "
                "(an embedded store holds one collection)",
            )
        config = self._read_edge_config()
        stored_binary, stored_query, on_disk = None, None, None
        if config is not None:
            on_disk = _dense_on_disk(config)
            for problem in _config_problems(config, schema):
                if problem not in problems:
                    problems.append(problem)
            quantization = _dense_quantization(config)
            stored_binary, stored_query = encodings_from_qdrant(
                quantization.get("encoding"), quantization.get("query_encoding")
            )
        if problems:
            raise mismatch_error(self._where, problems, _FIX)
        return effective_schema(schema, stored_binary, stored_query, self._where, on_disk)

    def _read_edge_config(self) -> dict[str, Any] | None:
        # Edge's own persisted config; if a future Edge changes its shape, the probe
        # queries after loading still catch wrong sizes and missing vectors.
        try:
            config = json.loads((self._path / "edge_config.json").read_text())
        except (OSError, ValueError):
            return None
        return config if isinstance(config, dict) else None

    def _probe(self, shard: qe.EdgeShard, dense_size: int) -> None:
        """Search each named vector once, so Edge itself confirms sizes and names."""
        unit = [1.0] + [0.0] * (dense_size - 1)
        probes: list[tuple[str, list[float] | qe.SparseVector]] = [
            (DENSE, unit),
            (SPLADE, qe.SparseVector([0], [1.0])),
            (BM25, qe.SparseVector([0], [1.0])),
        ]
        for name, vector in probes:
            try:
                shard.query(
                    qe.QueryRequest(
                        limit=1,
                        query=qe.Query.Nearest(vector, using=name),
                        # The codes alone: a float search would read every float of the
                        # binary tier (which has no graph) from disk.
                        params=_PROBE_PARAMS if name == DENSE else None,
                        with_payload=False,
                    )
                )
            except Exception as e:
                raise mismatch_error(
                    self._where, [f"rejects a query on its {name!r} vector ({e})"], _FIX
                ) from e

    def _ensure_indexes(self, shard: qe.EdgeShard) -> bool:
        """Index every filterable payload key; whether any index had to be created."""
        try:
            existing = set(shard.info().payload_schema)
            missing = [key for key in PAYLOAD_INDEXES if key not in existing]
            for key in missing:
                shard.update(
                    qe.UpdateOperation.create_field_index(key, _EDGE_INDEX[PAYLOAD_INDEXES[key]])
                )
        except Exception as e:
            raise StoreError(f"cannot index payload keys of {self._where}: {e}") from e
        return bool(missing)

    def _open_error(self, e: Exception) -> StoreError:
        if "WouldBlock" in str(e):
            # Someone opened the shard without tribrid's lock (a non-tribrid program).
            return StoreBusyError(_busy_message(self._path, None))
        return StoreError(f"cannot open the Qdrant Edge shard at {self._path}: {e}")

    # -- the protocol --------------------------------------------------------------

    @property
    def schema(self) -> CollectionSchema:
        """The schema the store was opened with, with the quantization it really has."""
        return self._schema

    @property
    def path(self) -> Path:
        """Folder of the shard."""
        return self._path

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite points; the same points twice leave one copy."""
        if not points:
            return
        size = self._schema.dense_size
        edge_points = []
        for p in points:
            pid, vectors = point_vectors(p, size, _sparse)
            edge_points.append(qe.Point(id=pid, vector=vectors, payload=dict(p.payload)))
        self._check_free_space(len(points))
        with self._calling(f"upsert {len(points)} points"):
            self._writable_shard().update(qe.UpdateOperation.upsert_points(edge_points))

    def _check_free_space(self, count: int) -> None:
        """Refuse a write when the store's disk is nearly full, saying so.

        The shard's files are memory-mapped: on a full disk (tmpfs above all) a write
        does not fail with ``ENOSPC`` but kills the process with SIGBUS, and nothing
        says why. Below :data:`MIN_FREE_BYTES` the write is refused as a
        :class:`StoreError`, which background tasks retry with backoff: the run pauses
        with the reason in its log and resumes once space is freed.
        """
        try:
            free = shutil.disk_usage(self._path).free
        except OSError:
            return  # cannot tell: let the write say what is wrong
        if free < MIN_FREE_BYTES:
            raise StoreError(
                f"{self._where}: no space left to upsert {count} points ({free / 2**20:.0f} MB "
                f"free, {MIN_FREE_BYTES / 2**20:.0f} MB needed); free space on that disk and "
                "the run resumes (nothing was written)"
            )

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payload of an existing point.

        Raises:
            StoreError: The point does not exist.
        """
        pid = canonical_id(point_id)
        with self._calling(f"set the payload of point {pid}"):
            self._writable_shard().update(qe.UpdateOperation.set_payload([pid], dict(payload)))

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id; ids that do not exist are ignored."""
        if not point_ids:
            return
        ids: list[qe.PointId] = [canonical_id(i) for i in point_ids]
        with self._calling(f"delete {len(ids)} points"):
            self._writable_shard().update(qe.UpdateOperation.delete_points(ids))

    def delete_by_filter(self, filter: StoreFilter) -> None:
        """Delete every point whose payload matches ``filter``.

        Raises:
            ValueError: ``filter`` is empty; to delete everything, re-create the store.
        """
        qfilter = required_filter(edge_filter(filter))
        with self._calling("delete points by filter"):
            self._writable_shard().update(qe.UpdateOperation.delete_points_by_filter(qfilter))

    def query(self, query: StoreQuery) -> list[Hit]:
        """Search one channel, or several fused with RRF or DBSF.

        The ``dense`` channel searches the float vectors (quantization ignored); the
        ``binary`` channel searches the binary codes, takes ``oversampling`` times the
        limit, and rescores those with the float vectors. With several channels each
        one prefetches ``prefetch_limit`` candidates under the filter and Edge fuses
        them; RRF gives a hit at 0-based rank ``r`` of a channel with weight ``w`` the
        score ``1 / ((r + 1) / w + rrf_k - 1)``. DBSF ignores channel weights.
        """
        request = self._request(query)
        with self._calling("query"):
            scored = self._open_shard().query(request)
        return _hits(scored)

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """Run several searches in one call to Edge; results in the same order."""
        if not queries:
            return []
        requests = [self._request(q) for q in queries]
        with self._calling(f"query a batch of {len(requests)}"):
            batches = self._open_shard().query_batch(qe.QueryBatchRequest(requests))
        return [_hits(scored) for scored in batches]

    def candidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """Run single-channel searches one after the other, keeping Edge's own ids.

        One ``query`` per search rather than one ``query_batch``: on the loaded machine
        of benchmarks/results/scale.md the batch took longer than the same searches in
        a row. Without payloads or vectors; the keys are the integers of the ``uuid.UUID``
        objects Edge hands over, never formatted as strings (see
        :class:`~tribrid.store.base.Candidates`).
        """
        if not queries:
            return []
        requests = [
            self._request(replace(q, with_payload=False, with_vectors=False)) for q in queries
        ]
        shard = self._open_shard()
        with self._calling(f"query a batch of {len(requests)}"):
            batches = [shard.query(r) for r in requests]
        # tribrid's ids are all UUIDs (checks.canonical_id), so every id has ``.int``.
        return [
            Candidates([sp.id.int for sp in b], [sp.score for sp in b], _uuid_of_int)  # type: ignore[union-attr]
            for b in batches
        ]

    async def acandidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """:meth:`candidates` on the store's worker thread."""
        return await self._in_worker(self.candidates, queries)

    async def aquery(self, query: StoreQuery) -> list[Hit]:
        """:meth:`query` on the store's worker thread, leaving the event loop free."""
        return await self._in_worker(self.query, query)

    async def aquery_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """:meth:`query_batch` on the store's worker thread."""
        return await self._in_worker(self.query_batch, queries)

    async def aretrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """:meth:`retrieve` on the store's worker thread."""
        return await self._in_worker(self.retrieve, point_ids)

    async def aupsert(self, points: Sequence[Point]) -> None:
        """:meth:`upsert` on the store's worker thread, the one its async reads use."""
        await self._in_worker(self.upsert, points)

    async def adelete(self, point_ids: Sequence[str]) -> None:
        """:meth:`delete` on the store's worker thread."""
        await self._in_worker(self.delete, point_ids)

    async def adelete_by_filter(self, filter: StoreFilter) -> None:
        """:meth:`delete_by_filter` on the store's worker thread."""
        await self._in_worker(self.delete_by_filter, filter)

    def _request(self, query: StoreQuery) -> qe.QueryRequest:
        check_query(query, self._schema.dense_size)
        qfilter = edge_filter(query.filter)
        if len(query.channels) == 1:
            cq = query.channels[0]
            return qe.QueryRequest(
                limit=query.limit,
                query=_nearest(cq),
                filter=qfilter,
                params=_params(cq.channel, query.oversampling),
                with_payload=query.with_payload,
                with_vector=[DENSE] if query.with_vectors else False,
            )
        fusion: qe.Fusion.Rrf | qe.Fusion.Dbsf = (
            qe.Fusion.Rrf(k=query.rrf_k, weights=rrf_weights(query))
            if query.fusion is Fusion.RRF
            else qe.Fusion.Dbsf()
        )
        return qe.QueryRequest(
            limit=query.limit,
            prefetches=[
                qe.Prefetch(
                    limit=query.prefetch_limit,
                    query=_nearest(cq),
                    params=_params(cq.channel, query.oversampling),
                    filter=qfilter,
                )
                for cq in query.channels
            ],
            query=fusion,  # type: ignore[arg-type]  # the stub omits Fusion's variants
            with_payload=query.with_payload,
            with_vector=[DENSE] if query.with_vectors else False,
        )

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """Fetch points by id (score 0); missing ids are skipped."""
        if not point_ids:
            return []
        ids: list[qe.PointId] = [canonical_id(i) for i in point_ids]
        with self._calling("retrieve points"):
            records = self._open_shard().retrieve(ids, True, False)
        return [Hit(id=str(r.id), score=0.0, payload=dict(r.payload or {})) for r in records]

    def count(self, filter: StoreFilter | None = None) -> int:
        """Number of points, optionally only those matching ``filter``."""
        request = qe.CountRequest(exact=True, filter=edge_filter(filter))
        with self._calling("count points"):
            return self._open_shard().count(request)

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        """Ids of all points (optionally only matching ``filter``), paging through them."""
        qfilter = edge_filter(filter)
        found: set[str] = set()
        offset: qe.PointId | None = None
        with self._calling("list point ids"):
            while True:
                records, offset = self._open_shard().scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=_SCROLL_PAGE,
                        filter=qfilter,
                        with_payload=False,
                        with_vector=False,
                    )
                )
                found.update(str(r.id) for r in records)
                if offset is None:
                    return found

    def points(self, *, with_payload: bool = False, page: int = _SCROLL_PAGE) -> Iterator[Point]:
        """Every point with its three vectors, a page at a time (for export and copies).

        Used to build stores from vectors already computed (e.g. one store per binary
        encoding when calibrating) without encoding anything again.
        """
        offset: qe.PointId | None = None
        while True:
            with self._calling("read points"):
                records, offset = self._open_shard().scroll(
                    qe.ScrollRequest(
                        offset=offset, limit=page, with_payload=with_payload, with_vector=True
                    )
                )
            for r in records:
                vectors = cast(dict[str, Any], r.vector or {})
                yield Point(
                    id=str(r.id),
                    dense=[float(x) for x in vectors[DENSE]],
                    splade=_from_edge_sparse(vectors.get(SPLADE)),
                    bm25=_from_edge_sparse(vectors.get(BM25)),
                    payload=dict(r.payload or {}) if with_payload else {},
                )
            if offset is None:
                return

    def flush(self) -> None:
        """Make writes durable, then optimize: build indexes and the binary codes.

        Optimizing grows with the collection (build times are in
        ``benchmarks/results/retriever-latency.md``); call this at the end of a run
        rather than after every batch.
        """
        with self._calling("flush and optimize"):
            shard = self._open_shard()
            shard.flush()
            shard.optimize()

    def close(self) -> None:
        """Release this handle; safe to call twice.

        The last handle on the shard flushes and closes it and releases the folder
        lock; other handles opened with :meth:`open` keep working.
        """
        core, self._core = self._core, None
        if core is None:
            return
        self._finalizer.detach()
        if core.pid != os.getpid():
            return  # inherited through a fork: the parent's shard is not ours to close
        try:
            if core.key is None:
                _SHARED.release(core)  # never shared: no other handle to guard against
            else:
                with _SHARED.lock:
                    _SHARED.drain()
                    _SHARED.release(core)
        except Exception as e:
            raise StoreError(f"closing {self._where} failed: {e}") from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        core = self._core
        if core is None:
            state = "closed"
        elif core.key is None:
            state = "open"
        else:
            state = f"open, shared by {core.refs} handle(s)"
        return f"EdgeStore({str(self._path)!r}, collection={self._schema.name!r}, {state})"

    # -- helpers -------------------------------------------------------------------

    def _open_shard(self) -> qe.EdgeShard:
        core = self._core
        shard = core.shard if core is not None else None
        if core is None or shard is None:
            raise StoreError(f"{self._where} is closed; open a new EdgeStore")
        if core.pid != os.getpid():
            raise StoreError(
                f"{self._where} was opened in process {core.pid}, before this process "
                "forked from it; open the store again in this process"
            )
        return shard

    def _writable_shard(self) -> qe.EdgeShard:
        """The shard, marked as written (so that closing it flushes)."""
        shard = self._open_shard()
        cast(_OpenShard, self._core).written = True
        return shard

    def _live_core(self) -> _OpenShard:
        self._open_shard()
        return cast(_OpenShard, self._core)

    async def _in_worker(self, fn: Callable[[_A], _R], arg: _A) -> _R:
        core = self._live_core()
        with core.worker_lock:
            if core.worker is None:
                core.worker = ThreadPoolExecutor(1, thread_name_prefix="tribrid-edge")
            worker = core.worker
        return await asyncio.get_running_loop().run_in_executor(worker, fn, arg)

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{what} failed on {self._where}: {e}") from e


def _edge_config(schema: CollectionSchema) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={
            DENSE: qe.EdgeVectorParams(
                size=schema.dense_size,
                distance=qe.Distance.Cosine,
                # The binary tier: floats stay on disk until a rescore reads them, and
                # no graph is built: a search scans the pinned codes, then rescores.
                memory=qe.Memory.Cold if schema.dense_on_disk else None,
                hnsw_config=_NO_GRAPH if schema.dense_on_disk else None,
                quantization_config=qe.BinaryQuantizationConfig(
                    memory=qe.Memory.Pinned,
                    encoding=_EDGE_BINARY[schema.binary_encoding],
                    query_encoding=_EDGE_QUERY[schema.query_encoding],
                ),
            )
        },
        sparse_vectors={
            SPLADE: qe.EdgeSparseVectorParams(),
            BM25: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf),
        },
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


def _config_problems(config: Mapping[str, Any], schema: CollectionSchema) -> list[str]:
    """Differences between Edge's persisted shard config and what tribrid needs."""
    problems = []
    vectors = config.get("vectors") or {}
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    if not isinstance(dense, dict):
        problems.append(f"has no {DENSE!r} vector")
    else:
        if dense.get("size") != schema.dense_size:
            problems.append(
                f"has dense size {dense.get('size')} but the dense model gives {schema.dense_size}"
            )
        if dense.get("distance") != "Cosine":
            problems.append(f"compares {DENSE!r} vectors by {dense.get('distance')}, not Cosine")
        if not _dense_quantization(config):
            problems.append(f"has no binary quantization on its {DENSE!r} vector")
    sparse = config.get("sparse_vectors") or {}
    for name in (SPLADE, BM25):
        if not isinstance(sparse, dict) or not isinstance(sparse.get(name), dict):
            problems.append(f"has no {name!r} sparse vector")
    bm25 = sparse.get(BM25) if isinstance(sparse, dict) else None
    if isinstance(bm25, dict) and bm25.get("modifier") != "idf":
        problems.append(f"has no IDF modifier on its {BM25!r} vector")
    return problems


def _dense_on_disk(config: Mapping[str, Any]) -> bool:
    """Whether the persisted config keeps the float dense vectors on disk (cold)."""
    vectors = config.get("vectors")
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    if not isinstance(dense, dict):
        return False
    memory = dense.get("memory")
    return memory == "cold" if memory is not None else dense.get("on_disk") is True


def _dense_quantization(config: Mapping[str, Any]) -> dict[str, Any]:
    vectors = config.get("vectors")
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    quantization = dense.get("quantization_config") if isinstance(dense, dict) else None
    binary = quantization.get("binary") if isinstance(quantization, dict) else None
    return binary if isinstance(binary, dict) else {}


def _hits(scored: Sequence[qe.ScoredPoint]) -> list[Hit]:
    return [Hit(str(sp.id), sp.score, sp.payload or {}, _dense_of(sp.vector)) for sp in scored]


def _uuid_of_int(key: int) -> str:
    """The point id of a :meth:`EdgeStore.candidates` key."""
    return str(uuid.UUID(int=key))


def _dense_of(vector: Any) -> list[float] | None:
    dense = vector.get(DENSE) if isinstance(vector, dict) else None
    return [float(x) for x in dense] if dense is not None else None


def _sparse(vector: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def _from_edge_sparse(vector: Any) -> SparseVector:
    if vector is None:
        return SparseVector((), ())
    pairs = sorted(zip(vector.indices, vector.values, strict=True))
    return SparseVector(tuple(int(i) for i, _ in pairs), tuple(float(v) for _, v in pairs))


def _nearest(cq: ChannelQuery) -> qe.Query:
    vector = cq.vector
    named: list[float] | qe.SparseVector = (
        _sparse(vector) if isinstance(vector, SparseVector) else [float(x) for x in vector]
    )
    return qe.Query.Nearest(named, using=cq.channel.vector_name)


def _params(channel: Channel, oversampling: float) -> qe.SearchParams | None:
    if channel is Channel.DENSE:
        # Without this Edge searches the binary codes for plain dense queries too.
        return qe.SearchParams(quantization=qe.QuantizationSearchParams(ignore=True))
    if channel is Channel.BINARY:
        return qe.SearchParams(
            quantization=qe.QuantizationSearchParams(
                ignore=False, rescore=True, oversampling=oversampling
            )
        )
    return None

"""Generations of an embedded index: a new build beside the live one, switched atomically.

Rebuilding an index (another chunk size, another model) must not leave searches without
answers. So a rebuild writes a new *generation* beside the live one and switches to it
only once it is complete:

* generation 0 is the shard in the store folder itself (every store made before
  generations existed, and every new store until its first rebuild);
* generation ``n > 0`` is the shard in ``<store>/generations/<n>/``;
* ``<store>/tribrid-live.json`` names the live generation; it is replaced atomically
  (``os.replace``), so a reader sees the old generation or the new one, never neither.
  Without the file, generation 0 is live.

:class:`LiveEdgeStore` is the store the ``edge`` backend opens: an
:class:`~tribrid.store.edge.EdgeStore` on the live generation that looks at the live
file before each call (one ``stat``) and moves to the new generation when it changed,
so a search thread, a retriever or ``tribrid serve`` follows a switch made by another
thread or another process. Qdrant Edge lets one process open a shard, but each
generation is a shard of its own: a rebuild in one process writes generation ``n + 1``
while ``tribrid serve`` in another keeps answering from ``n``.

A generation older than the live one is removed once no process has it open (its
folder lock is free): right after the switch when nothing holds it, otherwise by the
next open or switch. A failed build is removed by :meth:`EdgeStaged.abandon` and never
becomes live.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from tribrid.errors import SchemaMismatchError, StoreBusyError, StoreError
from tribrid.store.base import (
    Candidates,
    CollectionSchema,
    Hit,
    Point,
    StoreFilter,
    StoreQuery,
    VectorStore,
    search_candidates,
)
from tribrid.store.edge import _EDGE_ENTRIES, SCHEMA_FILE, EdgeStore, _FolderLock

log = logging.getLogger(__name__)

#: Names the live generation of a store folder (absent: generation 0).
LIVE_FILE = "tribrid-live.json"
#: Folder of the generations above 0.
GENERATIONS_DIR = "generations"
# Where Qdrant Edge's optimizer builds segments, beside the shard's own entries.
_EDGE_TEMP = "temp_segments"


@runtime_checkable
class StagedGeneration(Protocol):
    """A generation being built beside the live one.

    Write to :attr:`store` (nothing searches it yet), then :meth:`publish` to make it
    live at once, or :meth:`abandon` to drop it and leave the live one as it was.
    """

    @property
    def number(self) -> int:
        """The generation's number (greater than the live one's)."""
        ...

    @property
    def store(self) -> VectorStore:
        """The new generation's store, open for writes."""
        ...

    def publish(self) -> None:
        """Make the generation live in one atomic step, then remove the old one."""
        ...

    def abandon(self) -> None:
        """Close and delete the generation; the live one stays as it was."""
        ...


@runtime_checkable
class Generational(Protocol):
    """A store that knows which generation it serves."""

    @property
    def generation(self) -> int:
        """The generation the store reads and writes now."""
        ...


def store_generation(store: object) -> int | None:
    """The generation ``store`` serves, or None for a store without generations."""
    return store.generation if isinstance(store, Generational) else None


class EdgeGenerations:
    """The generations of one embedded store folder.

    Args:
        root: The store folder (``settings.store_path``).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def live_file(self) -> Path:
        """The file naming the live generation."""
        return self.root / LIVE_FILE

    def live(self) -> int:
        """The live generation's number (0 without a live file)."""
        try:
            data = json.loads(self.live_file.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            raise StoreError(
                f"cannot read {self.live_file}, which names the live generation of the "
                f"store: {e}; restore it, or remove it to make generation 0 (the shard in "
                f"{self.root}) live"
            ) from e
        number = data.get("generation") if isinstance(data, dict) else None
        if not isinstance(number, int) or number < 0:
            raise StoreError(
                f"{self.live_file} names no generation ({data!r}); write "
                '{"generation": N} with the number of a folder in '
                f"{self.root / GENERATIONS_DIR}, or remove it to make generation 0 live"
            )
        return number

    def folder(self, number: int) -> Path:
        """The shard folder of generation ``number``."""
        return self.root if number == 0 else self.root / GENERATIONS_DIR / str(number)

    def numbers(self) -> list[int]:
        """Every generation with something on disk, in order."""
        found = [0] if (self.root / "edge_config.json").exists() else []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in (self.root / GENERATIONS_DIR).iterdir():
                if entry.name.isdigit() and entry.is_dir():
                    found.append(int(entry.name))
        return sorted(found)

    def begin(self, schema: CollectionSchema) -> EdgeStaged:
        """Start generation ``max(existing, live) + 1``, empty, for ``schema``.

        Raises:
            StoreBusyError: Another process builds a generation of this store now.
        """
        self.collect()
        live = self.live()
        for number in self.numbers():
            if number > live and not self._remove(number):
                raise StoreBusyError(
                    f"generation {number} of the store at {self.root} is being built by "
                    "another process; wait for that rebuild to finish"
                )
        number = max([live, *self.numbers()]) + 1
        store = EdgeStore.open(schema, path=self.folder(number), recreate=True)
        return EdgeStaged(self, number, store)

    def switch(self, number: int) -> None:
        """Make ``number`` live: one atomic replace of the live file, made durable."""
        if number != 0 and not (self.folder(number) / "edge_config.json").exists():
            raise StoreError(
                f"generation {number} has no shard in {self.folder(number)}; nothing to switch to"
            )
        tmp = self.live_file.with_name(f"{LIVE_FILE}.{os.getpid()}.tmp")
        try:
            with tmp.open("w") as handle:
                handle.write(json.dumps({"generation": number}) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.live_file)
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot switch {self.root} to generation {number}: {e}") from e

    def collect(self) -> list[int]:
        """Remove every generation older than the live one that no process has open.

        Returns:
            The numbers removed.
        """
        live = self.live()
        return [n for n in self.numbers() if n < live and self._remove(n)]

    def _remove(self, number: int) -> bool:
        """Delete a generation's shard if its folder lock is free; False if it is open."""
        folder = self.folder(number)
        lock = _FolderLock(folder)
        try:
            lock.acquire()
        except StoreBusyError:
            return False
        except OSError:
            return False  # the folder went away meanwhile
        try:
            for name in (*_EDGE_ENTRIES, _EDGE_TEMP, SCHEMA_FILE):
                entry = folder / name
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
            if number != 0:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            lock.release()
        log.info("removed generation %d of the store at %s", number, self.root)
        return True


class EdgeStaged:
    """A generation of an embedded store being built (see :meth:`EdgeGenerations.begin`)."""

    def __init__(self, generations: EdgeGenerations, number: int, store: EdgeStore) -> None:
        self._generations = generations
        self._number = number
        self._store: EdgeStore | None = store

    @property
    def number(self) -> int:
        """The generation's number."""
        return self._number

    @property
    def store(self) -> PinnedStore:
        """The new generation's store."""
        if self._store is None:
            raise StoreError(f"generation {self._number} was already published or abandoned")
        return PinnedStore(self._store, self._number)

    def publish(self) -> None:
        """Flush and optimize the new shard, switch to it, then drop the old generation.

        The new shard stays open until the switch is made, so readers in this process
        move to it without opening it again.
        """
        store = self._store
        if store is None:
            raise StoreError(f"generation {self._number} was already published or abandoned")
        store.flush()
        self._generations.switch(self._number)
        self._store = None
        store.close()
        self._generations.collect()

    def abandon(self) -> None:
        """Close and delete the new generation (safe to call after :meth:`publish`)."""
        store, self._store = self._store, None
        if store is None:
            return
        try:
            store.close()
        finally:
            self._generations._remove(self._number)


class _Delegating:
    """The store protocol, each call passed to the store :meth:`_use` gives."""

    def _use(self) -> contextlib.AbstractContextManager[Any]:
        """The store to call, held while the call runs."""
        raise NotImplementedError

    @property
    def schema(self) -> CollectionSchema:
        """The schema of the generation."""
        with self._use() as store:
            return store.schema

    def upsert(self, points: Sequence[Point]) -> None:
        """:meth:`VectorStore.upsert` on the generation."""
        with self._use() as store:
            store.upsert(points)

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """:meth:`VectorStore.set_payload` on the generation."""
        with self._use() as store:
            store.set_payload(point_id, payload)

    def delete(self, point_ids: Sequence[str]) -> None:
        """:meth:`VectorStore.delete` on the generation."""
        with self._use() as store:
            store.delete(point_ids)

    def delete_by_filter(self, filter: StoreFilter) -> None:
        """:meth:`VectorStore.delete_by_filter` on the generation."""
        with self._use() as store:
            store.delete_by_filter(filter)

    def query(self, query: StoreQuery) -> list[Hit]:
        """:meth:`VectorStore.query` on the generation."""
        with self._use() as store:
            return store.query(query)

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """:meth:`VectorStore.query_batch` on the generation."""
        with self._use() as store:
            return store.query_batch(queries)

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """:meth:`VectorStore.retrieve` on the generation."""
        with self._use() as store:
            return store.retrieve(point_ids)

    def count(self, filter: StoreFilter | None = None) -> int:
        """:meth:`VectorStore.count` on the generation."""
        with self._use() as store:
            return store.count(filter)

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        """:meth:`VectorStore.ids` on the generation."""
        with self._use() as store:
            return store.ids(filter)

    def flush(self) -> None:
        """:meth:`VectorStore.flush` on the generation."""
        with self._use() as store:
            store.flush()

    def candidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """Per-channel candidates from the generation (:func:`search_candidates`)."""
        with self._use() as store:
            return search_candidates(store, queries)

    async def acandidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """:meth:`candidates`, awaitable."""
        with self._use() as store:
            found = getattr(store, "acandidates", None)
            if found is not None:
                result: list[Candidates] = await found(queries)
                return result
            return search_candidates(store, queries)

    async def aquery(self, query: StoreQuery) -> list[Hit]:
        """:meth:`VectorStore.aquery` on the generation."""
        with self._use() as store:
            return await store.aquery(query)

    async def aquery_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """:meth:`VectorStore.aquery_batch` on the generation."""
        with self._use() as store:
            return await store.aquery_batch(queries)

    async def aretrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """:meth:`VectorStore.aretrieve` on the generation."""
        with self._use() as store:
            return await store.aretrieve(point_ids)

    async def aupsert(self, points: Sequence[Point]) -> None:
        """:meth:`VectorStore.aupsert` on the generation."""
        with self._use() as store:
            await store.aupsert(points)

    async def adelete(self, point_ids: Sequence[str]) -> None:
        """:meth:`VectorStore.adelete` on the generation."""
        with self._use() as store:
            await store.adelete(point_ids)

    async def adelete_by_filter(self, filter: StoreFilter) -> None:
        """:meth:`VectorStore.adelete_by_filter` on the generation."""
        with self._use() as store:
            await store.adelete_by_filter(filter)


class PinnedStore(_Delegating):
    """A store of one generation, saying which (what a rebuild writes to).

    Args:
        store: The generation's own store.
        number: Its generation number.
    """

    #: Conservative: the generation's own store may allow one process only.
    single_writer: ClassVar[bool] = True

    def __init__(self, store: VectorStore, number: int) -> None:
        self._store = store
        self._number = number

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
        """Not a backend: a generation is started with ``begin_generation``.

        Raises:
            StoreError: Always.
        """
        raise StoreError(
            "a PinnedStore is not opened by name; start a generation with "
            "EdgeGenerations.begin or QdrantServerStore.begin_generation"
        )

    def _use(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext(self._store)

    @property
    def generation(self) -> int:
        """The generation this store holds."""
        return self._number

    @property
    def inner(self) -> VectorStore:
        """The generation's own store."""
        return self._store

    def close(self) -> None:
        """Close the generation's store."""
        self._store.close()

    def __repr__(self) -> str:
        return f"PinnedStore(generation {self._number}: {self._store!r})"


class LiveEdgeStore(_Delegating):
    """The ``edge`` backend: the live generation of a store folder, followed across switches.

    Every call first checks the live file (one ``stat``); when another thread or process
    switched generations, the store opens the new one (shared within the process, as
    :meth:`EdgeStore.open` shares) and releases the old one, which is then removed once
    nothing holds it. Opening another generation with another schema (a rebuild with
    another model) is refused: the store keeps answering from the generation it has
    and logs why; open a new store with the new settings.

    Args and errors: as :meth:`EdgeStore.open`; ``recreate`` empties the live generation.
    """

    single_writer: ClassVar[bool] = True

    def __init__(self, path: Path, schema: CollectionSchema, *, recreate: bool = False) -> None:
        self._generations = EdgeGenerations(path)
        self._wanted = schema
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._generation = -1
        self._inner: EdgeStore | None = None
        self._closed = False
        self._busy: dict[int, int] = {}  # calls running, by id of the store they use
        self._retired: list[EdgeStore] = []  # left behind by a switch, still in use
        self._follow(recreate=recreate)
        with contextlib.suppress(StoreError, OSError):
            self._generations.collect()

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
        """The live generation of the store folder ``path`` (``url`` and the rest unused)."""
        if path is None:
            raise ValueError("the 'edge' store backend needs a path (the store folder)")
        return cls(path, schema, recreate=recreate)

    # -- following the live generation -------------------------------------------------

    def _stamp(self) -> tuple[int, int]:
        try:
            info = os.stat(self._generations.live_file)
        except FileNotFoundError:
            return (0, 0)
        return (info.st_ino, info.st_mtime_ns)

    def _follow(self, *, recreate: bool = False) -> EdgeStore:
        """The store of the live generation, opening it when the live file changed."""
        stamp = self._stamp()
        inner = self._inner
        if inner is not None and stamp == self._seen:
            return inner
        with self._lock:
            if self._closed:
                raise StoreError(f"the store at {self._generations.root} is closed")
            for _ in range(10):
                stamp = self._stamp()
                if self._inner is not None and stamp == self._seen:
                    return self._inner
                number = self._generations.live()
                if self._inner is not None and number == self._generation:
                    self._seen = stamp
                    return self._inner
                try:
                    opened = EdgeStore.open(
                        self._wanted, path=self._generations.folder(number), recreate=recreate
                    )
                except SchemaMismatchError as e:
                    if self._inner is None:
                        raise
                    log.warning(
                        "the store at %s switched to generation %d, built for other "
                        "settings, so this store keeps answering from generation %d: %s",
                        self._generations.root,
                        number,
                        self._generation,
                        e,
                    )
                    self._seen = stamp
                    return self._inner
                if self._stamp() != stamp:
                    opened.close()  # switched again while opening: look once more
                    continue
                old, self._inner = self._inner, opened
                self._generation, self._seen = number, stamp
                if old is not None:
                    log.info(
                        "the store at %s now answers from generation %d",
                        self._generations.root,
                        number,
                    )
                    if self._busy.get(id(old)):
                        self._retired.append(old)  # the last call on it closes it
                    else:
                        self._retire(old)
                return opened
            raise StoreError(
                f"the live generation of the store at {self._generations.root} keeps changing"
            )

    @property
    def generation(self) -> int:
        """The generation this store answers from now."""
        self._follow()
        return self._generation

    @property
    def path(self) -> Path:
        """The store folder (all generations)."""
        return self._generations.root

    @contextlib.contextmanager
    def _use(self) -> Iterator[EdgeStore]:
        """The live generation's store, kept open until the call using it returns.

        A generation left behind by a switch is closed by the last call still running
        on it (at once when there is none), so a switch never closes a shard under a
        search in flight.
        """
        self._follow()
        with self._lock:
            inner = self._inner
            if inner is None:
                raise StoreError(f"the store at {self._generations.root} is closed")
            self._busy[id(inner)] = self._busy.get(id(inner), 0) + 1
        try:
            yield inner
        finally:
            with self._lock:
                left = self._busy.pop(id(inner)) - 1
                if left:
                    self._busy[id(inner)] = left
                retire = not left and inner in self._retired
                if retire:
                    self._retired.remove(inner)
            if retire:
                self._retire(inner)

    def _retire(self, old: EdgeStore) -> None:
        """Close a generation left behind, then remove what nothing holds any more."""
        old.close()
        with contextlib.suppress(StoreError, OSError):
            self._generations.collect()

    def points(self, *, with_payload: bool = False) -> Iterator[Point]:
        """:meth:`EdgeStore.points` on the live generation (a page at a time)."""
        with self._use() as store:
            yield from store.points(with_payload=with_payload)

    def close(self) -> None:
        """Release the live generation's shard; safe to call twice."""
        with self._lock:
            self._closed = True
            inner, self._inner = self._inner, None
            retired, self._retired = self._retired, []
        for store in [*retired, *([inner] if inner is not None else [])]:
            store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        inner = self._inner
        state = "closed" if inner is None else f"generation {self._generation}: {inner!r}"
        return f"LiveEdgeStore({str(self._generations.root)!r}, {state})"


__all__ = [
    "GENERATIONS_DIR",
    "LIVE_FILE",
    "EdgeGenerations",
    "EdgeStaged",
    "Generational",
    "LiveEdgeStore",
    "PinnedStore",
    "StagedGeneration",
    "store_generation",
]

"""Where the points live: the store protocol, its backends, and a factory.

Add a backend by writing one module with a class that implements
:class:`~tribrid.store.base.VectorStore` (its ``open`` classmethod and ``single_writer``
flag included) and adding one line to :data:`STORES`.
"""

from __future__ import annotations

from pathlib import Path

from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.edge import EdgeStore
from tribrid.store.generations import LiveEdgeStore
from tribrid.store.qdrant import QdrantServerStore
from tribrid.store.remote import RemoteStore

#: Store backends by the name settings use (``TRIBRID_STORE__BACKEND``).
STORES: dict[str, type[VectorStore]] = {
    "edge": LiveEdgeStore,
    "qdrant": QdrantServerStore,
    "remote": RemoteStore,
}


def store_class(backend: str) -> type[VectorStore]:
    """The class of the store backend called ``backend``.

    Raises:
        ValueError: ``backend`` is not a key of :data:`STORES`; the message lists them.
    """
    try:
        return STORES[backend]
    except KeyError:
        raise ValueError(
            f"unknown store backend {backend!r}; valid names: {sorted(STORES)}"
        ) from None


def needs_single_writer(backend: str) -> bool:
    """Whether only one process at a time may open a store of ``backend``.

    Then one process must own the store and the others send their writes to it.

    Raises:
        ValueError: ``backend`` is not a key of :data:`STORES`.
    """
    return store_class(backend).single_writer


def open_store(
    backend: str,
    schema: CollectionSchema,
    *,
    path: Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 30.0,
    recreate: bool = False,
) -> VectorStore:
    """Open (or create) the collection described by ``schema`` on ``backend``.

    Args:
        backend: A key of :data:`STORES`, such as ``"edge"`` (embedded, one process) or
            ``"qdrant"`` (a Qdrant server, shared).
        schema: What the collection must hold; checked against an existing one.
        path: Folder of an embedded store (``edge`` needs it).
        url: Server URL or ``":memory:"`` (``qdrant``); a ``tribrid serve`` URL (``remote``).
        api_key: Server API key (``qdrant``).
        timeout: Request timeout in seconds (``qdrant``).
        recreate: Delete the existing collection first.

    Raises:
        ValueError: ``backend`` is not a known name, or it needs an option not given
            (``edge`` without ``path``).

    Example:
        ::

            store = open_store("edge", schema, path=settings.store_path)
    """
    return store_class(backend).open(
        schema, path=path, url=url, api_key=api_key, timeout=timeout, recreate=recreate
    )


__all__ = [
    "STORES",
    "EdgeStore",
    "LiveEdgeStore",
    "QdrantServerStore",
    "needs_single_writer",
    "open_store",
    "store_class",
]

"""Where the points live: the store protocol, its two backends, and a factory.

Add a backend by writing one module that implements
:class:`~tribrid.store.base.VectorStore` and adding one line to :data:`STORES`.
"""

from __future__ import annotations

from pathlib import Path

from tribrid.store.base import CollectionSchema, VectorStore
from tribrid.store.edge import EdgeStore
from tribrid.store.qdrant import QdrantServerStore

STORES: dict[str, type[EdgeStore] | type[QdrantServerStore]] = {
    "edge": EdgeStore,
    "qdrant": QdrantServerStore,
}


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
        backend: A key of :data:`STORES`: ``"edge"`` (embedded, one process) or
            ``"qdrant"`` (a Qdrant server, shared).
        schema: What the collection must hold; checked against an existing one.
        path: Folder of the embedded store (``edge`` only, required there).
        url: Server URL or ``":memory:"`` (``qdrant`` only).
        api_key: Server API key (``qdrant`` only).
        timeout: Request timeout in seconds (``qdrant`` only).
        recreate: Delete the existing collection first.

    Raises:
        ValueError: ``backend`` is not a known name, or ``edge`` got no ``path``.

    Example:
        ::

            store = open_store("edge", schema, path=settings.store_path)
    """
    store_class = STORES.get(backend)
    if store_class is None:
        raise ValueError(f"unknown store backend {backend!r}; valid names: {sorted(STORES)}")
    if store_class is EdgeStore:
        if path is None:
            raise ValueError("the 'edge' store backend needs a path (the store folder)")
        return EdgeStore(path, schema, recreate=recreate)
    return QdrantServerStore(schema, url=url, api_key=api_key, timeout=timeout, recreate=recreate)


__all__ = ["STORES", "EdgeStore", "QdrantServerStore", "open_store"]

"""Where the points live: the store protocol, its backends, and a factory.

Add a backend by writing one module with a class that implements
:class:`~tribrid.store.base.VectorStore` (its ``open`` classmethod and ``single_writer``
flag included) and adding one line to :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribrid.store.base import CollectionSchema, VectorStore

if TYPE_CHECKING:
    from tribrid.store.edge import EdgeStore
    from tribrid.store.generations import LiveEdgeStore
    from tribrid.store.qdrant import QdrantServerStore
    from tribrid.store.remote import RemoteStore

    #: Every backend's class by name (imported on first use).
    STORES: dict[str, type[VectorStore]]

#: Store backends by the name settings use (``TRIBRID_STORE__BACKEND``): the module and
#: class of each. A backend's module (and its client library) is imported only when the
#: backend is used, so a remote client never imports the embedded store's. ``edge`` is
#: the embedded store that follows the index's live generation.
BACKENDS: dict[str, tuple[str, str]] = {
    "edge": ("tribrid.store.generations", "LiveEdgeStore"),
    "qdrant": ("tribrid.store.qdrant", "QdrantServerStore"),
    "remote": ("tribrid.store.remote", "RemoteStore"),
}
_CLASSES = {name: module for module, name in BACKENDS.values()} | {
    "EdgeStore": "tribrid.store.edge"  # one generation's shard, without following the switch
}


def __getattr__(name: str) -> Any:
    # ``STORES`` (every backend's class) and the classes themselves, imported on first use.
    if name == "STORES":
        return {backend: store_class(backend) for backend in BACKENDS}
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def store_class(backend: str) -> type[VectorStore]:
    """The class of the store backend called ``backend``.

    Raises:
        ValueError: ``backend`` is not a key of :data:`BACKENDS`; the message lists them.
    """
    try:
        module, name = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown store backend {backend!r}; valid names: {sorted(BACKENDS)}"
        ) from None
    cls: type[VectorStore] = getattr(importlib.import_module(module), name)
    return cls


def needs_single_writer(backend: str) -> bool:
    """Whether only one process at a time may open a store of ``backend``.

    Then one process must own the store and the others send their writes to it.

    Raises:
        ValueError: ``backend`` is not a key of :data:`BACKENDS`.
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
        backend: A key of :data:`BACKENDS`, such as ``"edge"`` (embedded, one process) or
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
    "BACKENDS",
    "STORES",
    "EdgeStore",
    "LiveEdgeStore",
    "QdrantServerStore",
    "RemoteStore",
    "needs_single_writer",
    "open_store",
    "store_class",
]

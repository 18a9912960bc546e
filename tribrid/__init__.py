"""tribrid: folders of documents to a hybrid Qdrant index, served to LangChain.

Example:
    >>> import tribrid
    >>> tribrid.ingest("docs/")                          # doctest: +SKIP
    >>> tribrid.remove("docs/old.pdf")                   # doctest: +SKIP
    >>> tribrid.search("binary quantization", k=3)       # doctest: +SKIP
    >>> tribrid.status()                                 # doctest: +SKIP
    >>> tribrid.as_retriever(k=5).invoke("quantization")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "HybridRetriever",
    "SearchMode",
    "SearchResult",
    "Settings",
    "TribridRetriever",
    "TribridVectorStore",
    "__version__",
    "as_retriever",
    "ingest",
    "remove",
    "search",
    "status",
]

if TYPE_CHECKING:
    from tribrid.app import (
        SearchMode,
        SearchResult,
        as_retriever,
        ingest,
        remove,
        search,
        status,
    )
    from tribrid.retrievers import HybridRetriever, TribridRetriever, TribridVectorStore
    from tribrid.settings import Settings


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import tribrid` stays cheap for parse workers and tools.
    if name in (
        "ingest",
        "remove",
        "search",
        "status",
        "as_retriever",
        "SearchMode",
        "SearchResult",
    ):
        from tribrid import app

        return getattr(app, name)
    if name in ("HybridRetriever", "TribridRetriever", "TribridVectorStore"):
        from tribrid import retrievers

        return getattr(retrievers, name)
    if name == "Settings":
        from tribrid.settings import Settings

        return Settings
    raise AttributeError(f"module 'tribrid' has no attribute {name!r}")

"""tribrid: folders of documents to a hybrid Qdrant index, served to LangChain."""

from __future__ import annotations

__version__ = "0.1.0"

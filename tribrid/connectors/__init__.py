"""Connectors list the documents of a source."""

from tribrid.connectors.base import Connector, ListedItem, ListingFailure, SourceDocument
from tribrid.connectors.local import LocalFolderConnector

CONNECTORS: dict[str, type[LocalFolderConnector]] = {"local": LocalFolderConnector}

__all__ = [
    "CONNECTORS",
    "Connector",
    "ListedItem",
    "ListingFailure",
    "LocalFolderConnector",
    "SourceDocument",
]

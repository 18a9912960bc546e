"""Connectors list the documents of a source."""

from tribrid.connectors.base import (
    Connector,
    ListedItem,
    ListingFailure,
    SourceDocument,
    TextDocument,
)
from tribrid.connectors.beir import BeirCorpusConnector
from tribrid.connectors.local import LocalFolderConnector

CONNECTORS: dict[str, type[LocalFolderConnector] | type[BeirCorpusConnector]] = {
    "local": LocalFolderConnector,
    "beir": BeirCorpusConnector,
}

__all__ = [
    "CONNECTORS",
    "BeirCorpusConnector",
    "Connector",
    "ListedItem",
    "ListingFailure",
    "LocalFolderConnector",
    "SourceDocument",
    "TextDocument",
]

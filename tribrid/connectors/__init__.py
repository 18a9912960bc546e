"""Connectors list the documents of a source."""

from tribrid.connectors.base import (
    Connector,
    ConnectorClass,
    ConnectorOptions,
    ListedItem,
    ListingFailure,
    SourceDocument,
    TextDocument,
    source_location,
)
from tribrid.connectors.beir import BeirCorpusConnector
from tribrid.connectors.local import LocalFolderConnector

#: Connector classes by name, as ``tribrid ingest PATH --connector NAME`` takes them. A new
#: connector is one module with a class that has ``from_location`` and one line here.
CONNECTORS: dict[str, ConnectorClass] = {
    "local": LocalFolderConnector,
    "beir": BeirCorpusConnector,
}


def open_connector(name: str, location: str, options: ConnectorOptions | None = None) -> Connector:
    """The connector ``name`` of the source at ``location``.

    Raises:
        ValueError: ``name`` is not a key of :data:`CONNECTORS`.
    """
    connector_class = CONNECTORS.get(name)
    if connector_class is None:
        raise ValueError(f"unknown connector {name!r}; valid names: {sorted(CONNECTORS)}")
    return connector_class.from_location(location, options or ConnectorOptions())


__all__ = [
    "CONNECTORS",
    "BeirCorpusConnector",
    "Connector",
    "ConnectorClass",
    "ConnectorOptions",
    "ListedItem",
    "ListingFailure",
    "LocalFolderConnector",
    "SourceDocument",
    "TextDocument",
    "open_connector",
    "source_location",
]

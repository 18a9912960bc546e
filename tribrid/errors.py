"""One error root for the whole package.

Every message names the object, what is wrong with it, and what to do about it.
"""

from __future__ import annotations


class TribridError(Exception):
    """Root of every error tribrid raises on purpose."""


class ConfigError(TribridError, ValueError):
    """A setting or argument has a value tribrid cannot use."""


class ConnectorError(TribridError):
    """A source could not be listed or a document could not be read."""


class ParseError(TribridError):
    """A document could not be turned into text.

    Attributes:
        kind: A short machine-readable reason (one of :class:`tribrid.ingestion.base.FailureKind`).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class EncoderError(TribridError):
    """A model could not be loaded or failed to encode."""


class StoreError(TribridError):
    """The vector store refused an operation or could not be reached."""


class StoreBusyError(StoreError):
    """Another process holds the embedded store open."""


class SchemaMismatchError(StoreError):
    """An existing collection was built with other vectors or models than the settings ask for."""


class LedgerError(TribridError):
    """The ledger database could not be opened, migrated or written."""


class MissingDependencyError(TribridError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""

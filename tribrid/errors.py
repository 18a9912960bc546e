"""One error root for the whole package.

Every message names the object, what is wrong with it, and what to do about it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# ``scheme://user:password@host``: the password part of any URL in a text.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?=@)")
REDACTED = "***"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL's password and every one of ``secrets`` masked.

    Error messages, logs and stored run errors go through this, so a broker, database
    or store URL with a password, or an API key, is never printed.
    """
    masked = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            masked = masked.replace(secret, REDACTED)
    return masked


class RedactingFilter(logging.Filter):
    """A logging filter that masks URL passwords and the given secrets in every record.

    Args:
        secrets: Values to mask wherever they appear (API keys, passwords).
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self._secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def redact_logs(secrets: Iterable[str | None] = ()) -> None:
    """Mask secrets in everything the root logger's handlers write (call after set-up)."""
    redactor = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)


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


class SourceBusyError(TribridError):
    """Another sync of the same source is at work; this one did nothing."""


class MissingDependencyError(TribridError, ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""

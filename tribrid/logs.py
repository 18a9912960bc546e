"""Logging: one set-up for every command and worker, bound fields, JSON lines, no secrets.

:func:`setup_logging` puts one handler on the root logger (stderr), at a level from the
``-v``/``-q`` count, writing text or one JSON object per line, with secrets masked.
:func:`bind` attaches fields to every record logged inside a block — the run id, the
document key, the Celery task id — through :mod:`contextvars`, so they follow the code
into the threads and tasks it runs and never leak into a neighbour's records.

Example:
    >>> setup_logging(verbosity=1, log_format=LogFormat.JSON)  # doctest: +SKIP
    >>> with bind(run_id=3, document_key="a.pdf"):  # doctest: +SKIP
    ...     logging.getLogger("tribrid").warning("parse failed")
    {"ts": "...", "level": "WARNING", "logger": "tribrid", "message": "parse failed",
     "run_id": 3, "document_key": "a.pdf"}
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TextIO

from tribrid.errors import RedactingFilter, redact

#: The fields :func:`bind` attaches to records, in the order JSON lines show them.
BOUND_FIELDS = ("run_id", "document_key", "task_id")
#: Fields a call may pass with ``extra=`` that JSON lines carry (a document's outcome).
EXTRA_FIELDS = ("outcome", "kind", "chunks")

_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tribrid_log_fields", default=MappingProxyType({})
)


class LogFormat(StrEnum):
    """How log records are written: ``text`` for people, ``json`` for log shippers."""

    TEXT = "text"
    JSON = "json"


def level_for(verbosity: int) -> int:
    """tribrid's level for a ``-v`` count minus a ``-q`` count (0: warnings and errors)."""
    if verbosity <= -2:
        return logging.CRITICAL
    return {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def library_level_for(verbosity: int) -> int:
    """Other libraries' level: one step quieter than tribrid's (``-vv`` shows their info,
    ``-vvv`` their debug), so ``-v`` is about the documents, not the migrations."""
    return level_for(verbosity - 1) if verbosity > 0 else level_for(verbosity)


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` to every record logged inside the block (``None`` values unset)."""
    token = _bound.set(_merged(fields))
    try:
        yield
    finally:
        _bound.reset(token)


def bind_fields(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Attach ``fields`` until :func:`unbind` is given the token (for signal handlers)."""
    return _bound.set(_merged(fields))


def unbind(token: contextvars.Token[Mapping[str, Any]]) -> None:
    """Undo one :func:`bind_fields`."""
    _bound.reset(token)


def bound() -> dict[str, Any]:
    """The fields bound here and now."""
    return dict(_bound.get())


def _merged(fields: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**_bound.get(), **fields}
    return {k: v for k, v in merged.items() if v is not None}


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (``extra=`` given to a call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message [run=3 doc=a.pdf task=…]``, secrets masked."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = " ".join(
            f"{short}={getattr(record, name)}"
            for name, short in zip(BOUND_FIELDS, ("run", "doc", "task"), strict=True)
            if getattr(record, name, None) is not None
        )
        if tags:
            head, newline, rest = text.partition("\n")
            text = f"{head} [{tags}]{newline}{rest}"
        return redact(text, self._secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, bound fields, error.

    Every string is masked before it is serialised (the message, the traceback and any
    extra field), so a password in an exception's text never reaches a log shipper.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in BOUND_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(
            {k: redact(v, self._secrets) if isinstance(v, str) else v for k, v in entry.items()},
            default=str,
        )


def formatter(log_format: LogFormat | str, secrets: Iterable[str | None] = ()) -> logging.Formatter:
    """The formatter of ``log_format``, masking ``secrets`` and URL passwords."""
    if LogFormat(log_format) is LogFormat.JSON:
        return JsonFormatter(secrets)
    return TextFormatter(secrets)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time, never a stream it kept: a live
    display that redirects stderr (rich) still shows the lines above itself, and a
    replaced stderr (a test runner's capture, since closed) is never written to."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def setup_logging(
    *,
    verbosity: int = 0,
    log_format: LogFormat | str = LogFormat.TEXT,
    secrets: Iterable[str | None] = (),
) -> logging.Handler:
    """Make the root logger write to stderr at ``verbosity``'s level, in ``log_format``.

    Replaces the handlers a previous call installed (a test may call it twice). Returns
    the handler, which masks ``secrets`` and every URL's password.
    """
    secrets = list(secrets)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tribrid", False)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler._tribrid = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(log_format, secrets))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    logging.captureWarnings(LogFormat(log_format) is LogFormat.JSON)
    root.setLevel(library_level_for(verbosity))
    logging.getLogger("tribrid").setLevel(level_for(verbosity))
    return handler


def format_handlers(
    handlers: Iterable[logging.Handler],
    log_format: LogFormat | str,
    secrets: Iterable[str | None] = (),
) -> None:
    """Give handlers another library set up (Celery's) tribrid's format, fields and masking."""
    secrets = list(secrets)
    if LogFormat(log_format) is LogFormat.JSON:
        logging.captureWarnings(True)  # a warning printed raw would break the JSON lines
    for handler in handlers:
        if LogFormat(log_format) is LogFormat.JSON:
            handler.setFormatter(formatter(log_format, secrets))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        handler.addFilter(RedactingFilter(secrets))


__all__ = [
    "BOUND_FIELDS",
    "EXTRA_FIELDS",
    "ContextFilter",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "bind",
    "bind_fields",
    "bound",
    "format_handlers",
    "formatter",
    "level_for",
    "library_level_for",
    "setup_logging",
    "unbind",
]

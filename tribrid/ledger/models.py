"""Tables of the ledger, as SQLAlchemy declarative models.

The schema itself is created and evolved by the Alembic migrations in
``tribrid/ledger/migrations``; these models must always match the migration head
(a test runs Alembic's autogenerate comparison against both SQLite and PostgreSQL).
Any change here needs a new revision in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tribrid.ledger.base import DocumentStatus, RunStatus

# Explicit constraint names, so migrations can address them on every backend
# (SQLite in particular can only alter a named constraint through batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored
    as naive UTC text and given back its zone on the way out. Naive datetimes are
    refused on the way in, because their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"ledger timestamps must be timezone-aware, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: list[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


DOCUMENT_STATUSES = [s.value for s in DocumentStatus]
RUN_STATUSES = [s.value for s in RunStatus]


class Base(DeclarativeBase):
    """Declarative base of the ledger tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SourceRow(Base):
    """A source of documents (a folder, …)."""

    __tablename__ = "sources"
    __table_args__ = (Index(None, "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Revision 0003: the name a user gave the source (``--source NAME``), if any. The
    # key never changes (point ids derive from it); the name and the location may.
    name: Mapped[str | None] = mapped_column(Text)
    # Revision 0004: the chunking settings (JSON) of the source's last complete sync.
    chunking: Mapped[str | None] = mapped_column(Text)


class DocumentRow(Base):
    """One document of a source, in any state, deleted ones included."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("source_id", "key"),
        Index(None, "source_id", "status"),
        Index(None, "run_id", "status"),
        CheckConstraint(_one_of("status", DOCUMENT_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Reserved for distributed workers: who holds the document, and until when.
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Background runs (revision 0002): the run that last queued the document, and the
    # parse attempts begun and not ended (beyond a running one, workers that died on it).
    run_id: Mapped[int | None] = mapped_column(Integer)
    open_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Revision 0003: the index generation the document's points are in.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class ChunkRow(Base):
    """One chunk of a document: the point it became in the store."""

    __tablename__ = "chunks"

    point_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    chunk_index: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))


class RunRow(Base):
    """One sync run of one source, with what it did."""

    __tablename__ = "runs"
    __table_args__ = (
        Index(None, "source_id", "started_at"),
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    indexed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    chunks_embedded: Mapped[int] = mapped_column(Integer, default=0)
    chunks_reused: Mapped[int] = mapped_column(Integer, default=0)
    chunks_deleted: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # Background runs (revision 0002): when the listing was done and every document queued.
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

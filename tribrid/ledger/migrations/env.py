"""Alembic environment of the ledger.

:class:`tribrid.ledger.database.Database` runs the migrations itself: it opens a
transaction, puts its connection in ``config.attributes["connection"]`` and calls
``alembic.command.upgrade``, so every migration runs inside that one transaction.

To write a new revision after changing the models, autogenerate it against a scratch
database at the current head::

    from alembic import command
    from tribrid.ledger.database import alembic_config

    cfg = alembic_config("sqlite:////tmp/scratch.db")
    command.upgrade(cfg, "head")
    command.revision(cfg, message="what changed", autogenerate=True)

then read and fix the generated file in ``versions/`` before committing it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tribrid.ledger.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite can only change a table by copying it; batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    shared = context.config.attributes.get("connection")
    if shared is not None:
        _run(shared)
        return
    url = context.config.attributes.get("url")
    if not url:
        raise RuntimeError("no database: set config.attributes['connection'] or ['url']")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("the ledger migrations run online only; give them a database")
_run_online()

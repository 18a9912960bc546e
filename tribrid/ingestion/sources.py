"""Source identity: which ledger source a sync of a folder belongs to.

A source is keyed in the ledger, and its points are keyed by that key and each
document's path relative to the root (:func:`tribrid.store.points.point_id`). Without a
name, a folder's key is its location (``local:/srv/docs``), as it always was. A *named*
source (``tribrid ingest PATH --source NAME``) keeps the key it was first given
wherever its folder goes: the same folder mounted as ``/documents``, or moved, and
synced under the same name, keeps every point id, so nothing is embedded again.

A folder already ingested without a name gets the name the first time it is synced
with one, keeping its key: naming an existing index costs nothing either.
"""

from __future__ import annotations

from tribrid.connectors.base import Connector, source_location
from tribrid.errors import ConfigError
from tribrid.ledger.base import Ledger


def resolve_source_key(ledger: Ledger, connector: Connector, name: str | None) -> str:
    """The ledger key a sync of ``connector``'s location uses, under ``name`` if given.

    Args:
        ledger: The ledger (a new named source is recorded in it, with its name).
        connector: The source at its location, keyed by that location (the default).
        name: The source's name, or None for a folder keyed by where it is.

    Raises:
        ConfigError: Without a name, the location's key belongs to a named source that
            now lives elsewhere (sync it under its name, or give this folder one).
    """
    default = connector.source_key
    location = source_location(connector)
    if name is None:
        found = ledger.find_source(default)
        if found is not None and found.key == default and found.name and found.location != location:
            raise ConfigError(
                f"{location.partition(':')[2] or location} was first ingested as the source "
                f"{found.name!r}, which now lives at {found.location}; sync it with "
                f"`--source {found.name}`, or give this folder a name of its own with "
                "`--source NAME`"
            )
        return default
    if not name.strip() or name != name.strip():
        raise ConfigError(f"source name {name!r} must be non-empty, without outer spaces")
    found = ledger.find_source(name)
    if found is not None:
        if found.kind != default.split(":", 1)[0]:
            raise ConfigError(
                f"source {name!r} is a {found.kind!r} source, not {default.split(':', 1)[0]!r}; "
                "choose another name"
            )
        return found.key
    kind = default.split(":", 1)[0]
    existing = ledger.find_source(default)
    if existing is not None and existing.key == default and existing.name is None:
        ledger.name_source(existing.id, name)  # name the folder's unnamed source
        return default
    key = default if existing is None else f"{default}#{name}"
    source_id = ledger.ensure_source(key, kind=kind, location=location)
    ledger.name_source(source_id, name)
    return key


__all__ = ["resolve_source_key"]

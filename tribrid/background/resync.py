"""Periodic resync with celery beat: queue a sync of every folder, every so often.

A watcher (``tribrid watch``) reacts to changes as they happen; a periodic resync
catches what no watcher saw (a folder on a network share, changes made while nothing
watched, a run lost with its worker). With ``TRIBRID_CELERY__RESYNC_INTERVAL_S`` set,
:func:`beat_schedule` gives celery beat one entry that sends the
``tribrid.resync_sources`` task at that interval; the task (in
:mod:`tribrid.background.worker`) calls :func:`resync`, which queues one ``sync_source``
run per folder. A sync of an unchanged folder only lists it, so a short interval costs
a listing, not a re-index.

Which folders: ``TRIBRID_CELERY__RESYNC_SOURCES`` (a JSON list of folders) if set, so a
fresh deployment indexes them without an ``ingest`` first; otherwise every local source
the ledger knows. A folder whose previous run is still going is skipped, unless that run
started more than ``stalled_after_s`` ago (presumed lost with its worker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribrid.ledger.base import RunStatus

if TYPE_CHECKING:
    from tribrid.ledger import Ledger
    from tribrid.settings import Settings

log = logging.getLogger(__name__)

RESYNC_SOURCES = "tribrid.resync_sources"
#: The name of the one beat entry.
BEAT_ENTRY = "tribrid-resync"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule`` for these settings: empty unless a resync interval is set.

    The message expires after one interval, so a beat that ran while no worker did
    leaves one pending resync, not a pile of them.
    """
    interval = settings.celery.resync_interval_s
    if interval is None:
        return {}
    return {
        BEAT_ENTRY: {
            "task": RESYNC_SOURCES,
            "schedule": float(interval),
            "options": {"queue": settings.celery.queue, "expires": float(interval)},
        }
    }


@dataclass(frozen=True)
class ResyncPlan:
    """What one resync decided.

    Attributes:
        folders: Folders to sync now.
        busy: Folders skipped because their previous run is still going.
        missing: Folders skipped because they do not exist (any more).
    """

    folders: tuple[Path, ...]
    busy: tuple[Path, ...] = ()
    missing: tuple[Path, ...] = ()


def _folder(location: str) -> Path | None:
    kind, _, root = location.partition(":")
    return Path(root) if kind == "local" and root else None


def plan_resync(
    ledger: Ledger,
    *,
    folders: Sequence[str] = (),
    stalled_after_s: float = 900.0,
    now: datetime | None = None,
) -> ResyncPlan:
    """Decide which folders to sync now.

    Args:
        ledger: The ledger (its sources and their last runs).
        folders: Folders to resync; empty means every local source in the ledger.
        stalled_after_s: A running run older than this no longer holds its folder back.
        now: The time (UTC) to judge by.
    """
    now = now or datetime.now(UTC)
    sources = ledger.sources()
    # By location: a named source's key stays what it was when its folder moved.
    last_runs = {s.location: s.last_run for s in sources}
    named = {s.name: s.location for s in sources if s.name}
    if folders:
        # An entry may name a source (``--source NAME``): its folder is where it is now.
        wanted = [
            _folder(named[f]) or Path(f) if f in named else Path(f).expanduser().resolve()
            for f in folders
        ]
    else:
        wanted = [
            folder
            for source in sources
            if source.kind == "local" and (folder := _folder(source.location)) is not None
        ]
    chosen: list[Path] = []
    busy: list[Path] = []
    missing: list[Path] = []
    for folder in dict.fromkeys(wanted):
        if not folder.is_dir():
            missing.append(folder)
            continue
        run = last_runs.get(f"local:{folder.as_posix()}")
        if (
            run is not None
            and run.status == RunStatus.RUNNING
            and now - run.started_at < timedelta(seconds=stalled_after_s)
        ):
            busy.append(folder)
            continue
        chosen.append(folder)
    return ResyncPlan(tuple(chosen), tuple(busy), tuple(missing))


def resync(
    ledger: Ledger,
    *,
    enqueue: Callable[[Path], int],
    folders: Sequence[str] = (),
    stalled_after_s: float = 900.0,
) -> list[int]:
    """Queue a sync of every folder :func:`plan_resync` chooses; returns the run ids.

    Args:
        ledger: The ledger.
        enqueue: Starts a background run of a folder and returns its id
            (:func:`tribrid.background.worker.enqueue_sync`).
        folders: Folders to resync; empty means every local source in the ledger.
        stalled_after_s: See :func:`plan_resync`.
    """
    plan = plan_resync(ledger, folders=folders, stalled_after_s=stalled_after_s)
    for folder in plan.missing:
        log.warning("resync: %s does not exist; skipped", folder)
    for folder in plan.busy:
        log.info("resync: %s has a run still going; skipped this time", folder)
    return [enqueue(folder) for folder in plan.folders]


__all__ = ["BEAT_ENTRY", "RESYNC_SOURCES", "ResyncPlan", "beat_schedule", "plan_resync", "resync"]

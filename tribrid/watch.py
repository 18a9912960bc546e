"""Watch a folder and keep its index in sync: ``tribrid watch PATH``.

A :class:`FolderWatcher` listens to file events (watchdog: inotify on Linux, or
polling), drops the events no sync would see (hidden and version-control folders,
``exclude``/``include`` patterns, the data directory), and feeds the rest to a
:class:`Debouncer`. A burst of events (an editor saving, ``git checkout``, a copy of
a hundred files) becomes **one** sync once the folder has been quiet for ``quiet_s``;
a folder that never goes quiet is still synced every ``max_wait_s``.

A sync is done by a :class:`Syncer`:

* :class:`InProcessSyncer` (the default of ``tribrid watch``): the watcher syncs
  itself, as ``tribrid ingest`` does; one machine, no broker, no worker. The models and
  the parse workers stay loaded between syncs; the store is closed between syncs, so
  ``tribrid search`` can open the embedded store while the folder is quiet.
* :class:`BackgroundSyncer` (``tribrid watch --background``): each sync is a
  ``sync_source`` task for ``tribrid worker`` processes, like
  ``tribrid ingest --background``. A new sync is queued only when the previous run has
  finished (or has made no progress for ``stalled_after_s``), so a busy folder never
  piles runs up behind slow workers.

A sync never needs the events themselves: it lists the folder and diffs it against
the ledger, so creations, changes, deletions and renames (a delete plus an add) are
all handled the same way, and an event lost by the OS costs nothing that the next sync
does not repair.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from tribrid import factory
from tribrid.background.jobs import is_transient
from tribrid.connectors import LocalFolderConnector
from tribrid.errors import ConfigError, missing_extra

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

    from tribrid.ingestion.parse import DocumentParser
    from tribrid.ingestion.parse_pool import ParsePool
    from tribrid.ledger import QueueLedger
    from tribrid.settings import Settings

log = logging.getLogger(__name__)

#: Longest wait between two tries of a sync that failed for a transient reason.
MAX_RETRY_S = 60.0


class Debouncer:
    """Collapses bursts of events into one action: after a quiet period, or a max wait.

    Thread-safe: file events call :meth:`touch` from the observer's thread while the
    watcher's loop asks :meth:`take` whether a sync is due.

    Example:
        >>> d = Debouncer(quiet_s=1.0, max_wait_s=10.0, clock=lambda: 0.0)
        >>> d.touch(); d.take()
        False

    Args:
        quiet_s: A burst is over when no event came for this long.
        max_wait_s: A burst that goes on is acted on anyway this long after its first
            event (a folder that never stops changing is still synced).
        clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        quiet_s: float = 1.5,
        max_wait_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if quiet_s < 0 or max_wait_s < quiet_s:
            raise ConfigError(
                f"debounce needs 0 <= quiet ({quiet_s} s) <= max wait ({max_wait_s} s); "
                "raise --max-wait or lower --debounce"
            )
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._first: float | None = None
        self._last: float | None = None
        self._not_before: float | None = None

    def touch(self) -> None:
        """Record an event."""
        with self._lock:
            now = self._clock()
            if self._first is None:
                self._first = now
            self._last = now

    def trigger(self) -> None:
        """Make an action due now, as if a burst had just ended (the initial sync)."""
        with self._lock:
            now = self._clock()
            self._first = now - self.max_wait_s
            self._last = now - self.quiet_s
            self._not_before = None

    def retry_in(self, delay_s: float) -> None:
        """Make an action due again in ``delay_s`` (an action that failed), whatever
        events come in between."""
        with self._lock:
            now = self._clock()
            if self._first is None:
                self._first = now
                self._last = now
            self._not_before = now + delay_s

    @property
    def pending(self) -> bool:
        """Whether events (or a retry) are waiting for an action."""
        with self._lock:
            return self._first is not None

    def deadline(self) -> float | None:
        """When the pending burst becomes due (clock time), or ``None`` if none is pending."""
        with self._lock:
            return self._deadline()

    def _deadline(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        due = min(self._last + self.quiet_s, self._first + self.max_wait_s)
        return due if self._not_before is None else max(due, self._not_before)

    def remaining(self) -> float | None:
        """Seconds until the pending burst is due (<= 0: due), ``None`` if none is pending."""
        with self._lock:
            deadline = self._deadline()
            return None if deadline is None else deadline - self._clock()

    def due(self) -> bool:
        """Whether the pending burst is due now (without consuming it)."""
        with self._lock:
            deadline = self._deadline()
            return deadline is not None and self._clock() >= deadline

    def take(self) -> bool:
        """If an action is due, consume the pending burst and return ``True``.

        Events that arrive after this call start a new burst, so a change made while the
        action runs is acted on again afterwards.
        """
        with self._lock:
            deadline = self._deadline()
            if deadline is None or self._clock() < deadline:
                return False
            self._first = self._last = self._not_before = None
            return True


class WatchFilter:
    """Tells the file events a sync would see from those it would not.

    Args:
        connector: The folder's connector: its ``include``/``exclude`` patterns and its
            hidden and version-control folder rules decide (see
            :meth:`LocalFolderConnector.accepts`).
        ignore: Paths whose events never count, with everything below them: the data
            directory, the store and the ledger file when they sit inside the folder
            (a sync writes there, and must not trigger itself).
    """

    def __init__(self, connector: LocalFolderConnector, *, ignore: Sequence[Path] = ()) -> None:
        self._connector = connector
        self._root = connector.root
        self._ignore = tuple(_absolute(p) for p in ignore)

    def relevant(self, path: str | bytes, *, is_dir: bool = False) -> bool:
        """Whether a change of ``path`` (absolute, below the root) can change the index."""
        text = os.fsdecode(path)
        absolute = Path(os.path.abspath(text))
        if any(absolute == p or p in absolute.parents for p in self._ignore):
            return False
        try:
            rel = absolute.relative_to(self._root)
        except ValueError:
            return False  # not below the root (a move out of the folder has its own side)
        return self._connector.accepts(rel.as_posix(), is_dir=is_dir)

    def event_matters(self, event: FileSystemEvent) -> bool:
        """Whether a watchdog event can change the index."""
        if event.event_type not in _EVENT_TYPES:
            return False  # opened, closed without writing, attribute changes: reads
        if event.is_directory and event.event_type == "modified":
            return False  # a child changed: that child has an event of its own
        paths = [event.src_path] + ([event.dest_path] if event.dest_path else [])
        return any(self.relevant(p, is_dir=event.is_directory) for p in paths)


def _absolute(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:
        return Path(os.path.abspath(path.expanduser()))


_EVENT_TYPES = frozenset({"created", "deleted", "modified", "moved", "closed"})


class Syncer(Protocol):
    """Does (or queues) one sync of the watched folder."""

    def warm_up(self) -> None:
        """Start loading what syncs need, in the background (called once, at start)."""
        ...

    def ready(self) -> bool:
        """Whether a new sync may start now (the previous one is done)."""
        ...

    def sync(self) -> str:
        """Sync once and say what happened, in one line."""
        ...

    def close(self) -> None:
        """Release what the syncer holds (models, parse workers, connections)."""
        ...


class InProcessSyncer:
    """Syncs in this process, like ``tribrid ingest``; models and parse workers stay loaded.

    The ledger and the store are opened for each sync and closed after it, so other
    processes (``tribrid search``) can open the embedded store between syncs; a sync
    that finds the store busy is retried by the watcher.

    Args:
        settings: The settings (store, models, parsing, connector rules).
        root: The folder.
        source: The source's name (see :mod:`tribrid.ingestion.sources`), if any.
    """

    def __init__(self, settings: Settings, root: Path, *, source: str | None = None) -> None:
        self._settings = settings
        self._root = root
        self._source = source
        self._encoders = factory.build_encoders(settings)
        self._pool: ParsePool | None = None
        self._loading: threading.Thread | None = None

    def warm_up(self) -> None:
        """Start the parse workers and load the models now, so the first change is quick."""
        self._parser()  # the workers import the parser in their own processes

        def load() -> None:
            try:
                self._encoders.warm_up()
            except Exception:  # raised again, with its message, by the first sync
                log.debug("loading the models failed", exc_info=True)

        self._loading = threading.Thread(target=load, name="tribrid-watch-warm-up", daemon=True)
        self._loading.start()

    def ready(self) -> bool:
        return True

    def _parser(self) -> AbstractContextManager[DocumentParser]:
        from tribrid.ingestion.parse_pool import ParsePool

        if self._pool is None:
            cfg = self._settings
            self._pool = ParsePool.from_settings(cfg.parsing, cfg.chunking)
            self._pool.start()
        # The pool outlives the sync: the next sync's files do not wait for imports.
        return contextlib.nullcontext(self._pool)

    def sync(self) -> str:
        if self._loading is not None:
            self._loading.join()  # one load of the models, never two racing
            self._loading = None
        cfg = self._settings
        ledger = factory.build_ledger(cfg)
        try:
            connector = factory.source_connector(cfg, ledger, self._root, source=self._source)
            store = factory.build_store(cfg, self._encoders)
            try:
                pipeline = factory.sync_pipeline(
                    cfg, ledger=ledger, store=store, encoders=self._encoders, parsers=self._parser
                )
                report = pipeline.sync(connector)
            finally:
                store.close()
        finally:
            ledger.close()
        counts = report.counts
        done = ", ".join(
            f"{n} {name}"
            for name, n in (
                ("indexed", counts.indexed),
                ("failed", counts.failed),
                ("deleted", counts.deleted),
            )
            if n
        )
        return f"run #{report.run_id}: {done or 'nothing changed'} ({report.duration_s:.1f} s)"

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


class BackgroundSyncer:
    """Queues each sync for ``tribrid worker`` processes, one run at a time.

    Args:
        settings: The settings (broker, queues, ledger).
        root: The folder.
        stalled_after_s: A previous run that made no progress for this long is presumed
            lost (its worker was killed on a broker that cannot redeliver) and no longer
            holds the next sync back. Default: the lease time, ``celery.lease_s``.
        clock: Monotonic seconds.
        source: The source's name (see :mod:`tribrid.ingestion.sources`), if any.
    """

    def __init__(
        self,
        settings: Settings,
        root: Path,
        *,
        stalled_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        source: str | None = None,
    ) -> None:
        from tribrid.background import worker

        self._source = source
        self._settings = worker.configure(settings, create_folders=True)
        self._root = factory.local_folder(settings, root).root
        self._ledger: QueueLedger = factory.build_ledger(settings)
        self._stalled_after_s = stalled_after_s or settings.celery.lease_s
        self._clock = clock
        self.run_id: int | None = None
        self._progress: tuple[int, ...] = ()
        self._progress_at = clock()

    def warm_up(self) -> None:
        """Nothing to load: the workers hold the models."""

    def ready(self) -> bool:
        if self.run_id is None:
            return True
        progress = self._ledger.run_progress(self.run_id)
        if progress.finished:
            return True
        now = self._clock()
        seen = (progress.queued, progress.in_progress, progress.indexed, progress.failed)
        if seen != self._progress:
            self._progress, self._progress_at = seen, now
            return False
        if now - self._progress_at >= self._stalled_after_s:
            log.warning(
                "run #%d made no progress for %.0f s; queueing the next sync anyway "
                "(are the workers running? `tribrid worker`)",
                self.run_id,
                now - self._progress_at,
            )
            return True
        return False

    def sync(self) -> str:
        from tribrid.background import worker

        self.run_id = worker.enqueue_sync(
            self._ledger, self._root, queue=self._settings.celery.queue, source=self._source
        )
        self._progress, self._progress_at = (), self._clock()
        return f"queued run #{self.run_id} (follow it: tribrid status --run {self.run_id})"

    def close(self) -> None:
        self._ledger.close()


def ignored_paths(settings: Settings) -> list[Path]:
    """What ``tribrid`` itself writes: events there must never trigger a sync."""
    paths = [settings.data_dir, settings.store_path, settings.broker_path]
    url = settings.database_url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        # The database file and its journals (-wal, -shm, -journal) beside it.
        paths += [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    return paths


def check_data_dir(connector: LocalFolderConnector, settings: Settings) -> None:
    """Refuse a data directory that a sync of the folder would list as documents.

    Its events are ignored anyway (see :func:`ignored_paths`), but a sync would index
    the ledger and the store themselves, and find them changed every time.

    Raises:
        ConfigError: The data directory is inside the folder and neither hidden nor
            excluded.
    """
    data = _absolute(settings.data_dir)
    try:
        rel = data.relative_to(connector.root).as_posix()
    except ValueError:
        return
    if rel == "." or connector.accepts(rel, is_dir=True):
        raise ConfigError(
            f"the data directory {data} is inside the watched folder {connector.root}, and "
            "a sync would index the ledger and the store; move it out (--data-dir), give it "
            f"a name that starts with a dot, or exclude it: TRIBRID_CONNECTOR__EXCLUDE='[\"{rel}\"]'"
        )


class FolderWatcher:
    """Watches a folder and runs a :class:`Syncer` after each burst of relevant changes.

    Example:
        >>> watcher = FolderWatcher(LocalFolderConnector("docs"), syncer)  # doctest: +SKIP
        >>> stop = threading.Event()
        >>> watcher.run(stop)  # until stop is set (see :func:`stop_on_signals`)

    Args:
        connector: The folder (and its listing rules).
        syncer: Does or queues a sync.
        debouncer: Turns bursts of events into syncs (default: 1.5 s quiet, 30 s max).
        ignore: Paths inside the folder whose events never count (see
            :func:`ignored_paths`).
        polling: Poll the folder every ``poll_s`` instead of using OS notifications
            (network file systems, or more folders than the inotify limit allows).
        poll_s: Polling interval.
        report: Receives a line per sync and per problem (the CLI prints them).
    """

    def __init__(
        self,
        connector: LocalFolderConnector,
        syncer: Syncer,
        *,
        debouncer: Debouncer | None = None,
        ignore: Sequence[Path] = (),
        polling: bool = False,
        poll_s: float = 2.0,
        report: Callable[[str], None] = log.info,
    ) -> None:
        self.connector = connector
        self.syncer = syncer
        self.debouncer = debouncer or Debouncer()
        self.filter = WatchFilter(connector, ignore=ignore)
        self._polling = polling
        self._poll_s = poll_s
        self._report = report
        self._failures = 0
        self.syncs = 0

    def _observer(self) -> BaseObserver:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
            from watchdog.observers.polling import PollingObserver
        except ImportError as e:
            raise missing_extra("`tribrid watch`", "watch", "watchdog") from e
        matters, touch = self.filter.event_matters, self.debouncer.touch

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # Runs in the observer's thread: cheap, and never raises.
                try:
                    if matters(event):
                        touch()
                except Exception:
                    log.exception("could not judge the file event %r", event)

        observer: BaseObserver = (
            PollingObserver(timeout=self._poll_s) if self._polling else Observer()
        )
        observer.schedule(Handler(), str(self.connector.root), recursive=True)
        return observer

    def start(self) -> BaseObserver:
        """Start listening to events (before the initial sync, so none is missed)."""
        observer = self._observer()
        try:
            observer.start()
        except OSError as e:
            raise ConfigError(
                f"cannot watch {self.connector.root}: {e}; if the inotify watch limit was "
                "reached, raise it (sysctl fs.inotify.max_user_watches=524288) or watch "
                "with --polling"
            ) from e
        return observer

    def run(self, stop: threading.Event, *, initial_sync: bool = True) -> None:
        """Watch until ``stop`` is set; a sync under way when it is set is finished first.

        Args:
            stop: Set it to stop (from a signal handler, another thread, a test).
            initial_sync: Sync once at start, for changes made while nothing watched.

        Raises:
            TribridError: A sync failed for a reason no retry fixes (the folder is gone,
                the collection has another schema, a bad setting). Transient failures
                (the store busy or down, the database locked, the broker away) are
                retried with backoff.
        """
        observer = self.start()
        try:
            self.syncer.warm_up()
            if initial_sync:
                self.debouncer.trigger()
            while not stop.is_set():
                self._step()
                stop.wait(self._wait_s())
        finally:
            observer.stop()
            observer.join(timeout=10)
            self.syncer.close()

    def _wait_s(self) -> float:
        remaining = self.debouncer.remaining()
        if remaining is None:
            return 0.5
        # Due but not taken: the syncer is not ready (a queued run still going); look
        # again in a second rather than polling the ledger in a tight loop.
        return 1.0 if remaining <= 0 else min(1.0, max(0.02, remaining))

    def _step(self) -> None:
        if not self.debouncer.due() or not self.syncer.ready():
            return
        if not self.debouncer.take():
            return
        try:
            line = self.syncer.sync()
        except Exception as e:
            if not is_transient(e):
                raise
            self._failures += 1
            delay = min(MAX_RETRY_S, 2.0 ** min(self._failures, 6))
            self.debouncer.retry_in(delay)
            self._report(f"sync failed ({type(e).__name__}: {e}); trying again in {delay:.0f} s")
            return
        self._failures = 0
        self.syncs += 1
        self._report(line)


@contextlib.contextmanager
def stop_on_signals(
    notify: Callable[[str], None] = log.warning,
) -> Iterator[threading.Event]:
    """An event set by the first SIGINT (Ctrl-C) or SIGTERM; the second one interrupts.

    The watcher stops after the sync under way; a second signal raises
    :class:`KeyboardInterrupt` at once, which aborts that sync (safe: the ledger keeps
    what was committed, and the next sync redoes the rest). Main thread only.
    """
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        notify(
            f"{signal.Signals(signum).name}: stopping after the current sync "
            "(send it again to abort the sync)"
        )

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


__all__ = [
    "BackgroundSyncer",
    "Debouncer",
    "FolderWatcher",
    "InProcessSyncer",
    "Syncer",
    "WatchFilter",
    "check_data_dir",
    "ignored_paths",
    "stop_on_signals",
]

"""``tribrid watch``: the debouncer, the event filter, the loop, and a real watcher.

The last test runs ``tribrid watch`` as a subprocess with the real models, a real
Qdrant Edge store and a SQLite ledger, and polls the ledger with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirModifiedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from tribrid.connectors import LocalFolderConnector
from tribrid.errors import ConfigError, StoreBusyError
from tribrid.factory import build_encoders, build_store
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings
from tribrid.watch import (
    BackgroundSyncer,
    Debouncer,
    FolderWatcher,
    WatchFilter,
    check_data_dir,
    ignored_paths,
)

BIN = Path(sys.executable).parent


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the debouncer --------------------------------------------------------------------


def test_a_burst_becomes_one_action_after_the_quiet_period() -> None:
    clock = Clock()
    d = Debouncer(quiet_s=1.0, max_wait_s=10.0, clock=clock)
    assert not d.pending and d.deadline() is None and d.remaining() is None and not d.take()
    for _ in range(5):  # five events, 0.5 s apart: never quiet for 1 s
        d.touch()
        clock.now += 0.5
        assert not d.take()
    assert d.deadline() == pytest.approx(clock.now + 0.5)  # 1 s after the last event
    assert d.remaining() == pytest.approx(0.5)
    clock.now += 0.5
    assert d.due() and d.take()
    assert not d.pending and not d.take()  # consumed: one action for the burst


def test_a_folder_that_never_goes_quiet_is_acted_on_at_the_max_wait() -> None:
    clock = Clock()
    d = Debouncer(quiet_s=1.0, max_wait_s=3.0, clock=clock)
    actions = 0
    for _ in range(40):  # an event every 0.25 s for 10 s
        d.touch()
        clock.now += 0.25
        actions += d.take()
    assert actions == 3  # every 3 s: at 103, 106 and 109


def test_events_during_an_action_start_a_new_burst() -> None:
    clock = Clock()
    d = Debouncer(quiet_s=1.0, max_wait_s=5.0, clock=clock)
    d.trigger()  # the initial sync: due at once, with no event
    assert d.take()
    d.touch()  # a file changed while that sync ran
    assert d.pending and not d.take()
    clock.now += 1.0
    assert d.take()


def test_a_retry_waits_its_delay_whatever_events_come() -> None:
    clock = Clock()
    d = Debouncer(quiet_s=0.5, max_wait_s=2.0, clock=clock)
    d.retry_in(8.0)
    clock.now += 5.0
    d.touch()
    clock.now += 2.0
    assert not d.take()  # the quiet period passed, the retry delay did not
    clock.now += 1.0
    assert d.take()


def test_a_max_wait_shorter_than_the_quiet_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="max wait"):
        Debouncer(quiet_s=5.0, max_wait_s=1.0)


# -- which events count -----------------------------------------------------------------


def _filter(tmp_path: Path, **rules: list[str]) -> tuple[WatchFilter, Path]:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    connector = LocalFolderConnector(root, **rules)
    return WatchFilter(connector, ignore=[root / "index"]), root


def test_events_follow_the_connector_rules(tmp_path: Path) -> None:
    f, root = _filter(tmp_path, exclude=["*.tmp", "build"])
    assert f.relevant(str(root / "a.md"))
    assert f.relevant(os.fsencode(root / "sub" / "b.pdf"))  # inotify gives bytes too
    assert not f.relevant(str(root / ".hidden.md"))
    assert not f.relevant(str(root / ".git" / "index"))
    assert not f.relevant(str(root / "sub" / "node_modules" / "x.md"))
    assert not f.relevant(str(root / "sub" / "draft.tmp"))  # excluded by name
    assert not f.relevant(str(root / "build" / "out.md"))  # below an excluded folder
    assert not f.relevant(str(root / "index" / "ledger.db"))  # the data dir
    assert not f.relevant(str(tmp_path / "elsewhere.md"))


def test_include_patterns_apply_to_files_not_folders(tmp_path: Path) -> None:
    f, root = _filter(tmp_path, include=["*.md"])
    assert f.relevant(str(root / "sub" / "a.md"))
    assert not f.relevant(str(root / "sub" / "a.pdf"))
    assert f.relevant(str(root / "sub"), is_dir=True)  # a deleted folder held .md files


def test_reads_do_not_count_and_a_rename_counts_by_either_side(tmp_path: Path) -> None:
    f, root = _filter(tmp_path, exclude=["*.part"])
    doc = str(root / "a.md")
    # A sync opens and reads every changed file: those events must not trigger a sync.
    assert not f.event_matters(FileOpenedEvent(doc))
    assert not f.event_matters(FileClosedNoWriteEvent(doc))
    assert not f.event_matters(DirModifiedEvent(str(root / "sub")))
    assert f.event_matters(FileModifiedEvent(doc))
    assert f.event_matters(FileCreatedEvent(doc))
    # A download finishing: "x.part" renamed to "x.md"; and the other way round.
    assert f.event_matters(FileMovedEvent(str(root / "x.part"), doc))
    assert f.event_matters(FileMovedEvent(doc, str(root / "x.part")))
    assert not f.event_matters(FileMovedEvent(str(root / "x.part"), str(root / "y.part")))


def test_a_data_dir_a_sync_would_index_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    connector = LocalFolderConnector(root)
    with pytest.raises(ConfigError, match=r"inside the watched folder.*EXCLUDE"):
        check_data_dir(connector, Settings(data_dir=root / "index"))
    check_data_dir(connector, Settings(data_dir=root / ".tribrid"))  # hidden: never listed
    check_data_dir(LocalFolderConnector(root, exclude=["index"]), Settings(data_dir=root / "index"))
    check_data_dir(connector, Settings(data_dir=tmp_path / "index"))
    settings = Settings(data_dir=tmp_path / "idx")
    ignored = ignored_paths(settings)
    assert settings.data_dir in ignored and settings.store_path in ignored
    assert (tmp_path / "idx" / "ledger.db-wal").resolve() in [p.resolve() for p in ignored]


# -- the loop, with real file events ------------------------------------------------------


class CountingSyncer:
    """Counts syncs instead of indexing: this test is about the loop and the events, and
    the real syncers are exercised by the tests below. It can fail like a busy store."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[float] = []
        self.failures = failures
        self.closed = False

    def warm_up(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    def sync(self) -> str:
        self.calls.append(time.monotonic())
        if self.failures:
            self.failures -= 1
            raise StoreBusyError("the store is open in another process")
        return "synced"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def run_watcher() -> Iterator[Callable[[FolderWatcher], threading.Thread]]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(watcher: FolderWatcher) -> threading.Thread:
        stop = threading.Event()
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return thread

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=10)


def _wait(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {why}")


@pytest.mark.slow
def test_a_burst_of_real_file_events_becomes_one_sync(
    tmp_path: Path, run_watcher: Callable[[FolderWatcher], threading.Thread]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    syncer = CountingSyncer()
    lines: list[str] = []
    watcher = FolderWatcher(
        LocalFolderConnector(root),
        syncer,
        debouncer=Debouncer(quiet_s=0.4, max_wait_s=5.0),
        report=lines.append,
    )
    run_watcher(watcher)
    _wait(lambda: len(syncer.calls) == 1, 5, "the initial sync")
    time.sleep(0.3)  # the observer is running before the initial sync
    for i in range(20):
        (root / f"n{i}.md").write_text(f"note {i}")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")  # not a document: no sync of its own
    _wait(lambda: len(syncer.calls) == 2, 5, "one sync for the burst")
    time.sleep(1.0)
    assert len(syncer.calls) == 2
    (root / "n3.md").read_text()  # a read is not a change
    (root / ".git" / "HEAD").write_text("ref2")
    time.sleep(1.0)
    assert len(syncer.calls) == 2 and lines == ["synced", "synced"]
    (root / "n3.md").rename(root / "renamed.md")
    _wait(lambda: len(syncer.calls) == 3, 5, "a sync for the rename")


@pytest.mark.slow
def test_a_busy_store_is_retried_and_stop_closes_the_syncer(
    tmp_path: Path, run_watcher: Callable[[FolderWatcher], threading.Thread]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    syncer = CountingSyncer(failures=1)
    lines: list[str] = []
    watcher = FolderWatcher(
        LocalFolderConnector(root),
        syncer,
        debouncer=Debouncer(quiet_s=0.2, max_wait_s=1.0),
        report=lines.append,
    )
    thread = run_watcher(watcher)
    _wait(lambda: len(syncer.calls) == 2, 10, "the retry")
    assert syncer.calls[1] - syncer.calls[0] >= 1.9  # 2 s backoff after the first failure
    assert "StoreBusyError" in lines[0] and "trying again in 2 s" in lines[0]
    assert lines[1] == "synced" and watcher.syncs == 1
    assert thread.is_alive()


def test_polling_sees_changes_too(
    tmp_path: Path, run_watcher: Callable[[FolderWatcher], threading.Thread]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    syncer = CountingSyncer()
    watcher = FolderWatcher(
        LocalFolderConnector(root),
        syncer,
        debouncer=Debouncer(quiet_s=0.1, max_wait_s=1.0),
        polling=True,
        poll_s=0.2,
    )
    run_watcher(watcher)
    _wait(lambda: len(syncer.calls) == 1, 5, "the initial sync")
    (root / "a.md").write_text("a")
    _wait(lambda: len(syncer.calls) == 2, 5, "a sync for the new file")


@pytest.mark.slow
def test_a_sync_waits_for_the_previous_run_without_spinning(
    tmp_path: Path, run_watcher: Callable[[FolderWatcher], threading.Thread]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()

    class Busy(CountingSyncer):
        """A previous run that is still going, as BackgroundSyncer reports it."""

        def __init__(self) -> None:
            super().__init__()
            self.asked = 0
            self.is_ready = False

        def ready(self) -> bool:
            self.asked += 1
            return self.is_ready

    syncer = Busy()
    watcher = FolderWatcher(
        LocalFolderConnector(root), syncer, debouncer=Debouncer(quiet_s=0.1, max_wait_s=1.0)
    )
    run_watcher(watcher)
    time.sleep(2.0)
    assert syncer.calls == [] and 1 <= syncer.asked <= 4  # about once a second
    syncer.is_ready = True
    _wait(lambda: len(syncer.calls) == 1, 3, "the sync once the run is done")


def test_a_permanent_error_stops_the_watcher(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()

    class Broken(CountingSyncer):
        def sync(self) -> str:
            raise ConfigError("collection 'docs' has another schema")

    syncer = Broken()
    watcher = FolderWatcher(LocalFolderConnector(root), syncer)
    with pytest.raises(ConfigError, match="another schema"):
        watcher.run(threading.Event())
    assert syncer.closed


# -- the background syncer, on the filesystem broker ------------------------------------


def test_background_syncs_queue_one_run_at_a_time(tmp_path: Path) -> None:
    """Real ledger and real broker (kombu's filesystem transport), no worker: a queued
    run holds the next sync back until it finishes or stalls."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha")
    clock = Clock()
    settings = Settings(data_dir=tmp_path / "data")
    syncer = BackgroundSyncer(settings, root, stalled_after_s=60, clock=clock)
    try:
        assert syncer.ready()
        line = syncer.sync()
        run_id = syncer.run_id
        assert run_id is not None and f"queued run #{run_id}" in line
        queued = list((tmp_path / "data" / "broker" / "queue").iterdir())
        assert len(queued) == 1  # the sync_source message, waiting for a worker
        assert not syncer.ready()  # no worker: the run is not finished
        clock.now += 59
        assert not syncer.ready()
        clock.now += 1
        assert syncer.ready()  # no progress for 60 s: presumed lost
        with SqlLedger(settings.database_url) as ledger:
            ledger.fail_run(run_id, "test: give up")
        syncer.sync()
        assert syncer.run_id == run_id + 1 and not syncer.ready()
        with SqlLedger(settings.database_url) as ledger:
            ledger.fail_run(run_id + 1, "test: finished")
        assert syncer.ready()  # finished: the next sync may go
    finally:
        syncer.close()


# -- the real thing -----------------------------------------------------------------------


@pytest.mark.slow
def test_tribrid_watch_indexes_a_new_file_and_removes_a_deleted_one(tmp_path: Path) -> None:
    """``tribrid watch`` in a subprocess, real models, real Qdrant Edge, SQLite ledger."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "first.md").write_text("# Harbour\n\nThe ferry leaves the harbour at dawn.\n")
    (root / "gone.md").write_text("# Lantern\n\nThe lantern is lit at dusk by the keeper.\n")
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    env = {**os.environ, "TRIBRID_DATA_DIR": str(data), "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / "watch.log").open("wb")
    with log:
        proc = subprocess.Popen(
            [str(BIN / "tribrid"), "watch", str(root), "--debounce", "0.3", "--max-wait", "3"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def output() -> str:
        return (tmp_path / "watch.log").read_text(errors="replace")

    ledgers: list[SqlLedger] = []  # one, opened once the watcher has created it

    def statuses() -> dict[str, str]:
        if not ledgers:
            if not (data / "ledger.db").exists():
                return {}
            ledgers.append(SqlLedger(settings.database_url))
        sources = ledgers[0].sources()
        if not sources:
            return {}
        return {s.key: s.status.value for s in ledgers[0].document_states(sources[0].id)}

    def wait(what: Callable[[], bool], timeout: float, why: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if what():
                return time.monotonic() - started
            assert proc.poll() is None, f"tribrid watch exited:\n{output()}"
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {why}:\n{output()}")

    try:
        wait(lambda: statuses() == {"first.md": "indexed", "gone.md": "indexed"}, 120, "start")
        (root / "new.md").write_text("# Tide\n\nThe tide tables hang beside the mooring posts.\n")
        took_new = wait(lambda: statuses().get("new.md") == "indexed", 10, "the new file")
        (root / "gone.md").unlink()
        (root / "first.md").rename(root / "moved.md")
        took_gone = wait(
            lambda: (
                statuses()
                == {
                    "first.md": "deleted",
                    "gone.md": "deleted",
                    "moved.md": "indexed",
                    "new.md": "indexed",
                }
            ),
            10,
            "the deletion and the rename",
        )
        print(f"new file indexed in {took_new:.1f} s; deletion + rename in {took_gone:.1f} s")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, output()
    finally:
        for ledger in ledgers:
            ledger.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped after" in output()
    # The watcher closed the store: open it here and compare it with the ledger (the
    # schema needs no model loaded).
    store = build_store(settings, build_encoders(settings))
    try:
        with SqlLedger(settings.database_url) as ledger:
            assert store.ids() == set(ledger.all_point_ids())
            assert ledger.count_chunks() == 2
        assert store.ids({"document_key": "new.md"}) and store.ids({"document_key": "moved.md"})
        assert not store.ids({"document_key": "gone.md"})
        assert not store.ids({"document_key": "first.md"})
    finally:
        store.close()

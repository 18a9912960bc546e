"""Periodic resync with celery beat: the schedule, the plan, the task and a real beat.

The ledger is a real SQLite file; the task runs against kombu's filesystem broker (a
real broker with no server); the last test runs a real ``celery beat`` on Redis
(database 11, a queue name unique to the test) with no worker and reads what it sent.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tribrid.background import resync, worker
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings

BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TRIBRID_TEST_REDIS_RESYNC", "redis://127.0.0.1:6379/11")


def test_no_interval_no_schedule(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert resync.beat_schedule(settings) == {}
    assert worker.celery_config(settings)["beat_schedule"] == {}


def test_the_beat_schedule_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIBRID_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRIBRID_CELERY__RESYNC_INTERVAL_S", "900")
    monkeypatch.setenv("TRIBRID_CELERY__RESYNC_SOURCES", '["/srv/docs", "/srv/wiki"]')
    monkeypatch.setenv("TRIBRID_CELERY__QUEUE", "docs")
    settings = Settings()
    assert settings.celery.resync_sources == ["/srv/docs", "/srv/wiki"]
    config = worker.celery_config(settings)
    assert config["beat_schedule"] == {
        "tribrid-resync": {
            "task": "tribrid.resync_sources",
            "schedule": 900.0,
            "options": {"queue": "docs", "expires": 900.0},
        }
    }
    assert config["beat_schedule_filename"] == str(tmp_path / "celerybeat-schedule")
    assert worker.app.tasks[resync.RESYNC_SOURCES].name == worker.resync_sources.name


def test_worker_beat_without_an_interval_says_what_to_set(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tribrid.cli import cli

    result = CliRunner().invoke(cli, ["worker", "--beat", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "TRIBRID_CELERY__RESYNC_INTERVAL_S" in result.output


def _source(ledger: SqlLedger, folder: Path, *, run_started: timedelta | None = None) -> int:
    """Record ``folder`` as a source; with ``run_started``, a run still going since then."""
    key = f"local:{folder.resolve().as_posix()}"
    source_id = ledger.ensure_source(key, kind="local", location=key)
    if run_started is not None:
        run_id = ledger.start_run(source_id)
        engine = create_engine(ledger.url)
        try:
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE runs SET started_at = :at WHERE id = :id"),
                    {"at": datetime.now(UTC) - run_started, "id": run_id},
                )
        finally:
            engine.dispose()
    return source_id


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    names = ("idle", "running", "stalled", "gone")
    paths = {name: tmp_path / name for name in names}
    for name in names[:3]:
        paths[name].mkdir()
        (paths[name] / "a.md").write_text(f"# {name}\n\nsome text")
    return paths


def test_plan_skips_running_and_missing_folders(tmp_path: Path, folders: dict[str, Path]) -> None:
    with SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        _source(ledger, folders["idle"])
        _source(ledger, folders["running"], run_started=timedelta(seconds=30))
        _source(ledger, folders["stalled"], run_started=timedelta(hours=2))
        _source(ledger, folders["gone"])
        plan = resync.plan_resync(ledger, stalled_after_s=900)
        assert plan.folders == (folders["idle"].resolve(), folders["stalled"].resolve())
        assert plan.busy == (folders["running"].resolve(),)
        assert plan.missing == (folders["gone"].resolve(),)
        # Configured folders are synced even if the ledger never saw them.
        new = tmp_path / "new"
        new.mkdir()
        chosen = resync.plan_resync(ledger, folders=[str(new), str(folders["running"])])
        assert chosen.folders == (new.resolve(),) and chosen.busy == (folders["running"].resolve(),)


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The worker's per-process state pointed at this test's data dir and broker."""
    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setattr(worker, "_runtime", worker._Runtime())
    worker.configure(settings, create_folders=True)
    try:
        yield settings
    finally:
        worker._runtime.close()
        worker.configure(Settings())  # back to the environment's configuration


def test_the_periodic_task_queues_a_sync_per_folder(
    runtime: Settings, folders: dict[str, Path]
) -> None:
    with SqlLedger(runtime.database_url) as ledger:
        for name in ("idle", "stalled", "gone"):
            _source(ledger, folders[name], run_started=timedelta(hours=2))
        _source(ledger, folders["running"], run_started=timedelta(seconds=5))
    run_ids = worker.resync_sources.apply().get()  # what a worker does when beat sends it
    assert len(run_ids) == 2
    messages = [json.loads(m.read_text()) for m in (runtime.broker_path / "queue").iterdir()]
    assert [m["headers"]["task"] for m in messages] == ["tribrid.sync_source"] * 2
    with SqlLedger(runtime.database_url) as ledger:
        running = {
            s.location.removeprefix("local:"): s.last_run.id
            for s in ledger.sources()
            if s.last_run is not None and s.last_run.id in run_ids
        }
    assert set(running) == {str(folders["idle"].resolve()), str(folders["stalled"].resolve())}
    # Nothing is queued twice while those runs go on.
    assert worker.resync_sources.apply().get() == []


def test_a_moved_named_source_is_resynced_under_its_own_key(
    runtime: Settings, folders: dict[str, Path]
) -> None:
    first_key = f"local:{folders['idle'].resolve().as_posix()}"
    moved = folders["idle"].parent / "mounted-elsewhere"
    folders["idle"].rename(moved)
    with SqlLedger(runtime.database_url) as ledger:
        source_id = ledger.ensure_source(
            first_key, kind="local", location=f"local:{moved.resolve().as_posix()}"
        )
        ledger.name_source(source_id, "docs")
        # A source name in TRIBRID_CELERY__RESYNC_SOURCES stands for its folder.
        assert resync.plan_resync(ledger, folders=["docs"]).folders == (moved.resolve(),)
    [run_id] = worker.resync_sources.apply().get()
    [message] = [json.loads(m.read_text()) for m in (runtime.broker_path / "queue").iterdir()]
    assert message["headers"]["task"] == "tribrid.sync_source"
    with SqlLedger(runtime.database_url) as ledger:
        [source] = ledger.sources()  # no second source for the new location
        assert source.key == first_key and source.last_run is not None
        assert source.last_run.id == run_id


@pytest.mark.celery
@pytest.mark.slow
def test_a_real_beat_sends_the_resync_on_schedule(tmp_path: Path) -> None:
    import redis

    queue = f"tribrid-beat-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "TRIBRID_DATA_DIR": str(tmp_path / "data"),
        "TRIBRID_CELERY__BROKER_URL": REDIS_URL,
        "TRIBRID_CELERY__QUEUE": queue,
        "TRIBRID_CELERY__RESYNC_INTERVAL_S": "1",
    }
    (tmp_path / "data").mkdir()
    client = redis.Redis.from_url(REDIS_URL)
    log = (tmp_path / "beat.log").open("wb")
    with log:
        beat = subprocess.Popen(
            [str(BIN / "celery"), "-A", "tribrid.background.worker", "beat", "--loglevel=INFO"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while client.llen(queue) < 2:
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "beat.log").read_text()
            time.sleep(0.2)
        message = json.loads(client.lindex(queue, 0) or b"{}")
        assert message["headers"]["task"] == "tribrid.resync_sources"
        assert message["headers"]["expires"]  # a beat without workers leaves no pile
        assert message["content-type"] == "application/json"
        assert list((tmp_path / "data").glob("celerybeat-schedule*"))  # kept in the data dir
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        for key in client.scan_iter(f"*{queue}*"):  # the queue and kombu's bindings of it
            client.delete(key)
        client.close()

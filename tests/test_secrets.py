"""No secret is ever printed: broker, database and store URLs' passwords and API keys.

Each test plants a recognisable password where a user would put it, makes the command
fail on it (nothing listens on the ports used), and greps everything it printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.background import REDIS_URL
from tribrid.background import worker
from tribrid.errors import redact
from tribrid.ingestion.write import WriteBatch, batch_to_json
from tribrid.settings import Settings

TRIBRID = Path(sys.executable).with_name("tribrid")
PLANTED = "Pl4nted-S3cret"


def run(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    done = subprocess.run(
        [str(TRIBRID), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout + done.stderr


def test_redact_masks_url_passwords_and_known_secrets() -> None:
    text = (
        f"redis://:{PLANTED}@127.0.0.1:6390/0 amqp://guest:{PLANTED}@h:5672// "
        f"postgresql+psycopg://u:{PLANTED}@h/db key {PLANTED}-key"
    )
    masked = redact(text, [f"{PLANTED}-key"])
    assert PLANTED not in masked
    assert "redis://:***@127.0.0.1:6390/0" in masked and "amqp://guest:***@h:5672//" in masked
    settings = Settings(
        celery={"broker_url": f"amqp://u:{PLANTED}a@h//"},  # type: ignore[arg-type]
        database={"url": f"postgresql+psycopg://u:{PLANTED}b@h/db"},  # type: ignore[arg-type]
        store={"api_key": f"{PLANTED}c"},  # type: ignore[arg-type]
        serve={"api_key": f"{PLANTED}d"},  # type: ignore[arg-type]
    )
    assert sorted(settings.secrets()) == sorted(f"{PLANTED}{x}" for x in "abcd")


@pytest.mark.slow
@pytest.mark.parametrize(
    "broker",
    [f"redis://:{PLANTED}@127.0.0.1:6390/0", f"amqp://tribrid:{PLANTED}@127.0.0.1:5999//"],
)
def test_a_broker_password_is_never_printed(broker: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\ntext\n")
    env = {"TRIBRID_DATA_DIR": str(tmp_path / "data"), "TRIBRID_CELERY__BROKER_URL": broker}
    queued = run("ingest", str(folder), "--background", env=env)
    assert "cannot queue the sync" in queued and "***@127.0.0.1" in queued
    printed = queued + run("status", env=env) + run("status", "--json", env=env)
    printed += run("status", "--run", "1", env=env) + run("status", "--run", "1", "--json", env=env)
    assert "could not queue the sync" in printed  # the run's recorded error is shown…
    assert PLANTED not in printed  # …without the password


@pytest.mark.slow
def test_a_database_password_is_never_printed(tmp_path: Path) -> None:
    env = {
        "TRIBRID_DATA_DIR": str(tmp_path / "data"),
        "TRIBRID_DATABASE__URL": f"postgresql+psycopg://tribrid:{PLANTED}@127.0.0.1:5999/tribrid",
    }
    printed = run("status", env=env) + run("ingest", str(tmp_path), "--background", env=env)
    assert "cannot open the ledger" in printed
    assert PLANTED not in printed


@pytest.mark.slow
def test_a_store_api_key_is_never_printed(tmp_path: Path) -> None:
    env = {
        "TRIBRID_DATA_DIR": str(tmp_path / "data"),
        "TRIBRID_STORE__BACKEND": "qdrant",
        "TRIBRID_STORE__URL": f"http://user:{PLANTED}u@127.0.0.1:6999",
        "TRIBRID_STORE__API_KEY": f"{PLANTED}-key",
    }
    printed = run("search", "hello", "--mode", "bm25", env=env)
    assert "Qdrant server" in printed
    assert PLANTED not in printed


def test_task_payloads_carry_no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What Flower and the broker see: ids and paths, never a URL or a key."""
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(worker.sync_source, "apply_async", lambda **kwargs: sent.append(kwargs))
    settings = Settings(
        data_dir=tmp_path / "data",
        celery={"broker_url": f"redis://:{PLANTED}@127.0.0.1:6390/0"},  # type: ignore[arg-type]
    )
    worker.configure(settings)
    from tribrid.factory import build_ledger

    try:
        with build_ledger(settings) as ledger:
            worker.enqueue_sync(ledger, tmp_path, queue="q")
    finally:
        worker.configure(Settings(data_dir=tmp_path / "data"))
    batch = WriteBatch(source_id=1, points=(), payload_updates=(), documents=(), reused=0)
    assert PLANTED not in json.dumps(sent, default=str) + json.dumps(batch_to_json(batch))
    assert set(sent[0]["kwargs"]) == {"root", "run_id", "retry_failed"}  # type: ignore[arg-type]


def test_json_logs_never_carry_a_password(tmp_path: Path) -> None:
    """--log-format json at the most verbose: every line is JSON, and none has the secret."""
    env = {
        "TRIBRID_DATA_DIR": str(tmp_path / "data"),
        "TRIBRID_DATABASE__URL": f"postgresql+psycopg://tribrid:{PLANTED}@127.0.0.1:5999/tribrid",
    }
    done = subprocess.run(
        [str(TRIBRID), "--log-format", "json", "-vvv", "status"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert records and "cannot open the ledger" in records[-1]["message"]
    assert records[-1]["level"] == "ERROR"
    assert PLANTED not in done.stdout + done.stderr


@pytest.mark.celery
@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_worker_never_logs_the_broker_password(tmp_path: Path, log_format: str) -> None:
    env = {
        **os.environ,
        "TRIBRID_LOG_FORMAT": log_format,
        "TRIBRID_DATA_DIR": str(tmp_path / "data"),
        # Redis on :6379 has no password: AUTH fails, and the worker logs its retries.
        "TRIBRID_CELERY__BROKER_URL": REDIS_URL.replace("redis://", f"redis://:{PLANTED}@", 1),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(TRIBRID), "worker", "-c", "1", "--loglevel", "DEBUG"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        time.sleep(12)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = log.read_text(errors="replace")
    assert "redis" in text.lower()  # it did try, and said so
    assert PLANTED not in text
    if log_format == "json":
        assert all(json.loads(line) for line in text.splitlines() if line.strip())

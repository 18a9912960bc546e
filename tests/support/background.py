"""Helpers of the background tests: real ``celery worker`` processes on one data dir.

:class:`Cluster` starts, kills and stops workers as subprocesses on a real broker
(Redis database 13, or RabbitMQ) with test-unique queue names, queues runs and checks
that the store holds exactly the ledger's chunks.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tribrid.factory import build_encoders, build_store
from tribrid.ledger import RunProgress, SqlLedger
from tribrid.settings import Settings

BIN = Path(sys.executable).parent
# Concurrent suites on one machine each take their own database (``TRIBRID_TEST_REDIS``).
REDIS_URL = os.environ.get("TRIBRID_TEST_REDIS", "redis://127.0.0.1:6379/13")
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"


class Cluster:
    """Worker subprocesses sharing one data dir, one broker and test-unique queues."""

    def __init__(self, tmp_path: Path, broker: str | None, **extra: str) -> None:
        token = secrets.token_hex(4)
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.queue = f"tribrid-test-{token}"
        self.env = {
            **os.environ,
            "TRIBRID_DATA_DIR": str(self.data),
            "TRIBRID_CELERY__QUEUE": self.queue,
            "TRIBRID_CELERY__WRITE_QUEUE": f"{self.queue}.write",
            "TRIBRID_CELERY__VISIBILITY_TIMEOUT_S": "10",
            "TRIBRID_CELERY__BATCH_DOCUMENTS": "8",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **extra,
        }
        self.env.pop("TRIBRID_CELERY__BROKER_URL", None)
        if broker is not None:
            self.env["TRIBRID_CELERY__BROKER_URL"] = broker
        self.settings = Settings(
            data_dir=self.data,
            celery={  # type: ignore[arg-type]
                "broker_url": broker,
                "queue": self.queue,
                "write_queue": f"{self.queue}.write",
            },
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        *,
        writer: bool = False,
        server: bool = False,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start a worker (``celery -A``), the writer or a server, with more ``args`` and
        environment variables than the cluster's."""
        log = (self.tmp / f"{name}.log").open("wb")
        if server:
            command = [str(BIN / "tribrid"), "serve", "--port", "0"]
        elif writer:
            command = [str(BIN / "tribrid"), "worker", "--writer", "--loglevel", "INFO"]
        else:
            command = [
                str(BIN / "celery"),
                "-A",
                "tribrid.background.worker",
                "worker",
                "--pool=prefork",
                "-c",
                "1",
                "-Q",
                self.queue,
                "-n",
                f"{name}-{self.queue}@%h",
                "--loglevel=INFO",
            ]
        command += list(args)
        with log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                command,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        """SIGKILL a worker and its pool children at once: a machine losing power."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def freeze(self, name: str) -> None:
        """SIGSTOP a worker and its pool children: it stays exactly where it is."""
        os.killpg(self.procs[name].pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGCONT)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def ingest(self, folder: Path) -> int:
        done = subprocess.run(
            [str(BIN / "tribrid"), "ingest", str(folder), "--background", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return int(json.loads(done.stdout)["run_id"])

    def progress(self, run_id: int) -> RunProgress:
        with SqlLedger(self.settings.database_url) as ledger:
            return ledger.run_progress(run_id)

    def wait(self, what: Callable[[], bool], timeout: float, why: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what():
                return
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"worker {name} exited: {self.log(name)}"
            time.sleep(0.5)
        logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs)
        pytest.fail(f"timed out waiting for {why}\n{logs}")

    def log(self, name: str, *, tail: int | None = 3000) -> str:
        text = (self.tmp / f"{name}.log").read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def assert_exactly_once(self) -> None:
        """Points in the store are exactly the ledger's chunks; no lease is left behind."""
        assert not self.procs, "stop the workers first: the writer owns the store"
        with SqlLedger(self.settings.database_url) as ledger:
            listed = list(ledger.all_point_ids())
            store = build_store(self.settings, build_encoders(self.settings))
            try:
                assert store.ids() == set(listed) and len(listed) == len(set(listed))
                assert store.count() == ledger.count_chunks() > 0
            finally:
                store.close()
        engine = create_engine(self.settings.database_url)
        try:
            with engine.connect() as connection:
                leased = connection.execute(
                    text("SELECT count(*) FROM documents WHERE lease_owner IS NOT NULL")
                ).scalar_one()
        finally:
            engine.dispose()
        assert leased == 0


@contextmanager
def redis_cluster(tmp_path: Path, **extra: str) -> Iterator[Cluster]:
    """A :class:`Cluster` on Redis database 13, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    cluster = Cluster(tmp_path, REDIS_URL, **extra)
    try:
        yield cluster
    finally:
        cluster.stop_all()
        client.flushdb()
        client.close()

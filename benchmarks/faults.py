"""Fault drills: background runs with real workers, a fault injected mid-run, then the checks.

Each drill writes nothing of its own: it ingests the first N SciFact documents (as files,
see ``benchmarks/ingestion.py``) with ``tribrid ingest FOLDER --background`` into a fresh
data dir, with real processes (``tests/support/background.py``'s :class:`Cluster`: a
store owner, ``tribrid worker --writer`` or ``tribrid serve``, and two ``celery`` encode
workers of one process each), injects its fault, waits for the run to end and checks:

* the store's point ids are exactly the ledger's chunk ids, none listed twice;
* every file of the folder is ``indexed``, or ``failed`` with a reason (listed);
* no lease is left on any document;
* documents encoded (the encode workers' committed documents, from their logged task
  results, plus a foreground run's indexed ones) against the files: more means double
  work (a commit that landed but whose call failed after it is not counted).

Times (``time.time()`` against the ledger's ``indexed_at``/``updated_at``, one clock):

* **resumed**: from the fault to the first document indexed after the faulty part is
  back (the replacement process started, the service up again, the space freed) — the
  recovery time;
* **healed**: from the fault to the moment the last document that was under way (leased)
  at the fault is indexed or failed;
* **done**: from the last fault to the run's last document settled.

A run that makes no progress for ``--stall`` seconds after its faults is *stalled*: the
drill records what ``tribrid status --run`` says, then does what a user would do,
``tribrid ingest FOLDER --background`` again, and waits for that run.

Two drills shorten the lease to ``SHORT_LEASE_S``: in them only its expiry heals the
run (see ``benchmarks/results/faults.md``), and the default is 900 s.

Usage (root, for the service restarts and the tmpfs):
    PYTHONPATH=. .venv/bin/python benchmarks/faults.py --all [--docs 1000]
    PYTHONPATH=. .venv/bin/python benchmarks/faults.py --quick     # 100 documents, 3 drills
    PYTHONPATH=. .venv/bin/python benchmarks/faults.py --worker-kill --serve-kill --docs 300

Redis is used on database 14 (flushed before and after), RabbitMQ with unique queue
names (deleted after), PostgreSQL with a database of its own (dropped after). Every
process started is stopped, every service restarted is running again, the tmpfs is
unmounted and the work dir removed, also on failure.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.support: the background tests' harness

from ingestion import machine, write_scifact  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from tests.support.background import BIN, Cluster  # noqa: E402
from tribrid.factory import build_encoders, build_store  # noqa: E402
from tribrid.ledger import SqlLedger  # noqa: E402
from tribrid.ledger.models import DocumentRow, RunRow  # noqa: E402
from tribrid.settings import Settings  # noqa: E402
from tribrid.store.remote import discover  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_VERSION = (
    next(iter(sorted(os.listdir("/etc/postgresql"))), "15")
    if Path("/etc/postgresql").is_dir()
    else "15"
)
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


# -- services ------------------------------------------------------------------------------


def _sh(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _until(what: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if what():
                return True
        time.sleep(0.5)
    return False


def redis_up() -> bool:
    return _sh(["redis-cli", "-p", "6379", "ping"], 10).stdout.strip() == "PONG"


def rabbit_up() -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", 5672), timeout=2):
        return _sh(["rabbitmqctl", "-q", "status"], 60).returncode == 0


def postgres_up() -> bool:
    return _sh(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], 10).returncode == 0


@dataclass
class Service:
    """A shared service on this machine, its stop and start (the machine doc's commands)."""

    name: str
    stop: list[str]
    start: list[str]
    up: Callable[[], bool]

    def restart(self, down_s: float) -> float:
        """Stop, stay down ``down_s`` seconds, start and wait until it answers.

        Returns:
            When it answered again (``time.time()``).
        """
        _sh(self.stop)
        _until(lambda: not self.up(), 60)
        time.sleep(down_s)
        self.ensure()
        return time.time()

    def ensure(self) -> None:
        """Start it if it does not answer; fail loudly if it will not come back."""
        if _until(self.up, 2):
            return
        _sh(self.start, 180)
        if not _until(self.up, 180):
            raise SystemExit(f"{self.name} did not come back; start it: {' '.join(self.start)}")


SERVICES = {
    "redis": Service(
        "redis", ["redis-cli", "-p", "6379", "shutdown", "nosave"], REDIS_START, redis_up
    ),
    "rabbitmq": Service(
        "rabbitmq", ["rabbitmqctl", "stop"], ["rabbitmq-server", "-detached"], rabbit_up
    ),
    "postgres": Service(
        "postgres",
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "stop", "-m", "fast"],
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "start"],
        postgres_up,
    ),
}


# -- the rig -------------------------------------------------------------------------------


class Rig(Cluster):
    """A :class:`Cluster` whose ledger may be PostgreSQL, with the drill's own settings."""

    def __init__(self, tmp: Path, broker: str, database_url: str | None, **extra: str) -> None:
        env = {
            # Redis keeps its default visibility timeout (an hour): the broker does not
            # heal a dead worker within a drill, the ledger's reaper must.
            "TRIBRID_CELERY__VISIBILITY_TIMEOUT_S": "3600",
            "TRIBRID_CELERY__BATCH_DOCUMENTS": "16",
            "TRIBRID_MODELS__TORCH_THREADS": "1",  # two encode workers on two cores
            **extra,
        }
        if database_url:
            env["TRIBRID_DATABASE__URL"] = database_url
        super().__init__(tmp, broker, **env)
        self.settings = Settings(
            data_dir=self.data,
            database={"url": database_url},  # type: ignore[arg-type]
            celery={  # type: ignore[arg-type]
                "broker_url": broker,
                "queue": self.queue,
                "write_queue": f"{self.queue}.write",
            },
        )
        self.url = self.settings.database_url
        self.engine = create_engine(self.url, pool_pre_ping=True)

    def documents(self) -> list[DocumentRow]:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            rows = list(session.scalars(select(DocumentRow)))
            session.expunge_all()
        return rows

    def runs(self) -> list[RunRow]:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session:
            rows = list(session.scalars(select(RunRow).order_by(RunRow.id)))
            session.expunge_all()
        return rows

    def leased(self) -> list[DocumentRow]:
        return [d for d in self.documents() if d.lease_owner is not None]

    def settled(self) -> int:
        return sum(d.status in ("indexed", "failed") for d in self.documents())

    def group_pids(self, name: str) -> set[int]:
        """The pids of a worker's process group (main process and pool children)."""
        pgid = self.procs[name].pid
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError, ValueError, IndexError):
                    if os.getpgid(int(entry.name)) == pgid:
                        found.add(int(entry.name))
        return found

    def status_json(self, run_id: int) -> dict[str, object]:
        shown = subprocess.run(
            [str(BIN / "tribrid"), "status", "--run", str(run_id), "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if shown.returncode:
            return {"error": shown.stderr.strip()[-500:]}
        return dict(json.loads(shown.stdout))

    def close(self) -> None:
        self.stop_all()
        self.engine.dispose()


# -- what a drill reports ------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault: when, what it hit, when the hit part was back."""

    what: str
    at: float
    restored: float
    stranded: list[int] = field(default_factory=list)  # document ids leased at the fault


@dataclass
class Outcome:
    """A drill's result: times, the checks, what was seen."""

    drill: str
    documents: int
    faults: list[Fault] = field(default_factory=list)
    resumed_s: list[float | None] = field(default_factory=list)
    healed_s: list[float | None] = field(default_factory=list)
    done_s: float | None = None
    wall_s: float = 0.0
    user_step: str | None = None
    notes: list[str] = field(default_factory=list)
    checks: dict[str, object] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def exactly_once(self) -> bool:
        return bool(self.checks) and all(
            self.checks.get(k) is True
            for k in ("store_is_ledger", "no_duplicate", "files_settled", "no_lease")
        )

    @property
    def double_work(self) -> bool:
        """Two syncs of one folder did the same work: more documents encoded than files.

        Judged for the concurrent drills only: elsewhere a killed process loses work in
        hand (a writer's batch), which is rightly encoded again.
        """
        encoded, files = self.checks.get("encoded"), self.checks.get("files")
        return (
            self.drill.startswith("concurrent")
            and isinstance(encoded, int)
            and isinstance(files, int)
            and encoded > files
        )


def measure(rig: Rig, outcome: Outcome) -> None:
    """Times from the ledger's own stamps, once the run is over."""
    docs = rig.documents()
    settled_at = {
        d.id: (d.indexed_at or d.updated_at).timestamp()
        for d in docs
        if d.status in ("indexed", "failed")
    }
    indexed = sorted(d.indexed_at.timestamp() for d in docs if d.indexed_at is not None)
    for fault in outcome.faults:
        after = [t for t in indexed if t > fault.restored]
        outcome.resumed_s.append(after[0] - fault.at if after else None)
        stranded = [settled_at.get(i) for i in fault.stranded]
        if fault.stranded and all(t is not None for t in stranded):
            outcome.healed_s.append(max(t for t in stranded if t is not None) - fault.at)
        else:
            outcome.healed_s.append(None)
    if outcome.faults and settled_at:
        outcome.done_s = max(settled_at.values()) - outcome.faults[-1].at


def verify(rig: Rig, folder: Path, outcome: Outcome, *, foreground_docs: int = 0) -> None:
    """The end checks; the processes must be stopped (the store has one opener)."""
    rig.stop_all()
    files = {p.name for p in folder.iterdir() if p.is_file()}
    docs = rig.documents()
    by_key = {d.key: d for d in docs}
    outcome.failures = [
        (d.key, d.error_kind or "?", (d.error_message or "")[:160])
        for d in docs
        if d.status == "failed"
    ]
    unsettled = sorted(
        k for k in files if k not in by_key or by_key[k].status not in ("indexed", "failed")
    )
    with SqlLedger(rig.url) as ledger:
        listed = list(ledger.all_point_ids())
        chunks = ledger.count_chunks()
    store = build_store(rig.settings, build_encoders(rig.settings))
    try:
        ids, count = store.ids(), store.count()
    finally:
        store.close()
    runs = rig.runs()
    # Documents parsed, chunked and encoded by the encode workers (their task results,
    # as Celery logs them), plus those a foreground run indexed: more than the files
    # means double work. The runs' own counters count writes, not encoding.
    pattern = re.compile(
        r"Task tribrid\.process_documents\[[^\]]+\] succeeded in [\d.]+s: (\{.*\})"
    )
    encoded = foreground_docs + sum(
        int(ast.literal_eval(m.group(1))["committed"])
        for log in rig.tmp.glob("w*.log")
        for m in pattern.finditer(log.read_text(errors="replace"))
    )
    outcome.checks = {
        "files": len(files),
        "indexed": sum(d.status == "indexed" for d in docs),
        "failed": len(outcome.failures),
        "unsettled": unsettled[:10],
        "files_settled": not unsettled,
        "chunks": chunks,
        "points": count,
        "store_is_ledger": ids == set(listed) and count == len(listed),
        "no_duplicate": len(listed) == len(set(listed)),
        "no_lease": not any(d.lease_owner for d in docs),
        "encoded": encoded,
        "runs": [f"#{r.id} {r.status}" for r in runs],
    }


# -- waiting -------------------------------------------------------------------------------


def wait_indexed(rig: Rig, at_least: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while rig.settled() < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {at_least} documents settled after {timeout:.0f} s")
        time.sleep(0.5)


def finish(
    rig: Rig,
    run_id: int,
    folder: Path,
    outcome: Outcome,
    *,
    stall_s: float,
    timeout: float,
) -> None:
    """Wait for the run to end; if it stalls, note why and do the user's step once."""
    deadline = time.monotonic() + timeout
    last, changed = -1, time.monotonic()
    runs, stalled = [run_id], False
    while True:
        if rig.progress(runs[-1]).finished:  # an earlier run's status is in the checks
            return
        settled = rig.settled()
        if settled != last:
            last, changed, stalled = settled, time.monotonic(), False
        if time.monotonic() - changed > stall_s and not stalled:
            stalled = True
            status = rig.status_json(runs[-1])
            since = f"{time.time() - outcome.faults[-1].at:.0f} s after the last fault"
            outcome.notes.append(
                f"no progress for {stall_s:.0f} s ({since}); `tribrid status --run {runs[-1]}` "
                f"said: status {status.get('status')!r}, stalled {status.get('stalled')!r}"
            )
            if outcome.user_step is None:
                runs.append(rig.ingest(folder))
                outcome.user_step = f"`tribrid ingest FOLDER --background` again, {since}"
                changed, stalled = time.monotonic(), False
        if time.monotonic() > deadline:
            outcome.notes.append(f"gave up after {timeout:.0f} s: {rig.status_json(runs[-1])}")
            outcome.error = f"the run did not finish within {timeout:.0f} s"
            return  # the checks still run, on what is there
        for name, proc in rig.procs.items():
            if proc.poll() is not None:
                outcome.notes.append(
                    f"{name} exited with {proc.returncode}: {rig.log(name)[-400:]}"
                )
                raise RuntimeError(f"{name} exited")
        time.sleep(1)


def grep_logs(rig: Rig, needles: tuple[str, ...], limit: int = 3) -> list[str]:
    """The first lines of the drill's logs that hold one of ``needles``."""
    found: list[str] = []
    for log in sorted(rig.tmp.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(n in line for n in needles) and len(found) < limit * len(needles):
                found.append(f"{log.stem}: {line.strip()[:300]}")
    seen: dict[str, int] = {}
    kept = []
    for line in found:
        needle = next(n for n in needles if n in line)
        if seen.get(needle, 0) < limit:
            seen[needle] = seen.get(needle, 0) + 1
            kept.append(line)
    return kept


# -- the drills ----------------------------------------------------------------------------


@dataclass
class Ctx:
    """What every drill gets."""

    folder: Path
    docs: int
    work: Path
    stall_s: float
    timeout: float


@contextmanager
def rig_for(
    ctx: Ctx, name: str, broker: str = REDIS_URL, database_url: str | None = None, **extra: str
) -> Iterator[Rig]:
    tmp = ctx.work / name
    tmp.mkdir()
    rig = Rig(tmp, broker, database_url, **extra)
    try:
        yield rig
    finally:
        rig.close()


def start_owner(rig: Rig, owner: str) -> None:
    if owner == "serve":
        rig.start("serve", server=True)
        if not _until(lambda: discover(rig.data / "store") is not None, 300):
            raise TimeoutError(f"tribrid serve did not come up: {rig.log('serve')}")
    else:
        rig.start("writer", writer=True)


def fractions(count: int) -> list[float]:
    return [0.15 + 0.55 * i / max(count - 1, 1) for i in range(count)]


def drill_worker_kill(ctx: Ctx, outcome: Outcome, kills: int = 3) -> None:
    """An encode worker SIGKILLed as a whole (process group) three times; restarted at once."""
    with rig_for(ctx, "worker-kill") as rig:
        start_owner(rig, "writer")
        rig.start("w0")
        rig.start("w1")
        names = ["w0", "w1"]
        run_id = rig.ingest(ctx.folder)
        for n, share in enumerate(fractions(kills)):
            wait_indexed(rig, int(ctx.docs * share))
            # The victim is a worker holding documents: its lease owners are its pids.
            _until(lambda: bool(rig.leased()), 120)
            victim, stranded = names[0], []
            for name in names:
                pids = rig.group_pids(name)
                held = [
                    d.id
                    for d in rig.leased()
                    if int(d.lease_owner.split(":")[1]) in pids  # type: ignore[union-attr]
                ]
                if held:
                    victim, stranded = name, held
                    break
            at = time.time()
            rig.kill(victim)
            replacement = f"w{n + 2}"
            rig.start(replacement)
            names = [x for x in names if x != victim] + [replacement]
            outcome.faults.append(
                Fault(f"SIGKILL {victim}'s process group", at, time.time(), stranded)
            )
        finish(rig, run_id, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
        outcome.notes += grep_logs(rig, ("which is gone; queued again",))
        measure(rig, outcome)
        verify(rig, ctx.folder, outcome)


def drill_owner_kill(ctx: Ctx, outcome: Outcome, owner: str, kills: int = 2) -> None:
    """The store owner (``tribrid serve`` or ``tribrid worker --writer``) SIGKILLed twice.

    The writer variant shortens the lease to ``SHORT_LEASE_S``: the documents of a write
    message lost with the writer stay leased by their (live) encode worker until the
    lease expires (900 s by default), and only then does the reaper queue them again.
    """
    name = "serve" if owner == "serve" else "writer"
    extra = {"TRIBRID_CELERY__LEASE_S": str(SHORT_LEASE_S)} if owner == "writer" else {}
    with rig_for(ctx, f"{name}-kill", **extra) as rig:
        start_owner(rig, owner)
        rig.start("w0")
        rig.start("w1")
        run_id = rig.ingest(ctx.folder)
        for share in fractions(kills):
            wait_indexed(rig, int(ctx.docs * share))
            what = f"SIGKILL {name}"
            if owner == "writer" and write_in_hand(rig):
                what += " with a write in hand"
            stranded = [d.id for d in rig.leased()]
            at = time.time()
            rig.kill(name)
            time.sleep(2)
            start_owner(rig, owner)  # serve: returns once it answers
            outcome.faults.append(Fault(what, at, time.time(), stranded))
        finish(rig, run_id, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
        outcome.notes += grep_logs(
            rig,
            ("cannot reach the tribrid server", "does not answer", "Retry in", "store_failed"),
            limit=2,
        )
        measure(rig, outcome)
        verify(rig, ctx.folder, outcome)


SHORT_LEASE_S = 120


def write_in_hand(rig: Rig, timeout: float = 60) -> bool:
    """Freeze the writer at a moment it holds a ``write_batch`` message (Redis only).

    The writer writes a batch in well under a second, so a kill at a random moment
    mostly finds it idle, with nothing lost. This stops its process group and looks in
    Redis's unacked set for a message of the write queue; if there is none, it lets it
    go on and looks again. The caller kills it, still stopped.

    Returns:
        Whether the writer is stopped with a write message in hand.
    """
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    pgid = rig.procs["writer"].pid
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            os.killpg(pgid, signal.SIGSTOP)
            for raw in client.hvals("unacked"):
                with suppress(ValueError, IndexError, TypeError):
                    if json.loads(raw)[2] == f"{rig.queue}.write":
                        return True
            os.killpg(pgid, signal.SIGCONT)
            time.sleep(0.05)
        return False
    finally:
        client.close()


def _delete_rabbit_queues(queue: str) -> None:
    from kombu import Connection

    with Connection(RABBIT_URL, connect_timeout=10) as connection:
        for name in (queue, f"{queue}.write"):
            with suppress(Exception):
                connection.channel().queue_delete(name)


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"tribrid_faults_{secrets.token_hex(4)}"
    from sqlalchemy.pool import NullPool

    # No pooled connection: the drill restarts the server under it.
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        SERVICES["postgres"].ensure()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def drill_service_restart(ctx: Ctx, outcome: Outcome, service: str) -> None:
    """Redis, RabbitMQ or PostgreSQL (the ledger) stopped mid-run, down 5 s, started again."""
    broker = RABBIT_URL if service == "rabbitmq" else REDIS_URL
    # A task whose ledger connection dies mid-batch leaves its leases to its own call,
    # which no one takes over before the lease expires: shortened, as for the writer.
    extra = {"TRIBRID_CELERY__LEASE_S": str(SHORT_LEASE_S)} if service == "postgres" else {}
    with (
        contextmanager_for(service) as database_url,
        rig_for(ctx, f"{service}-restart", broker, database_url, **extra) as rig,
    ):
        try:
            start_owner(rig, "writer")
            rig.start("w0")
            rig.start("w1")
            run_id = rig.ingest(ctx.folder)
            wait_indexed(rig, int(ctx.docs * 0.3))
            stranded = [d.id for d in rig.leased()]
            queued = rig.progress(run_id).queued
            at = time.time()
            restored = SERVICES[service].restart(down_s=5)
            outcome.faults.append(Fault(f"{service} stopped, down 5 s", at, restored, stranded))
            outcome.notes.append(
                f"at the fault: {len(stranded)} document(s) leased, {queued} queued; "
                f"{service} answered again after {restored - at:.1f} s"
            )
            finish(rig, run_id, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
            outcome.notes += grep_logs(
                rig,
                ("Connection to broker lost", "Cannot connect", "OperationalError", "Retry in"),
                limit=1,
            )
            measure(rig, outcome)
            verify(rig, ctx.folder, outcome)
        finally:
            if service == "rabbitmq":
                SERVICES["rabbitmq"].ensure()
                _delete_rabbit_queues(rig.queue)


@contextmanager
def contextmanager_for(service: str) -> Iterator[str | None]:
    if service == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield None


@contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = _sh(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)])
    if done.returncode:
        raise SystemExit(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(10):
            if _sh(["umount", str(path)]).returncode == 0:
                break
            time.sleep(1)
        else:
            _sh(["umount", "-l", str(path)])


def fill(path: Path) -> Path:
    """Write zeros into ``path``'s file system until it is full."""
    filler = path / "filler"
    block = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError:
            pass
    # The last partial block: leave not one byte.
    with suppress(OSError), filler.open("ab") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    return filler


def drill_disk_full(ctx: Ctx, outcome: Outcome, size_mb: int) -> None:
    """The data dir's file system full mid-run, for ``full_s``; then the space is freed."""
    tmp = ctx.work / "disk-full"
    with tmpfs(tmp / "data", size_mb):
        rig = Rig(tmp, REDIS_URL, None)
        try:
            start_owner(rig, "writer")
            rig.start("w0")
            rig.start("w1")
            run_id = rig.ingest(ctx.folder)
            wait_indexed(rig, int(ctx.docs * 0.3))
            stranded = [d.id for d in rig.leased()]
            at = time.time()
            filler = fill(rig.data)
            # Full until the run has felt it: a document failed or no progress for 45 s.
            before, last, quiet = rig.settled(), rig.settled(), time.monotonic()
            failed_before = rig.progress(run_id).failed
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                time.sleep(1)
                now = rig.settled()
                if now != last:
                    last, quiet = now, time.monotonic()
                if rig.progress(run_id).failed > failed_before or time.monotonic() - quiet > 45:
                    break
            full_s = time.time() - at
            status = rig.status_json(run_id)
            outcome.notes.append(
                f"disk full for {full_s:.0f} s: {rig.settled() - before} document(s) settled "
                f"meanwhile; `tribrid status --run` said status {status.get('status')!r}, "
                f"stalled {status.get('stalled')!r}"
            )
            outcome.notes += grep_logs(
                rig, ("No space left", "disk is full", "database or disk", "store_failed"), limit=2
            )
            filler.unlink()
            outcome.faults.append(Fault(f"tmpfs of {size_mb} MB filled", at, time.time(), stranded))
            finish(rig, run_id, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
            if any(d.status == "failed" for d in rig.documents()):
                # Documents recorded failed while the disk was full: what a user does next.
                kinds = sorted(
                    {d.error_kind or "?" for d in rig.documents() if d.status == "failed"}
                )
                outcome.notes.append(f"failed while full: {kinds}; running the sync again")
                again = rig.ingest(ctx.folder)
                outcome.user_step = (outcome.user_step or "") + (
                    f" `tribrid ingest FOLDER --background` again (run #{again}) to retry "
                    "the failed documents"
                )
                finish(rig, again, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
            measure(rig, outcome)
            verify(rig, ctx.folder, outcome)
        finally:
            rig.close()


def drill_concurrent(ctx: Ctx, outcome: Outcome, owner: str) -> None:
    """``tribrid ingest FOLDER`` and ``tribrid ingest FOLDER --background`` at the same moment."""
    with rig_for(ctx, f"concurrent-{owner}") as rig:
        start_owner(rig, owner)
        rig.start("w0")
        rig.start("w1")
        time.sleep(20)  # the workers are up before the two commands start
        commands = {
            "foreground": [str(BIN / "tribrid"), "ingest", str(ctx.folder), "--json"],
            "background": [
                str(BIN / "tribrid"),
                "ingest",
                str(ctx.folder),
                "--background",
                "--json",
            ],
        }
        at = time.time()
        started = {
            k: subprocess.Popen(
                c, env=rig.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for k, c in commands.items()
        }
        answers = {}
        try:
            for k, proc in started.items():
                out, err = proc.communicate(timeout=ctx.timeout)
                answers[k] = (proc.returncode, out, err)
        finally:
            for proc in started.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        outcome.faults.append(Fault("foreground and background ingest at once", at, at))
        foreground_docs = 0
        for k, (code, out, err) in answers.items():
            message = (err.strip().splitlines() or [""])[-1][:300]
            outcome.notes.append(f"{k}: exit {code}; {out.strip()[:200] or message}")
            if k == "foreground" and code == 0:
                foreground_docs = int(json.loads(out)["counts"]["indexed"])
        code, out, _ = answers["background"]
        if code == 0:
            run_id = int(json.loads(out)["run_id"])
            finish(rig, run_id, ctx.folder, outcome, stall_s=ctx.stall_s, timeout=ctx.timeout)
        measure(rig, outcome)
        verify(rig, ctx.folder, outcome, foreground_docs=foreground_docs)


DRILLS: dict[str, tuple[str, Callable[[Ctx, Outcome], None]]] = {
    "worker-kill": ("an encode worker SIGKILLed as a whole, 3 times", drill_worker_kill),
    "serve-kill": ("`tribrid serve` SIGKILLed twice", lambda c, o: drill_owner_kill(c, o, "serve")),
    "writer-kill": (
        "`tribrid worker --writer` SIGKILLed twice",
        lambda c, o: drill_owner_kill(c, o, "writer"),
    ),
    "redis-restart": ("Redis restarted mid-run", lambda c, o: drill_service_restart(c, o, "redis")),
    "rabbitmq-restart": (
        "RabbitMQ restarted mid-run",
        lambda c, o: drill_service_restart(c, o, "rabbitmq"),
    ),
    "postgres-restart": (
        "PostgreSQL (the ledger) restarted mid-run",
        lambda c, o: drill_service_restart(c, o, "postgres"),
    ),
    "disk-full": ("the data dir's disk full mid-run", lambda c, o: drill_disk_full(c, o, 512)),
    "concurrent-writer": (
        "foreground + background ingest at once (`--writer` owns the store)",
        lambda c, o: drill_concurrent(c, o, "writer"),
    ),
    "concurrent-serve": (
        "foreground + background ingest at once (`tribrid serve` owns the store)",
        lambda c, o: drill_concurrent(c, o, "serve"),
    ),
}
QUICK = ["worker-kill", "serve-kill", "concurrent-writer"]


# -- the report ----------------------------------------------------------------------------


def _s(values: list[float | None]) -> str:
    return ", ".join("—" if v is None else f"{v:.0f}" for v in values) or "—"


def report(outcomes: list[Outcome], command: str, docs: int, load: tuple[str, str]) -> str:
    lines = [
        f"# Fault drills: {docs:,} SciFact documents, background runs with real workers",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}; load average {load[0]} at the start, {load[1]} at the end.",
        "",
        "| drill | faults | back s | resumed s | healed s (docs under way) | done s | user step "
        "| store = ledger | no duplicate | every file settled | no lease | documents encoded / "
        "files | failed files | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    for o in outcomes:
        c = o.checks
        healed = ", ".join(
            "—" if h is None else f"{h:.0f} ({len(f.stranded)})"
            for h, f in zip(o.healed_s, o.faults, strict=False)
        )

        def yes(key: str, c: dict[str, object] = c) -> str:
            return "—" if key not in c else ("yes" if c[key] is True else "**no**")

        verdict = (
            "error" if o.error else ("exactly once" if o.exactly_once else "**NOT exactly once**")
        )
        if o.double_work:
            verdict += ", **double work**"
        lines.append(
            f"| {o.drill} | {len(o.faults)} | {_s([f.restored - f.at for f in o.faults])} | "
            f"{_s(o.resumed_s)} | {healed or '—'} | "
            f"{'—' if o.done_s is None else f'{o.done_s:.0f}'} | {o.user_step or 'none'} | "
            f"{yes('store_is_ledger')} | {yes('no_duplicate')} | {yes('files_settled')} | "
            f"{yes('no_lease')} | {c.get('encoded', '—')} / {c.get('files', '—')} | "
            f"{c.get('failed', '—')} | {verdict} |"
        )
    lines += ["", "## What each drill saw", ""]
    for o in outcomes:
        lines.append(f"### {o.drill} (wall {o.wall_s:.0f} s)")
        lines.append("")
        for f in o.faults:
            lines.append(
                f"- fault: {f.what}; back after {f.restored - f.at:.1f} s; "
                f"{len(f.stranded)} document(s) under way"
            )
        if o.checks:
            lines.append(
                f"- {o.checks['indexed']} indexed, {o.checks['failed']} failed of "
                f"{o.checks['files']} files; {o.checks['points']} points, {o.checks['chunks']} "
                f"ledger chunks; runs {', '.join(o.checks['runs'])}"  # type: ignore[arg-type]
            )
        for key, kind, message in o.failures[:10]:
            lines.append(f"- failed: `{key}` {kind}: {message}")
        for note in o.notes:
            lines.append(f"- {note}")
        if o.error:
            lines.append(f"- **error**: {o.error}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, (what, _) in DRILLS.items():
        parser.add_argument(f"--{name}", action="store_true", help=what)
    parser.add_argument("--all", action="store_true", help="every drill")
    parser.add_argument("--quick", action="store_true", help=f"100 documents: {', '.join(QUICK)}")
    parser.add_argument("--docs", type=int, default=None, help="documents (default 1000)")
    parser.add_argument("--stall", type=float, default=120.0, help="seconds without progress")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run at most")
    parser.add_argument("--out", type=Path, default=None, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    chosen = [n for n in DRILLS if getattr(args, n.replace("-", "_"))]
    if args.all:
        chosen = list(DRILLS)
    elif args.quick and not chosen:
        chosen = QUICK
    if not chosen:
        parser.error("name a drill, --all or --quick")
    docs = args.docs or (100 if args.quick else 1000)
    if os.environ.get("TRIBRID_DATA_DIR") or any(k.startswith("TRIBRID_") for k in os.environ):
        parser.error("unset the TRIBRID_* variables: each drill sets its own")

    import redis

    work = Path(tempfile.mkdtemp(prefix="tribrid-faults-"))
    client = redis.Redis.from_url(REDIS_URL)
    outcomes: list[Outcome] = []
    load_start = os.getloadavg()
    try:
        folder = work / "scifact"
        write_scifact(folder, docs)
        ctx = Ctx(folder, docs, work, args.stall, args.timeout)
        for name in chosen:
            client.flushdb()
            outcome = Outcome(name, docs)
            started = time.time()
            print(f"== {name}: {DRILLS[name][0]}", flush=True)
            try:
                DRILLS[name][1](ctx, outcome)
            except Exception as e:  # a drill that breaks is reported; the next one runs
                outcome.error = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            finally:
                for service in SERVICES.values():
                    service.ensure()
                client.flushdb()
            outcome.wall_s = time.time() - started
            outcomes.append(outcome)
            print(
                json.dumps(
                    {
                        "drill": name,
                        "resumed_s": outcome.resumed_s,
                        "healed_s": outcome.healed_s,
                        "done_s": outcome.done_s,
                        "exactly_once": outcome.exactly_once,
                        "checks": outcome.checks,
                        "user_step": outcome.user_step,
                        "notes": outcome.notes,
                        "error": outcome.error,
                    },
                    default=str,
                ),
                flush=True,
            )
    finally:
        for service in SERVICES.values():
            with suppress(SystemExit):
                service.ensure()
        with suppress(Exception):
            client.flushdb()
        client.close()
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    command = "PYTHONPATH=. .venv/bin/python benchmarks/faults.py " + " ".join(sys.argv[1:])
    text_ = report(outcomes, command, docs, (f"{load_start[0]:.1f}", f"{load_end[0]:.1f}"))
    print(text_)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text_ + "\n")
    if any(o.error or not o.exactly_once or o.double_work for o in outcomes):
        sys.exit(1)


def _stop(*_: object) -> None:
    """SIGTERM: clean up as on any failure, undisturbed by a second signal."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(143)


if __name__ == "__main__":
    # Subprocesses run this tree's code: the console scripts honour PYTHONPATH.
    os.environ.setdefault("PYTHONPATH", str(HERE.parent))
    signal.signal(signal.SIGTERM, _stop)
    main()

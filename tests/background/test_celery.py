"""Background ingestion with real ``celery worker`` processes, real models and real Qdrant Edge.

The workers run as subprocesses on Redis (database 13) or RabbitMQ, with queue names
unique to the test, and the embedded store is owned by a writer worker
(``tribrid worker --writer``), as in production. Each test cleans its broker up.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.background import BIN, RABBIT_URL, REDIS_URL, Cluster, redis_cluster
from tribrid.background import worker
from tribrid.factory import build_encoders, build_store
from tribrid.ledger import SqlLedger
from tribrid.settings import Settings

# -- the configuration, without workers ------------------------------------------------


def test_the_config_refuses_pickle_and_acks_late(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    config = worker.celery_config(settings)
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_send_task_events"] and config["task_send_sent_event"]
    assert config["worker_max_tasks_per_child"] == 200
    assert config["worker_max_memory_per_child"] == 4096 * 1024
    # No broker configured: the filesystem transport in the data dir, folders made on demand.
    assert config["broker_url"] == "filesystem://"
    assert not (tmp_path / "data" / "broker").exists()
    worker.celery_config(settings, create_folders=True)
    assert (tmp_path / "data" / "broker" / "queue").is_dir()
    routes = config["task_routes"]
    assert routes[worker.WRITE_BATCH] == {"queue": "tribrid.write"}
    assert worker.PROCESS_DOCUMENTS not in routes


def test_redis_gets_a_visibility_timeout(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        celery={"broker_url": REDIS_URL, "visibility_timeout_s": 10},  # type: ignore[arg-type]
    )
    options = worker.celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == 10 and options["unacked_restore_interval"] == 2


def test_tasks_are_idempotent_by_design() -> None:
    for task in (worker.process_documents, worker.write_batch, worker.sync_source):
        assert task.acks_late and task.reject_on_worker_lost
        assert task.retry_jitter and task.retry_backoff
    assert worker.app.conf.accept_content == ["json"]


# -- real workers -------------------------------------------------------------------------


def write_folder(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"note-{i:03}.md").write_text(
            f"# Note {i}\n\nThe keeper of lighthouse {i} logs every ship that passes at night.\n\n"
            f"## Weather\n\nOn day {i} the wind came from the {'north' if i % 2 else 'south'}.\n"
        )
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")


@pytest.fixture(name="redis_cluster")
def redis_cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    with redis_cluster(tmp_path) as cluster:
        yield cluster


@pytest.mark.celery
@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_every_document_lands_once(
    redis_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = redis_cluster
    folder = tmp_path / "docs"
    # Enough notes that the run cannot end between the check and the kill: a batch of
    # eight one-chunk notes takes well under a second.
    notes = 160
    write_folder(folder, notes)
    cluster.start("writer", writer=True)
    cluster.start("a")
    run_id = cluster.ingest(folder)
    cluster.wait(lambda: cluster.progress(run_id).indexed >= 8, 150, "the first documents")
    cluster.kill("a")  # in the middle of the run, with a batch in its hands
    assert not cluster.progress(run_id).finished
    cluster.start("b")
    cluster.wait(lambda: cluster.progress(run_id).finished, 150, "the run to complete")
    progress = cluster.progress(run_id)
    assert (progress.indexed, progress.failed, progress.remaining) == (notes, 1, 0)
    assert progress.run.counts.seen == notes + 1
    shown = subprocess.run(
        [str(BIN / "tribrid"), "status", "--run", str(run_id), "--follow", "--json"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["status"] == "completed" and report["eta_s"] == 0.0
    assert (report["indexed"], report["failed"], report["queued"]) == (notes, 1, 0)
    cluster.stop_all()
    cluster.assert_exactly_once()
    with SqlLedger(cluster.settings.database_url) as ledger:
        status = ledger.status()
    assert status.counts["indexed"] == notes and status.chunks == notes  # a chunk per note
    assert [(f.key, f.error_kind) for f in status.failures] == [("broken.pdf", "corrupt")]


@pytest.mark.celery
@pytest.mark.slow
def test_rabbitmq_store_outage_retries_fails_then_the_next_sync_recovers(tmp_path: Path) -> None:
    """The writer cannot open the store (another process holds it) for longer than its
    retry budget: the documents end store_failed, and the next sync indexes them."""
    from kombu import Connection

    cluster = Cluster(
        tmp_path,
        RABBIT_URL,
        TRIBRID_CELERY__MAX_RETRIES="2",
        TRIBRID_CELERY__RETRY_BACKOFF_S="1",
        TRIBRID_CELERY__RETRY_BACKOFF_MAX_S="2",
    )
    folder = tmp_path / "docs"
    write_folder(folder, 6)
    outage = build_store(cluster.settings, build_encoders(cluster.settings))  # holds the lock
    try:
        cluster.start("writer", writer=True)
        cluster.start("a")
        first = cluster.ingest(folder)
        cluster.wait(lambda: cluster.progress(first).finished, 150, "the first run to give up")
        progress = cluster.progress(first)
        assert (progress.indexed, progress.failed) == (0, 7)
        with SqlLedger(cluster.settings.database_url) as ledger:
            kinds = sorted(f.error_kind or "" for f in ledger.status().failures)
        assert kinds == ["corrupt"] + ["store_failed"] * 6
        writer_log = (tmp_path / "writer.log").read_text(errors="replace")
        assert "StoreBusyError" in writer_log and "Retry in" in writer_log  # backed off, twice
        outage.close()  # the store is back
        second = cluster.ingest(folder)  # the files did not change; store_failed is retried
        cluster.wait(lambda: cluster.progress(second).finished, 150, "the second run")
        progress = cluster.progress(second)
        assert (progress.indexed, progress.failed, progress.run.counts.unchanged) == (6, 0, 1)
        cluster.stop_all()
        cluster.assert_exactly_once()
    finally:
        outage.close()
        cluster.stop_all()
        with Connection(RABBIT_URL) as connection:
            channel = connection.channel()
            for queue in (cluster.queue, f"{cluster.queue}.write"):
                try:
                    channel.queue_delete(queue)
                except Exception:  # never declared: nothing to clean
                    channel = connection.channel()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.celery
@pytest.mark.slow
def test_a_file_that_kills_its_worker_is_quarantined_on_the_filesystem_broker(
    tmp_path: Path,
) -> None:
    """No broker server: kombu's filesystem transport. The test kills the pool process
    while it parses one file; the message comes back (reject_on_worker_lost), and the
    next attempt finds the file's open attempt in the ledger and quarantines it."""
    cluster = Cluster(tmp_path, None, TRIBRID_CELERY__MAX_ATTEMPTS="1")
    folder = tmp_path / "docs"
    write_folder(folder, 4)
    (folder / "broken.pdf").unlink()
    words = [
        "harbour",
        "lantern",
        "tide",
        "gull",
        "ferry",
        "keeper",
        "ledger",
        "quay",
        "mooring",
        "beacon",
    ]
    # Every paragraph its own text (numbered words): nothing comes from the vector cache,
    # so the file stays in its worker long enough to be seen and killed there.
    (folder / "zz-deadly.md").write_text(
        "\n\n".join(" ".join(f"{words[(i + j) % 10]}{i}" for j in range(25)) for i in range(3000))
    )
    try:
        cluster.start("writer", writer=True)
        cluster.start("a")
        run_id = cluster.ingest(folder)
        ledger = SqlLedger(cluster.settings.database_url)
        try:

            def deadly_is_parsing() -> bool:
                items = ledger.work_items(range(1, 10))
                return any(i.key == "zz-deadly.md" and i.open_attempts for i in items)

            cluster.wait(deadly_is_parsing, 150, "the deadly file to be parsed")
        finally:
            ledger.close()
        pool = _children(cluster.procs["a"].pid)
        assert pool, "the worker has no pool process"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)  # what a segfault in the parser looks like
        cluster.wait(lambda: cluster.progress(run_id).finished, 150, "the run to complete")
        progress = cluster.progress(run_id)
        assert (progress.indexed, progress.failed) == (4, 1)
        with SqlLedger(cluster.settings.database_url) as ledger:
            (failure,) = ledger.status().failures
        assert (failure.key, failure.error_kind) == ("zz-deadly.md", "crashed")
        assert "quarantined" in (failure.error_message or "")
        assert "WorkerLostError" in (tmp_path / "a.log").read_text(errors="replace")
        cluster.stop_all()
        cluster.assert_exactly_once()
    finally:
        cluster.stop_all()


# -- a 300-file folder, two racing workers, a store outage, a file edited mid-run ---------


def write_mixed_folder(root: Path, count: int) -> list[str]:
    """``count`` one-paragraph documents in three sub-folders, as .txt, .md and .html.

    Returns:
        The document keys (paths relative to ``root``).
    """
    keys = []
    for i in range(count):
        sentence = (
            f"Harbour log {i}: ferry {i % 17} left pier {i % 5} at {i % 24} o'clock "
            f"carrying {i * 3} crates of {('salt', 'rope', 'tea', 'tin')[i % 4]} to berth {i}."
        )
        kind = i % 3
        key = f"part-{i % 4}/log-{i:03}." + ("txt", "md", "html")[kind]
        text = (
            sentence + "\n",
            f"{sentence}\n",
            f"<html><body><p>{sentence}</p></body></html>\n",
        )[kind]
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
        keys.append(key)
    return keys


def task_results(cluster: Cluster, names: Sequence[str], task: str) -> list[dict[str, int]]:
    """The return values the workers logged for ``task`` (celery logs them at INFO)."""
    pattern = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded in [\d.]+s: (\{{.*\}})")
    return [
        ast.literal_eval(match.group(1))
        for name in names
        for match in pattern.finditer((cluster.tmp / f"{name}.log").read_text(errors="replace"))
    ]


def send_tasks(cluster: Cluster, task: str, batches: Sequence[list[int]]) -> None:
    """Send ``task`` once per batch to the cluster's queue, from a client of its own."""
    from celery import Celery

    client = Celery("tribrid-test-client", set_as_current=False)
    client.conf.update(worker.celery_config(cluster.settings))
    try:
        for ids in batches:
            client.send_task(task, args=[ids], queue=cluster.queue)
    finally:
        client.close()


@pytest.mark.celery
@pytest.mark.slow
def test_300_files_land_exactly_once_through_racing_workers_and_a_store_outage(
    redis_cluster: Cluster, tmp_path: Path
) -> None:
    """Two parse workers and the writer ingest 300 small .txt/.md/.html files.

    On the way: every batch of document ids is delivered a second time, so the two
    workers race on the same documents; the store is held by another process until the
    writer has had to back off (an outage shorter than the retry budget); and a file is
    edited while the run is going. The end state: every document indexed exactly once,
    the store's points are exactly the ledger's chunk rows, no lease is left, and the
    next sync leaves the edited file's new text, and only it, in the index.
    """
    cluster = redis_cluster
    batch = 16
    cluster.env.update(
        TRIBRID_CELERY__BATCH_DOCUMENTS=str(batch),
        TRIBRID_CELERY__MAX_RETRIES="10",
        TRIBRID_CELERY__RETRY_BACKOFF_S="1",
        TRIBRID_CELERY__RETRY_BACKOFF_MAX_S="2",
        TRIBRID_MODELS__TORCH_THREADS="1",  # two workers on two cores
    )
    folder = tmp_path / "docs"
    keys = write_mixed_folder(folder, 300)
    outage = build_store(cluster.settings, build_encoders(cluster.settings))  # holds the store
    try:
        cluster.start("writer", writer=True)
        cluster.start("a")
        cluster.start("b")
        run_id = cluster.ingest(folder)
        cluster.wait(lambda: cluster.progress(run_id).listed, 120, "the listing")
        engine = create_engine(cluster.settings.database_url)
        try:
            with engine.connect() as connection:
                ids = list(
                    connection.execute(
                        text("SELECT id FROM documents WHERE run_id = :run ORDER BY id"),
                        {"run": run_id},
                    ).scalars()
                )
        finally:
            engine.dispose()
        assert len(ids) == 300
        # Every document a second time, last batches first: the tail of the run is
        # offered to both workers at once.
        batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
        send_tasks(cluster, worker.PROCESS_DOCUMENTS, batches[::-1])
        writer_log = tmp_path / "writer.log"
        cluster.wait(
            lambda: "Retry in" in writer_log.read_text(errors="replace"),
            150,
            "the writer to back off from the busy store",
        )
        edited = folder / keys[-1]
        edited.write_text("<html><body><p>Rewritten while the run was going.</p></body></html>")
        info = edited.stat()
        os.utime(edited, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))
        outage.close()  # the store is back, within the retry budget
        cluster.wait(lambda: cluster.progress(run_id).finished, 150, "the run to complete")
        progress = cluster.progress(run_id)
        assert progress.run.status == "completed"
        assert (progress.indexed, progress.failed, progress.queued, progress.in_progress) == (
            300,
            0,
            0,
            0,
        )
        counts = progress.run.counts
        assert (counts.seen, counts.indexed, counts.chunks_embedded) == (300, 300, 300)
        assert "StoreBusyError" in writer_log.read_text(errors="replace")

        second = cluster.ingest(folder)  # picks up the edit if the worker read the old text
        cluster.wait(lambda: cluster.progress(second).finished, 120, "the second run")
        again = cluster.progress(second).run.counts
        assert again.unchanged + again.indexed == 300 and again.indexed <= 1
        done = task_results(cluster, ["a", "b"], worker.PROCESS_DOCUMENTS)
        cluster.stop_all()
    finally:
        outage.close()
        cluster.stop_all()

    # No double work: each document was committed by exactly one delivery; every other
    # delivery of it found it taken (busy) or done (skipped).
    assert sum(r["committed"] for r in done) == 300 + again.indexed
    assert sum(r["busy"] + r["skipped"] for r in done) >= 300
    assert sum(r["failed"] + r["deleted"] for r in done) == 0
    cluster.assert_exactly_once()
    engine = create_engine(cluster.settings.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, chunk_count, attempts, open_attempts FROM documents")
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 300 and set(rows) == {("indexed", 1, 0, 0)}
    store = build_store(cluster.settings, build_encoders(cluster.settings))
    try:
        texts = {
            hit.payload["document_key"]: hit.payload["text"]
            for hit in store.retrieve(sorted(store.ids()))
        }
    finally:
        store.close()
    assert len(texts) == 300 and texts[keys[-1]] == "Rewritten while the run was going."
    assert texts[keys[0]].startswith("Harbour log 0: ferry 0")


@pytest.mark.celery
@pytest.mark.slow
def test_a_worker_killed_as_a_whole_is_healed_by_the_next_worker_not_the_broker(
    tmp_path: Path,
) -> None:
    """The OOM killer takes a whole worker (main process and child) mid-run. Redis would
    hand its message back only after the visibility timeout (an hour here, as by
    default); the next worker's reaper queues its documents again at once."""
    # Tasks of four documents: the run advances a few documents at a time, so it is still
    # going when the test kills the worker (with tasks of 32, a fast worker could finish
    # all 50 notes between two looks at the ledger, and there was nothing left to heal).
    with redis_cluster(
        tmp_path,
        TRIBRID_CELERY__VISIBILITY_TIMEOUT_S="3600",
        TRIBRID_CELERY__REAP_INTERVAL_S="5",
        TRIBRID_CELERY__BATCH_DOCUMENTS="4",
    ) as cluster:
        folder = tmp_path / "docs"
        write_folder(folder, 80)
        cluster.start("writer", writer=True)
        cluster.start("a")
        run_id = cluster.ingest(folder)
        cluster.wait(lambda: cluster.progress(run_id).in_progress > 0, 150, "a batch in hand")
        cluster.wait(lambda: cluster.progress(run_id).indexed >= 8, 150, "the first documents")
        # Between two tasks the worker holds no document, and a kill then leaves nothing to
        # heal: freeze it, look, and kill it only while it holds some.
        deadline = time.monotonic() + 150
        while True:
            cluster.freeze("a")
            held = cluster.progress(run_id)
            if held.lease_owners or held.finished or time.monotonic() > deadline:
                break
            cluster.thaw("a")
            time.sleep(0.05)
        cluster.kill("a")  # whole process group: no chance to give anything back
        assert not held.finished and held.lease_owners, held

        def stalled() -> str:
            shown = subprocess.run(
                [str(BIN / "tribrid"), "status", "--run", str(run_id), "--json"],
                env=cluster.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            return str(json.loads(shown.stdout)["stalled"] or "")

        # The killed group's child may take a moment to be gone after its parent.
        cluster.wait(lambda: "died" in stalled(), 60, "status to say the run is stalled")
        started = time.monotonic()
        cluster.start("b")
        cluster.wait(lambda: cluster.progress(run_id).finished, 120, "the run to complete")
        assert time.monotonic() - started < 120
        progress = cluster.progress(run_id)
        assert (progress.indexed, progress.failed, progress.remaining) == (80, 1, 0)
        assert "which is gone; queued again" in (tmp_path / "b.log").read_text(errors="replace")
        cluster.stop_all()
        cluster.assert_exactly_once()


@pytest.mark.celery
@pytest.mark.slow
def test_messages_lost_by_a_broker_restart_are_queued_again_by_a_running_worker(
    tmp_path: Path,
) -> None:
    """Redis restarted without persistence loses every queued message: the run's documents
    stay queued in the ledger with nothing in the broker. The worker's reaper notices the
    run has been quiet with nobody holding its documents and queues them again."""
    import redis

    with redis_cluster(
        tmp_path,
        TRIBRID_CELERY__REAP_INTERVAL_S="2",
        TRIBRID_CELERY__STRANDED_AFTER_S="6",
    ) as cluster:
        folder = tmp_path / "docs"
        write_folder(folder, 20)
        cluster.start("writer", writer=True)
        cluster.start("a")  # one process taking one message at a time (prefetch 1)
        run_id = cluster.ingest(folder)
        cluster.wait(
            lambda: (p := cluster.progress(run_id)).listed and p.in_progress > 0,
            150,
            "the listing and the first batch in hand",
        )
        client = redis.Redis.from_url(REDIS_URL)
        try:
            # What a restart of a Redis that keeps nothing on disk does to the waiting
            # messages (the batch in hand is finished and acknowledged as usual).
            assert client.delete(cluster.queue) == 1, "every batch was taken already"
        finally:
            client.close()
        cluster.wait(lambda: cluster.progress(run_id).finished, 150, "the run to complete")
        progress = cluster.progress(run_id)
        assert (progress.indexed, progress.failed, progress.remaining) == (20, 1, 0)
        assert "their messages were lost" in (tmp_path / "a.log").read_text(errors="replace")
        cluster.stop_all()
        cluster.assert_exactly_once()

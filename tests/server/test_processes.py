"""``tribrid serve`` with real processes: one owner, and everyone else at the same time.

A retriever in one process queries without pause while ``tribrid ingest`` in another
adds 300 documents; then Celery workers on Redis ingest through the server while it is
SIGKILLed and restarted. Real models, real Qdrant Edge, real SQLite, real Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.background import BIN, Cluster, redis_cluster
from tribrid.ledger import SqlLedger
from tribrid.store.remote import descriptor, discover

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"


def write_documents(root: Path, count: int, word: str) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"log-{i:03}.txt").write_text(
            f"Harbour log {i}\n\nThe {word}{i} ferry left berth {i % 7} at dawn and the "
            f"pilot noted the tide, the wind and the {word}{i} cargo manifest.\n"
        )


def tribrid(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the ``tribrid`` command as a user would, in its own process."""
    return subprocess.run(
        [str(BIN / "tribrid"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(what, timeout: float, why: str, procs: dict[str, subprocess.Popen[bytes]]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {why}")


QUERIER = textwrap.dedent(
    """
    import json, sys, time, pathlib
    import tribrid
    from tribrid.retrievers.remote import RemoteRetriever

    stop = pathlib.Path(sys.argv[1])
    retriever = tribrid.as_retriever(k=3)
    assert isinstance(retriever, RemoteRetriever), type(retriever)
    ok, failed, errors = 0, 0, []
    queries = ["rank fusion", "binary quantization", "tomato", "ferry tide", "gasket"]
    while not stop.exists():
        try:
            docs = retriever.invoke(queries[ok % len(queries)])
            assert docs, "no documents"
            ok += 1
        except Exception as e:
            failed += 1
            errors.append(repr(e)[:300])
    found = [d.metadata["path"] for d in retriever.invoke("zephyrq42 cargo", channels=["bm25"], k=1)]
    models = [m for m in ("torch", "onnxruntime", "sentence_transformers") if m in sys.modules]
    print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:5], "found": found, "models": models}))
    """
)


def test_a_retriever_queries_without_pause_while_ingest_adds_300_documents(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "TRIBRID_DATA_DIR": str(data)}
    seeded = tribrid("ingest", str(EXAMPLES), "--json", env=env, timeout=600)
    assert seeded.returncode == 0, seeded.stderr
    store = data / "store"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with (tmp_path / "serve.log").open("wb") as log:
        procs["server"] = subprocess.Popen(
            [str(BIN / "tribrid"), "serve", "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: discover(store) is not None, 300, "the server", procs)
        stop = tmp_path / "stop"
        querier = subprocess.Popen(
            [sys.executable, "-c", QUERIER, str(stop)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(3)  # queries run before the ingest starts, during it, and after it
        folder = tmp_path / "harbour"
        write_documents(folder, 300, "zephyrq")
        ingested = tribrid("ingest", str(folder), "--json", env=env, timeout=1200)
        assert ingested.returncode == 0, ingested.stderr
        counts = json.loads(ingested.stdout)["counts"]
        assert (counts["indexed"], counts["failed"]) == (300, 0)
        stop.touch()
        out, err = querier.communicate(timeout=120)
        assert querier.returncode == 0, err
        summary = json.loads(out)
        assert summary["failed"] == 0, summary["errors"]
        assert summary["ok"] > 20, summary
        assert summary["found"] == ["log-042.txt"]
        assert summary["models"] == []  # the retriever's process loaded no model
        searched = tribrid(
            "search", "zephyrq7 cargo", "--mode", "bm25", "-k", "1", "--json", env=env, timeout=120
        )
        assert searched.returncode == 0, searched.stderr
        assert [hit["path"] for hit in json.loads(searched.stdout)] == ["log-007.txt"]
    finally:
        procs["server"].send_signal(signal.SIGTERM)
        procs["server"].wait(timeout=60)
    assert descriptor(store) is None  # a clean stop removes it
    with SqlLedger(f"sqlite:///{data / 'ledger.db'}") as ledger:
        assert ledger.status().counts["indexed"] == 306
        listed = list(ledger.all_point_ids())
    from tribrid.factory import build_encoders, build_store
    from tribrid.settings import Settings

    settings = Settings(data_dir=data)
    opened = build_store(settings, build_encoders(settings))
    try:
        assert opened.ids() == set(listed) and opened.count() == len(listed) == len(set(listed))
    finally:
        opened.close()


@pytest.mark.celery
def test_workers_write_through_the_server_and_survive_its_sigkill(tmp_path: Path) -> None:
    with redis_cluster(tmp_path, TRIBRID_CELERY__RETRY_BACKOFF_S="1") as cluster:
        _drill(cluster, tmp_path)


def _drill(cluster: Cluster, tmp_path: Path) -> None:
    store = cluster.data / "store"
    cluster.start("server", server=True)
    cluster.wait(lambda: discover(store) is not None, 300, "the server")
    cluster.start("worker-1")
    cluster.start("worker-2")
    folder = tmp_path / "harbour"
    write_documents(folder, 300, "quillon")
    run_id = cluster.ingest(folder)
    cluster.wait(lambda: cluster.progress(run_id).indexed >= 40, 600, "the first documents")
    killed = descriptor(store)
    before = cluster.progress(run_id).indexed
    cluster.kill("server")  # mid-run: workers are encoding and writing
    assert descriptor(store) == killed  # left behind, stale: the workers wait for a server
    time.sleep(3)
    cluster.start("server", server=True)
    cluster.wait(lambda: discover(store) is not None, 300, "the restarted server")
    cluster.wait(lambda: cluster.progress(run_id).finished, 900, "the run to finish")
    progress = cluster.progress(run_id)
    assert (progress.indexed, progress.failed) == (300, 0), progress
    assert before < 300  # the kill came mid-run
    logs = "".join((tmp_path / f"worker-{n}.log").read_text(errors="replace") for n in (1, 2))
    assert "cannot reach the tribrid server" in logs or "does not answer" in logs  # and was felt
    assert set(cluster.procs) == {"server", "worker-1", "worker-2"}  # no --writer needed
    cluster.stop_all()
    cluster.assert_exactly_once()
    with SqlLedger(cluster.settings.database_url) as ledger:
        counts = ledger.status().counts
        assert (counts["indexed"], counts["failed"], counts["pending"]) == (300, 0, 0)

"""Workers' metrics and logs, as an operator sees them: real workers on real Redis, real HTTP.

A parse-and-encode worker (``celery -A …``, metrics port from the environment) and the
writer (``tribrid worker --writer --metrics-port``) each serve their processes' metrics;
the test scrapes both while a background run goes and after it ends, and reads the
worker's JSON log lines.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.background import Cluster, redis_cluster

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DOCUMENTS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    """Every sample the endpoint serves, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def reachable(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    with redis_cluster(tmp_path) as cluster:
        yield cluster


@pytest.mark.celery
@pytest.mark.slow
def test_workers_serve_metrics_during_a_background_run_and_log_json(
    cluster: Cluster, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(DOCUMENTS):
        (folder / f"note-{i:03}.md").write_text(
            f"# Note {i}\n\nThe keeper of lighthouse {i} logs every ship that passes.\n"
        )
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    writer_port, worker_port = free_port(), free_port()
    cluster.start("writer", writer=True, args=["--metrics-port", str(writer_port)])
    cluster.start(
        "worker",
        env={"TRIBRID_CELERY__METRICS_PORT": str(worker_port), "TRIBRID_LOG_FORMAT": "json"},
    )
    cluster.wait(
        lambda: reachable(writer_port) and reachable(worker_port), 120, "the metrics endpoints"
    )
    source = f"local:{folder.resolve()}"
    run_id = cluster.ingest(folder)

    during: list[Samples] = []

    def finished() -> bool:
        samples = scrape(worker_port)
        if value(samples, "tribrid_run_running", source=source) == 1.0:
            during.append(samples)
        return cluster.progress(run_id).finished

    cluster.wait(finished, 300, "the run to complete")
    # While the run ran, its progress and the queue were on the endpoint.
    assert during, "no scrape saw the run running"
    assert any(
        value(s, "tribrid_queue_depth") + value(s, "tribrid_documents_in_progress") > 0
        for s in during
    )
    assert all(value(s, "tribrid_run_id", source=source) == run_id for s in during)
    assert all(value(s, "tribrid_ledger_up") == 1.0 for s in during)

    worker, writer = scrape(worker_port), scrape(writer_port)
    # The worker's pool process parsed and encoded; its failure counts by kind.
    assert value(worker, "tribrid_stage_seconds_count", stage="parse") == DOCUMENTS + 1
    assert value(worker, "tribrid_stage_seconds_count", stage="encode") >= 1
    assert value(worker, "tribrid_stage_seconds_sum", stage="encode") > 0
    assert value(worker, "tribrid_documents_total", outcome="failed") == 1
    assert value(worker, "tribrid_document_failures_total", kind="corrupt") == 1
    # The writer upserted and recorded every document.
    assert value(writer, "tribrid_documents_total", outcome="indexed") == DOCUMENTS
    assert value(writer, "tribrid_chunks_indexed_total") == DOCUMENTS
    assert value(writer, "tribrid_stage_seconds_count", stage="upsert") >= 1
    # Run progress once it ended, from the ledger (both endpoints read the same one).
    for samples in (worker, writer):
        assert value(samples, "tribrid_run_running", source=source) == 0.0
        assert value(samples, "tribrid_run_listed", source=source) == 1.0
        assert value(samples, "tribrid_queue_depth") == 0.0
        assert value(samples, "tribrid_run_documents", source=source, state="indexed") == DOCUMENTS
        assert value(samples, "tribrid_run_documents", source=source, state="failed") == 1

    # The worker's log is JSON lines; the failure is one line with its reason and the
    # run, the document and the Celery task it belongs to.
    lines = [line for line in cluster.log("worker", tail=None).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len(lines), [line for line in lines if not line.startswith("{")][:5]
    failures = [r for r in records if r.get("outcome") == "failed"]
    assert len(failures) == 1
    failure = failures[0]
    assert failure["level"] == "WARNING" and failure["document_key"] == "broken.pdf"
    assert failure["kind"] == "corrupt" and "broken.pdf: failed (corrupt)" in failure["message"]
    assert failure["run_id"] == run_id and failure["task_id"]
    # The writer logged one line per indexed document.
    indexed = [
        line for line in cluster.log("writer", tail=None).splitlines() if ": indexed (" in line
    ]
    assert len(indexed) == DOCUMENTS

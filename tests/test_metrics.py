"""tribrid.metrics: the stages count into whatever is attached, and nothing when nothing is.

The multiprocess mode (Celery's prefork workers) is checked end to end, with real
workers, in tests/background/test_observability.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tribrid import metrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(name="attached")
def attached_fixture() -> Iterator[tuple[CollectorRegistry, metrics.PipelineMetrics]]:
    registry = CollectorRegistry()
    pipeline = metrics.PipelineMetrics(registry)
    metrics.attach(pipeline)
    yield registry, pipeline
    metrics.detach(pipeline)


def test_stages_count_into_attached_metrics(
    attached: tuple[CollectorRegistry, metrics.PipelineMetrics],
) -> None:
    registry, _ = attached
    metrics.document_ended("indexed")
    metrics.document_ended("indexed")
    metrics.document_ended("failed", kind="corrupt")
    metrics.chunks_written(5)
    metrics.chunks_written(0)
    with metrics.timed("encode"):
        pass
    with pytest.raises(RuntimeError), metrics.timed("upsert"):
        raise RuntimeError("the store went away")  # a failed upsert still took time
    got = samples(registry)
    assert got[("tribrid_documents_total", frozenset({("outcome", "indexed")}))] == 2
    assert got[("tribrid_documents_total", frozenset({("outcome", "failed")}))] == 1
    assert got[("tribrid_document_failures_total", frozenset({("kind", "corrupt")}))] == 1
    assert got[("tribrid_chunks_indexed_total", frozenset())] == 5
    for stage in ("encode", "upsert"):
        assert got[("tribrid_stage_seconds_count", frozenset({("stage", stage)}))] == 1


def test_nothing_is_counted_once_detached(
    attached: tuple[CollectorRegistry, metrics.PipelineMetrics],
) -> None:
    registry, pipeline = attached
    metrics.detach(pipeline)
    metrics.document_ended("indexed")
    with metrics.timed("parse"):
        pass
    got = samples(registry)
    assert ("tribrid_documents_total", frozenset({("outcome", "indexed")})) not in got
    metrics.attach(pipeline)  # for the fixture's detach


def test_runs_collector_reports_queue_depth_and_progress() -> None:
    runs = [
        metrics.RunSnapshot("local:/a", 4, True, True, 7, 2, 10, 1, 0, 3),
        metrics.RunSnapshot("local:/b", 2, False, True, 0, 0, 5, 0, 1, 0),
    ]
    registry = CollectorRegistry()
    registry.register(metrics.RunCollector(lambda: runs))
    got = samples(registry)
    assert got[("tribrid_ledger_up", frozenset())] == 1
    assert got[("tribrid_queue_depth", frozenset())] == 7  # running runs only
    assert got[("tribrid_documents_in_progress", frozenset())] == 2
    assert got[("tribrid_run_id", frozenset({("source", "local:/a")}))] == 4
    assert got[("tribrid_run_running", frozenset({("source", "local:/b")}))] == 0
    state = frozenset({("source", "local:/a"), ("state", "indexed")})
    assert got[("tribrid_run_documents", state)] == 10


def test_an_unreadable_ledger_is_a_sample_not_a_failed_scrape() -> None:
    def broken() -> list[metrics.RunSnapshot]:
        raise OSError("database is away")

    registry = CollectorRegistry()
    registry.register(metrics.RunCollector(broken))
    got = samples(registry)
    assert got == {("tribrid_ledger_up", frozenset()): 0.0}

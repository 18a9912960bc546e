"""Prometheus metrics of the sync stages, counted wherever the stages run.

The stages of :mod:`tribrid.ingestion` report what they do through the functions here
(:func:`document_ended`, :func:`chunks_written`, :func:`timed`); they cost nothing
until a runtime :func:`attach`-es a :class:`PipelineMetrics`: ``tribrid serve`` attaches
one on its own registry (``GET /metrics``), a Celery worker process attaches one backed
by prometheus_client's multiprocess files (see :func:`enable_multiprocess`), which the
worker's main process serves on ``--metrics-port``. ``prometheus_client`` is imported
only then.

Names follow Prometheus conventions: ``tribrid_`` prefix, ``_total`` counters,
``_seconds`` durations.

=====================================  ==================================================
``tribrid_documents_total{outcome}``   documents a sync ended: indexed, unchanged,
                                       failed, deleted
``tribrid_document_failures_total``    failed documents, by ``kind`` (a FailureKind)
``tribrid_chunks_indexed_total``       chunks encoded and written
``tribrid_stage_seconds{stage}``       one parse (a document), encode (a slice of
                                       chunks) or upsert (a batch of points)
``tribrid_queue_depth``                documents of running runs waiting for a worker
``tribrid_documents_in_progress``      documents of running runs a worker holds
``tribrid_run_*{source}``              the latest run of each source: id, running,
                                       listed, documents by state
=====================================  ==================================================
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: The stages :func:`timed` measures.
STAGES = ("parse", "encode", "upsert")
#: Buckets of ``tribrid_stage_seconds``: a small text file parses in milliseconds, a
#: scanned PDF in minutes.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class PipelineMetrics:
    """The counters and histogram of the sync stages, on one registry.

    Args:
        registry: Where to register them; ``None`` registers nowhere (a worker child
            process in multiprocess mode, whose values the parent collects from files).
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Histogram

        self.documents = Counter(
            "tribrid_documents",
            "Documents a sync ended, by outcome (indexed, unchanged, failed, deleted)",
            ["outcome"],
            registry=registry,
        )
        self.failures = Counter(
            "tribrid_document_failures",
            "Documents that failed, by failure kind",
            ["kind"],
            registry=registry,
        )
        self.chunks = Counter(
            "tribrid_chunks_indexed", "Chunks encoded and written", registry=registry
        )
        self.stage_seconds = Histogram(
            "tribrid_stage_seconds",
            "Time of one parse (a document), encode (a slice of chunks) or upsert (a batch)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )


_active: list[PipelineMetrics] = []
_lock = threading.Lock()


def attach(metrics: PipelineMetrics) -> None:
    """Count the stages' work of this process into ``metrics`` (until :func:`detach`)."""
    with _lock:
        if metrics not in _active:
            _active.append(metrics)


def detach(metrics: PipelineMetrics) -> None:
    """Stop counting into ``metrics``."""
    with _lock:
        if metrics in _active:
            _active.remove(metrics)


def attached() -> bool:
    """Whether anything counts the stages' work in this process."""
    return bool(_active)


def document_ended(outcome: str, *, kind: str | None = None) -> None:
    """A document reached ``outcome``; a failed one also counts under its ``kind``."""
    for m in list(_active):
        m.documents.labels(outcome).inc()
        if kind is not None:
            m.failures.labels(kind).inc()


def chunks_written(count: int) -> None:
    """``count`` chunks were encoded and written."""
    if count > 0:
        for m in list(_active):
            m.chunks.inc(count)


def observe(stage: str, seconds: float) -> None:
    """One ``stage`` took ``seconds``."""
    for m in list(_active):
        m.stage_seconds.labels(stage).observe(seconds)


@contextlib.contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the block's wall time as one ``stage`` (also when it raises)."""
    if not _active:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(stage, time.perf_counter() - started)


# -- runs and queue depth, read from the ledger at scrape time ---------------------------


@dataclass(frozen=True)
class RunSnapshot:
    """The latest run of one source, as the ledger has it when metrics are scraped."""

    source_key: str
    run_id: int
    running: bool
    listed: bool
    queued: int
    in_progress: int
    indexed: int
    failed: int
    deleted: int
    unchanged: int


class RunCollector:
    """A collector that reads the runs when scraped: queue depth and run progress.

    Args:
        snapshots: Returns the latest run of each source (it opens the ledger, reads and
            closes it). When it raises, the scrape carries ``tribrid_ledger_up 0``
            instead of the run metrics, so an alert can tell "no work" from "no ledger".
    """

    def __init__(self, snapshots: Callable[[], Iterable[RunSnapshot]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("tribrid_ledger_up", "Whether the ledger could be read")
        try:
            runs = list(self._snapshots())
        except Exception:  # the scrape reports it; the worker goes on
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        depth = GaugeMetricFamily(
            "tribrid_queue_depth", "Documents of running runs waiting for a worker"
        )
        depth.add_metric([], float(sum(r.queued for r in runs if r.running)))
        yield depth
        busy = GaugeMetricFamily(
            "tribrid_documents_in_progress", "Documents of running runs a worker holds"
        )
        busy.add_metric([], float(sum(r.in_progress for r in runs if r.running)))
        yield busy
        run_id = GaugeMetricFamily(
            "tribrid_run_id", "Id of the latest run of each source", labels=["source"]
        )
        running = GaugeMetricFamily(
            "tribrid_run_running", "1 while the latest run of a source runs", labels=["source"]
        )
        listed = GaugeMetricFamily(
            "tribrid_run_listed",
            "1 once the latest run of a source has listed and queued everything",
            labels=["source"],
        )
        documents = GaugeMetricFamily(
            "tribrid_run_documents",
            "Documents of the latest run of each source, by state",
            labels=["source", "state"],
        )
        for r in runs:
            run_id.add_metric([r.source_key], float(r.run_id))
            running.add_metric([r.source_key], float(r.running))
            listed.add_metric([r.source_key], float(r.listed))
            for state in ("queued", "in_progress", "indexed", "failed", "deleted", "unchanged"):
                documents.add_metric([r.source_key, state], float(getattr(r, state)))
        yield from (run_id, running, listed, documents)


# -- multiprocess mode (Celery's prefork workers) -----------------------------------------

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess(folder: Path) -> None:
    """Make every metric created from now on in this process and its forks file-backed.

    Call in the parent before it forks (the Celery worker's main process); children
    then :func:`attach` a ``PipelineMetrics(None)`` and the parent serves
    :func:`multiprocess_registry`. Works whether or not prometheus_client was imported
    already (it reads ``PROMETHEUS_MULTIPROC_DIR`` only at import).
    """
    from prometheus_client import values

    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def multiprocess_registry(folder: Path, *extra: Any) -> CollectorRegistry:
    """A registry that sums every process's files in ``folder``, plus ``extra`` collectors."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    for collector in extra:
        registry.register(collector)
    return registry


def process_exited(pid: int) -> None:
    """Tell the multiprocess files that ``pid`` is gone (its live gauges stop counting)."""
    from prometheus_client import multiprocess

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        multiprocess.mark_process_dead(pid, folder)


__all__ = [
    "MULTIPROC_ENV",
    "STAGES",
    "PipelineMetrics",
    "RunCollector",
    "RunSnapshot",
    "attach",
    "attached",
    "chunks_written",
    "detach",
    "document_ended",
    "enable_multiprocess",
    "multiprocess_registry",
    "observe",
    "process_exited",
    "timed",
]

"""The server's Prometheus metrics, in a registry of their own (``GET /metrics``).

Besides its own (queries, store operations, failed requests, its sync queue), the
server counts the sync stages' work while it runs (:mod:`tribrid.metrics`) and reads
queue depth and run progress from its ledger at each scrape — background runs too,
when workers share its ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tribrid.metrics import PipelineMetrics, RunCollector, RunSnapshot


class ServerMetrics:
    """Counters, gauges and histograms of one server.

    Attributes:
        queries: Searches answered, by outcome (``ok``, ``error``).
        query_seconds: Search latency, query encoding included.
        store_ops: Store operations other processes sent, by operation.
        pipeline: The sync stages' metrics (:class:`tribrid.metrics.PipelineMetrics`),
            counted while the server runs: documents by outcome, failures by kind,
            chunks, parse/encode/upsert seconds.
        documents: Documents the server's own syncs ended, by outcome.
        chunks: Chunks the server's own syncs encoded and wrote.
        failures: Requests that failed, by endpoint.
        queue_depth: Sync jobs waiting or running.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter(
            "tribrid_queries", "Searches answered", ["outcome"], registry=self.registry
        )
        self.query_seconds = Histogram(
            "tribrid_query_seconds",
            "Search latency, query encoding included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.store_ops = Counter(
            "tribrid_store_operations",
            "Store operations sent by other processes",
            ["operation"],
            registry=self.registry,
        )
        # The sync stages count into these while the server is up (see tribrid.metrics):
        # documents by outcome, failures by kind, chunks, parse/encode/upsert seconds.
        self.pipeline = PipelineMetrics(self.registry)
        self.documents = self.pipeline.documents
        self.chunks = self.pipeline.chunks
        self.failures = Counter(
            "tribrid_request_failures",
            "Requests that failed",
            ["endpoint"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tribrid_sync_queue_depth", "Sync jobs waiting or running", registry=self.registry
        )

    def watch_runs(self, snapshots: Callable[[], Iterable[RunSnapshot]]) -> None:
        """Add queue depth and run progress, read through ``snapshots`` at each scrape."""
        self.registry.register(RunCollector(snapshots))


__all__ = ["ServerMetrics"]

"""The server's Prometheus metrics, in a registry of their own (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServerMetrics:
    """Counters, gauges and histograms of one server.

    Attributes:
        queries: Searches answered, by outcome (``ok``, ``error``).
        query_seconds: Search latency, query encoding included.
        store_ops: Store operations other processes sent, by operation.
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
        self.documents = Counter(
            "tribrid_documents",
            "Documents ended by the server's syncs",
            ["outcome"],
            registry=self.registry,
        )
        self.chunks = Counter(
            "tribrid_chunks_indexed",
            "Chunks encoded and written by the server's syncs",
            registry=self.registry,
        )
        self.failures = Counter(
            "tribrid_request_failures",
            "Requests that failed",
            ["endpoint"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tribrid_sync_queue_depth", "Sync jobs waiting or running", registry=self.registry
        )


__all__ = ["ServerMetrics"]

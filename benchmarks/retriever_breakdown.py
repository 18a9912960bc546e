"""Where the time of one client-side-fused ``retriever.invoke`` goes, stage by stage.

Runs the stages of :meth:`HybridRetriever._search` one by one on the embedded store,
with the cached SciFact vectors of ``retriever_latency.py`` (run that with
``--encode-only`` first), and prints each stage's median next to the whole
``invoke`` with client-side and with store fusion.

Usage:
    .venv/bin/python benchmarks/retriever_breakdown.py [--points 10000] [--queries 150]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import qdrant_edge as qe
import retriever_latency as rl

from tribrid.encoders import EncoderSet
from tribrid.factory import build_encoders
from tribrid.retrievers import HybridRetriever
from tribrid.retrievers.hybrid import _chunks, to_document
from tribrid.settings import Settings
from tribrid.store.base import CollectionSchema, StoreQuery
from tribrid.store.edge import _hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--docs", type=int, default=2560)
    args = parser.parse_args()

    real = build_encoders(Settings())
    corpus, claims = rl.load_scifact(real, args.docs, 300)
    encoders = EncoderSet(
        dense=rl.LookupDense(claims, "dense"),
        splade=rl.LookupSparse(claims, claims.splade, "splade"),
        bm25=rl.LookupSparse(claims, claims.bm25, "bm25"),
    )
    schema = CollectionSchema(
        name="breakdown",
        dense_size=384,
        dense_model="dense",
        splade_model="splade",
        bm25_model="bm25",
    )
    work = Path(tempfile.mkdtemp(prefix="tribrid-breakdown-"))
    texts = claims.texts[: args.queries]
    store, built = rl.build_edge(work / "edge", schema, corpus, rl.augment(corpus, args.points))
    print(f"python benchmarks/retriever_breakdown.py {' '.join(sys.argv[1:])}")
    print(f"{args.points:,} chunks (Edge store built in {built:.0f} s), {len(texts)} queries")
    print()
    client = HybridRetriever(store=store, encoders=encoders, k=10)
    fused = HybridRetriever(store=store, encoders=encoders, k=10, store_fusion=True)
    for text in claims.texts[-5:]:
        client.invoke(text)
        fused.invoke(text)
    stages = [
        "build the requests",
        "Edge query_batch (3 channels)",
        "hits to Python (ids, scores)",
        "fuse (RRF)",
        "retrieve top-10 payloads",
        "chunks and documents",
        "whole invoke, client-side RRF",
        "Edge fused query (store RRF)",
        "whole invoke, store_fusion=True",
        "Edge query_batch with payloads",
    ]
    times: dict[str, list[float]] = {s: [] for s in stages}

    def tick(stage: str, start: float) -> float:
        now = time.perf_counter()
        times[stage].append((now - start) * 1000)
        return now

    for text in texts:
        t = time.perf_counter()
        queries = client._encode(text, client._active())
        requests = client._requests(queries, 10)
        batch = qe.QueryBatchRequest([store._request(r) for r in requests])
        t = tick("build the requests", t)
        raw = store._open_shard().query_batch(batch)
        t = tick("Edge query_batch (3 channels)", t)
        results = [_hits(scored) for scored in raw]
        t = tick("hits to Python (ids, scores)", t)
        top, ranked = client._fuse(queries, results, 10)
        t = tick("fuse (RRF)", t)
        payloads = store.retrieve([i for i, _ in top])
        t = tick("retrieve top-10 payloads", t)
        [to_document(c) for c in _chunks(top, ranked, payloads)]
        t = tick("chunks and documents", t)
        client.invoke(text)
        t = tick("whole invoke, client-side RRF", t)
        store.query(fused._requests(queries, 10)[0])
        t = tick("Edge fused query (store RRF)", t)
        fused.invoke(text)
        t = tick("whole invoke, store_fusion=True", t)
        with_payloads = [
            StoreQuery(channels=r.channels, limit=r.limit, oversampling=r.oversampling)
            for r in requests
        ]
        store._open_shard().query_batch(
            qe.QueryBatchRequest([store._request(r) for r in with_payloads])
        )
        tick("Edge query_batch with payloads", t)
    print("| stage | median ms |\n| --- | ---: |")
    for stage, values in times.items():
        print(f"| {stage} | {statistics.median(values):.2f} |")
    store.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

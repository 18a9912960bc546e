"""Turning a query text into the channel queries a store searches: the one place it happens.

:func:`encode_query` runs each encoder a query needs once (the dense vector serves both
the ``dense`` and the ``binary`` channel). The hybrid retriever, ``tribrid search`` (which
is the retriever with store-side fusion) and the evaluation harness all call it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np

from tribrid.encoders import EncoderSet, SparseVector
from tribrid.store.base import Channel, ChannelQuery

#: The encoder each channel's query vector comes from.
CHANNEL_ENCODER: Mapping[Channel, str] = {
    Channel.DENSE: "dense",
    Channel.BINARY: "dense",
    Channel.SPLADE: "splade",
    Channel.BM25: "bm25",
}


def encode_query(
    encoders: EncoderSet,
    query: str,
    channels: Mapping[Channel, float] | Iterable[Channel],
    *,
    timings_ms: dict[str, float] | None = None,
) -> list[ChannelQuery]:
    """The channel queries of ``query``, in the order of ``channels``.

    Args:
        encoders: The encoders the index was built with.
        query: The query text.
        channels: The channels to search, with their weights (a plain iterable means
            weight 1 each).
        timings_ms: When given, receives each encoder's time in milliseconds, by
            encoder name (``dense``, ``splade``, ``bm25``).
    """
    weighted = dict(channels) if isinstance(channels, Mapping) else dict.fromkeys(channels, 1.0)
    vectors: dict[str, list[float] | SparseVector] = {}
    for channel in weighted:
        name = CHANNEL_ENCODER[Channel(channel)]
        if name in vectors:
            continue
        started = time.perf_counter()
        if name == "dense":
            dense = encoders.dense.encode_query(query)
            vectors[name] = np.asarray(dense, dtype=np.float64).tolist()
        elif name == "splade":
            vectors[name] = encoders.splade.encode_query(query)
        else:
            vectors[name] = encoders.bm25.encode_query(query)
        if timings_ms is not None:
            timings_ms[name] = (time.perf_counter() - started) * 1000
    return [
        ChannelQuery(Channel(channel), vectors[CHANNEL_ENCODER[Channel(channel)]], weight)
        for channel, weight in weighted.items()
    ]


__all__ = ["CHANNEL_ENCODER", "encode_query"]

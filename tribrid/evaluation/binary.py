"""Binary quantization calibration: recall of the binary first stage against float search.

For each encoding (1, 1.5 and 2 bits per dimension, with a binary query or an
asymmetric scalar-8-bit query) a scratch Qdrant Edge store is built from the dense
vectors the index already holds (nothing is encoded again). Each query is searched
through the codes with several oversampling factors (candidates = oversampling × k,
rescored with the float vectors) and compared with the exact float top-k computed
with numpy: recall@k = |binary top-k ∩ float top-k| / k.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribrid.encoders.base import SparseVector
from tribrid.store.base import (
    BinaryEncoding,
    Channel,
    ChannelQuery,
    CollectionSchema,
    Point,
    QueryEncoding,
    StoreQuery,
)
from tribrid.store.edge import EdgeStore

DEFAULT_OVERSAMPLING = (1.0, 2.0, 4.0, 8.0, 16.0)
#: (document codes, query encoding): symmetric binary queries, and asymmetric 8-bit ones.
DEFAULT_ENCODINGS: tuple[tuple[BinaryEncoding, QueryEncoding], ...] = (
    (BinaryEncoding.ONE_BIT, QueryEncoding.BINARY),
    (BinaryEncoding.ONE_AND_HALF_BITS, QueryEncoding.BINARY),
    (BinaryEncoding.TWO_BITS, QueryEncoding.BINARY),
    (BinaryEncoding.ONE_BIT, QueryEncoding.SCALAR8),
    (BinaryEncoding.ONE_AND_HALF_BITS, QueryEncoding.SCALAR8),
    (BinaryEncoding.TWO_BITS, QueryEncoding.SCALAR8),
)
BITS = {
    BinaryEncoding.ONE_BIT: 1.0,
    BinaryEncoding.ONE_AND_HALF_BITS: 1.5,
    BinaryEncoding.TWO_BITS: 2.0,
}
_EMPTY = SparseVector((), ())


@dataclass(frozen=True)
class CalibrationRow:
    """Recall of one encoding at one oversampling factor.

    Attributes:
        encoding: Bits per dimension of the document codes.
        query_encoding: How the query is encoded (``binary`` is symmetric).
        oversampling: Candidates from the codes per wanted result, before rescoring.
        recall: Mean recall@k against the exact float top-k.
        median_ms: Median search time per query.
        codes_mb: Size of the codes (n × d × bits / 8), the RAM the first stage needs.
        float_mb: Size of the float vectors (n × d × 4) it is compared with.
    """

    encoding: str
    query_encoding: str
    oversampling: float
    recall: float
    median_ms: float
    codes_mb: float
    float_mb: float


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact cosine top-k of each query, best first."""
    docs = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    scores = q @ docs.T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def smallest_oversampling(
    rows: Sequence[CalibrationRow], encoding: str, query_encoding: str, target: float
) -> CalibrationRow | None:
    """The row with the smallest oversampling whose recall reaches ``target``, if any."""
    fitting = [
        r
        for r in rows
        if r.encoding == encoding and r.query_encoding == query_encoding and r.recall >= target
    ]
    return min(fitting, key=lambda r: r.oversampling) if fitting else None


def calibrate_binary(
    ids: Sequence[str],
    vectors: np.ndarray,
    queries: Mapping[str, np.ndarray],
    workdir: Path,
    *,
    schema: CollectionSchema,
    encodings: Sequence[tuple[BinaryEncoding, QueryEncoding]] = DEFAULT_ENCODINGS,
    oversampling: Sequence[float] = DEFAULT_OVERSAMPLING,
    k: int = 10,
    advance: Callable[[int], None] | None = None,
) -> list[CalibrationRow]:
    """Recall@k of binary search against exact float search, per encoding and oversampling.

    Args:
        ids: Point ids, row-aligned with ``vectors``.
        vectors: The dense vectors of the index, ``(n, d)``.
        queries: ``{query id: dense query vector}``.
        workdir: Scratch folder; one store per encoding is built in it and removed.
        schema: The index's schema (name and models; the encodings are replaced).
        encodings: ``(document encoding, query encoding)`` pairs to measure.
        oversampling: Factors to try.
        k: Results compared.
        advance: Called with 1 after each encoding.
    """
    if len(ids) == 0 or not queries:
        return []
    query_ids = list(queries)
    matrix = np.stack([queries[q] for q in query_ids]).astype(np.float32)
    truth = exact_top_k(vectors, matrix, k)
    truth_ids = [{ids[i] for i in row} for row in truth]
    n, d = vectors.shape
    float_mb = n * d * 4 / 2**20
    rows: list[CalibrationRow] = []
    for encoding, query_encoding in encodings:
        folder = workdir / f"binary-{encoding.value}-{query_encoding.value}"
        custom = CollectionSchema(
            name=schema.name,
            dense_size=d,
            dense_model=schema.dense_model,
            splade_model=schema.splade_model,
            bm25_model=schema.bm25_model,
            binary_encoding=encoding,
            query_encoding=query_encoding,
        )
        store = EdgeStore(folder, custom, recreate=True)
        try:
            for start in range(0, n, 512):
                store.upsert(
                    [
                        Point(id=ids[i], dense=vectors[i].tolist(), splade=_EMPTY, bm25=_EMPTY)
                        for i in range(start, min(start + 512, n))
                    ]
                )
            store.flush()  # builds the codes with their vector statistics
            for factor in oversampling:
                recalls, times = [], []
                for qi, _query_id in enumerate(query_ids):
                    request = StoreQuery(
                        channels=(ChannelQuery(Channel.BINARY, matrix[qi].tolist()),),
                        limit=k,
                        oversampling=factor,
                        with_payload=False,
                    )
                    started = time.perf_counter()
                    hits = store.query(request)
                    times.append((time.perf_counter() - started) * 1000)
                    wanted = truth_ids[qi]
                    recalls.append(len(wanted & {h.id for h in hits}) / len(wanted))
                rows.append(
                    CalibrationRow(
                        encoding=encoding.value,
                        query_encoding=query_encoding.value,
                        oversampling=float(factor),
                        recall=float(np.mean(recalls)),
                        median_ms=statistics.median(times),
                        codes_mb=n * d * BITS[encoding] / 8 / 2**20,
                        float_mb=float_mb,
                    )
                )
        finally:
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
        if advance is not None:
            advance(1)
    return rows

"""Helpers of the retriever tests: a small corpus, as points, on either backend.

The corpus is stored the way ``tribrid ingest`` stores chunks (payload from
:meth:`Chunk.payload`).
"""

from __future__ import annotations

from pathlib import Path

from tribrid.encoders import EncoderSet
from tribrid.factory import collection_schema
from tribrid.ingestion.base import Chunk
from tribrid.ingestion.write import encode_chunks
from tribrid.settings import Settings
from tribrid.store import EdgeStore, QdrantServerStore
from tribrid.store.base import Point, VectorStore
from tribrid.store.points import content_hash, point_id

BACKENDS = ("edge", "memory")

CORPUS: list[tuple[str, str, int | None]] = [
    ("fusion.md", "Reciprocal rank fusion adds 1/(k + rank) over the rankings it fuses.", None),
    ("fusion.md", "Distribution-based score fusion rescales scores by mean and 3 sigma.", None),
    ("quant.md", "Binary quantization keeps one or two bits per dimension of each vector.", None),
    ("pump.pdf", "The ZX-9000 pump needs a new gasket every 500 operating hours.", 1),
    ("pump.pdf", "Before servicing the pump, close both valves and drain the housing.", 2),
    ("pump.pdf", "Warranty claims for the pump require the service log.", 3),
    ("bm25.md", "BM25 scores a document by term frequency and inverse document frequency.", None),
    ("splade.md", "SPLADE expands a text into learned sparse term weights.", None),
    ("cooking.txt", "Simmer the tomato sauce for twenty minutes and season with basil.", None),
    ("garden.txt", "Water the tomato plants in the morning, never at noon.", None),
]


def corpus_points(encoders: EncoderSet) -> list[Point]:
    """:data:`CORPUS` as points, with the payload the ingestion pipeline writes."""
    chunks = []
    index: dict[str, int] = {}
    for path, text, page in CORPUS:
        i = index[path] = index.get(path, -1) + 1
        digest = content_hash(text)
        metadata = {"path": path, "filetype": path.rsplit(".", 1)[1]}
        if page is not None:
            metadata["page"] = page
        chunks.append(
            Chunk(
                point_id=point_id("test", path, digest),
                source_key="test",
                document_key=path,
                index=i,
                text=text,
                content_hash=digest,
                metadata=metadata,
            )
        )
    return encode_chunks(encoders, chunks)


def open_backend(backend: str, encoders: EncoderSet, folder: Path) -> VectorStore:
    """An empty store of ``backend`` (``edge`` or ``memory``) for these encoders."""
    schema = collection_schema(Settings(), encoders)
    if backend == "edge":
        return EdgeStore(folder, schema)
    return QdrantServerStore(schema, url=":memory:")

"""A content-addressed cache of encoded chunks: identical text is encoded once.

Real folders repeat themselves (licence texts, identical copyright files, copies of one
report), and a chunk's three vectors depend only on its text and on the models. The
cache maps ``(model set, SHA-256 of the text)`` to the dense, SPLADE and BM25 vectors
last computed for that text, so a chunk whose text was already encoded, in any document
and any earlier run, reuses them, and a byte-identical copy of an indexed file costs no
encoding at all.

It is a SQLite file beside the store (``<data_dir>/vector-cache.sqlite`` by default),
in WAL mode with a busy timeout, so foreground syncs and background workers on one
machine can share it: a lost race writes the same vectors twice, which is harmless
(same key, same value). It is bounded: once it holds more than ``max_entries`` entries
the least recently used are dropped. Nothing depends on it for correctness: a missing,
evicted or unreadable entry is encoded again, and the cache can be deleted at any time.

The namespace (one per model set: models, backends, truncation, BM25 parameters) keeps
vectors of one configuration from ever being served to another.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from tribrid.encoders.base import SparseVector

log = logging.getLogger(__name__)

#: Entries kept by default (about 3 KB each with MiniLM, splade-tiny and BM25).
DEFAULT_MAX_ENTRIES: Final = 200_000
# SQLite limits the number of host parameters of one statement; stay well below it.
_IN_CHUNK: Final = 500
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS vectors (
    namespace TEXT NOT NULL,
    digest TEXT NOT NULL,
    dense BLOB NOT NULL,
    splade_indices BLOB NOT NULL,
    splade_values BLOB NOT NULL,
    bm25_indices BLOB NOT NULL,
    bm25_values BLOB NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used);
"""


@dataclass(frozen=True)
class CachedVectors:
    """The three vectors of one text."""

    dense: Sequence[float]
    splade: SparseVector
    bm25: SparseVector


def _sparse_blobs(vector: SparseVector) -> tuple[bytes, bytes]:
    return (
        np.asarray(vector.indices, dtype=np.int64).tobytes(),
        np.asarray(vector.values, dtype=np.float64).tobytes(),
    )


def _sparse(indices: bytes, values: bytes) -> SparseVector:
    return SparseVector(
        tuple(int(i) for i in np.frombuffer(indices, dtype=np.int64)),
        tuple(float(v) for v in np.frombuffer(values, dtype=np.float64)),
    )


class VectorCache:
    """Vectors of texts already encoded, by model set and text digest (see module doc).

    Thread-safe; one connection per instance, guarded by a lock.

    Example:
        >>> cache = VectorCache(data_dir / "vector-cache.sqlite", namespace="minilm|splade|bm25")
        >>> found = cache.get_many([chunk.content_hash for chunk in chunks])  # doctest: +SKIP

    Args:
        path: The SQLite file (created with its folder when missing).
        namespace: Identity of the model set whose vectors this instance reads and writes.
        max_entries: Entries kept over all namespaces; older ones are evicted.
    """

    def __init__(
        self, path: str | Path, *, namespace: str, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"VectorCache max_entries must be >= 1, got {max_entries}")
        if not namespace:
            raise ValueError("VectorCache needs a non-empty namespace (the model set)")
        self.path = Path(path)
        self.namespace = namespace
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._puts_since_trim = 0

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def get_many(self, digests: Iterable[str]) -> dict[str, CachedVectors]:
        """The cached vectors of those digests that have them.

        A cache that cannot be read is treated as empty (the texts are encoded again),
        with a warning: it is an optimisation, never a source of truth.
        """
        wanted = sorted(set(digests))
        found: dict[str, CachedVectors] = {}
        if not wanted:
            return found
        try:
            with self._lock:
                connection = self._open()
                for start in range(0, len(wanted), _IN_CHUNK):
                    part = wanted[start : start + _IN_CHUNK]
                    marks = ",".join("?" * len(part))
                    rows = connection.execute(
                        "SELECT digest, dense, splade_indices, splade_values, bm25_indices, "
                        f"bm25_values FROM vectors WHERE namespace = ? AND digest IN ({marks})",
                        [self.namespace, *part],
                    ).fetchall()
                    for digest, dense, s_i, s_v, b_i, b_v in rows:
                        found[digest] = CachedVectors(
                            dense=np.frombuffer(dense, dtype=np.float32).tolist(),
                            splade=_sparse(s_i, s_v),
                            bm25=_sparse(b_i, b_v),
                        )
                if found:
                    hit = sorted(found)
                    now = time.time_ns()
                    for start in range(0, len(hit), _IN_CHUNK):
                        part = hit[start : start + _IN_CHUNK]
                        marks = ",".join("?" * len(part))
                        connection.execute(
                            f"UPDATE vectors SET used = ? WHERE namespace = ? AND digest IN ({marks})",
                            [now, self.namespace, *part],
                        )
        except sqlite3.Error as error:
            log.warning("vector cache %s cannot be read (%s); encoding again", self.path, error)
            return {}
        return found

    def put_many(self, entries: Mapping[str, CachedVectors]) -> None:
        """Remember the vectors of these digests (evicting the oldest entries over the bound).

        A cache that cannot be written is skipped with a warning.
        """
        if not entries:
            return
        now = time.time_ns()
        rows = []
        for digest, vectors in entries.items():
            rows.append(
                (
                    self.namespace,
                    digest,
                    np.asarray(vectors.dense, dtype=np.float32).tobytes(),
                    *_sparse_blobs(vectors.splade),
                    *_sparse_blobs(vectors.bm25),
                    now,
                )
            )
        try:
            with self._lock:
                connection = self._open()
                connection.execute("BEGIN IMMEDIATE")
                try:
                    connection.executemany(
                        "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
                    self._puts_since_trim += len(rows)
                    # Counting is a scan: trim every so often, by a little more than the bound.
                    if self._puts_since_trim >= max(1, self.max_entries // 20):
                        self._puts_since_trim = 0
                        self._trim(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
        except sqlite3.Error as error:
            log.warning("vector cache %s cannot be written (%s); skipping it", self.path, error)

    def _trim(self, connection: sqlite3.Connection) -> None:
        (count,) = connection.execute("SELECT COUNT(*) FROM vectors").fetchone()
        excess = int(count) - self.max_entries
        if excess > 0:
            connection.execute(
                "DELETE FROM vectors WHERE (namespace, digest) IN "
                "(SELECT namespace, digest FROM vectors ORDER BY used LIMIT ?)",
                (excess,),
            )

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._open().execute("SELECT COUNT(*) FROM vectors").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection (the cache reopens on next use)."""
        with self._lock:
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
                self._connection = None


__all__ = ["DEFAULT_MAX_ENTRIES", "CachedVectors", "VectorCache"]

"""``evaluate``: quality, latency and size of every retrieval mode on a BEIR dataset.

Callable from Python with any settings (data dir, encoders), e.g. to compare encoder
backends::

    from tribrid.evaluation import evaluate
    from tribrid.settings import Settings

    report = evaluate("../shared/data/scifact", Settings(data_dir="/work/cache/scifact"),
                      modes=["dense", "hybrid-rrf"], split="test")
    report.modes["hybrid-rrf"].metrics["ndcg@10"]

The corpus is indexed first through the normal pipeline (the ledger makes a second run
free), then each channel is searched once per query and every mode is computed from
those cached lists (see :mod:`tribrid.evaluation.candidates`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tribrid.connectors.beir import BeirCorpusConnector, Qrels, read_qrels, read_queries
from tribrid.encoders import EncoderSet
from tribrid.errors import ConfigError
from tribrid.evaluation.binary import (
    BITS,
    DEFAULT_ENCODINGS,
    DEFAULT_OVERSAMPLING,
    CalibrationRow,
    calibrate_binary,
    smallest_oversampling,
)
from tribrid.evaluation.candidates import (
    Candidates,
    collect_candidates,
    collect_feedback,
    fused_documents,
    point_documents,
)
from tribrid.evaluation.indexing import index_dataset
from tribrid.evaluation.metrics import DEFAULT_METRICS, evaluate_per_query
from tribrid.evaluation.modes import (
    ALL_MODES,
    DEFAULT_MODE,
    SINGLE_CHANNEL_MODES,
    EvalMode,
)
from tribrid.factory import build_encoders, build_ledger, build_store
from tribrid.ingestion.pipeline import SyncReport
from tribrid.retrievers.config import RetrieverConfig, RetrieverSettings
from tribrid.retrievers.fusion import FusionMethod
from tribrid.settings import Settings
from tribrid.store.base import BinaryEncoding, Channel, QueryEncoding, VectorStore

log = logging.getLogger(__name__)


TUNED = "tuned"
_THREE = {"dense": 1.0, "splade": 1.0, "bm25": 1.0}
MODE_SETTINGS: dict[EvalMode, RetrieverSettings] = {
    EvalMode.DENSE: RetrieverSettings(channels={"dense": 1.0}),
    EvalMode.SPLADE: RetrieverSettings(channels={"splade": 1.0}),
    EvalMode.BM25: RetrieverSettings(channels={"bm25": 1.0}),
    EvalMode.BINARY: RetrieverSettings(channels={"binary": 1.0}),
    EvalMode.HYBRID_RRF: RetrieverSettings(channels=_THREE, fusion=FusionMethod.RRF),
    EvalMode.HYBRID_DBSF: RetrieverSettings(channels=_THREE, fusion=FusionMethod.DBSF),
    EvalMode.HYBRID_CONVEX: RetrieverSettings(channels=_THREE, fusion=FusionMethod.CONVEX),
    # The retriever's defaults, whatever they are.
    EvalMode.DEFAULT: RetrieverSettings(),
}
#: Documents ranked per query (Recall@100 needs 100).
RANKED_DOCUMENTS = 100


class PhaseProgress(Protocol):
    """Progress of the long phases (the CLI draws a bar)."""

    def phase(self, name: str, total: int | None) -> None:
        """A phase starts with ``total`` steps (``None`` when unknown)."""
        ...

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current phase are done."""
        ...


class _NoProgress:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass


@dataclass(frozen=True)
class ModeResult:
    """One mode's numbers.

    Attributes:
        mode: The mode's name.
        settings: The retriever options it corresponds to.
        metrics: ``{metric: mean over judged queries}``.
        median_ms: Median per-query latency: query encoding + store search(es) + fusion.
        median_search_ms: The same without query encoding.
        ram_mb: RAM of the vectors and indexes the mode searches (see ``EvalReport.sizes``).
        per_query: nDCG@10 of each judged query, for paired significance tests.
    """

    mode: str
    settings: dict[str, Any]
    metrics: dict[str, float]
    median_ms: float
    median_search_ms: float
    ram_mb: float
    per_query: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalReport:
    """Everything ``tribrid eval`` measured; ``to_dict`` is the JSON file.

    Attributes:
        dataset: The dataset folder.
        split: The qrels split evaluated.
        queries: Number of judged queries evaluated.
        documents: Documents in the index for this dataset.
        chunks: Chunks (points) they became.
        modes: Results by mode name.
        sizes: Per vector kind: ``ram_mb`` (what Qdrant keeps in RAM, measured from its
            files), ``disk_mb`` (all its files), ``estimate_mb`` (from counts).
        binary: Calibration rows (recall@10 against exact float search).
        binary_choice: Smallest oversampling reaching ``target_recall``, per encoding.
        target_recall: The binary recall target.
        depth: Chunks fetched per channel and query.
        index: What indexing did in this run.
        machine: Where it ran.
        duration_s: Wall time of the whole evaluation.
    """

    dataset: str
    split: str
    queries: int
    documents: int
    chunks: int
    modes: dict[str, ModeResult] = field(default_factory=dict)
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    binary: list[CalibrationRow] = field(default_factory=list)
    binary_choice: dict[str, float | None] = field(default_factory=dict)
    target_recall: float = 0.98
    depth: int = 300
    index: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM and Python of this machine, for reports."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1) if ram_gb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def judged_queries(
    queries: Mapping[str, str], qrels: Qrels, *, source: str
) -> tuple[dict[str, str], Qrels]:
    """Queries with at least one relevant document, and their qrels.

    Raises:
        ConfigError: No judged query has text in ``queries.jsonl``.
    """
    missing = [q for q in qrels if q not in queries]
    if missing:
        log.warning("%d judged queries of %s have no text in queries.jsonl", len(missing), source)
    kept = {q: queries[q] for q in qrels if q in queries and any(r > 0 for r in qrels[q].values())}
    if not kept:
        raise ConfigError(
            f"no judged query of {source} has text in queries.jsonl; check the query ids"
        )
    return kept, {q: qrels[q] for q in kept}


def _folder_mb(path: Path) -> float:
    # Allocated blocks, not apparent sizes: Qdrant preallocates sparse mmap files
    # (tens of MB apparent, mostly holes), which would overstate the disk used.
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files) / 2**20


def store_sizes(
    store_path: Path,
    *,
    points: int,
    dimension: int,
    nnz: Mapping[str, int],
    encoding: str,
) -> dict[str, dict[str, float]]:
    """Size of each vector kind: measured from the shard's files, and estimated.

    ``ram_mb`` counts the files Qdrant Edge keeps in memory with tribrid's configuration:
    the float vectors (``InRamMmap``) and the HNSW graph for ``dense``, the pinned codes
    for ``binary``, the in-RAM inverted indexes for ``splade`` and ``bm25``. ``disk_mb``
    counts every file of the kind. ``estimate_mb`` is counts × sizes: ``n·d·4`` bytes,
    ``n·d·bits/8`` for the codes, ``nnz·8`` (a u32 index and an f32 weight) for sparse.
    """
    sizes = {
        kind: {"ram_mb": 0.0, "disk_mb": 0.0, "estimate_mb": 0.0}
        for kind in ("dense", "binary", "splade", "bm25", "payload")
    }
    segments = store_path / "segments"
    for segment in segments.glob("*") if segments.is_dir() else []:
        for entry in segment.iterdir():
            name = entry.name
            if name == "vector_storage-dense":
                for item in entry.iterdir():
                    kind = "binary" if item.name.startswith("quantized") else "dense"
                    mb = _folder_mb(item)
                    sizes[kind]["disk_mb"] += mb
                    if item.name in ("matrix.dat", "quantized.data"):
                        sizes[kind]["ram_mb"] += mb
                continue
            for kind in ("dense", "splade", "bm25"):
                if name.endswith(f"-{kind}"):
                    mb = _folder_mb(entry)
                    sizes[kind]["disk_mb"] += mb
                    if name.startswith("vector_index-"):
                        sizes[kind]["ram_mb"] += mb
                    break
            else:
                if name.startswith("payload"):
                    sizes["payload"]["disk_mb"] += _folder_mb(entry)
    sizes["dense"]["estimate_mb"] = points * dimension * 4 / 2**20
    sizes["binary"]["estimate_mb"] = (
        points * dimension * BITS.get(_encoding(encoding), 2.0) / 8 / 2**20
    )
    for kind in ("splade", "bm25"):
        sizes[kind]["estimate_mb"] = nnz.get(kind, 0) * 8 / 2**20
    return {k: {m: round(v, 3) for m, v in d.items()} for k, d in sizes.items()}


def _encoding(value: str) -> Any:
    from tribrid.store.base import BinaryEncoding

    try:
        return BinaryEncoding(value)
    except ValueError:
        return value


def _mode_ram(settings: RetrieverSettings, sizes: Mapping[str, Mapping[str, float]]) -> float:
    total = 0.0
    for channel, weight in settings.channels.items():
        if weight <= 0:
            continue
        if channel == "binary":
            # The first stage needs the codes only; rescoring reads oversampling × k
            # float vectors, which can stay on disk (they are in RAM in this store).
            total += sizes["binary"]["ram_mb"]
        else:
            total += sizes[channel]["ram_mb"]
    return round(total, 3)


def score_mode(
    name: str,
    settings: RetrieverSettings,
    candidates: Candidates,
    qrels: Qrels,
    point_doc: Mapping[str, str],
    *,
    sizes: Mapping[str, Mapping[str, float]] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> ModeResult:
    """Metrics and latency of one fusion setting over cached candidates."""
    run: dict[str, list[str]] = {}
    totals, searches = [], []
    active = [c for c, w in settings.channels.items() if w > 0]
    for query_id in qrels:
        docs, fuse_ms = fused_documents(
            candidates, query_id, settings, point_doc, limit=RANKED_DOCUMENTS
        )
        run[query_id] = docs
        search = sum(candidates.search_ms[c][query_id] for c in active) + fuse_ms
        searches.append(search)
        totals.append(candidates.latency_ms(query_id, active) + fuse_ms)
    per_query = evaluate_per_query(qrels, run, sorted({*metrics, "ndcg@10"}))
    count = max(len(per_query), 1)
    return ModeResult(
        mode=name,
        settings=settings.model_dump(mode="json"),
        metrics={m: sum(v[m] for v in per_query.values()) / count for m in metrics},
        median_ms=round(statistics.median(totals), 3),
        median_search_ms=round(statistics.median(searches), 3),
        ram_mb=_mode_ram(settings, sizes) if sizes else 0.0,
        per_query={q: round(v["ndcg@10"], 6) for q, v in per_query.items()},
    )


def _needed_channels(settings: Iterable[RetrieverSettings]) -> list[Channel]:
    wanted = {c for s in settings for c, w in s.channels.items() if w > 0}
    return [c for c in Channel if c.value in wanted]


def evaluate(
    dataset: str | os.PathLike[str],
    settings: Settings,
    *,
    modes: Sequence[str] = ALL_MODES,
    split: str = "test",
    config: RetrieverConfig | None = None,
    depth: int = 300,
    metrics: Sequence[str] = DEFAULT_METRICS,
    calibrate: bool | None = None,
    oversampling: Sequence[float] = DEFAULT_OVERSAMPLING,
    encodings: Sequence[tuple[BinaryEncoding, QueryEncoding]] = DEFAULT_ENCODINGS,
    target_recall: float = 0.98,
    max_queries: int | None = None,
    encoders: EncoderSet | None = None,
    progress: PhaseProgress | None = None,
) -> EvalReport:
    """Index a BEIR dataset (once) and measure every mode on one split.

    This is the harness behind ``tribrid eval``; call it from Python to compare encoder
    backends or settings: the index lives in ``settings.data_dir`` (use one data dir per
    dataset and encoder setup, since the corpus is indexed into it).

    Args:
        dataset: The BEIR dataset folder.
        settings: Data dir, models and chunking of the index.
        modes: Mode names from :class:`EvalMode`.
        split: The qrels split to evaluate.
        config: A tuned configuration, evaluated as the extra mode ``tuned``.
        depth: Chunks fetched per channel and query (>= 100 so Recall@100 is defined).
        metrics: Metric names from :data:`tribrid.evaluation.metrics.METRICS`.
        calibrate: Measure binary recall against float search per encoding
            (default: when ``binary`` is among the modes).
        oversampling: Oversampling factors for the calibration.
        encodings: ``(codes, query encoding)`` pairs calibrated.
        target_recall: Binary recall@10 target for choosing an oversampling.
        max_queries: Evaluate only the first N judged queries (quick runs).
        encoders: Encoders to use (default: built from ``settings``), e.g. to reuse
            loaded models or to try another backend on the same index.
        progress: Receives progress of the long phases.

    Returns:
        The report; :func:`tribrid.evaluation.report.write_report` saves it.

    Raises:
        ConnectorError: The dataset is missing or malformed.
        ConfigError: An unknown mode, or no judged query.
    """
    started = time.monotonic()
    bar = progress or _NoProgress()
    try:
        chosen = [EvalMode(m) for m in modes]
    except ValueError as e:
        raise ConfigError(
            f"unknown mode in {list(modes)}; valid modes: {[m.value for m in EvalMode]}"
        ) from e
    if depth < RANKED_DOCUMENTS:
        raise ConfigError(f"depth must be >= {RANKED_DOCUMENTS} for Recall@100, got {depth}")
    queries, qrels = judged_queries(
        read_queries(dataset), read_qrels(dataset, split), source=str(dataset)
    )
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
        qrels = {q: qrels[q] for q in queries}
    calibrate = EvalMode.BINARY in chosen if calibrate is None else calibrate

    bar.phase("indexing corpus", None)
    encoders = encoders or build_encoders(settings)
    sync = _index(dataset, settings, bar, encoders)
    connector = BeirCorpusConnector(dataset)
    evaluated: dict[str, RetrieverSettings] = {m.value: MODE_SETTINGS[m] for m in chosen}
    if config is not None:
        evaluated[TUNED] = config.retriever
    channels = _needed_channels(evaluated.values())
    ledger = build_ledger(settings)
    try:
        point_doc = point_documents(ledger, connector.source_key)
    finally:
        ledger.close()
    store = build_store(settings, encoders)
    try:
        _check_store(store, point_doc, settings)
        bar.phase(f"searching {len(queries)} queries", len(queries))
        candidates = collect_candidates(
            store,
            encoders,
            queries,
            channels,
            depth=depth,
            # The binary mode runs as `tribrid search --mode binary` would.
            oversampling=settings.quantization.oversampling,
            advance=bar.advance,
        )
        bar.phase("reading vectors", None)
        ids, vectors, nnz = _read_vectors(store)
        schema = store.schema
        with_feedback = [s for s in evaluated.values() if s.feedback is not None]
        if with_feedback:
            dense_of = {point_id: vectors[row] for row, point_id in enumerate(ids)}
            for mode_settings in with_feedback:
                bar.phase("feedback round", len(queries))
                collect_feedback(
                    store,
                    encoders,
                    candidates,
                    mode_settings,
                    point_doc,
                    dense_of,
                    advance=bar.advance,
                )
    finally:
        store.close()
    sizes = store_sizes(
        settings.store_path,
        points=len(ids),
        dimension=int(vectors.shape[1]) if len(ids) else 0,
        nnz=nnz,
        encoding=schema.binary_encoding.value,
    )
    report = EvalReport(
        dataset=str(Path(dataset).resolve()),
        split=split,
        queries=len(queries),
        documents=len(set(point_doc.values())),
        chunks=len(point_doc),
        sizes=sizes,
        target_recall=target_recall,
        depth=depth,
        index={**sync.counts.as_dict(), "duration_s": round(sync.duration_s, 1)},
        machine=machine_info(),
    )
    bar.phase("scoring modes", len(evaluated))
    for name, mode_settings in evaluated.items():
        report.modes[name] = score_mode(
            name, mode_settings, candidates, qrels, point_doc, sizes=sizes, metrics=metrics
        )
        bar.advance(1)
    if calibrate and len(ids):
        bar.phase("binary calibration", len(encodings))
        with tempfile.TemporaryDirectory(prefix="calibration-", dir=settings.data_dir) as work:
            report.binary = calibrate_binary(
                ids,
                vectors,
                candidates.dense_queries,
                Path(work),
                schema=schema,
                encodings=encodings,
                oversampling=oversampling,
                advance=bar.advance,
            )
        report.binary_choice = binary_choices(report.binary, target_recall)
    report.duration_s = round(time.monotonic() - started, 1)
    return report


def binary_choices(rows: Sequence[CalibrationRow], target: float) -> dict[str, float | None]:
    """``{"<encoding>/<query encoding>": smallest oversampling reaching target or None}``."""
    choices: dict[str, float | None] = {}
    for row in rows:
        key = f"{row.encoding}/{row.query_encoding}"
        if key not in choices:
            best = smallest_oversampling(rows, row.encoding, row.query_encoding, target)
            choices[key] = best.oversampling if best else None
    return choices


def _index(
    dataset: str | os.PathLike[str], settings: Settings, bar: PhaseProgress, encoders: EncoderSet
) -> SyncReport:
    class _Listener:
        def document_done(self, key: str, outcome: str, chunks: int) -> None:
            bar.advance(1)

        def chunks_embedded(self, count: int) -> None:
            pass

    return index_dataset(dataset, settings, encoders=encoders, progress=_Listener())


def _check_store(store: VectorStore, point_doc: Mapping[str, str], settings: Settings) -> None:
    count = store.count()
    if count != len(point_doc):
        log.warning(
            "the store at %s holds %d points but the dataset has %d chunks; hits of other "
            "sources are skipped, which can push the dataset's documents down: use a data "
            "dir of its own for evaluation",
            settings.data_dir,
            count,
            len(point_doc),
        )


def _read_vectors(store: VectorStore) -> tuple[list[str], np.ndarray, dict[str, int]]:
    points = getattr(store, "points", None)
    if points is None:  # the server backend has no export; calibration needs the edge store
        return [], np.zeros((0, 0), dtype=np.float32), {}
    ids: list[str] = []
    rows: list[Sequence[float]] = []
    nnz = {"splade": 0, "bm25": 0}
    for point in points():
        ids.append(point.id)
        rows.append(point.dense)
        nnz["splade"] += len(point.splade)
        nnz["bm25"] += len(point.bm25)
    matrix = np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
    return ids, matrix, nnz


__all__ = [
    "ALL_MODES",
    "DEFAULT_MODE",
    "MODE_SETTINGS",
    "SINGLE_CHANNEL_MODES",
    "EvalMode",
    "EvalReport",
    "ModeResult",
    "PhaseProgress",
    "binary_choices",
    "evaluate",
    "machine_info",
    "score_mode",
    "store_sizes",
]

"""``tune``: search fusion settings on a train split; report train and test; save the best.

Each channel is searched once per query (train and test alike, see
:mod:`tribrid.evaluation.candidates`); every setting tried is then a cheap fusion of
cached lists. The search looks at the train split only; the test split is scored once,
for the chosen setting and for the default one, and never steers the choice.

The search has three stages:

1. every fusion method (RRF k=60, DBSF, convex min-max, convex z-score) with every
   weighting of the three channels from a coarse grid, prefetch 100;
2. for the best few: RRF ``k`` and prefetch depth;
3. a finer weight grid around the best.

Binary quantization is calibrated on the train queries too: the configuration gets the
smallest oversampling whose recall@10 against float search reaches the target.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tribrid.connectors.beir import (
    BeirCorpusConnector,
    Qrels,
    available_splits,
    qrels_path,
    read_qrels,
    read_queries,
)
from tribrid.encoders import EncoderSet
from tribrid.errors import ConfigError
from tribrid.evaluation.binary import calibrate_binary, smallest_oversampling
from tribrid.evaluation.candidates import (
    Candidates,
    collect_candidates,
    collect_feedback,
    point_documents,
)
from tribrid.evaluation.harness import (
    RANKED_DOCUMENTS,
    PhaseProgress,
    _index,
    _NoProgress,
    _read_vectors,
    judged_queries,
    machine_info,
    score_mode,
)
from tribrid.evaluation.metrics import DEFAULT_METRICS, evaluate_run
from tribrid.factory import build_encoders, build_ledger, build_store
from tribrid.retrievers.config import RetrieverConfig, RetrieverSettings
from tribrid.retrievers.fusion import FusionMethod, Normalization, Weighting
from tribrid.settings import Settings
from tribrid.store.base import Channel

CHANNELS = ("dense", "splade", "bm25")
COARSE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
RRF_KS = (5, 10, 20, 40, 60, 100)
PREFETCH = (20, 50, 100, 200, 300)
#: The baseline: the retriever's defaults (tribrid.retrievers.defaults).
DEFAULT = RetrieverSettings()
#: What the searched settings leave fixed: no per-query weighting, no feedback round.
_PLAIN: dict[str, Any] = {"weighting": Weighting.FIXED, "feedback": None}


@dataclass
class Trial:
    """One setting tried on the train split."""

    settings: dict[str, Any]
    score: float


@dataclass
class TuneReport:
    """What ``tune`` found.

    Attributes:
        dataset: The dataset folder.
        train_split: Where the search looked (``<split>`` or ``<split>[holdout …]``).
        test_split: Scored once, never searched.
        objective: The metric maximised on train.
        train_queries: Judged train queries.
        test_queries: Judged test queries.
        best: The chosen retriever settings.
        train: Metrics of the chosen setting on train.
        test: Metrics of the chosen setting on test.
        default_train: Metrics of the retriever's default settings on train.
        default_test: The same on test.
        trials: Settings tried.
        binary: Calibration on the train queries for the index's own encoding.
        config_path: Where the configuration was written.
        machine: Where it ran.
        duration_s: Wall time.
    """

    dataset: str
    train_split: str
    test_split: str
    objective: str
    train_queries: int
    test_queries: int
    best: dict[str, Any] = field(default_factory=dict)
    train: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    default_train: dict[str, float] = field(default_factory=dict)
    default_test: dict[str, float] = field(default_factory=dict)
    trials: int = 0
    binary: dict[str, Any] = field(default_factory=dict)
    config_path: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)


def holdout_split(query_ids: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """A deterministic split of query ids: ``fraction`` of them to train, the rest to test.

    Each id goes by the SHA-256 of its text, so the split does not depend on file order
    and is the same on every machine.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction must be between 0 and 1, got {fraction}")
    train: list[str] = []
    test: list[str] = []
    for query_id in query_ids:
        digest = int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (train if digest < fraction else test).append(query_id)
    return train, test


def _splits(
    dataset: str | os.PathLike[str], train_split: str, test_split: str, holdout: float | None
) -> tuple[Qrels, Qrels, str]:
    if train_split == test_split and holdout is None:
        raise ConfigError(
            f"train and test split are both {test_split!r}: tuning on the test split would "
            "overstate the result; pass --holdout 0.5 to split its queries in two instead"
        )
    if holdout is not None:
        qrels = read_qrels(dataset, test_split)
        train_ids, test_ids = holdout_split(sorted(qrels), holdout)
        label = f"{test_split}[holdout {holdout:g}: sha256(query id) < {holdout:g}]"
        return {q: qrels[q] for q in train_ids}, {q: qrels[q] for q in test_ids}, label
    if qrels_path(dataset, train_split) is None:
        raise ConfigError(
            f"{dataset} has no qrels for the train split {train_split!r} (splits with qrels: "
            f"{available_splits(dataset) or 'none'}); pass --holdout 0.5 to tune on a fixed "
            f"half of the {test_split!r} queries and report on the other half"
        )
    return read_qrels(dataset, train_split), read_qrels(dataset, test_split), train_split


def _weight_grids(steps: Sequence[float]) -> list[dict[str, float]]:
    grids = []
    for combo in itertools.product(steps, repeat=len(CHANNELS)):
        if sum(1 for w in combo if w > 0) < 2:
            continue  # single channels are evaluated by `tribrid eval`; fusion needs two
        grids.append(dict(zip(CHANNELS, combo, strict=True)))
    return grids


class _Scorer:
    """Scores settings on cached candidates, memoised by their JSON form."""

    def __init__(
        self, candidates: Candidates, qrels: Qrels, point_doc: Mapping[str, str], objective: str
    ) -> None:
        self._candidates = candidates
        self._qrels = qrels
        self._point_doc = point_doc
        self._objective = objective
        self.seen: dict[str, Trial] = {}

    def __call__(self, settings: RetrieverSettings) -> float:
        key = settings.model_dump_json()
        if key not in self.seen:
            from tribrid.evaluation.candidates import fused_documents

            # Only as many documents as the objective looks at: fewer to aggregate.
            limit = int(self._objective.rpartition("@")[2] or RANKED_DOCUMENTS)
            run = {
                q: fused_documents(self._candidates, q, settings, self._point_doc, limit=limit)[0]
                for q in self._qrels
            }
            value = evaluate_run(self._qrels, run, [self._objective])[self._objective]
            self.seen[key] = Trial(settings.model_dump(mode="json"), value)
        return self.seen[key].score

    def best(self, n: int = 1, *, plain: bool = False) -> list[RetrieverSettings]:
        """The ``n`` best settings; ``plain``: only those without weighting or feedback
        (the ones whose variants can be scored from the cached lists)."""
        ranked = sorted(self.seen.values(), key=lambda t: -t.score)
        if plain:
            ranked = [
                t
                for t in ranked
                if t.settings.get("feedback") is None
                and t.settings.get("weighting", "fixed") == "fixed"
            ]
        return [RetrieverSettings.model_validate(t.settings) for t in ranked[:n]]


def search_fusion(
    candidates: Candidates,
    qrels: Qrels,
    point_doc: Mapping[str, str],
    *,
    objective: str = "ndcg@10",
    progress: PhaseProgress | None = None,
) -> tuple[RetrieverSettings, int]:
    """The best fusion setting on ``qrels`` (train only) and the number of settings tried."""
    bar = progress or _NoProgress()
    score = _Scorer(candidates, qrels, point_doc, objective)
    methods = [
        {"fusion": FusionMethod.RRF, "rrf_k": 60},
        {"fusion": FusionMethod.DBSF},
        {"fusion": FusionMethod.CONVEX, "normalization": Normalization.MINMAX},
        {"fusion": FusionMethod.CONVEX, "normalization": Normalization.ZSCORE},
    ]
    coarse = _weight_grids(COARSE_WEIGHTS)
    bar.phase("tuning: fusion × weights", len(methods) * len(coarse))
    score(DEFAULT)
    for method, weights in itertools.product(methods, coarse):
        score(RetrieverSettings(channels=weights, prefetch_k=100, **method, **_PLAIN))  # type: ignore[arg-type]
        bar.advance(1)
    leaders = score.best(3, plain=True)
    bar.phase("tuning: rrf k × prefetch", len(leaders) * len(RRF_KS) * len(PREFETCH))
    for leader in leaders:
        for rrf_k, prefetch in itertools.product(RRF_KS, PREFETCH):
            if leader.fusion is not FusionMethod.RRF and rrf_k != RRF_KS[0]:
                bar.advance(1)
                continue  # rrf_k means nothing to the other methods
            score(leader.model_copy(update={"rrf_k": rrf_k, "prefetch_k": prefetch}))
            bar.advance(1)
    (best,) = score.best(1, plain=True)
    fine = sorted({round(x * 0.25, 2) for x in range(0, 13)})  # 0 … 3 in steps of 0.25
    neighbours = []
    for channel in CHANNELS:
        for value in fine:
            if abs(value - best.channels.get(channel, 0.0)) <= 0.5:
                weights = {**best.channels, channel: value}
                if sum(1 for w in weights.values() if w > 0) >= 1:
                    neighbours.append(best.model_copy(update={"channels": weights}))
    bar.phase("tuning: finer weights", len(neighbours))
    for candidate in neighbours:
        score(candidate)
        bar.advance(1)
    (best,) = score.best(1)
    return best, len(score.seen)


def tune(
    dataset: str | os.PathLike[str],
    settings: Settings,
    *,
    train_split: str = "train",
    test_split: str = "test",
    holdout: float | None = None,
    output: str | os.PathLike[str] | None = None,
    objective: str = "ndcg@10",
    depth: int = 300,
    target_recall: float = 0.98,
    oversampling: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
    max_queries: int | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    encoders: EncoderSet | None = None,
    progress: PhaseProgress | None = None,
) -> tuple[TuneReport, RetrieverConfig]:
    """Tune fusion on the train split, score it on the test split, save the configuration.

    Args:
        dataset: The BEIR dataset folder.
        settings: Data dir, models and chunking of the index.
        train_split: Qrels split searched.
        test_split: Qrels split reported (never searched).
        holdout: Instead of a train split, tune on this fraction of the test split's
            queries (chosen by hash of their id) and report on the rest; for datasets
            with one split only, such as LIMIT.
        output: Where to write the configuration (default ``<data dir>/tuned.json``).
        objective: Metric maximised on train.
        depth: Chunks fetched per channel and query (the largest prefetch tried).
        target_recall: Binary recall@10 the chosen oversampling must reach.
        oversampling: Oversampling factors calibrated.
        max_queries: Use only the first N judged queries of each split (quick runs).
        metrics: Metrics reported for train and test.
        encoders: Encoders to use (default: built from ``settings``).
        progress: Receives progress of the long phases.

    Returns:
        The report and the configuration written.
    """
    started = time.monotonic()
    bar = progress or _NoProgress()
    train_qrels, test_qrels, train_label = _splits(dataset, train_split, test_split, holdout)
    texts = read_queries(dataset)
    train_queries, train_qrels = judged_queries(texts, train_qrels, source=f"{dataset} train")
    test_queries, test_qrels = judged_queries(texts, test_qrels, source=f"{dataset} test")
    if max_queries is not None:
        train_queries = dict(list(train_queries.items())[:max_queries])
        test_queries = dict(list(test_queries.items())[:max_queries])
        train_qrels = {q: train_qrels[q] for q in train_queries}
        test_qrels = {q: test_qrels[q] for q in test_queries}
    bar.phase("indexing corpus", None)
    encoders = encoders or build_encoders(settings)
    _index(dataset, settings, bar, encoders)
    channels = [Channel.DENSE, Channel.SPLADE, Channel.BM25]
    ledger = build_ledger(settings)
    try:
        point_doc = point_documents(ledger, BeirCorpusConnector(dataset).source_key)
    finally:
        ledger.close()
    store = build_store(settings, encoders)
    try:
        searched: dict[str, Candidates] = {}
        for name, split_queries in (("train", train_queries), ("test", test_queries)):
            bar.phase(f"searching {len(split_queries)} {name} queries", len(split_queries))
            searched[name] = collect_candidates(
                store,
                encoders,
                split_queries,
                channels,
                depth=max(depth, max(PREFETCH)),
                advance=bar.advance,
            )
        train, test = searched["train"], searched["test"]
        ids, vectors, _ = _read_vectors(store)
        schema = store.schema
        if DEFAULT.feedback is not None:
            # The baseline's feedback round, searched as the retriever would.
            dense_of = {point_id: vectors[row] for row, point_id in enumerate(ids)}
            for name, split_candidates in (("train", train), ("test", test)):
                bar.phase(f"feedback round ({name})", len(split_candidates.encoded))
                collect_feedback(
                    store,
                    encoders,
                    split_candidates,
                    DEFAULT,
                    point_doc,
                    dense_of,
                    advance=bar.advance,
                )
    finally:
        store.close()
    best, trials = search_fusion(train, train_qrels, point_doc, objective=objective, progress=bar)

    binary: dict[str, Any] = {"target_recall": target_recall}
    if len(ids):
        bar.phase("binary calibration (train queries)", 1)
        encoding = (schema.binary_encoding, schema.query_encoding)
        with tempfile.TemporaryDirectory(prefix="calibration-", dir=settings.data_dir) as work:
            rows = calibrate_binary(
                ids,
                vectors,
                train.dense_queries,
                Path(work),
                schema=schema,
                encodings=[encoding],
                oversampling=oversampling,
                advance=bar.advance,
            )
        chosen = smallest_oversampling(rows, encoding[0].value, encoding[1].value, target_recall)
        binary.update(
            encoding=encoding[0].value,
            query_encoding=encoding[1].value,
            recall_by_oversampling={f"{r.oversampling:g}": round(r.recall, 4) for r in rows},
            oversampling=chosen.oversampling if chosen else None,
            reached=chosen is not None,
        )
        factor = chosen.oversampling if chosen else max(oversampling)
        best = best.model_copy(update={"oversampling": factor})

    def measure(
        candidates: Candidates, qrels: Qrels, chosen: RetrieverSettings
    ) -> dict[str, float]:
        result = score_mode("x", chosen, candidates, qrels, point_doc, metrics=metrics)
        return {k: round(v, 4) for k, v in result.metrics.items()}

    report = TuneReport(
        dataset=str(Path(dataset).resolve()),
        train_split=train_label,
        test_split=test_split + ("[holdout rest]" if holdout is not None else ""),
        objective=objective,
        train_queries=len(train_qrels),
        test_queries=len(test_qrels),
        best=best.model_dump(mode="json"),
        train=measure(train, train_qrels, best),
        test=measure(test, test_qrels, best),
        default_train=measure(train, train_qrels, DEFAULT),
        default_test=measure(test, test_qrels, DEFAULT),
        trials=trials,
        binary=binary,
        machine=machine_info(),
    )
    config = RetrieverConfig(
        retriever=best,
        notes={
            "tuned_by": "tribrid tune",
            "dataset": report.dataset,
            "train_split": report.train_split,
            "test_split": report.test_split,
            "objective": objective,
            "train": report.train,
            "test": report.test,
            "binary": binary,
            "documents_ranked": RANKED_DOCUMENTS,
        },
    )
    target = Path(output) if output is not None else settings.data_dir / "tuned.json"
    report.config_path = str(config.save(target))
    report.duration_s = round(time.monotonic() - started, 1)
    return report, config


__all__ = ["TuneReport", "holdout_split", "search_fusion", "tune"]

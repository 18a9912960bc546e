"""Ranking metrics, computed by ``pytrec_eval`` (the trec_eval C code), not by hand.

Runs are given as ranked lists; the scores handed to trec_eval are derived from the
rank (``n - rank``), because trec_eval re-sorts by score and breaks ties by document id,
which would silently reorder documents tied under fusion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tribrid.errors import missing_extra

Run = Mapping[str, Sequence[str]]
"""``{query id: [document id, ...]}``, best first."""

#: Metric name → (trec_eval measure, cut-off applied to the run before evaluation).
METRICS: dict[str, tuple[str, int | None]] = {
    "ndcg@10": ("ndcg_cut_10", None),
    "recall@2": ("recall_2", None),
    "recall@10": ("recall_10", None),
    "recall@100": ("recall_100", None),
    # trec_eval's recip_rank has no cut-off: the run is cut to 10 first to get MRR@10.
    "mrr@10": ("recip_rank", 10),
}
DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def _evaluator_measures(names: Sequence[str]) -> set[str]:
    measures = set()
    for name in names:
        measure, _ = METRICS[name]
        family, _, cut = measure.rpartition("_")
        if measure == "recip_rank":
            measures.add("recip_rank")
        else:
            measures.add(f"{family}.{cut}")
    return measures


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Run,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over every judged query (a query without results scores 0).

    Args:
        qrels: ``{query id: {document id: relevance}}``; relevance > 0 is relevant.
        run: Ranked document ids per query, best first.
        metrics: Names from :data:`METRICS`.

    Returns:
        ``{metric name: mean}``.

    Raises:
        ValueError: An unknown metric name.
        MissingDependencyError: ``pytrec_eval`` is not installed.
    """
    per_query = evaluate_per_query(qrels, run, metrics)
    count = max(len(per_query), 1)
    return {m: sum(scores[m] for scores in per_query.values()) / count for m in metrics}


def evaluate_per_query(
    qrels: Mapping[str, Mapping[str, int]],
    run: Run,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Each metric for each judged query: ``{query id: {metric name: value}}``.

    Raises:
        ValueError: An unknown metric name.
        MissingDependencyError: ``pytrec_eval`` is not installed.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid metrics: {list(METRICS)}")
    try:
        import pytrec_eval
    except ImportError as e:
        raise missing_extra("evaluation", "eval", "pytrec_eval") from e
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    out: dict[str, dict[str, float]] = {q: dict.fromkeys(metrics, 0.0) for q in judged}
    by_cut: dict[int | None, list[str]] = {}
    for name in metrics:
        by_cut.setdefault(METRICS[name][1], []).append(name)
    for cut, names in by_cut.items():
        trec_run: dict[str, dict[str, float]] = {}
        for query_id in judged:
            docs = list(dict.fromkeys(run.get(query_id, ())))
            if cut is not None:
                docs = docs[:cut]
            if docs:
                trec_run[query_id] = {d: float(len(docs) - i) for i, d in enumerate(docs)}
        if not trec_run:
            continue
        evaluator = pytrec_eval.RelevanceEvaluator(judged, _evaluator_measures(names))
        for query_id, values in evaluator.evaluate(trec_run).items():
            for name in names:
                out[query_id][name] = float(values[METRICS[name][0]])
    return out

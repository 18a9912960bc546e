"""Metric values checked by hand on a tiny fixture (computed by pytrec_eval)."""

from __future__ import annotations

import math

import pytest

from tribrid.evaluation.metrics import evaluate_per_query, evaluate_run


def test_values_match_hand_computation() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"x": 1}}
    # q1 finds a at rank 1 and b at rank 3; q2 finds x at rank 2.
    run = {"q1": ["a", "c", "b"], "q2": ["y", "x"]}
    scores = evaluate_per_query(qrels, run)
    # nDCG@10 of q1: DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3).
    assert scores["q1"]["ndcg@10"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # q2: DCG = 1/log2(3); ideal = 1.
    assert scores["q2"]["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert scores["q2"]["mrr@10"] == pytest.approx(0.5)
    means = evaluate_run(qrels, run)
    assert means["recall@10"] == pytest.approx(1.0)
    assert means["mrr@10"] == pytest.approx((1.0 + 0.5) / 2)


def test_rank_order_is_kept_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"b": 1}, "q2": {"x": 1}}
    # Our order, not trec_eval's score-then-id tie-breaking, decides: b is at rank 2.
    run = {"q1": ["z", "b"]}
    means = evaluate_run(qrels, run, ["mrr@10", "recall@2"])
    assert means == {"mrr@10": pytest.approx(0.25), "recall@2": pytest.approx(0.5)}


def test_mrr_is_cut_at_ten() -> None:
    qrels = {"q": {"hit": 1}}
    run = {"q": [f"miss{i}" for i in range(10)] + ["hit"]}
    assert evaluate_run(qrels, run, ["mrr@10"])["mrr@10"] == 0.0


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid metrics"):
        evaluate_run({"q": {"a": 1}}, {}, ["map"])

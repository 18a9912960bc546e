"""Fusion math against hand-computed values; no models, no store."""

from __future__ import annotations

import math
import random

import pytest
from qdrant_client.http import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion

from tribrid.retrievers.fusion import Normalization, convex, dbsf, fuse, rrf


def approx(pairs: list[tuple[str, float]]) -> list[tuple[str, object]]:
    return [(i, pytest.approx(s, abs=1e-12)) for i, s in pairs]


# -- RRF ---------------------------------------------------------------------------------


def test_rrf_k60_matches_the_formula() -> None:
    ranked = {
        "dense": [("a", 0.9), ("b", 0.8), ("c", 0.1)],
        "bm25": [("c", 12.0), ("a", 3.0)],
    }
    fused = rrf(ranked, k=60)
    assert fused == approx([("a", 1 / 61 + 1 / 62), ("c", 1 / 63 + 1 / 61), ("b", 1 / 62)])


def test_rrf_ignores_scores_and_uses_weights_as_factors() -> None:
    ranked = {"dense": [("a", 100.0), ("b", -5.0)], "splade": [("b", 0.0)]}
    fused = rrf(ranked, k=1, weights={"dense": 2.0, "splade": 0.5})
    # a: 2/(1+1) = 1; b: 2/(1+2) + 0.5/(1+1) = 0.9166...
    assert fused == approx([("a", 1.0), ("b", 2 / 3 + 0.25)])


def test_rrf_ties_break_by_first_appearance() -> None:
    # a and b are symmetric: each first in one channel and absent from the other.
    ranked = {"bm25": [("b", 1.0)], "dense": [("a", 1.0)]}
    assert [i for i, _ in rrf(ranked)] == ["b", "a"]
    ranked = {"dense": [("a", 1.0)], "bm25": [("b", 1.0)]}
    assert [i for i, _ in rrf(ranked)] == ["a", "b"]


def test_rrf_empty_channel_contributes_nothing() -> None:
    ranked = {"dense": [("a", 0.5), ("b", 0.4)], "bm25": []}
    assert rrf(ranked, k=60) == approx([("a", 1 / 61), ("b", 1 / 62)])
    assert rrf({"dense": [], "bm25": []}) == []


def test_rrf_zero_weight_ignores_the_channel() -> None:
    ranked = {"dense": [("a", 0.5)], "bm25": [("z", 9.0), ("a", 1.0)]}
    assert rrf(ranked, k=60, weights={"bm25": 0.0}) == approx([("a", 1 / 61)])


def test_rrf_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="k must be"):
        rrf({"dense": []}, k=-1)
    with pytest.raises(ValueError, match="weight -1"):
        rrf({"dense": []}, weights={"dense": -1})
    with pytest.raises(ValueError, match="weight nan"):
        rrf({"dense": []}, weights={"dense": math.nan})


# -- DBSF --------------------------------------------------------------------------------


def test_dbsf_matches_qdrant_definition() -> None:
    # dense 0.9, 0.6, 0.3: mean 0.6, sample std 0.3, range [-0.3, 1.5] of width 1.8.
    # bm25 10, 2: mean 6, sample std sqrt(32), range [6 - 3√32, 6 + 3√32].
    ranked = {"dense": [("a", 0.9), ("b", 0.6), ("c", 0.3)], "bm25": [("b", 10.0), ("d", 2.0)]}
    s = math.sqrt(32)
    bm25_b = (10 - (6 - 3 * s)) / (6 * s)
    bm25_d = (2 - (6 - 3 * s)) / (6 * s)
    expected = {"a": 1.2 / 1.8, "b": 0.9 / 1.8 + bm25_b, "c": 0.6 / 1.8, "d": bm25_d}
    fused = dict(dbsf(ranked))
    assert fused == pytest.approx(expected)
    assert [i for i, _ in dbsf(ranked)] == ["b", "a", "d", "c"]


def test_dbsf_degenerate_channels_give_one_half() -> None:
    ranked = {"dense": [("a", 0.7)], "splade": [("b", 3.0), ("c", 3.0)]}
    assert dbsf(ranked) == approx([("a", 0.5), ("b", 0.5), ("c", 0.5)])


def test_dbsf_is_not_clipped_like_qdrant() -> None:
    # One outlier among eleven equal scores lies beyond 3 sample standard deviations.
    hits = [("top", 11.0)] + [(f"p{i}", 0.0) for i in range(11)]
    fused = dict(dbsf({"dense": hits}))
    assert fused["top"] > 1.0


def test_dbsf_weights_zero_and_empty() -> None:
    ranked = {"dense": [("a", 1.0), ("b", 0.0)], "bm25": [("b", 5.0)], "splade": []}
    fused = dbsf(ranked, weights={"bm25": 0.0, "dense": 2.0})
    # dense: mean 0.5, sample std √0.5; a = (1 - 0.5 + 3√0.5) / (6√0.5)
    sd = math.sqrt(0.5)
    a = (1 - (0.5 - 3 * sd)) / (6 * sd)
    assert fused == approx([("a", 2 * a), ("b", 2 * (1 - a))])


# -- convex ------------------------------------------------------------------------------


def test_convex_minmax_weighted() -> None:
    ranked = {"dense": [("a", 0.8), ("b", 0.6), ("c", 0.4)], "bm25": [("c", 9.0), ("d", 3.0)]}
    fused = convex(ranked, weights={"dense": 3.0, "bm25": 1.0})
    # weights become 0.75 / 0.25; dense a=1, b=0.5, c=0; bm25 c=1, d=0.
    assert fused == approx([("a", 0.75), ("b", 0.375), ("c", 0.25), ("d", 0.0)])


def test_convex_minmax_single_item_is_one() -> None:
    fused = convex({"dense": [("a", 0.2)], "bm25": [("b", 5.0), ("a", 1.0)]})
    # dense a=1 (degenerate); bm25 b=1, a=0; equal weights 0.5 each
    assert fused == approx([("a", 0.5), ("b", 0.5)])


def test_convex_zscore_missing_gets_the_channel_floor() -> None:
    ranked = {"dense": [("a", 3.0), ("b", 1.0)], "bm25": [("c", 4.0), ("a", 2.0), ("d", 0.0)]}
    fused = dict(convex(ranked, normalization="zscore"))
    # dense: mean 2, std 1 -> a=1, b=-1 (floor -1)
    # bm25: mean 2, std sqrt(8/3) -> c=2/σ, a=0, d=-2/σ (floor -2/σ)
    sigma = math.sqrt(8 / 3)
    expected = {
        "a": 0.5 * 1 + 0.5 * 0,
        "b": 0.5 * -1 + 0.5 * (-2 / sigma),
        "c": 0.5 * -1 + 0.5 * (2 / sigma),
        "d": 0.5 * -1 + 0.5 * (-2 / sigma),
    }
    assert fused == pytest.approx(expected)


def test_convex_zscore_degenerate_is_zero() -> None:
    assert convex({"dense": [("a", 4.0)]}, normalization=Normalization.ZSCORE) == [("a", 0.0)]


def test_convex_zero_weights_and_empty_channels() -> None:
    ranked = {"dense": [("a", 1.0), ("b", 0.0)], "bm25": [("z", 1.0)], "splade": []}
    assert convex(ranked, weights={"bm25": 0}) == approx([("a", 1.0), ("b", 0.0)])
    assert convex(ranked, weights={"dense": 0, "bm25": 0}) == []
    assert convex({"dense": []}) == []


def test_convex_ties_keep_first_appearance() -> None:
    ranked = {"dense": [("x", 1.0), ("y", 1.0)]}
    assert [i for i, _ in convex(ranked)] == ["x", "y"]


def test_fuse_dispatches_and_names_valid_methods() -> None:
    ranked = {"dense": [("a", 1.0), ("b", 0.5)]}
    assert fuse("rrf", ranked, rrf_k=0) == approx([("a", 1.0), ("b", 0.5)])
    assert fuse("convex", ranked) == approx([("a", 1.0), ("b", 0.0)])
    assert [i for i, _ in fuse("dbsf", ranked)] == ["a", "b"]
    with pytest.raises(ValueError, match=r"valid names: \['rrf', 'dbsf', 'convex'\]"):
        fuse("sum", ranked)
    with pytest.raises(ValueError, match="valid names"):
        convex(ranked, normalization="l2")


# -- congruence with qdrant-client's own (local-mode) fusion ------------------------------


def _random_channels(seed: int) -> dict[str, list[tuple[str, float]]]:
    rng = random.Random(seed)
    channels = {}
    for name in ("dense", "splade", "bm25"):
        ids = rng.sample([f"p{i}" for i in range(40)], rng.randint(0, 25))
        scores = sorted((rng.uniform(-1, 20) for _ in ids), reverse=True)
        channels[name] = list(zip(ids, scores, strict=True))
    return channels


def _responses(ranked: dict[str, list[tuple[str, float]]]) -> list[list[models.ScoredPoint]]:
    return [
        [models.ScoredPoint(id=i, version=0, score=s) for i, s in hits] for hits in ranked.values()
    ]


@pytest.mark.parametrize("seed", range(5))
def test_dbsf_equals_qdrant_local_dbsf(seed: int) -> None:
    ranked = _random_channels(seed)
    theirs = distribution_based_score_fusion(_responses(ranked), limit=100)
    assert dict(dbsf(ranked)) == pytest.approx({str(p.id): p.score for p in theirs})


@pytest.mark.parametrize("seed", range(5))
def test_unweighted_rrf_is_qdrant_rrf_with_k_plus_one(seed: int) -> None:
    ranked = _random_channels(seed)
    theirs = reciprocal_rank_fusion(_responses(ranked), limit=100, ranking_constant_k=61)
    assert dict(rrf(ranked, k=60)) == pytest.approx({str(p.id): p.score for p in theirs})

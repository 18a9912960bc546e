"""Fusion of per-channel rankings into one: RRF, DBSF and convex combination.

Pure functions over ``{channel: [(id, score), ...]}``, each list best first (the order a
store returns). They need no models and no store, so the hybrid retriever can fuse on
the client exactly as documented here, whatever the backend.

Conventions shared by every method:

* **Rank** is the 1-based position in a channel's list; scores tied within a channel
  keep the store's order.
* **Weights** map a channel to a factor (missing channels weigh 1). A channel of weight
  0 is ignored entirely: its ids appear only if another channel returns them. Negative
  or non-finite weights are refused.
* **A channel that returns nothing** contributes nothing.
* **Ties** in the fused score are broken by first appearance: the order the channels
  are given in, then rank within a channel. The result is deterministic and favours the
  channel listed first.

Example:
    >>> fused = rrf({"dense": [("a", 0.9), ("b", 0.8)], "bm25": [("b", 7.0)]}, k=60)
    >>> [(i, round(s, 6)) for i, s in fused]  # b: 1/62 + 1/61, a: 1/61
    [('b', 0.032522), ('a', 0.016393)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from tribrid.store.base import Fusion

Ranked = Sequence[tuple[str, float]]
"""One channel's hits, best first: ``(id, score)`` pairs."""

Fused = list[tuple[str, float]]
"""Fused hits, best first."""


class FusionMethod(StrEnum):
    """How the hybrid retriever combines its channels."""

    RRF = "rrf"
    DBSF = "dbsf"
    CONVEX = "convex"


def store_fusion(method: FusionMethod) -> Fusion:
    """The store's own fusion that does what ``method`` does: the one mapping between them.

    Raises:
        ValueError: The store cannot run ``method`` (Qdrant has no convex fusion).
    """
    if method is FusionMethod.RRF:
        return Fusion.RRF
    if method is FusionMethod.DBSF:
        return Fusion.DBSF
    raise ValueError(
        f"the store cannot fuse with {method.value!r}: it runs 'rrf' and 'dbsf' only; "
        "leave store_fusion off for client-side fusion"
    )


class Normalization(StrEnum):
    """How :func:`convex` puts each channel's scores on a common scale."""

    MINMAX = "minmax"
    ZSCORE = "zscore"


def rrf(
    ranked: Mapping[str, Ranked], *, k: float = 60, weights: Mapping[str, float] | None = None
) -> Fused:
    """Weighted reciprocal rank fusion: ``score(d) = Σ_c w_c / (k + rank_c(d))``.

    Scores are ignored; only ranks count, so the fused score has no absolute meaning.
    This is the textbook formula (Cormack et al. 2009, with weights as factors). Qdrant's
    own RRF differs slightly: it gives ``1 / ((rank)/w + k - 1)``, i.e. its ``k`` is ours
    minus one and its weights divide the rank only.

    Args:
        ranked: Each channel's hits, best first.
        k: The RRF constant (>= 0); larger values flatten the rank differences.
        weights: Factor of each channel's contribution.

    Raises:
        ValueError: ``k`` is negative, or a weight is negative or not finite.
    """
    if not math.isfinite(k) or k < 0:
        raise ValueError(f"rrf k must be a finite number >= 0, got {k}")
    w = _weights(ranked, weights)
    scores: dict[str, float] = {}
    for channel, hits in ranked.items():
        if w[channel] == 0:
            continue
        seen: set[str] = set()
        for rank, (point_id, _) in enumerate(hits, start=1):
            if point_id in seen:  # a repeated id keeps its best rank
                continue
            seen.add(point_id)
            scores[point_id] = scores.get(point_id, 0.0) + w[channel] / (k + rank)
    return _sorted(scores)


def dbsf(ranked: Mapping[str, Ranked], *, weights: Mapping[str, float] | None = None) -> Fused:
    """Distribution-based score fusion, as Qdrant defines it, then a weighted sum.

    Each channel's scores are mapped linearly from ``[mean - 3σ, mean + 3σ]`` to
    ``[0, 1]``, with the *sample* standard deviation, and summed across channels. Like
    Qdrant, the result is **not clipped**: a score beyond 3σ (possible from about 11
    hits on) maps slightly outside ``[0, 1]``. A channel with one hit, or with all
    scores equal, gives each of its hits 0.5. With all weights 1 this equals Qdrant's
    server-side DBSF (which takes no weights).

    Args:
        ranked: Each channel's hits, best first.
        weights: Factor applied to each channel's normalised scores.

    Raises:
        ValueError: A weight is negative or not finite.
    """
    return _score_sum(ranked, _dbsf_normalise, weights, missing_is_floor=False)


def convex(
    ranked: Mapping[str, Ranked],
    *,
    weights: Mapping[str, float] | None = None,
    normalization: Normalization | str = Normalization.MINMAX,
) -> Fused:
    """Convex combination of normalised scores: ``Σ_c (w_c / Σw) · norm_c(score)``.

    The weights are divided by their sum, so with min-max normalisation every fused
    score lies in ``[0, 1]`` and a threshold on it keeps one meaning across queries.

    * ``minmax``: ``(s - min) / (max - min)`` per channel; a channel with one hit, or
      with all scores equal, gives its hits 1.0 (each is as good as that channel gets).
      An id missing from a channel gets 0 there.
    * ``zscore``: ``(s - mean) / σ`` with the population σ; a channel with one hit, or
      all scores equal, gives its hits 0. An id missing from a channel gets that
      channel's lowest z-score, so absence never beats a retrieved hit.

    Args:
        ranked: Each channel's hits, best first.
        weights: Relative weight of each channel.
        normalization: ``minmax`` or ``zscore``.

    Raises:
        ValueError: Unknown normalisation, or a weight is negative or not finite.
    """
    try:
        norm = Normalization(normalization)
    except ValueError as e:
        raise ValueError(
            f"unknown normalization {normalization!r}; valid names: {[n.value for n in Normalization]}"
        ) from e
    w = _weights(ranked, weights)
    total = sum(w[c] for c, hits in ranked.items() if hits)
    if total == 0:
        return []
    scaled = {c: v / total for c, v in w.items()}
    if norm is Normalization.MINMAX:
        return _score_sum(ranked, _minmax, scaled, missing_is_floor=False)
    return _score_sum(ranked, _zscore, scaled, missing_is_floor=True)


class Weighting(StrEnum):
    """How channel weights are set for each query.

    * ``fixed``: the configured weights, the same for every query.
    * ``spread``: each configured weight times how far the channel's best hit stands
      above its other candidates for this query (its z-score, relative to what is
      usual for that channel), rescaled so the weights keep their sum. A channel whose
      scores are flat for a query (nothing stands out) counts less than one with a
      clear winner.
    """

    FIXED = "fixed"
    SPREAD = "spread"


def query_weights(
    ranked: Mapping[str, Ranked],
    weights: Mapping[str, float] | None = None,
    weighting: Weighting | str = Weighting.FIXED,
    *,
    reference: Mapping[str, float] | None = None,
    power: float = 1.0,
) -> dict[str, float]:
    """The channel weights for one query's rankings under ``weighting``.

    With ``spread``, channel ``c`` gets ``w_c · (z_c / ref_c) ** power`` with
    ``z_c = (s_max - mean) / σ`` over its candidates' scores (population σ) and
    ``ref_c`` the channel's usual ``z`` (``reference``, default 1): dense similarities
    are compact and sparse scores long-tailed, so each channel's spread is judged
    against its own. A list of fewer than 3 hits, or with all scores equal, gets the
    other channels' mean factor. The weights are then rescaled to keep ``Σ w``;
    channels of weight 0 stay 0.

    Raises:
        ValueError: Unknown weighting, or a weight is negative or not finite.
    """
    try:
        chosen = Weighting(weighting)
    except ValueError as e:
        raise ValueError(
            f"unknown weighting {weighting!r}; valid names: {[m.value for m in Weighting]}"
        ) from e
    w = _weights(ranked, weights)
    if chosen is Weighting.FIXED:
        return w
    refs = reference or {}
    factors: dict[str, float | None] = {}
    for channel, hits in ranked.items():
        scores = [float(s) for _, s in hits]
        if w[channel] == 0 or len(scores) < 3:
            factors[channel] = None
            continue
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
        if std <= 0:
            factors[channel] = None
            continue
        z = (max(scores) - mean) / std / refs.get(channel, 1.0)
        factors[channel] = z**power
    known = [f for f in factors.values() if f is not None]
    if not known:
        return w
    fallback = sum(known) / len(known)
    raw = {c: w[c] * (f if f is not None else fallback) for c, f in factors.items()}
    total, scaled = sum(w.values()), sum(raw.values())
    if scaled <= 0:
        return w
    return {c: v * total / scaled for c, v in raw.items()}


def fuse(
    method: FusionMethod | str,
    ranked: Mapping[str, Ranked],
    *,
    weights: Mapping[str, float] | None = None,
    rrf_k: float = 60,
    normalization: Normalization | str = Normalization.MINMAX,
) -> Fused:
    """Fuse with the method named by ``method``: ``rrf``, ``dbsf`` or ``convex``.

    Raises:
        ValueError: ``method`` is not a known fusion.
    """
    try:
        chosen = FusionMethod(method)
    except ValueError as e:
        raise ValueError(
            f"unknown fusion {method!r}; valid names: {[m.value for m in FusionMethod]}"
        ) from e
    if chosen is FusionMethod.RRF:
        return rrf(ranked, k=rrf_k, weights=weights)
    if chosen is FusionMethod.DBSF:
        return dbsf(ranked, weights=weights)
    return convex(ranked, weights=weights, normalization=normalization)


# -- helpers ---------------------------------------------------------------------------


def _weights(ranked: Mapping[str, Ranked], weights: Mapping[str, float] | None) -> dict[str, float]:
    given = dict(weights or {})
    out = {}
    for channel in ranked:
        value = float(given.get(channel, 1.0))
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"channel {channel!r} has weight {value}; weights must be >= 0")
        out[channel] = value
    return out


def _sorted(scores: Mapping[str, float]) -> Fused:
    # dicts keep insertion order, i.e. first appearance; sorted() is stable.
    return sorted(scores.items(), key=lambda item: -item[1])


def _score_sum(
    ranked: Mapping[str, Ranked],
    normalise: Callable[[list[float]], list[float]],
    weights: Mapping[str, float] | None,
    *,
    missing_is_floor: bool,
) -> Fused:
    w = _weights(ranked, weights)
    normalised: dict[str, dict[str, float]] = {}
    order: dict[str, None] = {}
    for channel, hits in ranked.items():
        if w[channel] == 0 or not hits:
            continue
        values = normalise([float(s) for _, s in hits])
        by_id: dict[str, float] = {}
        for (point_id, _), value in zip(hits, values, strict=True):
            by_id.setdefault(point_id, value)  # a repeated id keeps its best rank
            order.setdefault(point_id, None)
        normalised[channel] = by_id
    floors = {
        c: min(by_id.values()) if missing_is_floor else 0.0 for c, by_id in normalised.items()
    }
    scores: dict[str, float] = {}
    for point_id in order:
        total = 0.0
        for channel, by_id in normalised.items():
            total += w[channel] * by_id.get(point_id, floors[channel])
        scores[point_id] = total
    return _sorted(scores)


def _dbsf_normalise(scores: list[float]) -> list[float]:
    n = len(scores)
    if n < 2:
        return [0.5] * n
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    low, high = mean - 3 * std, mean + 3 * std
    if high == low:
        return [0.5] * n
    return [(s - low) / (high - low) for s in scores]


def _minmax(scores: list[float]) -> list[float]:
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _zscore(scores: list[float]) -> list[float]:
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
    if std == 0:
        return [0.0] * n
    return [(s - mean) / std for s in scores]

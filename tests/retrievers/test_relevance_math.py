"""The relevance curves, without models."""

from __future__ import annotations

import pytest

from tribrid.retrievers.relevance import (
    DEFAULT_CALIBRATION,
    ChannelCalibration,
    parse_calibration,
    relevance,
)


def test_a_curve_maps_its_midpoint_to_a_half_and_stays_in_bounds() -> None:
    curve = ChannelCalibration(midpoint=4.0, width=1.5)
    assert curve(4.0) == pytest.approx(0.5)
    assert 0.0 <= curve(-1e9) < curve(0.0) < curve(8.0) < curve(1e9) <= 1.0


def test_relevance_is_the_weighted_mean_and_missing_channels_count_as_zero() -> None:
    weights = {"dense": 2.0, "bm25": 1.0, "splade": 0.0}
    got = relevance({"dense": 0.5, "splade": 100.0}, weights)
    dense, bm25 = DEFAULT_CALIBRATION["dense"], DEFAULT_CALIBRATION["bm25"]
    assert got == pytest.approx((2 * dense(0.5) + bm25(0.0)) / 3)


def test_calibration_input_is_checked() -> None:
    parsed = parse_calibration({"dense": (0.5, 0.1), "bm25": {"midpoint": 9, "width": 2}})
    assert parsed["dense"] == ChannelCalibration(0.5, 0.1)
    assert parsed["splade"] == DEFAULT_CALIBRATION["splade"]
    with pytest.raises(ValueError, match="unknown channel 'colbert'"):
        parse_calibration({"colbert": (1, 1)})
    with pytest.raises(ValueError, match="width a finite number above 0"):
        ChannelCalibration(1.0, 0.0)
    with pytest.raises(ValueError, match="at least one channel"):
        relevance({}, {"dense": 0.0})

"""The suite report: reading suite files, the randomization test, the tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from tribrid.errors import ConfigError
from tribrid.evaluation.harness import EvalReport, ModeResult
from tribrid.evaluation.suite import (
    SuiteReport,
    randomization_test,
    read_suite,
    suite_markdown,
    suite_p_values,
)


def test_read_suite_resolves_relative_paths_and_skips_comments(tmp_path: Path) -> None:
    suite = tmp_path / "suite.txt"
    suite.write_text("# the development suite\ndata/adi\n\n/abs/lisa  # absolute\n")
    assert read_suite(suite) == [tmp_path / "data/adi", Path("/abs/lisa")]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="lists no dataset"):
        read_suite(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        read_suite(tmp_path / "missing.txt")


def test_randomization_test_tells_a_consistent_gain_from_noise() -> None:
    better = [0.6] * 40
    worse = [0.5] * 40
    assert randomization_test(better, worse, permutations=2000) < 0.01
    noise_a = [0.5, 0.6] * 20
    noise_b = [0.6, 0.5] * 20
    assert randomization_test(noise_a, noise_b, permutations=2000) == 1.0
    mixed_a = [0.6, 0.4, 0.55, 0.45] * 5
    mixed_b = [0.4, 0.6, 0.45, 0.5] * 5
    assert randomization_test(mixed_a, mixed_b, permutations=2000) > 0.2
    with pytest.raises(ValueError, match="equal lengths"):
        randomization_test([1.0], [1.0, 2.0])


def _mode(name: str, ndcg: list[float]) -> ModeResult:
    per_query = {f"q{i}": v for i, v in enumerate(ndcg)}
    mean = sum(ndcg) / len(ndcg)
    return ModeResult(
        mode=name,
        settings={},
        metrics={"ndcg@10": mean, "recall@10": mean, "recall@100": 1.0},
        median_ms=1.0,
        median_search_ms=0.5,
        ram_mb=0.0,
        per_query=per_query,
    )


def test_suite_tables_show_the_default_against_its_best_channel() -> None:
    report = EvalReport(dataset="/d/tiny", split="test", queries=4, documents=10, chunks=12)
    report.modes = {
        "dense": _mode("dense", [0.2, 0.4, 0.6, 0.8]),
        "bm25": _mode("bm25", [0.3, 0.5, 0.7, 0.9]),
        "default": _mode("default", [0.4, 0.6, 0.8, 1.0]),
    }
    suite = SuiteReport(reports={"tiny": report})
    suite.p_values = suite_p_values(suite.reports)
    assert set(suite.p_values["tiny"]) == {"dense", "bm25"}
    assert suite.best_channel("tiny") == ("bm25", pytest.approx(0.6))
    text = suite_markdown(suite)
    assert "| tiny | bm25 | 0.6000 | 0.7000 | +0.1000 |" in text
    assert "1/1 collections ≥ 0" in text
    assert "| **default** | 0.7000 | 0.7000 |" in text

"""``evaluate_suite``: every mode over several BEIR datasets, in one report.

A default has to hold on collections nobody tuned it on, so ``tribrid eval`` over
several datasets reports, per collection and as means: nDCG@10, Recall@10 and
Recall@100 of every mode, the default's gain over its best single channel, and a paired
randomization test between the default and each other mode (per-query nDCG@10).

A suite file is a list of dataset folders, one per line (``#`` starts a comment;
relative paths are taken from the file's folder)::

    ../shared/data/scifact
    ../shared/data/limit-small   # LIMIT: 46 documents, 1,000 queries
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribrid.errors import ConfigError
from tribrid.evaluation.harness import (
    DEFAULT_MODE,
    SINGLE_CHANNEL_MODES,
    EvalReport,
    machine_info,
)

#: Metrics the suite tables show, in order.
SUITE_METRICS = ("ndcg@10", "recall@10", "recall@100")
#: Random relabellings per randomization test.
PERMUTATIONS = 10_000


def read_suite(path: str | os.PathLike[str]) -> list[Path]:
    """The dataset folders listed in a suite file.

    Raises:
        ConfigError: The file is missing or lists no dataset.
    """
    source = Path(path).expanduser()
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read suite file {source}: {e}") from e
    folders = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            folder = Path(entry).expanduser()
            folders.append(folder if folder.is_absolute() else source.parent / folder)
    if not folders:
        raise ConfigError(f"suite file {source} lists no dataset folder (one per line)")
    return folders


def randomization_test(
    a: Sequence[float], b: Sequence[float], *, permutations: int = PERMUTATIONS, seed: int = 0
) -> float:
    """Two-sided p-value of a paired randomization (permutation) test of mean(a - b).

    Each permutation flips the sign of every per-query difference with probability
    1/2 (swapping the two systems' scores on that query); the p-value is the share of
    permutations whose mean difference is at least as far from 0 as the observed one
    (with the +1 correction, so it is never 0).
    """
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    observed = abs(float(diffs.sum()))
    if not len(diffs) or observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, 1000):  # blocks keep the sign matrix small
        count = min(1000, permutations - start)
        signs = rng.integers(0, 2, size=(count, len(diffs))) * 2 - 1
        hits += int((np.abs(signs @ diffs) >= observed - 1e-12).sum())
    return (hits + 1) / (permutations + 1)


@dataclass
class SuiteReport:
    """The reports of several datasets and what the suite tables are made of.

    Attributes:
        reports: One :class:`~tribrid.evaluation.harness.EvalReport` per dataset, by name.
        default_mode: The mode that is the retriever's default.
        p_values: ``{dataset: {mode: p}}``: the default against each mode, nDCG@10.
        machine: Where it ran.
        command: The command line that made it (informational).
        extra: Further tables (e.g. the user-path measurement), by title: Markdown.
    """

    reports: dict[str, EvalReport] = field(default_factory=dict)
    default_mode: str = DEFAULT_MODE
    p_values: dict[str, dict[str, float]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    def modes(self) -> list[str]:
        """Modes present in every dataset's report, in the first report's order."""
        reports = list(self.reports.values())
        if not reports:
            return []
        return [m for m in reports[0].modes if all(m in r.modes for r in reports[1:])]

    def best_channel(self, name: str, metric: str = "ndcg@10") -> tuple[str, float]:
        """The best single-channel mode of one dataset and its score."""
        report = self.reports[name]
        singles = [
            (m, report.modes[m].metrics[metric]) for m in SINGLE_CHANNEL_MODES if m in report.modes
        ]
        if not singles:
            return "", 0.0
        return max(singles, key=lambda s: s[1])


def suite_p_values(
    reports: Mapping[str, EvalReport], default_mode: str = DEFAULT_MODE
) -> dict[str, dict[str, float]]:
    """Per dataset, the randomization-test p-value of the default against every mode."""
    out: dict[str, dict[str, float]] = {}
    for name, report in reports.items():
        base = report.modes.get(default_mode)
        if base is None or not base.per_query:
            continue
        queries = sorted(base.per_query)
        mine = [base.per_query[q] for q in queries]
        out[name] = {}
        for mode, result in report.modes.items():
            if mode == default_mode or not result.per_query:
                continue
            other = [result.per_query.get(q, 0.0) for q in queries]
            out[name][mode] = randomization_test(mine, other)
    return out


def evaluate_suite(
    datasets: Sequence[str | os.PathLike[str]],
    run: Callable[[Path], EvalReport],
    *,
    default_mode: str = DEFAULT_MODE,
    command: str = "",
) -> SuiteReport:
    """Evaluate each dataset with ``run`` and gather the reports into one.

    Args:
        datasets: Dataset folders; their folder names must differ.
        run: Evaluates one dataset (``tribrid eval`` passes
            :func:`~tribrid.evaluation.harness.evaluate` with a data dir per dataset).
        default_mode: The mode the gains and tests are about.
        command: Recorded in the report.

    Raises:
        ConfigError: Two datasets share a folder name.
    """
    folders = [Path(d) for d in datasets]
    names = [f.resolve().name for f in folders]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(
            f"datasets {duplicated} appear twice in the suite (by folder name); "
            "list each collection once"
        )
    suite = SuiteReport(default_mode=default_mode, machine=machine_info(), command=command)
    for name, folder in zip(names, folders, strict=True):
        suite.reports[name] = run(folder)
    suite.p_values = suite_p_values(suite.reports, default_mode)
    return suite


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def suite_markdown(suite: SuiteReport) -> str:
    """The suite tables as Markdown: per collection, means, gains, tests, latency."""
    modes = suite.modes()
    names = list(suite.reports)
    default = suite.default_mode
    lines: list[str] = []
    lines += [
        "### Collections",
        "",
        "| collection | split | queries | documents | chunks |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in suite.reports.items():
        lines.append(f"| {name} | {r.split} | {r.queries} | {r.documents} | {r.chunks} |")
    for metric in SUITE_METRICS:
        lines += [
            "",
            f"### {metric} (documents ranked by their best chunk)",
            "",
            "| mode | " + " | ".join(names) + " | mean |",
            "|---|" + "---:|" * (len(names) + 1),
        ]
        for mode in modes:
            values = [suite.reports[n].modes[mode].metrics.get(metric, 0.0) for n in names]
            cells = [f"{v:.4f}" for v in values]
            label = f"**{mode}**" if mode == default else mode
            lines.append(
                f"| {label} | " + " | ".join(cells) + f" | {statistics.mean(values):.4f} |"
            )
    if default in modes:
        lines += [
            "",
            f"### `{default}` against its best single channel (nDCG@10)",
            "",
            "| collection | best channel | its nDCG@10 | default | gain | p (randomization) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        gains = []
        for name in names:
            channel, best = suite.best_channel(name)
            mine = suite.reports[name].modes[default].metrics["ndcg@10"]
            gains.append(mine - best)
            p = suite.p_values.get(name, {}).get(channel)
            lines.append(
                f"| {name} | {channel} | {best:.4f} | {mine:.4f} | {mine - best:+.4f} | "
                f"{_fmt_p(p) if p is not None else '–'} |"
            )
        lines.append(
            f"| **mean** |  |  |  | {statistics.mean(gains):+.4f} | "
            f"{sum(g >= 0 for g in gains)}/{len(gains)} collections ≥ 0 |"
        )
        others = [m for m in modes if m != default]
        lines += [
            "",
            f"### Paired randomization test: `{default}` against each mode "
            f"(nDCG@10 per query, {PERMUTATIONS:,} permutations, two-sided p; "
            "the sign is the default's difference)",
            "",
            "| collection | " + " | ".join(others) + " |",
            "|---|" + "---:|" * len(others),
        ]
        for name in names:
            cells = []
            for mode in others:
                p = suite.p_values.get(name, {}).get(mode)
                delta = (
                    suite.reports[name].modes[default].metrics["ndcg@10"]
                    - suite.reports[name].modes[mode].metrics["ndcg@10"]
                )
                cells.append(f"{delta:+.3f} ({_fmt_p(p)})" if p is not None else "–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Median query latency, ms (query encoding + searches + fusion, one run)",
        "",
        "| mode | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for mode in modes:
        cells = [f"{suite.reports[n].modes[mode].median_ms:.1f}" for n in names]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    for title, body in suite.extra.items():
        lines += ["", f"### {title}", "", body.rstrip()]
    return "\n".join(lines) + "\n"


def write_suite(suite: SuiteReport, prefix: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``<prefix>.md`` (the tables) and ``<prefix>.json``; return their paths."""
    base = Path(prefix)
    base.parent.mkdir(parents=True, exist_ok=True)
    md = base.with_name(base.name + ".md")
    js = base.with_name(base.name + ".json")
    header = f"Command: `{suite.command}`\n\n" if suite.command else ""
    md.write_text(header + suite_markdown(suite))
    js.write_text(json.dumps(suite.to_dict(), indent=1) + "\n")
    return {"markdown": md, "json": js}


__all__ = [
    "PERMUTATIONS",
    "SUITE_METRICS",
    "SuiteReport",
    "evaluate_suite",
    "randomization_test",
    "read_suite",
    "suite_markdown",
    "suite_p_values",
    "write_suite",
]

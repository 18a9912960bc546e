"""Retrieval evaluation and fusion tuning on BEIR-format data.

* :func:`evaluate` (``tribrid eval``): nDCG@10, Recall@10/100 and MRR@10 of every
  channel and fusion, latency, index sizes and binary-quantization calibration.
* :func:`tune` (``tribrid tune``): searches fusion settings on a train split and writes
  a configuration the retriever loads.

Example:
    >>> from tribrid.evaluation import evaluate                        # doctest: +SKIP
    >>> report = evaluate("data/scifact", Settings(data_dir="/tmp/idx"), modes=["dense"])
    ... # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tribrid.evaluation.harness import (
        ALL_MODES,
        EvalMode,
        EvalReport,
        ModeResult,
        PhaseProgress,
        evaluate,
    )
    from tribrid.evaluation.indexing import index_dataset
    from tribrid.evaluation.metrics import METRICS, evaluate_run
    from tribrid.evaluation.report import markdown_table, write_report

# Imported on first use, so registering the CLI commands costs nothing.
_LAZY = {
    "ALL_MODES": "harness",
    "EvalMode": "harness",
    "EvalReport": "harness",
    "ModeResult": "harness",
    "PhaseProgress": "harness",
    "evaluate": "harness",
    "index_dataset": "indexing",
    "METRICS": "metrics",
    "evaluate_run": "metrics",
    "markdown_table": "report",
    "write_report": "report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ALL_MODES",
    "METRICS",
    "EvalMode",
    "EvalReport",
    "ModeResult",
    "PhaseProgress",
    "evaluate",
    "evaluate_run",
    "index_dataset",
    "markdown_table",
    "write_report",
]

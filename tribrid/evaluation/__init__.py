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

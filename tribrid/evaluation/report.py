"""Write an evaluation report as Markdown, JSON and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tribrid.evaluation.harness import EvalReport


def markdown_table(report: EvalReport) -> str:
    """The per-mode table, the sizes and the binary calibration, as Markdown."""
    metric_names = list(next(iter(report.modes.values())).metrics) if report.modes else []
    lines = [
        f"Dataset `{report.dataset}`, split `{report.split}`: {report.queries} judged "
        f"queries, {report.documents} documents in {report.chunks} chunks. Chunk hits are "
        "aggregated to documents by their best chunk (max) before scoring; metrics by "
        "pytrec_eval.",
        "",
        "| mode | " + " | ".join(metric_names) + " | median ms (encode+search) | "
        "median ms (search) | RAM MB |",
        "|---|" + "---:|" * (len(metric_names) + 3),
    ]
    for result in report.modes.values():
        values = " | ".join(f"{result.metrics[m]:.4f}" for m in metric_names)
        lines.append(
            f"| {result.mode} | {values} | {result.median_ms:.1f} | "
            f"{result.median_search_ms:.1f} | {result.ram_mb:.2f} |"
        )
    lines += [
        "",
        "| vector kind | RAM MB (files kept in memory) | disk MB | estimate MB (counts × sizes) |",
        "|---|---:|---:|---:|",
    ]
    for kind, size in report.sizes.items():
        lines.append(
            f"| {kind} | {size['ram_mb']:.2f} | {size['disk_mb']:.2f} | {size['estimate_mb']:.2f} |"
        )
    if report.binary:
        lines += [
            "",
            f"Binary recall@10 against exact float search (target {report.target_recall}):",
            "",
            "| codes | query | oversampling | recall@10 | median ms | codes MB | float MB |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in report.binary:
            lines.append(
                f"| {row.encoding} | {row.query_encoding} | {row.oversampling:g} | "
                f"{row.recall:.4f} | {row.median_ms:.2f} | {row.codes_mb:.2f} | {row.float_mb:.2f} |"
            )
        lines += ["", "Smallest oversampling reaching the target:", ""]
        for key, value in report.binary_choice.items():
            lines.append(f"- {key}: {value:g}" if value is not None else f"- {key}: not reached")
    return "\n".join(lines) + "\n"


def plot(report: EvalReport, path: Path, *, metric: str = "ndcg@10") -> Path:
    """Quality against latency and against RAM, one point per mode, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for result in report.modes.values():
        quality = result.metrics.get(metric, 0.0)
        for axis, x in ((left, result.median_ms), (right, result.ram_mb)):
            axis.scatter([x], [quality])
            axis.annotate(result.mode, (x, quality), textcoords="offset points", xytext=(4, 4))
    left.set_xlabel("median query latency, ms (encoding + search)")
    right.set_xlabel("RAM of the searched vectors and indexes, MB")
    for axis in (left, right):
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    name = Path(report.dataset).name
    fig.suptitle(f"{name} ({report.split}, {report.queries} queries)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: EvalReport, prefix: str | Path) -> dict[str, Path]:
    """Write ``<prefix>.md``, ``<prefix>.json`` and ``<prefix>.png``; return their paths."""
    base = Path(prefix)
    base.parent.mkdir(parents=True, exist_ok=True)
    md = base.with_name(base.name + ".md")
    js = base.with_name(base.name + ".json")
    png = base.with_name(base.name + ".png")
    md.write_text(markdown_table(report))
    payload: dict[str, Any] = report.to_dict()
    js.write_text(json.dumps(payload, indent=2) + "\n")
    plot(report, png)
    return {"markdown": md, "json": js, "png": png}

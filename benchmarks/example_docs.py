"""Ingest the shared example-docs corpus twice and report outcomes and timings.

Shows the acceptance numbers of the core pipeline: every file ends indexed or failed
with a reason, at least 85 % are indexed, and a second identical run re-embeds nothing
and takes a small fraction of the first run's time.

Usage:
    .venv/bin/python benchmarks/example_docs.py [--corpus ../shared/data/example-docs] \
        [--out benchmarks/results/example-docs.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from _memory import TreeMemory

import tribrid
from tribrid.settings import Settings

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=Path, default=HERE.parent.parent / "shared" / "data" / "example-docs"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "example-docs.md")
    parser.add_argument(
        "--trace", type=Path, help="also write every memory sample of the first run here (CSV)"
    )
    args = parser.parse_args()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="tribrid-bench-"))
    try:
        root = work / "docs"
        shutil.copytree(args.corpus, root, symlinks=True)
        settings = Settings(data_dir=work / "data")
        with TreeMemory(keep_samples=args.trace is not None) as memory:
            t0 = time.perf_counter()
            first = tribrid.ingest(root, settings=settings)
            t1 = time.perf_counter()
        second = tribrid.ingest(root, settings=settings)
        t2 = time.perf_counter()
        status = tribrid.status(settings=settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first_s, second_s = t1 - t0, t2 - t1
    files = status.counts["indexed"] + status.counts["failed"]
    kinds = Counter(f.error_kind for f in status.failures)
    lines = [
        "# Ingesting `shared/data/example-docs`",
        "",
        f"Command: `.venv/bin/python benchmarks/example_docs.py` (commit {commit}), "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| | first run | second run (no changes) |",
        "| --- | ---: | ---: |",
        f"| wall time | {first_s:.1f} s | {second_s:.2f} s ({second_s / first_s:.1%} of the first) |",
        f"| indexed | {first.counts.indexed} | {second.counts.indexed} |",
        f"| unchanged | {first.counts.unchanged} | {second.counts.unchanged} |",
        f"| failed | {first.counts.failed} | {second.counts.failed} |",
        f"| chunks embedded | {first.counts.chunks_embedded} | {second.counts.chunks_embedded} |",
        "",
        # Parse workers are separate processes with their own RLIMIT_AS cap
        # (TRIBRID_PARSING__MEMORY_LIMIT_MB): the tree is the ingesting process and them.
        f"Peak resident memory of the first run, sampled every 0.1 s: whole process tree "
        f"{memory.peak_mb:.0f} MiB; the ingesting process alone {memory.peak_main_mb:.0f} MiB "
        f"(its own high-water mark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB); "
        f"{memory.peak_with_forks_mb:.0f} MiB counting a child caught between fork and "
        "exec (which shares its parent's pages). "
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}.",
        "",
        f"At the tree's peak: {memory.composition()}. Largest single process of each kind "
        f"over the first run: {memory.composition(memory.max_by_kind)}.",
        "",
        f"Chunks of the first run: {first.counts.chunks_embedded} encoded, "
        f"{first.counts.chunks_reused} reused (identical text already encoded).",
        "",
        f"Files: {files}; indexed {status.counts['indexed']} ({status.counts['indexed'] / files:.1%}), "
        f"failed {status.counts['failed']}; chunks in the index: {status.chunks}.",
        "",
        "Failures by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
        "",
        "| file | reason | message |",
        "| --- | --- | --- |",
        *(
            f"| {f.key} | {f.error_kind} | {(f.error_message or '').replace('|', '/')} |"
            for f in status.failures
        ),
        "",
    ]
    if args.trace is not None and memory.samples is not None:
        kinds = sorted({kind for _, parts in memory.samples for kind in parts})
        rows = [",".join(["seconds", "total", *kinds])]
        for seconds, parts in memory.samples:
            values = [parts.get(kind, 0.0) for kind in kinds]
            rows.append(",".join(f"{v:.1f}" for v in [seconds, sum(values), *values]))
        args.trace.write_text("\n".join(rows) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

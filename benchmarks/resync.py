"""A sync that finds nothing changed, on a folder of 10,000+ files: in-process and via the CLI.

Writes ``--files`` small ``.txt`` files (one sentence of a SciFact abstract each, so
every file is one chunk and no two are alike), indexes them once with the real encoders
into a fresh data dir (the first sync, timed but not the point), then measures the
sync that follows with nothing changed, ``--repeats`` times each:

* **in the sync**: ``tribrid.app.ingest`` in this process, the report's ``duration_s``
  (listing, stat, ledger comparison; no parsing or encoding, as nothing changed), and
  the wall time of the whole call (which opens the ledger, the store and the encoders'
  lazy shells);
* **with the CLI's start**: ``tribrid ingest FOLDER --json`` (the console script's
  ``tribrid.cli:main``) in a fresh process, wall time from spawn to exit.

Usage:
    .venv/bin/python benchmarks/resync.py [--files 10000] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
#: What the ``tribrid`` console script runs.
CLI = "import sys; sys.argv[0] = 'tribrid'; from tribrid.cli import main; main()"


def sentences(count: int) -> list[str]:
    """``count`` distinct sentences of SciFact abstracts, 40 to 300 characters long."""
    seen: set[str] = set()
    out: list[str] = []
    with CORPUS.open(encoding="utf-8") as lines:
        for line in lines:
            for part in json.loads(line)["text"].split(". "):
                text = part.strip()
                if 40 <= len(text) <= 300 and text not in seen:
                    seen.add(text)
                    out.append(text.rstrip(".") + ".")
                    if len(out) == count:
                        return out
    raise SystemExit(f"SciFact has only {len(out)} usable sentences, fewer than {count}")


def write_folder(folder: Path, count: int) -> None:
    """``count`` files in folders of 500 (``d000/f00000.txt`` …)."""
    for i, text in enumerate(sentences(count)):
        sub = folder / f"d{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_text(text + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="keep the folders here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from tribrid import app

    work = args.work or Path(tempfile.mkdtemp(prefix="tribrid-resync-"))
    folder, data_dir = work / "docs", work / "data"
    if not folder.exists():
        write_folder(folder, args.files)
    files = sum(1 for _ in folder.rglob("*.txt"))
    out: dict[str, Any] = {
        "command": "python benchmarks/resync.py " + " ".join(sys.argv[1:]),
        "files": files,
    }
    t0 = time.perf_counter()
    first = app.ingest(folder, data_dir=data_dir)
    out["first_sync_s"] = time.perf_counter() - t0
    out["first_counts"] = first.counts.as_dict()
    print(f"first sync of {files} files: {out['first_sync_s']:.1f} s, {out['first_counts']}")

    inside, call = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = app.ingest(folder, data_dir=data_dir)
        call.append(time.perf_counter() - t0)
        inside.append(report.duration_s)
        counts = report.counts.as_dict()
        assert counts.get("indexed") == 0 and counts.get("unchanged") == files, counts
    out["no_change_counts"] = counts
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    cli = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CLI, "ingest", str(folder), "--json"],
            env={**env, "TRIBRID_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=False,
        )
        cli.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"the CLI failed ({done.returncode}): {done.stderr[-2000:]}")
    out["cli_last_output"] = done.stdout.strip()[-2000:]
    out["no_change_s"] = {
        "in_sync_median": statistics.median(inside),
        "ingest_call_median": statistics.median(call),
        "cli_median": statistics.median(cli),
        "in_sync": inside,
        "ingest_call": call,
        "cli": cli,
    }
    print(json.dumps(out["no_change_s"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

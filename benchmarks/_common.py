"""Helpers several benchmark scripts share: SciFact as files, child processes, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: BEIR SciFact in the shared data folder beside the repository.
SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "scifact"


def scifact_files(folder: Path, count: int) -> Path:
    """The first ``count`` SciFact documents as ``<id>.txt`` files (title, blank line, text)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as lines:
        for n, line in enumerate(lines):
            if n >= count:
                break
            record = json.loads(line)
            body = f"{record['title']}\n\n{record['text']}\n"
            (folder / f"{record['_id']}.txt").write_text(body, encoding="utf-8")
    return folder


def child_json(args: list[str]) -> dict[str, float]:
    """Run ``python *args`` in a fresh process; the JSON object on its last stdout line."""
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def write_report(text: str, results: Any, out: Path | None) -> None:
    """Print the Markdown report and, with ``out``, write it and the raw results beside it."""
    print(text)
    if out:
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")

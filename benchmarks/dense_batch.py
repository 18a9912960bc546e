"""The dense encoder's batch size on CPU: encoding time and peak memory, then end to end.

Each measurement runs in a fresh process (peak resident memory is per process), and the
batch sizes alternate round by round so that they share the machine's load. Two parts:

1. the dense encoder alone (MiniLM, the default ONNX int8 backend) on 512 long SciFact
   passages (titles and abstracts of over 1,000 characters, cut at 1,200: the size of a
   default chunk), models loaded and warmed first;
2. ``tribrid.ingest`` of the first ``--docs`` SciFact documents (one ``.txt`` each) into
   a cold data dir, with only ``models.dense_batch_size`` changed.

Usage: ``python benchmarks/dense_batch.py [--rounds 2] [--docs 500] [--out FILE]``; set
``TRIBRID_MODELS__CACHE_DIR`` to a warmed export cache so no pass pays the export.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import SCIFACT, child_json, scifact_files

HERE = Path(__file__).resolve().parent
CORPUS = SCIFACT / "corpus.jsonl"
ENCODER_SIZES = (4, 8, 16, 32)
INGEST_SIZES = (4, 8, 32)

_ENCODE = """
import json, resource, sys, time
from tribrid.factory import build_encoders
from tribrid.settings import Settings
size, corpus, scratch = int(sys.argv[1]), sys.argv[2], sys.argv[3]
texts = []
with open(corpus) as f:
    for line in f:
        r = json.loads(line)
        text = r["title"] + "\\n\\n" + r["text"]
        if len(text) > 1000:
            texts.append(text[:1200])
        if len(texts) >= 512:
            break
dense = build_encoders(Settings(data_dir=scratch, models={"dense_batch_size": size})).dense
dense.encode_documents(texts[:8])  # loads the model
started = time.perf_counter()
for start in range(0, len(texts), 256):
    dense.encode_documents(texts[start : start + 256])
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak}))
"""

_INGEST = """
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[4])
from _memory import TreeMemory
import tribrid
from tribrid.settings import Settings
size, folder, scratch = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data_dir = tempfile.mkdtemp(prefix="data-", dir=scratch)
with TreeMemory() as memory:
    started = time.perf_counter()
    report = tribrid.ingest(
        folder, settings=Settings(data_dir=data_dir, models={"dense_batch_size": size})
    )
    seconds = time.perf_counter() - started
assert report.counts.failed == 0, report.failures[:3]
chunks = report.counts.chunks_embedded + report.counts.chunks_reused
print(json.dumps({"seconds": seconds, "chunks": chunks, "peak_mb": memory.peak_mb}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dense-batch.md")
    parser.add_argument("--encoder-sizes", type=int, nargs="+", default=list(ENCODER_SIZES))
    parser.add_argument("--ingest-sizes", type=int, nargs="+", default=list(INGEST_SIZES))
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = os.getloadavg()
    encode: dict[int, list[dict[str, float]]] = {s: [] for s in args.encoder_sizes}
    ingest: dict[int, list[dict[str, float]]] = {s: [] for s in args.ingest_sizes}
    with tempfile.TemporaryDirectory(prefix="tribrid-dense-batch-") as scratch:
        folder = scifact_files(Path(scratch) / "scifact", args.docs)
        for round_ in range(args.rounds):
            for size in args.encoder_sizes:
                encode[size].append(child_json(["-c", _ENCODE, str(size), str(CORPUS), scratch]))
                print(f"round {round_ + 1} encode {size}: {encode[size][-1]}", flush=True)
            for size in args.ingest_sizes:
                ingest[size].append(
                    child_json(["-c", _INGEST, str(size), str(folder), scratch, str(HERE)])
                )
                print(f"round {round_ + 1} ingest {size}: {ingest[size][-1]}", flush=True)
    load_after = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    # Ratios against batch 32 (the old default) when it ran, else the largest size.
    ref_e = 32 if 32 in encode else max(encode)
    ref_i = 32 if 32 in ingest else max(ingest)
    base_encode = med(encode[ref_e], "seconds")
    base_ingest = med(ingest[ref_i], "seconds")
    lines = [
        "# The dense encoder's batch size on CPU",
        "",
        f"Command: `TRIBRID_MODELS__CACHE_DIR=<a warmed export cache> .venv/bin/python "
        f"benchmarks/dense_batch.py --rounds {args.rounds} --docs {args.docs} "
        f"--encoder-sizes {' '.join(map(str, args.encoder_sizes))} "
        f"--ingest-sizes {' '.join(map(str, args.ingest_sizes))}`",
        "",
        f"Commit {commit}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after. "
        f"Medians of {args.rounds} rounds; the sizes alternate within each round, every "
        "measurement in a fresh process.",
        "",
        "## MiniLM (ONNX int8) alone, 512 passages of 1,000-1,200 characters",
        "",
        f"| dense batch | seconds | ÷ batch {ref_e} | peak RSS of the process (MiB) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size in args.encoder_sizes:
        seconds = med(encode[size], "seconds")
        lines.append(
            f"| {size} | {seconds:.1f} | {seconds / base_encode:.2f} | "
            f"{med(encode[size], 'peak_mb'):.0f} |"
        )
    lines += [
        "",
        f"## `tribrid.ingest` of {args.docs} SciFact documents, cold data dir",
        "",
        f"| dense batch | seconds | chunks/s | ÷ batch {ref_i} (time) | peak RSS, process tree (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in args.ingest_sizes:
        seconds = med(ingest[size], "seconds")
        chunks = ingest[size][0]["chunks"]
        lines.append(
            f"| {size} | {seconds:.1f} | {chunks / seconds:.1f} | {seconds / base_ingest:.2f} | "
            f"{med(ingest[size], 'peak_mb'):.0f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

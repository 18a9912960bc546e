"""ONNX Runtime's thread spinning: query latency and encoding throughput, on and off.

After each run ONNX Runtime's intra-op threads spin, waiting for the next one. tribrid
runs two models one after the other (MiniLM, then splade-tiny) on a machine that also
runs the store's searches and, often, ingestion. This measures, each in a fresh process
and with the settings alternating round by round so that they share the machine's load:

1. **query**: ``EncoderSet.encode_query`` of 200 SciFact queries (dense, SPLADE, BM25),
   models loaded and warmed first: median milliseconds per query, and the process's CPU
   seconds per query (spinning is CPU spent waiting);
2. **query under load**: the same while another process encodes passages without pause
   (as an ingestion beside a search server does);
3. **encode**: ``EncoderSet.encode_documents`` of 256 SciFact passages of a default
   chunk's size, 32 at a time (as ingestion does): chunks per second and CPU seconds;
4. **ingest**: ``tribrid.ingest`` of the first ``--docs`` SciFact documents (one ``.txt``
   each) into a cold data dir, end to end.

Usage: ``python benchmarks/onnx_spinning.py [--rounds 3] [--docs 300] [--out FILE]``; set
``TRIBRID_MODELS__CACHE_DIR`` to a warmed export cache so no pass pays the export.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SCIFACT, child_json, scifact_files, write_report

_PRELUDE = """
import json, os, resource, statistics, sys, time
import tribrid.encoders._onnx as onnx
onnx.SPINNING = sys.argv[1] == "on"
from tribrid.factory import build_encoders
from tribrid.settings import Settings
data, scratch = sys.argv[2], sys.argv[3]
encoders = build_encoders(Settings(data_dir=scratch))
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
def passages(count):
    out = []
    with open(data + "/corpus.jsonl") as f:
        for line in f:
            r = json.loads(line)
            text = r["title"] + "\\n\\n" + r["text"]
            if len(text) > 1000:
                out.append(text[:1200])
            if len(out) >= count:
                return out
    return out
"""

_QUERY = (
    _PRELUDE
    + """
queries = [json.loads(l)["text"] for l in open(data + "/queries.jsonl")][:220]
for q in queries[:20]:
    encoders.encode_query(q)  # loads and warms the models
times = []
started = cpu()
for q in queries[20:]:
    t0 = time.perf_counter()
    encoders.encode_query(q)
    times.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.005)  # queries arrive one by one, not back to back
print(json.dumps({"median_ms": statistics.median(times),
                  "cpu_ms": (cpu() - started) * 1000 / len(times)}))
"""
)

_ENCODE = (
    _PRELUDE
    + """
texts = passages(288)
encoders.encode_documents(texts[:32])  # loads the models
started, wall = cpu(), time.perf_counter()
for start in range(32, len(texts), 32):
    encoders.encode_documents(texts[start : start + 32])
seconds = time.perf_counter() - wall
print(json.dumps({"chunks_per_s": (len(texts) - 32) / seconds,
                  "cpu_s": cpu() - started}))
"""
)

_INGEST = """
import json, sys, tempfile, time
import tribrid.encoders._onnx as onnx
onnx.SPINNING = sys.argv[1] == "on"
import tribrid
from tribrid.settings import Settings
folder, scratch = sys.argv[2], sys.argv[3]
data_dir = tempfile.mkdtemp(prefix="data-", dir=scratch)
started = time.perf_counter()
report = tribrid.ingest(folder, settings=Settings(data_dir=data_dir))
seconds = time.perf_counter() - started
chunks = report.counts.chunks_embedded + report.counts.chunks_reused
print(json.dumps({"chunks_per_s": chunks / seconds, "seconds": seconds}))
"""

_LOAD = (
    _PRELUDE
    + """
texts = passages(64)
while True:
    encoders.encode_documents(texts)
"""
)


def _run(code: str, setting: str, scratch: str, data: Path = SCIFACT) -> dict[str, float]:
    return child_json(["-c", code, setting, str(data), scratch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--docs", type=int, default=300, help="SciFact files to ingest")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = ("on", "off")
    parts = ("query", "query under load", "encode", "ingest")
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        part: {s: [] for s in settings} for part in parts
    }
    with tempfile.TemporaryDirectory(prefix="spin-") as scratch:
        files = scifact_files(Path(scratch) / "docs", args.docs)
        for n in range(args.rounds):
            order = settings if n % 2 == 0 else settings[::-1]
            for setting in order:
                results["query"][setting].append(_run(_QUERY, setting, scratch))
                results["encode"][setting].append(_run(_ENCODE, setting, scratch))
                results["ingest"][setting].append(_run(_INGEST, setting, scratch, files))
                # The load always spins as ONNX Runtime does by default: only the measured
                # process changes.
                load = subprocess.Popen(
                    [sys.executable, "-c", _LOAD, "on", str(SCIFACT), scratch],
                    stdout=subprocess.DEVNULL,
                )
                try:
                    time.sleep(8)  # its models loaded, encoding
                    results["query under load"][setting].append(_run(_QUERY, setting, scratch))
                finally:
                    load.kill()
                    load.wait()
                print(n, setting, {p: results[p][setting][-1] for p in results}, flush=True)
    lines = [
        f"Command: `python benchmarks/onnx_spinning.py --rounds {args.rounds} --docs {args.docs}`; "
        f"{os.cpu_count()} cores; medians over rounds (settings alternating).",
        "",
        "| part | measure | spinning on (ONNX Runtime's default) | off | off / on |",
        "|---|---|---:|---:|---:|",
    ]
    for part, keys in (
        ("query", ("median_ms", "cpu_ms")),
        ("query under load", ("median_ms", "cpu_ms")),
        ("encode", ("chunks_per_s", "cpu_s")),
        ("ingest", ("chunks_per_s", "seconds")),
    ):
        for key in keys:
            on = statistics.median(r[key] for r in results[part]["on"])
            off = statistics.median(r[key] for r in results[part]["off"])
            lines.append(f"| {part} | {key} | {on:.2f} | {off:.2f} | {off / on:.2f} |")
    write_report("\n".join(lines) + "\n", results, args.out)


if __name__ == "__main__":
    main()

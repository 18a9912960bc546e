"""nDCG@10 as a user gets it: ``tribrid ingest`` of .txt files, then ``as_retriever(k=10)``.

The evaluation harness ranks documents from 300 chunks per channel; a user gets the
``k`` chunks the retriever returns. This script writes one ``.txt`` per document of a
BEIR dataset (title, blank line, text), ingests the folder with ``tribrid.ingest``,
asks ``tribrid.as_retriever(k=10)`` every judged query, takes the documents of the
returned chunks in order (deduplicated) and scores them with nDCG@10. It does so for the
retriever's defaults, the previous defaults, and each channel alone, asking every query
of each in turn (the order rotating) after an untimed warm-up, so their latencies are
side by side.

Usage::

    python benchmarks/user_path.py ../shared/data/adi ../shared/data/limit-small \\
        --work /tmp/user-path -o benchmarks/results/suite-user-path.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _common import write_report

import tribrid
from tribrid.connectors.beir import read_qrels, read_queries
from tribrid.evaluation.harness import judged_queries
from tribrid.evaluation.metrics import evaluate_run
from tribrid.retrievers.hybrid import PREVIOUS_DEFAULTS
from tribrid.settings import Settings

#: Queries asked of every variant, untimed, before the timed ones.
WARM_UP = 5

#: The retriever options measured, by label.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "previous default (dbsf, equal weights, no grouping)": dict(PREVIOUS_DEFAULTS),
    "dense": {"channels": {"dense": 1.0}},
    "splade": {"channels": {"splade": 1.0}},
    "bm25": {"channels": {"bm25": 1.0}},
}


def write_texts(dataset: Path, folder: Path) -> int:
    """One ``<id>.txt`` per corpus record: the title, a blank line, the text."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            name = str(record["_id"]).replace("/", "_")
            title, text = str(record.get("title") or ""), str(record.get("text") or "")
            body = f"{title}\n\n{text}\n" if title.strip() else f"{text}\n"
            target = folder / f"{name}.txt"
            if not target.exists() or target.read_text(encoding="utf-8") != body:
                target.write_text(body, encoding="utf-8")
            count += 1
    return count


def measure(dataset: Path, work: Path, split: str, k: int) -> dict[str, Any]:
    """Ingest the dataset as .txt files and score every variant; numbers by label."""
    name = dataset.resolve().name
    folder = work / name / "docs"
    documents = write_texts(dataset, folder)
    settings = Settings(data_dir=work / name / "index")
    started = time.monotonic()
    tribrid.ingest(folder, settings=settings)
    ingest_s = time.monotonic() - started
    queries, qrels = judged_queries(
        read_queries(dataset), read_qrels(dataset, split), source=str(dataset)
    )
    out: dict[str, Any] = {"documents": documents, "queries": len(queries), "ingest_s": ingest_s}
    retriever = tribrid.as_retriever(settings=settings, k=k)
    labels = list(VARIANTS)
    runs: dict[str, dict[str, list[str]]] = {label: {} for label in labels}
    times: dict[str, list[float]] = {label: [] for label in labels}
    try:
        # Untimed warm-up: models loaded, store pages read, for every variant.
        for text in list(queries.values())[:WARM_UP]:
            for options in VARIANTS.values():
                retriever.invoke(text, **options)
        # Side by side: every query asks each variant in turn, the order rotating from
        # query to query, so no variant is always the first (colder) or the last one.
        for n, (query_id, text) in enumerate(queries.items()):
            for label in labels[n % len(labels) :] + labels[: n % len(labels)]:
                t0 = time.perf_counter()
                docs = retriever.invoke(text, **VARIANTS[label])
                times[label].append((time.perf_counter() - t0) * 1000)
                ids = [Path(str(d.metadata.get("path", ""))).stem for d in docs]
                runs[label][query_id] = list(dict.fromkeys(i for i in ids if i))
    finally:
        retriever.close()
    for label in labels:
        metrics = evaluate_run(qrels, runs[label], ["ndcg@10", "recall@10"])
        out[label] = {
            **metrics,
            "median_ms": statistics.median(times[label]),
            "mean_documents": statistics.mean(len(r) for r in runs[label].values()),
        }
    return out


def markdown(results: dict[str, dict[str, Any]], k: int) -> str:
    """The table: one row per variant, nDCG@10 per dataset."""
    names = list(results)
    lines = [
        f"`tribrid ingest` of one .txt per document, `tribrid.as_retriever(k={k})`; the "
        "documents of the returned chunks in order, deduplicated, scored with nDCG@10 "
        "(documents returned per query in brackets).",
        "",
        "| retriever | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label in VARIANTS:
        cells = [
            f"{results[n][label]['ndcg@10']:.4f} ({results[n][label]['mean_documents']:.1f})"
            for n in names
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| median ms (default / previous) | "
        + " | ".join(
            f"{results[n]['default']['median_ms']:.1f} / "
            f"{results[n]['previous default (dbsf, equal weights, no grouping)']['median_ms']:.1f}"
            for n in names
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/user-path"))
    parser.add_argument("--split", default="test")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    results = {d.resolve().name: measure(d, args.work, args.split, args.k) for d in args.datasets}
    write_report(markdown(results, args.k), results, args.output)


if __name__ == "__main__":
    main()

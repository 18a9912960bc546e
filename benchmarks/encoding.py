"""Encoding speed of the torch, onnx and onnx-int8 backends, side by side in one run.

For the dense (all-MiniLM-L6-v2) and the SPLADE (splade-tiny) encoder, on 100-word
passages cut from the SciFact corpus:

* **passages/s**: encoding all the passages, the configurations taking turns run after
  run (so machine noise hits them alike); the median of the runs;
* **query latency**: one query at a time (SciFact queries), taking turns; median and p95;
* **peak memory**: a fresh process per SPLADE configuration encodes whole SciFact
  documents (long enough to fill 256 tokens) in batches of 32; its peak RSS, and how
  much of it encoding added over the loaded model;
* **SPLADE top-N**: nDCG@10 of the SPLADE channel alone over all of SciFact (whole
  documents, brute-force dot products, test queries) with every weight and with only the
  N largest per document: what ``TRIBRID_MODELS__SPLADE_TOP_K`` costs;
* **retrieval quality**: SciFact test nDCG@10 per backend from ``tribrid eval`` reports
  (``--eval-dir``; each backend built its own index, see benchmarks/results/encoding.md).

"torch (sentence-transformers)" is the SPLADE path before this change: the model's
``encode_document``, which projects every position, padding included, onto the vocabulary.

Usage:
    .venv/bin/python benchmarks/encoding.py [--passages 256] [--runs 5] [--queries 200] \
        [--threads 2] [--cache-dir DIR] [--eval-dir DIR] [--out benchmarks/results/encoding.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import SCIFACT, child_json

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch", "onnx", "onnx-int8")
NAIVE = "torch (sentence-transformers)"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def passages(n: int, words: int = 100) -> list[str]:
    """The first ``n`` SciFact abstracts of at least ``words`` words, cut to ``words``."""
    out = []
    with (SCIFACT / "corpus.jsonl").open() as lines:
        for line in lines:
            text = json.loads(line)["text"].split()
            if len(text) >= words:
                out.append(" ".join(text[:words]))
                if len(out) == n:
                    break
    return out


def queries(n: int) -> list[str]:
    """The first ``n`` SciFact queries."""
    with (SCIFACT / "queries.jsonl").open() as lines:
        return [json.loads(line)["text"] for _, line in zip(range(n), lines, strict=False)]


@dataclass
class Config:
    """One encoder on one backend, and its measurements."""

    kind: str
    backend: str
    encode: Callable[[list[str]], Any]
    query: Callable[[str], Any]
    setup_s: float
    rates: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def build(kind: str, backend: str, *, threads: int, cache_dir: Path) -> Config:
    """Load (and for ONNX export) one configuration; the time it took is ``setup_s``."""
    from tribrid.encoders import SentenceTransformerEncoder, SpladeEncoder

    start = time.perf_counter()
    if backend == NAIVE:
        from tribrid.encoders._torch import configure_threads, load_model
        from tribrid.encoders.models import resolve_model

        configure_threads(threads)
        model = load_model(
            "SparseEncoder",
            resolve_model("default", kind="splade").location,
            device="cpu",
            max_seq_length=256,
        )
        encode = lambda texts: model.encode_document(  # noqa: E731
            texts, batch_size=32, convert_to_sparse_tensor=True, show_progress_bar=False
        )
        query = lambda text: model.encode_query(  # noqa: E731
            [text], convert_to_sparse_tensor=True, show_progress_bar=False
        )
        encode(["warm up"])
        return Config(kind, backend, encode, query, time.perf_counter() - start)
    cls = SentenceTransformerEncoder if kind == "dense" else SpladeEncoder
    encoder = cls(backend=backend, cache_dir=cache_dir, torch_threads=threads, batch_size=32)
    encoder.warm_up()
    encoder.encode_documents(["warm up"])
    return Config(
        kind, backend, encoder.encode_documents, encoder.encode_query, time.perf_counter() - start
    )


def measure(configs: Sequence[Config], texts: list[str], qs: list[str], runs: int) -> None:
    """Passages/s and query latency, every configuration in turn (noise hits all alike)."""
    for _ in range(runs):
        for config in configs:
            start = time.perf_counter()
            config.encode(texts)
            config.rates.append(len(texts) / (time.perf_counter() - start))
    for q in qs:
        for config in configs:
            start = time.perf_counter()
            config.query(q)
            config.latencies_ms.append((time.perf_counter() - start) * 1000)


def rss_child(backend: str, threads: int, cache_dir: str, docs: int) -> None:
    """Print peak RSS (MiB) after loading and after encoding ``docs`` whole documents."""
    with (SCIFACT / "corpus.jsonl").open() as lines:
        texts = [
            f"{d['title']}\n{d['text']}"
            for d in (json.loads(line) for _, line in zip(range(docs), lines, strict=False))
        ]
    config = build("splade", backend, threads=threads, cache_dir=Path(cache_dir))
    loaded = _high_water_mib()
    config.encode(texts)
    print(json.dumps({"loaded": loaded, "peak": _high_water_mib()}))


def _high_water_mib() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent process.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(backend: str, threads: int, cache_dir: Path, docs: int) -> dict[str, float]:
    """Run :func:`rss_child` in a fresh process."""
    return child_json(
        [
            __file__,
            "--rss-child",
            backend,
            "--threads",
            str(threads),
            "--cache-dir",
            str(cache_dir),
            "--rss-docs",
            str(docs),
        ]
    )


def _ndcg10(scores: np.ndarray, qrels: dict[int, dict[int, int]]) -> float:
    values = []
    for row, judged in qrels.items():
        top = np.argsort(-scores[row])[:10]
        dcg = sum(judged.get(int(d), 0) / np.log2(i + 2) for i, d in enumerate(top))
        ideal = sorted(judged.values(), reverse=True)[:10]
        idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
        values.append(dcg / idcg if idcg else 0.0)
    return float(np.mean(values))


def splade_top_k(
    backend: str, threads: int, cache_dir: Path, ks: Sequence[int], others: int | None
) -> dict[str, float]:
    """SciFact test nDCG@10 of brute-force SPLADE, all weights and the top ``k`` of each.

    With ``others``, the corpus is the judged documents plus the first ``others`` unjudged
    ones (cheaper; nDCG is then higher than on the full corpus: the change with ``k`` is
    what is compared).
    """
    from scipy.sparse import csr_matrix

    from tribrid.encoders import SpladeEncoder

    with (SCIFACT / "qrels" / "test.tsv").open() as rows:
        next(rows)
        qrel_rows = [row.strip().split("\t") for row in rows]
    wanted = {did for _, did, _ in qrel_rows}
    corpus = []
    for d in map(json.loads, (SCIFACT / "corpus.jsonl").open()):
        if d["_id"] in wanted:
            corpus.append(d)
        elif others is None or others > 0:
            corpus.append(d)
            others = None if others is None else others - 1
    position = {d["_id"]: i for i, d in enumerate(corpus)}
    texts = [f"{d['title']}\n{d['text']}" for d in corpus]
    qtext = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open())}
    judged: dict[str, dict[int, int]] = {}
    for qid, did, score in qrel_rows:
        judged.setdefault(qid, {})[position[did]] = int(score)
    qids = sorted(judged)
    encoder = SpladeEncoder(backend=backend, cache_dir=cache_dir, torch_threads=threads)
    docs = encoder.encode_documents(texts)
    query_vectors = [encoder.encode_query(qtext[q]) for q in qids]

    def matrix(vectors: Sequence[Any]) -> Any:
        indptr = np.cumsum([0, *(len(v) for v in vectors)])
        indices = np.fromiter((i for v in vectors for i in v.indices), dtype=np.int64)
        values = np.fromiter((x for v in vectors for x in v.values), dtype=np.float32)
        return csr_matrix((values, indices, indptr), shape=(len(vectors), 30522))

    qm = matrix(query_vectors)
    qrels = {row: judged[q] for row, q in enumerate(qids)}
    out = {"documents": float(len(docs)), "all": _ndcg10((qm @ matrix(docs).T).toarray(), qrels)}
    out["mean terms"] = float(np.mean([len(v) for v in docs]))
    for k in ks:
        cut = []
        for v in docs:
            keep = np.sort(np.argsort(-np.asarray(v.values))[:k])
            cut.append(
                type(v)(
                    tuple(np.asarray(v.indices)[keep].tolist()),
                    tuple(np.asarray(v.values)[keep].tolist()),
                )
            )
        out[f"top {k}"] = _ndcg10((qm @ matrix(cut).T).toarray(), qrels)
    return out


def eval_reports(folder: Path) -> dict[str, dict[str, float]]:
    """nDCG@10 per mode from the ``tribrid eval`` JSON reports ``eval-<label>.json``.

    The label says which index and which query backend: ``torch``, ``onnx-int8``, or
    e.g. ``onnx-int8-queries`` for int8 queries against the torch-built index.
    """
    found: dict[str, dict[str, float]] = {}
    for path in sorted(folder.glob("eval-*.json")):
        report = json.loads(path.read_text())
        found[path.stem.removeprefix("eval-")] = {
            name: float(mode["metrics"]["ndcg@10"]) for name, mode in report["modes"].items()
        }
    return found


def quality_table(quality: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: nDCG@10 per label and mode, with the change from ``torch``."""
    modes = sorted({m for q in quality.values() for m in q})
    lines = [
        "| index / queries | " + " | ".join(modes) + " |",
        "| --- |" + " ---: |" * len(modes),
    ]
    reference = quality.get("torch", {})
    for label, q in sorted(quality.items(), key=lambda item: item[0] != "torch"):
        cells = []
        for m in modes:
            value = q.get(m)
            if value is None:
                cells.append("–")
            elif label == "torch" or m not in reference:
                cells.append(f"{value:.4f}")
            else:
                cells.append(f"{value:.4f} ({value - reference[m]:+.4f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="ONNX exports (default: a fresh temp dir)"
    )
    parser.add_argument("--rss-docs", type=int, default=256)
    parser.add_argument("--top-k", default="32,64,128", help="SPLADE top-N to price ('' skips)")
    parser.add_argument(
        "--top-k-others", type=int, default=None, help="unjudged documents kept (default: all)"
    )
    parser.add_argument("--eval-dir", type=Path, default=None, help="folder of eval-<backend>.json")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--quality-only", action="store_true", help="only print the --eval-dir table"
    )
    args = parser.parse_args()
    if args.quality_only:
        print("\n".join(quality_table(eval_reports(args.eval_dir))))
        return
    if args.rss_child:
        rss_child(args.rss_child, args.threads, str(args.cache_dir), args.rss_docs)
        return

    sys.path.insert(0, str(HERE))
    from ingestion import machine

    own_cache = args.cache_dir is None
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="tribrid-bench-models-"))
    load_before = os.getloadavg()
    try:
        texts, qs = passages(args.passages), queries(args.queries)
        configs = [
            build(kind, backend, threads=args.threads, cache_dir=cache_dir)
            for kind, backends in (("dense", BACKENDS), ("splade", (NAIVE, *BACKENDS)))
            for backend in backends
        ]
        measure(configs, texts, qs, args.runs)
        rss = {b: peak_rss(b, args.threads, cache_dir, args.rss_docs) for b in (NAIVE, *BACKENDS)}
        ks = [int(k) for k in args.top_k.split(",") if k]
        top_k = splade_top_k("onnx", args.threads, cache_dir, ks, args.top_k_others) if ks else {}
        quality = eval_reports(args.eval_dir) if args.eval_dir else {}
    finally:
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)
    load_after = os.getloadavg()

    command = (
        "DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/encoding.py "
        + " ".join(a for a in sys.argv[1:])
    )
    by = {(c.kind, c.backend): c for c in configs}
    lines = [
        "# Encoding: torch vs ONNX Runtime vs ONNX int8",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine()}. ONNX Runtime and torch on {args.threads} threads. "
        f"Load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the end: "
        "the cores were shared with other jobs, so absolute numbers are low and noisy; the "
        "configurations took turns within each run, so the ratios are the comparison.",
        "",
        f"## Passages/s ({args.passages} SciFact passages of 100 words, batch 32, median of {args.runs} runs)",
        "",
        "| encoder | backend | passages/s | × torch | query median ms | query p95 ms | load/export s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in configs:
        base = by[(c.kind, "torch")].rate
        lat = np.asarray(c.latencies_ms)
        lines.append(
            f"| {c.kind} | {c.backend} | {c.rate:.1f} | {c.rate / base:.2f} | "
            f"{np.median(lat):.2f} | {np.percentile(lat, 95):.2f} | {c.setup_s:.1f} |"
        )
    lines += [
        "",
        "Both encoders together (what ingestion pays per passage: the two times added):",
        "",
        "| backend | passages/s | × torch | × before | query median ms (both) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    before_d, before_s = by[("dense", "torch")], by[("splade", NAIVE)]
    before = 1 / (1 / before_d.rate + 1 / before_s.rate)
    before_q = np.median(np.asarray(before_d.latencies_ms) + np.asarray(before_s.latencies_ms))
    lines.append(
        f"| before (torch; SPLADE by {NAIVE}) | {before:.1f} | – | 1.00 | {before_q:.2f} |"
    )
    both = {}
    for backend in BACKENDS:
        d, s = by[("dense", backend)], by[("splade", backend)]
        both[backend] = 1 / (1 / d.rate + 1 / s.rate)
        query = np.median(np.asarray(d.latencies_ms) + np.asarray(s.latencies_ms))
        lines.append(
            f"| {backend} | {both[backend]:.1f} | {both[backend] / both['torch']:.2f} | "
            f"{both[backend] / before:.2f} | {query:.2f} |"
        )
    lines += [
        "",
        f"## SPLADE peak memory ({args.rss_docs} whole SciFact documents, batch 32, up to 256 tokens)",
        "",
        "| backend | peak RSS MiB | added by encoding MiB |",
        "| --- | ---: | ---: |",
    ]
    for backend, r in rss.items():
        lines.append(f"| {backend} | {r['peak']:.0f} | {r['peak'] - r['loaded']:.0f} |")
    if top_k:
        lines += [
            "",
            "## SPLADE top-N weights per document (SciFact test, SPLADE alone, brute force, onnx)",
            "",
            f"{top_k['documents']:.0f} documents (title and abstract, up to 256 tokens); they "
            f"keep {top_k['mean terms']:.0f} weights on average.",
            "",
            "| kept | nDCG@10 | change |",
            "| --- | ---: | ---: |",
        ]
        for name, value in top_k.items():
            if name not in ("mean terms", "documents"):
                lines.append(f"| {name} | {value:.4f} | {value - top_k['all']:+.4f} |")
    if quality:
        lines += ["", "## SciFact test nDCG@10 (`tribrid eval`)", "", *quality_table(quality)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

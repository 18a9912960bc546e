"""Ingestion efficiency: `tribrid ingest` against the encoder ceiling and langchain-qdrant.

Writes the first N SciFact documents as ``.txt`` files (title, blank line, abstract) and,
in one run, measures:

1. **end to end**: ``tribrid.ingest`` of the folder into a cold data dir (listing,
   hashing, parsing in the parse pool, chunking, the three encoders, the Edge store,
   the SQLite ledger; the models load inside the measured time, as they do for a user);
2. **ceiling**: the very chunks that run produced, pushed through the same three
   encoders (MiniLM, splade-tiny, BM25) in a tight loop, in slices of the size the
   pipeline encodes at once (256 texts; the models batch inside as in the pipeline), models pre-loaded;
3. **langchain-qdrant**: ``QdrantVectorStore.add_documents`` of the same chunks in HYBRID
   mode (the same MiniLM as its dense ``Embeddings`` and the same splade-tiny as its
   ``SparseEmbeddings``; it has room for one sparse vector, so no BM25), local-mode
   qdrant-client on disk, the same slice size, models pre-loaded.

Usage:
    TRIBRID_MODELS__CACHE_DIR=~/.cache/tribrid/models .venv/bin/python \
        benchmarks/ingestion.py [--docs 1000] [--repeats 1] [--no-langchain] \
        [--corpus ../shared/data/scifact/corpus.jsonl] [--out benchmarks/results/ingestion-run.md]

Point ``TRIBRID_MODELS__CACHE_DIR`` at an export cache warmed beforehand (any earlier
run fills it): otherwise the end-to-end pass, whose data dir is cold, also pays the
one-off ONNX export. The report (``--out``) is written whole; ``ingestion.md`` holds the
commented history of runs.

Needs the ``bench`` extra (``pip install -e '.[bench]'``) for langchain-qdrant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _memory import TreeMemory

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
#: Texts per encode call, as DocumentWriter slices them (its ``upsert_batch``).
SLICE = 256


def write_scifact(folder: Path, count: int, corpus: Path = CORPUS) -> int:
    """Write the first ``count`` SciFact documents as ``<_id>.txt``; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    with corpus.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines):
            if n >= count:
                break
            record = json.loads(line)
            text = f"{record['title']}\n\n{record['text']}\n"
            written += (folder / f"{record['_id']}.txt").write_text(text, encoding="utf-8")
    return written


def machine() -> str:
    """One line about the machine and the code measured."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    import torch

    return (
        f"commit {commit}, {platform.machine()}, {os.cpu_count()} cores "
        f"({_cpu_model()}), Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@dataclass
class Sample:
    """One measured pass: how long, and over how many documents and chunks."""

    seconds: float
    documents: int
    chunks: int

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds


def chunk_texts(data_dir: Path) -> list[tuple[str, str]]:
    """``(document key, text)`` of every chunk in the index, in document and chunk order."""
    from tribrid.factory import build_encoders, build_store
    from tribrid.settings import Settings

    settings = Settings(data_dir=data_dir)
    store = build_store(settings, build_encoders(settings))
    try:
        hits = store.retrieve(sorted(store.ids()))
    finally:
        store.close()
    ordered = sorted(hits, key=lambda h: (h.payload["document_key"], h.payload["chunk_index"]))
    return [(str(h.payload["document_key"]), str(h.payload["text"])) for h in ordered]


def run_end_to_end(folder: Path, work: Path) -> tuple[Sample, Path, dict[str, Any]]:
    """``tribrid.ingest`` into a cold data dir."""
    import tribrid
    from tribrid.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    with TreeMemory() as memory:
        started = time.perf_counter()
        report = tribrid.ingest(folder, settings=Settings(data_dir=data_dir))
        seconds = time.perf_counter() - started
    if report.counts.failed:
        raise SystemExit(f"{report.counts.failed} documents failed: {report.failures[:3]}")
    chunks = report.counts.chunks_embedded + report.counts.chunks_reused
    detail = {
        "encoded": report.counts.chunks_embedded,
        "reused": report.counts.chunks_reused,
        "peak_tree_mb": memory.peak_mb,
    }
    return Sample(seconds, report.counts.indexed, chunks), data_dir, detail


def run_ceiling(encoders: Any, texts: Sequence[str], documents: int) -> Sample:
    """The same texts through the same encoders, nothing else."""
    started = time.perf_counter()
    for start in range(0, len(texts), SLICE):
        encoders.encode_documents(texts[start : start + SLICE])
    return Sample(time.perf_counter() - started, documents, len(texts))


def run_langchain_qdrant(
    encoders: Any, chunks: Sequence[tuple[str, str]], documents: int, work: Path
) -> Sample:
    """langchain-qdrant's HYBRID ``add_documents`` with the same models, local mode."""
    try:
        from langchain_core.documents import Document
        from langchain_qdrant import QdrantVectorStore, RetrievalMode
        from langchain_qdrant.sparse_embeddings import SparseEmbeddings, SparseVector
    except ImportError as e:
        raise SystemExit("langchain-qdrant is missing: pip install -e '.[bench]'") from e
    from langchain_core.embeddings import Embeddings

    class MiniLMDense(Embeddings):
        """tribrid's dense encoder (MiniLM) as LangChain embeddings."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return encoders.dense.encode_documents(texts).tolist()  # type: ignore[no-any-return]

        def embed_query(self, text: str) -> list[float]:
            return encoders.dense.encode_query(text).tolist()  # type: ignore[no-any-return]

    class SpladeSparse(SparseEmbeddings):
        """tribrid's splade-tiny as a LangChain sparse embedding."""

        def embed_documents(self, texts: list[str]) -> list[SparseVector]:
            return [
                SparseVector(indices=list(v.indices), values=list(v.values))
                for v in encoders.splade.encode_documents(texts)
            ]

        def embed_query(self, text: str) -> SparseVector:
            v = encoders.splade.encode_query(text)
            return SparseVector(indices=list(v.indices), values=list(v.values))

    docs = [Document(page_content=text, metadata={"source": key}) for key, text in chunks]
    path = Path(tempfile.mkdtemp(prefix="lc-qdrant-", dir=work))
    store = QdrantVectorStore.construct_instance(
        embedding=MiniLMDense(),
        sparse_embedding=SpladeSparse(),
        retrieval_mode=RetrievalMode.HYBRID,
        client_options={"path": str(path)},
        collection_name="bench",
    )
    try:
        started = time.perf_counter()
        store.add_documents(docs, batch_size=SLICE)
        seconds = time.perf_counter() - started
        count = store.client.count("bench").count
    finally:
        store.client.close()
    if count != len(docs):
        raise SystemExit(f"langchain-qdrant holds {count} points, expected {len(docs)}")
    return Sample(seconds, documents, len(docs))


def median(samples: Sequence[Sample], attr: str) -> float:
    return statistics.median(getattr(s, attr) for s in samples)


def median_of(rows: Sequence[dict[str, Any]], key: str) -> float:
    return statistics.median(float(row[key]) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingestion-run.md")
    parser.add_argument("--no-langchain", action="store_true", help="skip the baseline")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="a BEIR corpus.jsonl")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tribrid.factory import build_encoders
    from tribrid.settings import Settings

    measured = machine()  # the commit measured, before anything can change the tree
    work = Path(tempfile.mkdtemp(prefix="tribrid-ingestion-bench-"))
    e2e: list[Sample] = []
    details: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    ceiling: list[Sample] = []
    baseline: list[Sample] = []
    try:
        folder = work / "scifact"
        size = write_scifact(folder, args.docs, args.corpus)
        for repeat in range(args.repeats):
            sample, data_dir, detail = run_end_to_end(folder, work)
            e2e.append(sample)
            details.append(detail)
            chunks = chunk_texts(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
            assert len(chunks) == sample.chunks, (len(chunks), sample.chunks)
            # The models are cached in this process since the end-to-end pass: the
            # ceiling and the baseline pay no loading.
            encoders = build_encoders(Settings(data_dir=work / "unused"))
            encoders.warm_up()
            ceiling.append(run_ceiling(encoders, [t for _, t in chunks], sample.documents))
            if not args.no_langchain:
                baseline.append(run_langchain_qdrant(encoders, chunks, sample.documents, work))
            print(
                f"pass {repeat + 1}: e2e {e2e[-1]} {detail}, ceiling {ceiling[-1]}, "
                f"lc {baseline[-1:]}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, samples: Sequence[Sample]) -> str:
        return (
            f"| {name} | {median(samples, 'seconds'):.1f} | "
            f"{median(samples, 'docs_per_s'):.1f} | {median(samples, 'chunks_per_s'):.1f} | "
            f"{median(samples, 'chunks_per_s') / median(ceiling, 'chunks_per_s'):.2f} |"
        )

    chunks_n = e2e[0].chunks
    lines = [
        f"# Ingestion efficiency: {args.docs:,} SciFact documents",
        "",
        f"Command: `TRIBRID_MODELS__CACHE_DIR=<a warmed export cache> .venv/bin/python "
        f"benchmarks/ingestion.py --docs {args.docs} --repeats {args.repeats}`",
        "",
        f"Machine: {measured}.",
        "",
        f"Corpus: the first {args.docs:,} documents of `shared/data/scifact/corpus.jsonl`, one "
        f"`.txt` file each (title, blank line, abstract; {size / 1e6:.2f} MB), giving "
        f"{chunks_n:,} chunks with the default chunking. Medians of {args.repeats} pass(es); "
        "all three measured in each pass, one after the other.",
        "",
        "| | seconds | documents/s | chunks/s | ÷ ceiling |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("`tribrid ingest` (end to end, cold data dir, models load inside)", e2e),
        row("ceiling: the same chunks through the same three encoders", ceiling),
        *(
            [row("langchain-qdrant `add_documents`, HYBRID, local mode", baseline)]
            if baseline
            else []
        ),
        "",
        f"End to end: {details[0]['encoded']:,} chunks encoded, {details[0]['reused']:,} reused "
        "(identical text already encoded); peak resident memory of the whole process tree "
        f"(the ingesting process and its parse workers): {median_of(details, 'peak_tree_mb'):.0f} MiB. "
        f"Load average (1 min) {load_before[0]:.1f} before the run, {os.getloadavg()[0]:.1f} "
        "after it.",
        "",
        f"Efficiency (end to end ÷ ceiling, chunks/s): "
        f"**{median(e2e, 'chunks_per_s') / median(ceiling, 'chunks_per_s'):.2f}** (target ≥ 0.90).",
        "",
    ]
    if baseline:
        lines += [
            f"tribrid end to end ÷ langchain-qdrant: "
            f"{median(e2e, 'chunks_per_s') / median(baseline, 'chunks_per_s'):.2f}.",
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

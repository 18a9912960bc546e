"""Search at 1k, 10k and 100k chunks: client-side against store fusion, and the binary tier.

Measures, in one run:

* **fusion latency** per size: ``TribridRetriever.invoke`` (query encoding excluded:
  its encoders look the cached query vectors up) with client-side fusion and with the
  store's own (``store_fusion=True``), for RRF and for DBSF over dense + SPLADE + BM25,
  round-robin per query (each query run once in every configuration before the
  timed pass), plus client-side DBSF through ``query_batch`` hits (a store
  without :class:`~tribrid.store.base.CandidateSearch`, i.e. the path before fusion on
  the store's keys). Every client-side document is checked for per-channel scores.
* **the binary tier** at the largest size: the same points in a store built with
  ``dense_on_disk=True`` (float vectors cold on disk, binary codes pinned in RAM) and in
  the default store. Each is opened in a fresh process that runs the claims as
  ``binary`` searches (k = 10, oversampling 8, rescoring); that process reports its
  memory (``/proc/self/smaps``: anonymous memory, and the resident pages of each file
  of the store) after the imports, after opening and after the queries. Recall@10 is
  against exact cosine search over the very same float vectors (numpy, brute force).

Vectors: the cached SciFact encodings of ``retriever_latency.py`` (run it with
``--encode-only`` first), grown to the sizes by its :func:`augment`.

Usage:
    .venv/bin/python benchmarks/scale.py [--sizes 1000 10000 100000] [--queries 200] \
        [--json out.json]
    .venv/bin/python benchmarks/scale.py --report out.json [--resync resync.json] \
        [--out benchmarks/results/scale.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import retriever_latency as rl

HERE = Path(__file__).resolve().parent


# -- memory of this process ------------------------------------------------------------


def memory(store_dir: Path | None) -> dict[str, Any]:
    """This process's resident memory in bytes: anonymous, file-backed, and per store file.

    From ``/proc/self/smaps``: ``Anonymous`` is what the process holds on its heap
    (Edge's pinned structures among it); ``Rss`` of a mapped file counts only the pages
    of that file this process has touched or had loaded for it (rounded up to 4 KiB
    pages, and at most the file's size).
    """
    anon = 0
    file_rss = 0
    per_file: dict[str, int] = {}
    current: str | None = None
    root = str(store_dir) if store_dir is not None else None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if not head.endswith(":"):  # a mapping header: range perms offset dev inode [path]
                parts = line.split(maxsplit=5)
                current = parts[5].strip() if len(parts) == 6 else None
                continue
            if head == "Anonymous:":
                anon += int(line.split()[1]) * 1024
            elif head == "Rss:" and current and current.startswith("/"):
                kb = int(line.split()[1]) * 1024
                file_rss += kb
                if root and current.startswith(root):
                    name = current[len(root) + 1 :]
                    per_file[name] = per_file.get(name, 0) + kb
    # A file mapped twice (Edge maps some so) would count twice: a page is in RAM once.
    for name, resident in per_file.items():
        with contextlib.suppress(OSError):
            per_file[name] = min(resident, os.path.getsize(os.path.join(root or "", name)))
    return {"anon": anon, "file": file_rss, "store_files": per_file}


def store_files(store_dir: Path) -> dict[str, int]:
    """Size on disk of every file of the store."""
    return {
        str(p.relative_to(store_dir)): p.stat().st_size
        for p in sorted(store_dir.rglob("*"))
        if p.is_file()
    }


def measure_tier(args: argparse.Namespace) -> None:
    """In a fresh process: open a store, run binary searches, report memory and hits."""
    from tribrid.store import EdgeStore
    from tribrid.store.base import Channel, ChannelQuery, StoreQuery

    queries = np.load(args.measure_tier_queries)
    schema = rl_schema(queries.shape[1], dense_on_disk=args.measure_on_disk)
    path = Path(args.measure_tier)
    # The store was just written, so its files sit in the page cache, where a mapping
    # picks pages up without reading them; drop them, so that what this process holds
    # is what it loaded itself.
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    out: dict[str, Any] = {"before_open": memory(path)}
    store = EdgeStore(path, schema)
    out["after_open"] = memory(path)
    results, times = [], []
    for q in queries:
        request = StoreQuery(
            channels=(ChannelQuery(Channel.BINARY, q.tolist()),),
            limit=10,
            oversampling=8.0,
            with_payload=False,
        )
        t0 = time.perf_counter()
        hits = store.query(request)
        times.append((time.perf_counter() - t0) * 1000)
        results.append([h.id for h in hits])
    out["after_queries"] = memory(path)
    out["query_ms"] = rl.summary(times)
    out["hits"] = results
    store.close()
    Path(args.measure_tier_out).write_text(json.dumps(out))


def rl_schema(dense_size: int, *, dense_on_disk: bool = False) -> Any:
    from tribrid.store.base import CollectionSchema

    return CollectionSchema(
        name="scale",
        dense_size=dense_size,
        dense_model="dense",
        splade_model="splade",
        bm25_model="bm25",
        dense_on_disk=dense_on_disk,
    )


def tier_run(path: Path, queries_file: Path, on_disk: bool) -> dict[str, Any]:
    out_file = path.parent / f"{path.name}-measure.json"
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    command = [
        sys.executable,
        str(Path(__file__)),
        "--measure-tier",
        str(path),
        "--measure-tier-queries",
        str(queries_file),
        "--measure-tier-out",
        str(out_file),
    ]
    if on_disk:
        command.append("--measure-on-disk")
    subprocess.run(command, env=env, check=True)
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


def exact_top(dense: np.ndarray, queries: np.ndarray, ids: Sequence[str], k: int) -> list[set[str]]:
    """Each query's exact top-k by cosine over ``dense``, as point ids."""
    unit = dense / np.linalg.norm(dense, axis=1, keepdims=True)
    top = []
    for q in queries:
        scores = unit @ (q / np.linalg.norm(q))
        best = np.argpartition(-scores, k)[:k]
        top.append({ids[i] for i in best})
    return top


# -- fusion latency ---------------------------------------------------------------------


class HitsOnly:
    """A store without ``candidates``: the retriever falls back to ``query_batch`` hits."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.schema = store.schema
        self.single_writer = True

    def __getattr__(self, name: str) -> Any:
        if name in ("candidates", "acandidates"):
            raise AttributeError(name)
        return getattr(self._store, name)

    @classmethod
    def open(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("wraps an open store")

    def upsert(self, points: Any) -> None:
        self._store.upsert(points)

    def set_payload(self, point_id: str, payload: Any) -> None:
        self._store.set_payload(point_id, payload)

    def delete(self, point_ids: Any) -> None:
        self._store.delete(point_ids)

    def delete_by_filter(self, filter: Any) -> None:
        self._store.delete_by_filter(filter)

    def query(self, query: Any) -> Any:
        return self._store.query(query)

    def query_batch(self, queries: Any) -> Any:
        return self._store.query_batch(queries)

    def retrieve(self, point_ids: Any) -> Any:
        return self._store.retrieve(point_ids)

    def count(self, filter: Any = None) -> int:
        return int(self._store.count(filter))

    def ids(self, filter: Any = None) -> Any:
        return self._store.ids(filter)

    def flush(self) -> None:
        self._store.flush()

    def close(self) -> None:
        self._store.close()


TIER = "binary tier (dense_on_disk=True)"
DEFAULT = "default (floats cached in RAM)"
CLIENT_RRF = "client-side RRF"
STORE_RRF = "store RRF (store_fusion=True)"
CLIENT_DBSF = "client-side DBSF"
STORE_DBSF = "store DBSF (store_fusion=True)"
OLD_DBSF = "client-side DBSF via query_batch hits (the path before)"
PAIRS = [(CLIENT_RRF, STORE_RRF), (CLIENT_DBSF, STORE_DBSF), (OLD_DBSF, STORE_DBSF)]


def time_fusion(store: Any, encoders: Any, texts: Sequence[str], warm: Sequence[str]) -> Any:
    from tribrid.retrievers import TribridRetriever

    def make(s: Any, **options: Any) -> Callable[[str], Any]:
        return TribridRetriever(store=s, encoders=encoders, k=10, **options).invoke

    configs = {
        CLIENT_RRF: make(store, fusion="rrf"),
        STORE_RRF: make(store, fusion="rrf", store_fusion=True),
        CLIENT_DBSF: make(store, fusion="dbsf"),
        STORE_DBSF: make(store, fusion="dbsf", store_fusion=True),
        OLD_DBSF: make(HitsOnly(store), fusion="dbsf"),
    }
    # Every query once in every configuration first, untimed: Edge maps its payloads
    # cold, so the first fetch of a query's payloads reads them from disk, and whichever
    # configuration came first would pay for it.
    for text in [*warm, *texts]:
        for invoke in configs.values():
            invoke(text)
    times: dict[str, list[float]] = {label: [] for label in configs}
    with_channels = 0
    order = list(configs.items())
    for qi, text in enumerate(texts):
        # Round-robin, so every configuration sees the same machine noise, starting
        # with another one each query: the first to run a query pays for bringing its
        # part of the index into the caches.
        shift = qi % len(order)
        for label, invoke in order[shift:] + order[:shift]:
            t0 = time.perf_counter()
            docs = invoke(text)
            times[label].append((time.perf_counter() - t0) * 1000)
            assert len(docs) == 10, (label, len(docs))
            if label in (CLIENT_RRF, CLIENT_DBSF):
                assert all("channel_scores" in d.metadata for d in docs), label
                with_channels += len(docs)
    latency = {label: rl.summary(v) for label, v in times.items()}
    return latency, with_channels


# -- the run ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tribrid.encoders import EncoderSet
    from tribrid.factory import build_encoders
    from tribrid.settings import Settings

    real = build_encoders(Settings())
    corpus, claims = rl.load_scifact(real, args.docs, 300)
    encoders = EncoderSet(
        dense=rl.LookupDense(claims, "dense"),
        splade=rl.LookupSparse(claims, claims.splade, "splade"),
        bm25=rl.LookupSparse(claims, claims.bm25, "bm25"),
    )
    schema = rl_schema(corpus.dense.shape[1])
    work = Path(args.work or tempfile.mkdtemp(prefix="tribrid-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    texts, warm = claims.texts[: args.queries], claims.texts[-5:]
    result: dict[str, Any] = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": rl.machine(),
        "real_passages": len(corpus.ids),
        "sizes": [],
    }
    largest = max(args.sizes)
    if args.tier_only:
        result["tier"] = tier(work, schema, corpus, claims, rl.augment(corpus, largest), largest)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return result
    for n in args.sizes:
        grown = rl.augment(corpus, n)
        store, built = rl.build_edge(work / f"edge-{n}", schema, corpus, grown)
        print(f"{n}: built in {built:.0f} s", flush=True)
        latency, with_channels = time_fusion(store, encoders, texts, warm)
        size = {"points": n, "build_s": built, "latency_ms": latency}
        size["ratios"] = {
            f"{a} / {b}": latency[a]["median"] / latency[b]["median"] for a, b in PAIRS
        }
        size["client_docs_with_channel_scores"] = with_channels
        print(json.dumps(size["ratios"], indent=1), flush=True)
        store.close()
        if n == largest and not args.skip_tier:
            result["tier"] = tier(work, schema, corpus, claims, grown, n)
        shutil.rmtree(work / f"edge-{n}", ignore_errors=True)
        result["sizes"].append(size)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


def tier(work: Path, schema: Any, corpus: Any, claims: Any, grown: Any, n: int) -> dict[str, Any]:
    """The binary tier against the default store, on the same ``n`` points."""
    from dataclasses import replace

    queries_file = work / "queries.npy"
    np.save(queries_file, claims.dense.astype(np.float32))
    on_disk, built = rl.build_edge(
        work / f"tier-{n}", replace(schema, dense_on_disk=True), corpus, grown
    )
    on_disk.close()
    print(f"{n}: binary tier built in {built:.0f} s", flush=True)
    out: dict[str, Any] = {"points": n, "queries": len(claims.dense), "build_s": built}
    ids = [str(rl.uuid.uuid5(rl.NAMESPACE, str(i))) for i in range(n)]
    truth = exact_top(grown[0], claims.dense, ids, 10)
    for label, path, cold in (
        (TIER, work / f"tier-{n}", True),
        (DEFAULT, work / f"edge-{n}", False),
    ):
        if not path.exists():
            continue  # --tier-only
        measured = tier_run(path, queries_file, cold)
        recall = [len(truth[i] & set(hits)) / 10 for i, hits in enumerate(measured.pop("hits"))]
        measured["recall_at_10"] = statistics.mean(recall)
        measured["files"] = store_files(path)
        out[label] = measured
        print(label, measured["recall_at_10"], measured["after_queries"]["anon"], flush=True)
    out["float_bytes"] = int(grown[0].shape[0] * grown[0].shape[1] * 4)
    shutil.rmtree(work / f"tier-{n}", ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--docs", type=int, default=2560)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--skip-tier", action="store_true")
    parser.add_argument("--tier-only", action="store_true", help="the binary tier alone")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--resync", type=Path, default=None)
    parser.add_argument(
        "--tier-json", type=Path, default=None, help="a --tier-only run's --json, for the tier"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.md")
    parser.add_argument("--measure-tier", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure-tier-queries", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure-tier-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure-on-disk", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_tier:
        measure_tier(args)
        return
    if args.report:
        resync = json.loads(args.resync.read_text()) if args.resync else None
        result = json.loads(args.report.read_text())
        if args.tier_json:
            # The tier of a --tier-only run; the default store's side stays this run's.
            alone = json.loads(args.tier_json.read_text())
            earlier = result.get("tier") or {}
            result["tier"] = {
                **earlier,
                **alone["tier"],
                "command": alone["command"],
                "commit": alone["commit"],
                "earlier": earlier.get(TIER),
            }
        args.out.write_text(report(result, resync))
        return
    run(args)


KINDS = (
    ("float vectors", ("vector_storage-dense/matrix", "vector_storage-dense/vectors")),
    ("binary codes", ("vector_storage-dense/quantized",)),
    ("HNSW graph (dense)", ("vector_index-dense/",)),
    ("write-ahead log", ("wal/",)),
)


def kind_of(name: str) -> str:
    for kind, parts in KINDS:
        if any(part in name for part in parts):
            return kind
    return "everything else (sparse indexes, payloads, payload indexes, ids)"


def by_kind(files: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, size in files.items():
        out[kind_of(name)] = out.get(kind_of(name), 0) + size
    return out


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def report(result: dict[str, Any], resync: dict[str, Any] | None) -> str:
    """The Markdown result page of one run of this script (and of ``resync.py``)."""
    sizes = result["sizes"]
    largest = sizes[-1]
    lines = [
        "# Scale: 1k to 100k chunks, client-side against store fusion, the binary tier,"
        " a no-change resync",
        "",
        f"Command: `{result['command']}` (commit {result['commit']}), {result['machine']}.",
        "Written up with `python benchmarks/scale.py --report run.json --resync resync.json`.",
        "",
        "The machine was shared with several other jobs the whole time (load average 20 to",
        "30 on 2 cores), so absolute times are inflated several times over and vary from",
        "minute to minute; the configurations run round-robin per query in one process, so",
        "the ratios between them, from one run, are the figures to read.",
        "",
        "## Summary",
        "",
    ]
    lat = largest["latency_ms"]
    n = largest["points"]
    for client, store in ((CLIENT_DBSF, STORE_DBSF), (CLIENT_RRF, STORE_RRF)):
        lines.append(
            f"- {n:,} chunks, {client} over {store}: "
            f"**{lat[client]['median'] / lat[store]['median']:.2f}x** "
            f"({lat[client]['median']:.2f} against {lat[store]['median']:.2f} ms median)."
        )
    lines.append(
        f"  Every client-side document carried its per-channel scores and ranks "
        f"({largest['client_docs_with_channel_scores']:,} documents checked)."
    )
    tier = result.get("tier")
    if tier:
        on, off = tier[TIER], tier[DEFAULT]
        files = by_kind(on["files"])
        held = by_kind(on["after_queries"]["store_files"])
        kept = files.get("binary codes", 0) + held.get("HNSW graph (dense)", 0)
        lines += [
            f"- Binary tier at {tier['points']:,} chunks: binary search keeps "
            f"{mb(kept)} MB in memory (codes {mb(files.get('binary codes', 0))} MB, pinned;"
            f" HNSW graph pages resident {mb(held.get('HNSW graph (dense)', 0))} MB), "
            f"**{kept / tier['float_bytes']:.3f}** of the float vectors' "
            f"{mb(tier['float_bytes'])} MB; recall@10 against exact search "
            f"**{on['recall_at_10']:.3f}** (default store: {off['recall_at_10']:.3f}).",
            f"  The float pages the rescoring read stayed resident after "
            f"{tier['queries']} queries: {mb(held.get('float vectors', 0))} MB, page cache the"
            " kernel may evict (default store: "
            f"{mb(by_kind(off['after_queries']['store_files']).get('float vectors', 0))} MB,"
            " loaded on open).",
        ]
        earlier = tier.get("earlier")
        if earlier:
            e_files = by_kind(earlier["files"])
            e_held = by_kind(earlier["after_queries"]["store_files"])
            e_kept = e_files.get("binary codes", 0) + e_held.get("HNSW graph (dense)", 0)
            lines.append(
                "  The tier's first version, with an HNSW graph over the codes (the run above,"
                f" commit {result['commit']}): {mb(e_kept)} MB kept, "
                f"{e_kept / tier['float_bytes']:.3f} of the floats, recall@10 "
                f"{earlier['recall_at_10']:.3f}, binary search median "
                f"{earlier['query_ms']['median']:.2f} ms; hence no graph now."
            )
    if resync:
        r = resync["no_change_s"]
        lines += [
            f"- No-change resync of {resync['files']:,} files: {r['in_sync_median']:.1f} s"
            f" inside the sync, {r['ingest_call_median']:.1f} s for the whole `tribrid.ingest`"
            f" call, {r['cli_median']:.1f} s with the CLI's start (medians of"
            f" {len(r['in_sync'])}).",
        ]
    lines += ["", "## Client-side against store fusion", ""]
    lines += [
        "`TribridRetriever(k=10).invoke` over dense + SPLADE + BM25 (prefetch 100 per",
        "channel), query encoding excluded (the encoders look the claims' cached vectors",
        "up). Client-side fusion sends one `candidates` call (the three channels in one",
        "Edge `query_batch`, no payloads, ids kept as the UUIDs' integers), fuses on those",
        "keys, then turns only the walked candidates into ids and fetches their payloads",
        "(one `retrieve` of 10 points). Store fusion sends one prefetch-and-fuse query that",
        "returns the 10 hits with payloads. The last row is client-side DBSF through",
        "`query_batch` hits, what the retriever did before (a `Hit` and an id string per",
        "candidate), kept as a control. Each size: 5 warm-up claims, then every timed claim",
        "once in every configuration untimed (Edge maps payloads cold), then the timed",
        "pass, round-robin per claim, starting with another configuration each claim.",
        "",
    ]
    for size in sizes:
        lines += [
            f"### {size['points']:,} chunks (Edge store built in {size['build_s']:.0f} s)",
            "",
            "| configuration | queries | median ms | p95 ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, v in size["latency_ms"].items():
            lines.append(f"| {label} | {v['n']} | {v['median']:.2f} | {v['p95']:.2f} |")
        lines += ["", "| ratio of medians | |", "| --- | ---: |"]
        for label, ratio in size["ratios"].items():
            lines.append(f"| {label} | {ratio:.2f} |")
        lines.append("")
    if tier:
        lines += [
            f"## The binary tier at {tier['points']:,} chunks",
            "",
            *(
                [
                    f"Binary tier: `{tier['command']}` (commit {tier['commit']}), a run of its",
                    "own after the one above; the default store's column is from the run",
                    "above (the same points: the same seed of `augment`).",
                    "",
                ]
                if "command" in tier
                else []
            ),
            "The same points in two Edge stores: the default one, and one made with",
            "`dense_on_disk=True` (`TRIBRID_QUANTIZATION__DENSE_ON_DISK=true` for a new",
            "collection): the dense vector's storage is `Memory.Cold` (mapped, never loaded",
            "ahead), its 2-bit binary codes `Memory.Pinned`. Each store is opened in a fresh",
            "process after its files were dropped from the page cache",
            "(`posix_fadvise(DONTNEED)`), which then runs the "
            f"{tier['queries']} SciFact claims' real MiniLM vectors as `binary` searches",
            "(k = 10, oversampling 8, rescored with the floats) and reads its own",
            "`/proc/self/smaps` after the imports, after opening and after the queries:",
            "anonymous memory, and the resident pages of each file of the store.",
            "Recall@10 is against exact cosine search (numpy, brute force) over the very",
            "same float vectors.",
            "",
            "| | binary tier | default |",
            "| --- | ---: | ---: |",
            f"| recall@10 against exact | {on['recall_at_10']:.4f} | {off['recall_at_10']:.4f} |",
            f"| binary search, median / p95 ms | {on['query_ms']['median']:.2f} / "
            f"{on['query_ms']['p95']:.2f} | {off['query_ms']['median']:.2f} / "
            f"{off['query_ms']['p95']:.2f} |",
        ]
        for label, stage in (
            ("after opening", "after_open"),
            ("after the queries", "after_queries"),
        ):
            a, b = on[stage], off[stage]
            lines.append(
                f"| anonymous memory {label}, MB above the imports | "
                f"{mb(a['anon'] - on['before_open']['anon'])} | "
                f"{mb(b['anon'] - off['before_open']['anon'])} |"
            )
            ka, kb = by_kind(a["store_files"]), by_kind(b["store_files"])
            for kind in sorted(set(ka) | set(kb)):
                lines.append(
                    f"| resident pages of the {kind} {label}, MB | {mb(ka.get(kind, 0))} |"
                    f" {mb(kb.get(kind, 0))} |"
                )
        fa, fb = by_kind(on["files"]), by_kind(off["files"])
        for kind in sorted(set(fa) | set(fb)):
            lines.append(f"| {kind} on disk, MB | {mb(fa.get(kind, 0))} | {mb(fb.get(kind, 0))} |")
        lines += [
            f"| float vectors, {tier['points']:,} x 384 x 4 bytes, MB | "
            f"{mb(tier['float_bytes'])} | {mb(tier['float_bytes'])} |",
            "",
        ]
    if resync:
        r = resync["no_change_s"]
        lines += [
            "## No-change resync",
            "",
            f"Command: `{resync['command']}`.",
            "",
            f"{resync['files']:,} `.txt` files of one SciFact sentence each (one chunk each),",
            f"indexed once with the real encoders ({resync['first_sync_s']:.0f} s), then",
            "synced again with nothing changed, in this process (`tribrid.ingest`) and",
            "through the CLI in a fresh process (`tribrid ingest FOLDER --json`).",
            "",
            "| | median s | runs, s |",
            "| --- | ---: | --- |",
            f"| inside the sync (report `duration_s`) | {r['in_sync_median']:.2f} | "
            + ", ".join(f"{x:.2f}" for x in r["in_sync"])
            + " |",
            f"| whole `tribrid.ingest` call | {r['ingest_call_median']:.2f} | "
            + ", ".join(f"{x:.2f}" for x in r["ingest_call"])
            + " |",
            f"| `tribrid ingest` in a fresh process | {r['cli_median']:.2f} | "
            + ", ".join(f"{x:.2f}" for x in r["cli"])
            + " |",
            "",
            f"Counts of the no-change syncs: {resync['no_change_counts']}.",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

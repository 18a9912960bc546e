"""`tribrid serve` against in-process: search latency, ingestion throughput, `tribrid search`.

Measures, in one run, each pair side by side on the same machine at the same time:

1. **search latency** at each ``--sizes`` (default 10k and 100k chunks), query encoding
   included (the real default encoders, ONNX int8): ``POST /v1/search`` to a
   ``tribrid serve`` subprocess (one keep-alive ``ServerClient`` per client thread)
   against ``HybridRetriever.search`` on the same store opened in this process, with 1
   and 8 concurrent clients (threads, each running its share of the queries one after
   the other; for in-process, 8 threads on one retriever), for the default retriever
   (client-side DBSF over dense + SPLADE + BM25, k = 10) and ``store_fusion=True``.
   With one client the modes run round-robin per query, and a third mode is timed:
   ``RemoteRetriever.search``, what ``tribrid.as_retriever()`` gives, which opens a
   connection per call. With 8 clients the modes run A B B A over the two halves of
   the queries. The store is built without encoding passages: cached SciFact vectors
   grown by :func:`retriever_latency.augment`, upserted into an ``EdgeStore``; a copy
   of the store folder serves the in-process side (Qdrant Edge lets one process open a
   store), so both search the same points.
2. **ingestion throughput**: ``tribrid ingest FOLDER`` of N SciFact documents (``.txt``
   files, see ``ingestion.py``) into a fresh data dir with no server (A), against the
   same into a fresh data dir owned by a running ``tribrid serve`` (B: the ingest
   process parses and encodes, the points travel to the server), A B A B…, wall time
   of the command (models load inside it).
3. **`tribrid search` wall time**: the whole command, process start included, on an
   index of the repo's ``examples/docs``, with a server running on it against without;
   the two data dirs are copies, so the runs alternate. ``python -c pass`` is timed in
   the same rotation as the floor. Then ``python -X importtime`` of the served command
   lists what the client path imports.

Every subprocess runs this worktree's code (``PYTHONPATH``) through
``python -c "from tribrid.cli import main; main()"``, which is what the ``tribrid``
console script runs. Model exports are shared by every data dir through
``TRIBRID_MODELS__CACHE_DIR`` (``benchmarks/.cache/models``), so no run pays an export.

Usage:
    PYTHONPATH=. .venv/bin/python benchmarks/retriever_latency.py --encode-only  # vectors
    PYTHONPATH=. .venv/bin/python benchmarks/serve.py [--sizes 10000 100000] \
        [--queries 200] [--clients 1 8] [--ingest-docs 400] [--ingest-repeats 2] \
        [--search-runs 5] [--json raw.json] [--out benchmarks/results/serve.md]
    PYTHONPATH=. .venv/bin/python benchmarks/serve.py --quick   # a smoke check, ~2 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import retriever_latency as rl
from ingestion import write_scifact

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = HERE / ".cache" / "models"
EXAMPLES = ROOT / "examples" / "docs"
CLI = [sys.executable, "-c", "from tribrid.cli import main; main()"]
#: ``tribrid serve`` with one change, made here and not in the package: its listening
#: socket is made with ``proto=IPPROTO_TCP``. ``socket.create_server`` (what
#: ``runner._bind`` uses) leaves ``proto`` 0, and asyncio sets ``TCP_NODELAY`` on an
#: accepted connection only when the proto is TCP; without it, every request after the
#: first on a keep-alive connection waits about 40 ms for a delayed ACK (Nagle).
NODELAY_CLI = [
    sys.executable,
    "-c",
    "import socket\n"
    "import tribrid.server.runner as runner\n"
    "def _bind(host, port):\n"
    "    family = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
    "    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)\n"
    "    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    sock.bind((host, port))\n"
    "    sock.listen(256)\n"
    "    return sock\n"
    "runner._bind = _bind\n"
    "from tribrid.cli import main; main()",
]
#: The same command, timing its import of ``tribrid.cli`` and its run apart (stderr).
SPLIT_CLI = [
    sys.executable,
    "-c",
    "import json, sys, time\n"
    "t0 = time.perf_counter()\n"
    "from tribrid.cli import main\n"
    "t1 = time.perf_counter()\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "t2 = time.perf_counter()\n"
    "sys.stderr.write(json.dumps({'import_s': t1 - t0, 'run_s': t2 - t1}) + '\\n')",
]
SEARCH_QUERY = "how does rank fusion combine dense and sparse results"
K = 10
CONFIGS: dict[str, dict[str, Any]] = {
    "default (client-side DBSF, dense+SPLADE+BM25)": {},
    "store_fusion=True": {"store_fusion": True},
}
SERVED = "server, POST /v1/search"
FIXED = "server with TCP_NODELAY, POST /v1/search"
REMOTE = "server, RemoteRetriever.search (connection per call)"
LOCAL = "in-process HybridRetriever.search"


def child_env() -> dict[str, str]:
    """The environment of every subprocess: this worktree, the shared model exports."""
    env = {k: v for k, v in os.environ.items() if k != "TRIBRID_DATA_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    env["TRIBRID_MODELS__CACHE_DIR"] = str(MODELS)
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency(values: Sequence[float], wall_s: float | None = None) -> dict[str, float]:
    out = {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 0.99),
    }
    if wall_s is not None:
        out["wall_s"] = wall_s
        out["qps"] = len(values) / wall_s
    return out


# -- the server, as a subprocess ----------------------------------------------------------


@contextlib.contextmanager
def running_server(
    data_dir: Path, log: Path, timeout: float = 600.0, cli: Sequence[str] = CLI
) -> Iterator[Any]:
    """``tribrid serve --port 0`` on ``data_dir``; yields its descriptor once it answers.

    On exit: SIGTERM, wait, and check that it removed its descriptor.
    """
    from tribrid.store.remote import SERVER_FILE, discover

    store = data_dir / "store"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cli, "serve", "--data-dir", str(data_dir), "--port", "0"],
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"tribrid serve exited with {proc.returncode}; see {log}")
            info = discover(store) if (store / SERVER_FILE).exists() else None
            if info is not None and info.pid == proc.pid:
                break
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"tribrid serve did not answer in {timeout:.0f} s; see {log}")
            time.sleep(0.1)
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SystemExit(f"tribrid serve (pid {proc.pid}) ignored SIGTERM for 120 s") from None
        if (store / SERVER_FILE).exists():
            print(f"  WARNING: {store / SERVER_FILE} left behind after SIGTERM", flush=True)


# -- 1. search latency ---------------------------------------------------------------------


def concurrent(
    make_call: Callable[[], tuple[Callable[[str], int], Callable[[], None]]],
    texts: Sequence[str],
    clients: int,
) -> tuple[list[float], float]:
    """Each of ``clients`` threads runs its share of ``texts`` one after the other.

    ``make_call`` is called in each thread and returns (search, close). Returns every
    request's latency in ms and the wall time from the common start to the last answer.
    """
    shares = [texts[i::clients] for i in range(clients)]
    times: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    ready = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        call, close = make_call()
        try:
            ready.wait()
            for text in shares[i]:
                t0 = time.perf_counter()
                got = call(text)
                times[i].append((time.perf_counter() - t0) * 1000)
                if got != K:
                    raise AssertionError(f"{got} results for {text!r}, expected {K}")
        except BaseException as e:
            errors.append(e)
            ready.abort()
        finally:
            close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return [ms for per in times for ms in per], wall


def served_call(url: str, options: dict[str, Any], took: list[float]) -> Any:
    """A factory of keep-alive clients of ``POST /v1/search`` (one per thread); the
    server's own time for each search (``took_ms``) goes into ``took``."""
    from tribrid.store.remote import ServerClient

    def make() -> tuple[Callable[[str], int], Callable[[], None]]:
        client = ServerClient(url)

        def call(text: str) -> int:
            answer = client.post("/v1/search", {"query": text, "k": K, **options})
            took.append(float(answer["took_ms"]))
            return len(answer["results"])

        return call, client.close

    return make


def remote_call(url: str, options: dict[str, Any]) -> Any:
    from tribrid.retrievers.remote import RemoteRetriever

    def make() -> tuple[Callable[[str], int], Callable[[], None]]:
        retriever = RemoteRetriever(url=url, k=K, **options)
        return (lambda text: len(retriever.search(text))), retriever.close

    return make


def local_call(retriever: Any, options: dict[str, Any]) -> Any:
    def make() -> tuple[Callable[[str], int], Callable[[], None]]:
        return (lambda text: len(retriever.search(text, **options))), lambda: None

    return make


def run_size(
    n: int,
    corpus: rl.Encoded,
    texts: list[str],
    warm: list[str],
    clients: Sequence[int],
    configs: dict[str, dict[str, Any]],
    work: Path,
) -> dict[str, Any]:
    from tribrid.factory import build_encoders, collection_schema
    from tribrid.retrievers import HybridRetriever
    from tribrid.settings import Settings
    from tribrid.store import EdgeStore

    out: dict[str, Any] = {"points": n, "queries": len(texts)}
    served_dir, fixed_dir, local_dir = (work / f"{m}-{n}" for m in ("served", "fixed", "local"))
    settings = Settings(data_dir=served_dir)
    encoders = build_encoders(settings)
    encoders.warm_up()
    schema = collection_schema(settings, encoders)
    t0 = time.perf_counter()
    grown = rl.augment(corpus, n)
    store, out["upsert_s"] = rl.build_edge(settings.store_path, schema, corpus, grown)
    store.close()
    out["build_s"] = time.perf_counter() - t0
    # Qdrant Edge lets one process open a store: each side gets its own copy.
    shutil.copytree(settings.store_path, local_dir / "store")
    shutil.copytree(settings.store_path, fixed_dir / "store")
    print(f"{n}: store built in {out['build_s']:.0f} s (upsert + optimise)", flush=True)

    local_store = EdgeStore(local_dir / "store", schema)
    retriever = HybridRetriever(
        store=local_store,
        encoders=encoders,
        k=K,
        oversampling=settings.quantization.oversampling,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        with (
            running_server(served_dir, work / f"serve-{n}.log") as info,
            running_server(fixed_dir, work / f"serve-fixed-{n}.log", cli=NODELAY_CLI) as fixed,
        ):
            # Same points, same code: the sides must answer alike.
            from tribrid.store.remote import ServerClient

            same = 0
            checked = texts[:20]
            with (
                contextlib.closing(ServerClient(info.url)) as a,
                contextlib.closing(ServerClient(fixed.url)) as b,
            ):
                for text in checked:
                    ids = [c.id for c in retriever.search(text)]
                    same += all(
                        [
                            r["id"]
                            for r in client.post("/v1/search", {"query": text, "k": K})["results"]
                        ]
                        == ids
                        for client in (a, b)
                    )
            out["same_top10"] = f"{same}/{len(checked)}"
            print(f"{n}: identical top-10 from the three sides for {out['same_top10']} queries")
            for label, options in configs.items():
                took: dict[str, list[float]] = {SERVED: [], FIXED: []}
                modes = {
                    SERVED: served_call(info.url, options, took[SERVED]),
                    FIXED: served_call(fixed.url, options, took[FIXED]),
                    LOCAL: local_call(retriever, options),
                }
                if not options:
                    modes = {**modes, REMOTE: remote_call(info.url, options)}
                    modes[LOCAL] = modes.pop(LOCAL)  # last, as the base
                for make in modes.values():  # warm-up, not timed
                    call, close = make()
                    for text in warm:
                        call(text)
                    close()
                per: dict[str, Any] = {}
                for c in clients:
                    for values in took.values():
                        values.clear()
                    if c == 1:
                        calls = {m: make() for m, make in modes.items()}
                        times: dict[str, list[float]] = {m: [] for m in modes}
                        walls = dict.fromkeys(modes, 0.0)
                        for text in texts:  # round-robin per query: same noise for all
                            for mode, (call, _) in calls.items():
                                t = time.perf_counter()
                                got = call(text)
                                dt = time.perf_counter() - t
                                assert got == K, (mode, got)
                                times[mode].append(dt * 1000)
                                walls[mode] += dt
                        for _, close in calls.values():
                            close()
                        per["1"] = {m: latency(times[m], walls[m]) for m in modes}
                    else:
                        half = len(texts) // 2
                        trio = (SERVED, FIXED, LOCAL)
                        pooled: dict[str, list[float]] = {m: [] for m in trio}
                        wall = dict.fromkeys(trio, 0.0)
                        # A B C over the first half of the queries, C B A over the second.
                        order = [(m, 0) for m in trio] + [(m, 1) for m in reversed(trio)]
                        for mode, part in order:
                            chunk = texts[:half] if part == 0 else texts[half:]
                            ms, w = concurrent(modes[mode], chunk, c)
                            pooled[mode] += ms
                            wall[mode] += w
                        per[str(c)] = {m: latency(pooled[m], wall[m]) for m in trio}
                    for mode, values in took.items():
                        per[str(c)][mode]["server_p50"] = statistics.median(values)
                    for mode, s in per[str(c)].items():
                        print(
                            f"{n} {label} {c} client(s) {mode}: p50 {s['p50']:.1f} ms, "
                            f"p99 {s['p99']:.1f} ms, {s['qps']:.1f} q/s"
                            + (
                                f", server-side p50 {s['server_p50']:.1f} ms"
                                if "server_p50" in s
                                else ""
                            ),
                            flush=True,
                        )
                results[label] = per
    finally:
        local_store.close()
        for folder in (served_dir, fixed_dir, local_dir):
            shutil.rmtree(folder, ignore_errors=True)
    out["latency"] = results
    return out


def time_query_encoding(texts: Sequence[str]) -> dict[str, float]:
    """Query encoding alone, in this process, for scale."""
    from tribrid.factory import build_encoders
    from tribrid.settings import Settings

    encoders = build_encoders(Settings())
    encoders.warm_up()
    ms = []
    for text in texts:
        t0 = time.perf_counter()
        encoders.encode_query(text)
        ms.append((time.perf_counter() - t0) * 1000)
    return latency(ms)


# -- 2. ingestion --------------------------------------------------------------------------


def count_points(data_dir: Path) -> int:
    from tribrid.factory import StoreRoute, build_encoders, build_store
    from tribrid.settings import Settings

    settings = Settings(data_dir=data_dir)
    store = build_store(settings, build_encoders(settings), route=StoreRoute.OWNER)
    try:
        return store.count()
    finally:
        store.close()


def run_ingest(folder: Path, data_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [*CLI, "ingest", str(folder), "--data-dir", str(data_dir), "--json"],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"tribrid ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    if counts["failed"]:
        raise SystemExit(f"{counts['failed']} documents failed: {report.get('failures')}")
    return {
        "wall_s": wall,
        "duration_s": float(report["duration_s"]),
        "documents": counts["indexed"],
        "chunks": counts["chunks_embedded"],
        "chunks_per_s": counts["chunks_embedded"] / wall,
    }


def ingestion(n_docs: int, repeats: int, work: Path) -> dict[str, Any]:
    folder = work / "scifact-txt"
    size = write_scifact(folder, n_docs)
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "served": []}
    for rep in range(repeats):
        for mode in ("direct", "served"):
            data_dir = work / f"ingest-{mode}-{rep}"
            if mode == "direct":
                sample = run_ingest(folder, data_dir)
            else:
                with running_server(data_dir, work / f"serve-ingest-{rep}.log"):
                    sample = run_ingest(folder, data_dir)
            sample["points"] = count_points(data_dir)
            if sample["points"] != sample["chunks"]:
                raise SystemExit(f"{mode}: {sample['points']} points for {sample['chunks']} chunks")
            shutil.rmtree(data_dir, ignore_errors=True)
            runs[mode].append(sample)
            print(
                f"ingest {mode} pass {rep + 1}: {sample['wall_s']:.1f} s, "
                f"{sample['chunks']} chunks, {sample['chunks_per_s']:.2f} chunks/s",
                flush=True,
            )
    shutil.rmtree(folder, ignore_errors=True)
    return {"documents": n_docs, "bytes": size, "runs": runs}


# -- 3. `tribrid search` wall time ---------------------------------------------------------


def timed(command: Sequence[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{command[3:]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


def parse_importtime(stderr: str, root: str = "tribrid.cli") -> dict[str, Any]:
    """What ``python -X importtime`` says about importing ``root``.

    Returns ``direct``: the modules ``root`` imports itself, with their cumulative ms;
    ``packages``: each top-level package other than ``tribrid``, with the summed self
    time of all its modules (these add up, unlike cumulative times) and the nearest
    tribrid module on the chain that first imported it; and ``root_ms``, ``total_ms``.
    """
    rows = []  # (self ms, cumulative ms, depth, name), in print order: children first
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            rows.append(
                (int(m.group(1)) / 1000, int(m.group(2)) / 1000, len(m.group(3)), m.group(4))
            )

    def importer(i: int) -> str:
        level = rows[i][2]
        for _, _, depth, name in rows[i + 1 :]:
            if depth < level:
                level = depth
                if name.startswith("tribrid"):
                    return name
        return "(a function, at run time)"

    at = next(i for i, r in enumerate(rows) if r[3] == root)
    lo = max((i for i in range(at) if rows[i][2] <= rows[at][2]), default=-1) + 1
    direct = [(r[3], r[1]) for r in rows[lo:at] if r[2] == rows[at][2] + 2]
    packages: dict[str, list[Any]] = {}
    for i, (self_ms, _, _, name) in enumerate(rows):
        top = name.split(".")[0]
        if top == "tribrid":
            continue
        if top not in packages:
            packages[top] = [0.0, importer(i)]
        packages[top][0] += self_ms
    return {
        "root_ms": rows[at][1],
        "total_ms": sum(r[0] for r in rows),
        "direct": sorted(direct, key=lambda r: -r[1]),
        "packages": sorted(((k, v[0], v[1]) for k, v in packages.items()), key=lambda r: -r[1]),
    }


def search_command(runs: int, work: Path) -> dict[str, Any]:
    plain, served = work / "examples-plain", work / "examples-served"
    done = subprocess.run(
        [*CLI, "ingest", str(EXAMPLES), "--data-dir", str(plain), "--json"],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ingest of {EXAMPLES} failed: {done.stderr[-2000:]}")
    chunks = json.loads(done.stdout.strip().splitlines()[-1])["counts"]["chunks_embedded"]
    shutil.copytree(plain, served)
    command = [*CLI, "search", SEARCH_QUERY, "--data-dir"]
    floor = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {"with server": [], "without server": [], "floor": []}
    split: dict[str, list[float]] = {"import_s": [], "run_s": []}
    with running_server(served, work / "serve-search.log"):
        for command_dir in (plain, served):  # warm-up: the page cache, not timed
            timed([*command, str(command_dir)])
        for _ in range(runs):
            times["without server"].append(timed([*command, str(plain)]))
            times["with server"].append(timed([*command, str(served)]))
            times["floor"].append(timed(floor))
            done = subprocess.run(
                [*SPLIT_CLI, "search", SEARCH_QUERY, "--data-dir", str(served)],
                env=child_env(),
                capture_output=True,
                text=True,
                check=True,
            )
            for key, value in json.loads(done.stderr.strip().splitlines()[-1]).items():
                split[key].append(value)
        for name, values in times.items():
            print(f"tribrid search {name}: median {statistics.median(values):.3f} s", flush=True)
        profiled = [sys.executable, "-X", "importtime", *CLI[1:], "search", SEARCH_QUERY]
        profile = subprocess.run(
            [*profiled, "--data-dir", str(served)],
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
    return {
        "chunks": chunks,
        "times": times,
        "split": split,
        "imports": parse_importtime(profile.stderr),
    }


# -- the report ----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def ratio_line(a: float, b: float, unit: str) -> str:
    return f"{a / b:.2f} ({a:.1f} vs {b:.1f} {unit})"


def report(r: dict[str, Any]) -> str:
    lines = [
        "# `tribrid serve` against in-process: search latency, ingestion, `tribrid search`",
        "",
        f"Command, from the worktree root: `{r['command']}` (commit {r['commit']}).",
        "",
        f"Machine: {r['machine']}. Load average at the start "
        f"{r['load_start'][0]:.2f} / {r['load_start'][1]:.2f} / {r['load_start'][2]:.2f} "
        f"(1/5/15 min), at the end {r['load_end'][0]:.2f} / {r['load_end'][1]:.2f} / "
        f"{r['load_end'][2]:.2f}. The run took {r['minutes']:.0f} min.",
        "",
        "Other jobs share the 2 cores, so absolute times hold for this run only. Each",
        "comparison was measured side by side in this one run (round-robin per query,",
        "A B C C B A, or alternating passes). The ratios are the figures to read.",
        "",
    ]
    ing = r.get("ingestion")
    srch = r.get("search_command")
    lines += ["## Summary", "", "| goal | measured | |", "| --- | --- | --- |"]
    if ing:
        direct = statistics.median(s["chunks_per_s"] for s in ing["runs"]["direct"])
        served = statistics.median(s["chunks_per_s"] for s in ing["runs"]["served"])
        lines.append(
            "| ingestion through the server ÷ direct ≥ 0.95 (chunks/s, median of "
            f"{len(ing['runs']['direct'])} passes each) | "
            f"{ratio_line(served, direct, 'chunks/s')} | {verdict(served / direct >= 0.95)} |"
        )
    if srch:
        with_server = statistics.median(srch["times"]["with server"])
        without = statistics.median(srch["times"]["without server"])
        lines.append(
            f"| `tribrid search` with the server ≤ 0.3 s (median of {len(srch['times']['with server'])}) "
            f"| {with_server:.2f} s (without the server {without:.2f} s) | "
            f"{verdict(with_server <= 0.3)} |"
        )
    for size in r.get("sizes", []):
        default = size["latency"][next(iter(size["latency"]))]
        for c, modes in default.items():
            base = modes[LOCAL]
            for mode in (SERVED, FIXED):
                lines.append(
                    f"| (no goal) {mode}, p50 ÷ in-process, {size['points']:,} chunks, "
                    f"{c} client(s), default options | "
                    f"{ratio_line(modes[mode]['p50'], base['p50'], 'ms')} | |"
                )
            if c != "1":
                for mode in (SERVED, FIXED):
                    lines.append(
                        f"| (no goal) {mode}, queries/s ÷ in-process, {size['points']:,} "
                        f"chunks, {c} clients, default options | "
                        f"{ratio_line(modes[mode]['qps'], base['qps'], 'q/s')} | |"
                    )
    lines.append("")

    if r.get("sizes"):
        enc = r["query_encoding_ms"]
        lines += [
            "## 1. Search latency, query encoding included",
            "",
            "Setup: the first "
            f"{r['real_passages']:,} SciFact passages, encoded once with the default encoders",
            "and cached (`retriever_latency.py --encode-only`). `retriever_latency.augment`",
            "grows them to each size, and they are upserted into an `EdgeStore` (then",
            "flushed and optimised) under a data dir. The store folder is copied twice.",
            "`tribrid serve` runs on the original and on one copy (the patched variant",
            "below), and the benchmark process opens the other copy for the in-process",
            "side. Queries: the first "
            f"{r['queries']} SciFact claims (`queries.jsonl`, file order); 5 others warm",
            "each mode up untimed. k = 10, real query encoding (ONNX int8) on every",
            f"request. Query encoding alone, in this process: p50 {enc['p50']:.1f} ms, p99",
            f"{enc['p99']:.1f} ms ({enc['n']} claims, before the sizes).",
            "",
            f"- **{SERVED}**: `tribrid serve` as it is, a keep-alive `ServerClient` per",
            "  client thread. The server encodes the query and runs `HybridRetriever.search`;",
            "  the client parses the JSON.",
            f"- **{FIXED}**: the same, against a `tribrid serve` whose listening socket is",
            "  made with `proto=IPPROTO_TCP` (patched in the benchmark's launcher, not in",
            "  the package; see the bug below). asyncio then sets `TCP_NODELAY` on each",
            "  connection.",
            f"- **{REMOTE}**: what `tribrid.as_retriever()` returns when a server owns the",
            "  data dir. It makes a new HTTP client and connection per call, so it never",
            "  hits the keep-alive stall but pays for the client each time. Measured with",
            "  1 client and the default options only.",
            f"- **{LOCAL}**: the same encoders and retriever options in this process; with",
            "  8 clients, 8 threads share the one retriever.",
            "- 1 client: the modes run round-robin per query. 8 clients: each thread runs",
            "  its share of the queries one after another. The modes run A B C over the",
            "  first half of the queries and C B A over the second, and latencies are",
            "  pooled. q/s = queries ÷ wall time of the mode's passes (with 1 client, the",
            "  sum of its request times).",
            "- server-side p50: the median of the `took_ms` the server reports, the time",
            "  spent in `HybridRetriever.search` (encoding included). The rest of a",
            "  request's time is HTTP, JSON and queueing.",
            "- p99 of a few hundred requests is the second- or third-slowest, so it is noisy.",
            "",
        ]
        for size in r["sizes"]:
            lines += [
                f"### {size['points']:,} chunks",
                "",
                f"Store built in {size['build_s']:.0f} s (augment, upsert, optimise). In-process,",
                "the server and the patched server returned the same top-10 ids in the same",
                f"order for {size['same_top10']} of the queries checked.",
                "",
                "| retriever options | clients | mode | p50 ms | p99 ms | queries/s | "
                "server-side p50 ms | p50 ÷ in-process | q/s ÷ in-process |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for label, per in size["latency"].items():
                for c, modes in per.items():
                    base = modes[LOCAL]
                    for mode, s in modes.items():
                        took = f"{s['server_p50']:.1f}" if "server_p50" in s else ""
                        lines.append(
                            f"| {label} | {c} | {mode} | {s['p50']:.1f} | {s['p99']:.1f} | "
                            f"{s['qps']:.1f} | {took} | {s['p50'] / base['p50']:.2f} | "
                            f"{s['qps'] / base['qps']:.2f} |"
                        )
            lines.append("")

    if ing:
        lines += [
            "## 2. Ingestion through the server against direct",
            "",
            f"The first {ing['documents']} SciFact documents as `.txt` files (title, blank line,",
            f"abstract; {ing['bytes'] / 1e6:.2f} MB). Each pass runs `tribrid ingest FOLDER",
            "--data-dir D --json` into a fresh data dir and times the whole command, process",
            "start and model loading included. **direct**: no server; the ingest process",
            "owns the store. **served**: `tribrid serve` is started on the fresh data dir",
            "first (not timed). The ingest process parses and encodes, and writes its points",
            "through the server (`RemoteStore`, 256 points per `POST /v1/store/upsert`).",
            "Passes alternate direct, served, direct, served. After each pass the store is",
            "opened and its points are counted against the chunks reported.",
            "",
            "| pass | mode | wall s | ingest's own duration s | documents | chunks | chunks/s |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for rep in range(len(ing["runs"]["direct"])):
            for mode in ("direct", "served"):
                s = ing["runs"][mode][rep]
                lines.append(
                    f"| {rep + 1} | {mode} | {s['wall_s']:.1f} | {s['duration_s']:.1f} | "
                    f"{s['documents']} | {s['chunks']} | {s['chunks_per_s']:.2f} |"
                )
        direct = statistics.median(s["chunks_per_s"] for s in ing["runs"]["direct"])
        served = statistics.median(s["chunks_per_s"] for s in ing["runs"]["served"])
        lines += [
            "",
            f"Median chunks/s: served {served:.2f}, direct {direct:.2f}; **served ÷ direct = "
            f"{served / direct:.2f}** (goal ≥ 0.95). Pass by pass: "
            + ", ".join(
                f"{s['chunks_per_s'] / d['chunks_per_s']:.2f}"
                for s, d in zip(ing["runs"]["served"], ing["runs"]["direct"], strict=True)
            )
            + ".",
            "",
        ]

    if srch:
        t = srch["times"]
        med = {k: statistics.median(v) for k, v in t.items()}
        imp = srch["imports"]
        split = {k: statistics.median(v) for k, v in srch["split"].items()}
        lines += [
            "## 3. `tribrid search` wall time",
            "",
            f"Index: the repo's `examples/docs` ({srch['chunks']} chunks), ingested once. A copy of",
            "its data dir has `tribrid serve` running on it. The command is `tribrid search",
            f'"{SEARCH_QUERY}" --data-dir D`, run as `python -c "from',
            'tribrid.cli import main; main()" …`, which is what the console script runs.',
            "The wall time runs from launch to exit. Each command has one warm-up run, then",
            f"the commands run in rotation, {len(t['with server'])} runs each.",
            "",
            "| | median s | min s | max s |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {name} | {med[key]:.3f} | {min(t[key]):.3f} | {max(t[key]):.3f} |"
                for name, key in (
                    ("`tribrid search`, server running", "with server"),
                    (
                        "`tribrid search`, no server (loads the models, opens the store)",
                        "without server",
                    ),
                    ("`python -c pass` (the interpreter's own start)", "floor"),
                )
            ),
            "",
            f"With the server: {med['with server']:.2f} s against the goal of 0.3 s, "
            f"{verdict(med['with server'] <= 0.3)}. With ÷ without: "
            f"{med['with server'] / med['without server']:.2f}.",
            "",
            "The same command, timed from inside the process and still in the rotation",
            f"(medians): `from tribrid.cli import main` takes {split['import_s']:.2f} s, and",
            f"`main()` (the command's own work) takes {split['run_s']:.2f} s.",
            "",
            "### What the client path imports",
            "",
            '`python -X importtime -c "from tribrid.cli import main; main()" search …`, run once',
            "with the server running. The measurement itself inflates import times. Importing",
            f"`tribrid.cli` took {imp['root_ms']:.0f} ms in all, and the self times of every",
            f"module add up to {imp['total_ms']:.0f} ms. The command needs `typer`, `rich`,",
            "`pydantic(-settings)`, `tribrid.settings`, `httpx` and the remote retriever's",
            "client; everything else below is imported by module-level imports it never uses.",
            "",
            "What `tribrid.cli` imports at module level, by cumulative time (top 8):",
            "",
            "| module | cumulative ms |",
            "| --- | ---: |",
            *(f"| `{name}` | {ms:.0f} |" for name, ms in imp["direct"][:8]),
            "",
            "Packages by the summed self time of their modules (these add up). Each is shown",
            "with the nearest tribrid module on the chain that first imported it (top 15):",
            "",
            "| package | self ms, all its modules | first imported under |",
            "| --- | ---: | --- |",
            *(f"| `{name}` | {ms:.0f} | `{via}` |" for name, ms, via in imp["packages"][:15]),
            "",
        ]
    lines += [
        "## Caveats",
        "",
        "- One machine with 2 cores, shared. The servers, the client threads and the",
        "  in-process side compete for the same cores, as they would on a laptop; a",
        "  server on a machine of its own would not share its cores with its clients.",
        "- The corpora above the real passages are synthetic (see `retriever_latency.py`).",
        *r.get("caveats", []),
    ]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import platform

    import onnxruntime

    return (
        f"{platform.machine()}, {rl.machine().split(', ')[1]}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--docs", type=int, default=2560, help="cached passages to grow from")
    parser.add_argument("--no-store-fusion", action="store_true")
    parser.add_argument("--ingest-docs", type=int, default=400)
    parser.add_argument("--ingest-repeats", type=int, default=2)
    parser.add_argument("--search-runs", type=int, default=5)
    parser.add_argument("--skip", nargs="*", default=[], choices=["search", "ingest", "command"])
    parser.add_argument("--caveat", action="append", default=[], help="a line for the report")
    parser.add_argument("--quick", action="store_true", help="small sizes: a ~2 min smoke check")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.md")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.docs = [2000], 16, 256
        args.ingest_docs, args.ingest_repeats, args.search_runs = 20, 1, 2
        if args.out == HERE / "results" / "serve.md":
            args.out = Path(tempfile.gettempdir()) / "tribrid-serve-quick.md"
    os.environ["TRIBRID_MODELS__CACHE_DIR"] = str(MODELS)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.pop("TRIBRID_DATA_DIR", None)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": "PYTHONPATH=. .venv/bin/python benchmarks/serve.py " + " ".join(sys.argv[1:]),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": machine(),
        "load_start": os.getloadavg(),
        "caveats": [f"- {c}" for c in args.caveat],
    }
    configs = {k: v for k, v in CONFIGS.items() if not (args.no_store_fusion and v)}
    work = Path(tempfile.mkdtemp(prefix="tribrid-serve-bench-"))
    try:
        if "search" not in args.skip and args.sizes:
            from tribrid.factory import build_encoders
            from tribrid.settings import Settings

            encoders = build_encoders(Settings(data_dir=work / "unused"))
            encoders.warm_up()
            docs = rl.read_jsonl(rl.DATA / "corpus.jsonl", args.docs)
            corpus = rl.encode_cached(
                "docs",
                [str(d["_id"]) for d in docs],
                [f"{d.get('title', '')}\n{d['text']}".strip() for d in docs],
                encoders,
                queries=False,
            )
            claims = [q["text"] for q in rl.read_jsonl(rl.DATA / "queries.jsonl", None)]
            texts, warm = claims[: args.queries], claims[-5:]
            result["real_passages"] = len(corpus.ids)
            result["queries"] = len(texts)
            result["query_encoding_ms"] = time_query_encoding(claims[-50:])
            result["sizes"] = [
                run_size(n, corpus, texts, warm, args.clients, configs, work) for n in args.sizes
            ]
        if "ingest" not in args.skip:
            result["ingestion"] = ingestion(args.ingest_docs, args.ingest_repeats, work)
        if "command" not in args.skip:
            result["search_command"] = search_command(args.search_runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = os.getloadavg()
    result["minutes"] = (time.perf_counter() - started) / 60
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

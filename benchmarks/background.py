"""Background ingestion throughput: in-process against 1 and 2 Celery worker processes.

Writes the first N SciFact documents as ``.txt`` files (see ``benchmarks/ingestion.py``)
and ingests the folder into a cold data dir three ways, side by side in one run:

* **in-process**: ``tribrid ingest FOLDER`` (one process encodes and writes; the parse
  pool is one more process);
* **1 worker**: ``tribrid worker --writer`` (owns the embedded store, loads no models)
  and one ``tribrid worker -c 1`` that parses, chunks and encodes, torch on 2 threads;
  the run is queued with ``tribrid ingest FOLDER --background``;
* **2 workers**: the writer and two ``tribrid worker -c 1``, torch on 1 thread each.

Every mode starts from cold processes: the clock starts when the commands are launched
and stops when the ledger says the run is complete, so model loading and worker start-up
are inside the wall time. The steady rate leaves them out: documents indexed after the
first batch, over the time between the first and the last ``indexed_at`` in the ledger.

Usage:
    .venv/bin/python benchmarks/background.py [--docs 1000] [--repeats 1] \
        [--broker redis://127.0.0.1:6379/12] [--out benchmarks/results/background.md]

The broker database is flushed before and after each mode.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from ingestion import machine, write_scifact
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1


@dataclass
class Result:
    """One mode's pass."""

    mode: str
    wall_s: float
    documents: int
    chunks: int
    first_indexed_s: float
    steady_docs_per_s: float
    steady_chunks_per_s: float


def _ledger_timings(data_dir: Path, started: float) -> tuple[int, int, float, float, float]:
    engine = create_engine(f"sqlite:///{(data_dir / 'ledger.db').resolve()}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT indexed_at, chunk_count FROM documents "
                    "WHERE status = 'indexed' ORDER BY indexed_at"
                )
            ).all()
    finally:
        engine.dispose()
    from datetime import datetime

    stamps = [
        (r[0] if isinstance(r[0], datetime) else datetime.fromisoformat(str(r[0]))).replace(
            tzinfo=UTC
        )
        for r in rows
    ]
    chunks = [int(r[1]) for r in rows]
    first, last = stamps[0].timestamp(), stamps[-1].timestamp()
    span = max(last - first, 1e-9)
    # Documents are recorded a batch at a time: the steady rate counts those recorded
    # after the first batch, over the time from the first batch to the last.
    later = [c for s, c in zip(stamps, chunks, strict=True) if s.timestamp() > first]
    return len(rows), sum(chunks), first - started, len(later) / span, sum(later) / span


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBRID_")}
    env.update(
        TRIBRID_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        **extra,
    )
    return env


def in_process(folder: Path, work: Path) -> Result:
    """``tribrid ingest FOLDER`` in its own process."""
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    started = time.time()
    done = subprocess.run(
        [str(BIN / "tribrid"), "ingest", str(folder), "--json"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.time() - started
    if done.returncode:
        raise SystemExit(f"tribrid ingest failed: {done.stderr[-2000:]}")
    result = Result("in-process (`tribrid ingest`)", wall, *_ledger_timings(data_dir, started))
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def with_workers(folder: Path, work: Path, workers: int, broker: str) -> Result:
    """The writer and ``workers`` parse/encode workers, a background run."""
    import redis

    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    queue = f"bench-{secrets.token_hex(3)}"
    env = _env(
        data_dir,
        TRIBRID_CELERY__BROKER_URL=broker,
        TRIBRID_CELERY__QUEUE=queue,
        TRIBRID_CELERY__WRITE_QUEUE=f"{queue}.write",
        # Two cores: one worker gets both for torch, two workers get one each.
        TRIBRID_MODELS__TORCH_THREADS=str(max(1, CORES // workers)),
    )
    client = redis.Redis.from_url(broker)
    client.flushdb()
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    started = time.time()
    try:
        commands = [[str(BIN / "tribrid"), "worker", "--writer", "--loglevel", "WARNING"]]
        commands += [[str(BIN / "tribrid"), "worker", "-c", "1", "--loglevel", "WARNING"]] * workers
        for n, command in enumerate(commands):
            log = (work / f"{queue}-{n}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        queued = subprocess.run(
            [str(BIN / "tribrid"), "ingest", str(folder), "--background", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        run_id = int(json.loads(queued.stdout)["run_id"])
        engine = create_engine(f"sqlite:///{(data_dir / 'ledger.db').resolve()}")
        try:
            while True:
                with engine.connect() as connection:
                    status = connection.execute(
                        text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}
                    ).scalar_one()
                if status != "running":
                    break
                for proc in procs:
                    if proc.poll() is not None:
                        raise SystemExit(f"a worker exited; see {work}")
                time.sleep(0.2)
        finally:
            engine.dispose()
        wall = time.time() - started
        if status != "completed":
            raise SystemExit(f"run {run_id} ended {status}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in logs:
            log.close()
        client.flushdb()
        client.close()
    mode = f"{workers} worker process{'es' if workers > 1 else ''} + writer"
    result = Result(mode, wall, *_ledger_timings(data_dir, started))
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "background.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tribrid-background-bench-"))
    results: dict[str, list[Result]] = {}
    try:
        folder = work / "scifact"
        write_scifact(folder, args.docs)
        for repeat in range(args.repeats):
            for result in (
                in_process(folder, work),
                with_workers(folder, work, 1, args.broker),
                with_workers(folder, work, 2, args.broker),
            ):
                if result.documents != args.docs:
                    raise SystemExit(f"{result.mode}: {result.documents} indexed of {args.docs}")
                results.setdefault(result.mode, []).append(result)
                print(f"pass {repeat + 1}: {result}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(rs: Sequence[Result], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in rs)

    base = next(iter(results.values()))
    lines = [
        f"# Background ingestion: {args.docs:,} SciFact documents, in-process against workers",
        "",
        f"Command: `.venv/bin/python benchmarks/background.py --docs {args.docs} "
        f"--repeats {args.repeats}` (broker `{args.broker}`)",
        "",
        f"Machine: {machine()}.",
        "",
        f"{base[0].chunks:,} chunks. Medians of {args.repeats} pass(es); the three modes run "
        "one after the other in each pass, each into a cold data dir, from cold processes.",
        "",
        "| mode | wall s | documents/s | chunks/s | first doc indexed at | steady documents/s "
        "| steady chunks/s | wall time ÷ in-process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, rs in results.items():
        wall = med(rs, "wall_s")
        lines.append(
            f"| {mode} | {wall:.1f} | {med(rs, 'documents') / wall:.1f} | "
            f"{med(rs, 'chunks') / wall:.1f} | {med(rs, 'first_indexed_s'):.1f} s | "
            f"{med(rs, 'steady_docs_per_s'):.1f} | {med(rs, 'steady_chunks_per_s'):.1f} | "
            f"{wall / med(base, 'wall_s'):.2f} |"
        )
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

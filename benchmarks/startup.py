"""Start-up time of the ``tribrid`` command: this checkout against a baseline, side by side.

Each command is run as a fresh process (what a user types), ``--runs`` times per
checkout, the two checkouts alternating run by run so they share the machine's load;
the report gives each one's median wall time and the ratio. The machine is shared, so
the load average is recorded before and after, and only the ratios of one run compare.

The commands, on the demo index (``examples/docs``, built into ``--data-dir`` by this
checkout if missing, as ``make demo`` does):

* ``tribrid --help``;
* ``tribrid status``;
* ``tribrid search QUERY`` (hybrid: the ONNX models load in the process) and
  ``tribrid search -m bm25 QUERY`` (the lexical channel: no model);
* ``tribrid search QUERY`` through ``tribrid serve`` (started from this checkout on the
  same data dir; the client loads no model).

Usage:
    .venv/bin/python benchmarks/startup.py [--baseline ../main] [--runs 5] \
        [--data-dir /tmp/tribrid-startup] [--out benchmarks/results/startup.md]

Each checkout runs with ``PYTHONPATH=<checkout>`` and the same Python, so the same
installed dependencies serve both.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUERY = "how does reciprocal rank fusion combine rankings"
# The console script's body: `python -m tribrid.cli` would not run it (no __main__ guard).
ENTRY = "import sys; from tribrid.cli import main; sys.argv[0] = 'tribrid'; sys.exit(main())"


@dataclass(frozen=True)
class Checkout:
    """A source tree whose ``tribrid`` package is timed."""

    name: str
    path: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.path)
        env.update(DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        return env

    def command(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", ENTRY, *args]


def run_once(checkout: Checkout, args: Sequence[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``tribrid ARGS`` process.

    On a busy machine the wall time mostly measures the queue for the cores; the CPU
    time the process used is the steadier estimate of its wall time on an idle one.
    The command must succeed.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        checkout.command(args), env=checkout.env(), cwd=checkout.path, capture_output=True
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(
            f"{checkout.name}: tribrid {' '.join(args)} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed, cpu


def ensure_demo_index(checkout: Checkout, data_dir: Path) -> None:
    """Build the demo index into ``data_dir`` unless it is there (``make demo``'s ingest)."""
    if (data_dir / "ledger.db").exists():
        return
    print(f"building the demo index in {data_dir}", file=sys.stderr)
    subprocess.run(
        checkout.command(["ingest", str(ROOT / "examples" / "docs"), "--data-dir", str(data_dir)]),
        env=checkout.env(),
        cwd=checkout.path,
        check=True,
        capture_output=True,
    )


@contextmanager
def serving(checkout: Checkout, data_dir: Path) -> Iterator[None]:
    """``tribrid serve`` on ``data_dir`` (a free port) until the block ends."""
    server = subprocess.Popen(
        checkout.command(["serve", "--data-dir", str(data_dir), "--port", "0"]),
        env=checkout.env(),
        cwd=checkout.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 300
        for line in server.stdout:
            if line.startswith("serving "):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("tribrid serve did not start within 300 s")
        else:
            raise RuntimeError(f"tribrid serve exited {server.wait()} before it served")
        yield
    finally:
        server.terminate()
        server.wait(60)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def measure(
    checkouts: Sequence[Checkout], args: Sequence[str], runs: int, data: dict[str, Path]
) -> dict[str, list[tuple[float, float]]]:
    """``runs`` (wall, CPU) times of ``tribrid ARGS`` per checkout, alternating checkouts.

    ``{data}`` in ``args`` is each checkout's own data dir (``data``): a ledger one
    version migrated may be too new for the other.
    """
    times: dict[str, list[tuple[float, float]]] = {c.name: [] for c in checkouts}

    def own(c: Checkout) -> list[str]:
        return [a.replace("{data}", str(data[c.name])) for a in args]

    for c in checkouts:  # one untimed run each: the OS file cache, .pyc files
        run_once(c, own(c))
    for _ in range(runs):
        for c in checkouts:
            times[c.name].append(run_once(c, own(c)))
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="Tree to time.")
    parser.add_argument("--baseline", type=Path, help="Another tree to time beside it.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/tribrid-startup"))
    parser.add_argument("--out", type=Path, help="Write the Markdown report here.")
    args = parser.parse_args(argv)

    checkouts = [Checkout("this checkout", args.checkout.resolve())]
    if args.baseline is not None:
        checkouts.append(Checkout("baseline", args.baseline.resolve()))
    data = "{data}"
    dirs = {c.name: args.data_dir / f"index-{i}" for i, c in enumerate(checkouts)}
    for c in checkouts:
        ensure_demo_index(c, dirs[c.name])
        # Byte-compiled, as a wheel installs it: with PYTHONDONTWRITEBYTECODE set (as on
        # this machine) a source checkout would otherwise be compiled at every start.
        compileall.compile_dir(c.path / "tribrid", quiet=1)
    commands: list[tuple[str, list[str]]] = [
        ("tribrid --help", ["--help"]),
        ("tribrid status", ["status", "--data-dir", data]),
        ("tribrid search (hybrid, in process)", ["search", QUERY, "-k", "3", "--data-dir", data]),
        (
            "tribrid search -m bm25 (in process)",
            ["search", QUERY, "-m", "bm25", "-k", "3", "--data-dir", data],
        ),
    ]
    remote = (
        "tribrid search (through tribrid serve)",
        ["search", QUERY, "-k", "3", "--data-dir", data],
    )

    load_before = load()
    results: list[tuple[str, dict[str, list[tuple[float, float]]]]] = []
    for label, command in commands:
        results.append((label, measure(checkouts, command, args.runs, dirs)))
        print(f"{label}: done", file=sys.stderr)
    with contextlib.ExitStack() as servers:
        for c in checkouts:
            servers.enter_context(serving(c, dirs[c.name]))
        results.append((remote[0], measure(checkouts, remote[1], args.runs, dirs)))
    load_after = load()

    lines = [
        "# Start-up time of the `tribrid` command",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), shared with other "
        f"work: load average (1/5/15 min) {load_before} before, {load_after} after. "
        f"Wall time and CPU time (user + system) of a fresh process, median of {args.runs} "
        "runs per checkout, the checkouts alternating run by run. On a busy machine the wall "
        "time is mostly the wait for a core; the CPU time estimates the wall time on an "
        "idle one. Compare the ratios, not times across runs.",
        "",
        "Command: `python benchmarks/startup.py "
        + " ".join(
            [f"--runs {args.runs}", f"--data-dir {args.data_dir}"]
            + ([f"--baseline {args.baseline}"] if args.baseline else [])
            + ([f"--out {args.out}"] if args.out else [])
        )
        + "`",
        "",
    ]
    names = [c.name for c in checkouts]
    header = ["command"]
    for kind in ("wall", "CPU"):
        header += [f"{name} {kind} (s)" for name in names]
        if len(names) == 2:
            header.append(f"{kind} ratio")
    lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for label, times in results:
        row = [label]
        summary[label] = {}
        for kind, index in (("wall", 0), ("CPU", 1)):
            medians = {n: statistics.median(t[index] for t in times[n]) for n in names}
            summary[label][kind] = medians
            row += [f"{medians[n]:.2f}" for n in names]
            if len(names) == 2:
                row.append(f"{medians[names[1]] / medians[names[0]]:.1f}×")
        lines.append("| " + " | ".join(row) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    print(json.dumps(summary), file=sys.stderr)
    if args.out is not None:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

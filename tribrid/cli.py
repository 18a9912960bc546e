"""The ``tribrid`` command: a thin layer over :mod:`tribrid.app`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tribrid import app as api
from tribrid.errors import TribridError
from tribrid.settings import Settings

cli = typer.Typer(
    name="tribrid",
    help="Index folders of documents into a hybrid (dense + SPLADE + BM25) Qdrant index and search it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TRIBRID_DATA_DIR",
        help="Folder holding the ledger, the embedded store and caches [default: ./.tribrid].",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


class _LiveProgress:
    """Files, chunks and chunks/s, redrawn as documents finish."""

    def __init__(self, live: Live) -> None:
        self._live = live
        self._started = time.monotonic()
        self.outcomes: dict[str, int] = {"indexed": 0, "unchanged": 0, "failed": 0, "deleted": 0}
        self.chunks = 0
        self.last = ""

    def document_done(self, key: str, outcome: str, chunks: int) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.last = key
        self._live.update(self.render())

    def chunks_embedded(self, count: int) -> None:
        self.chunks += count
        self._live.update(self.render())

    def render(self) -> Table:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        table = Table.grid(padding=(0, 2))
        files = sum(self.outcomes.values())
        parts = ", ".join(f"{v} {k}" for k, v in self.outcomes.items() if v)
        table.add_row("files", f"{files} ({parts or 'listing…'})")
        table.add_row("chunks embedded", f"{self.chunks}  ({self.chunks / elapsed:.1f} chunks/s)")
        table.add_row("last", self.last[-80:])
        return table


@cli.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder to index.")],
    data_dir: DataDir = None,
    recreate: Annotated[bool, typer.Option(help="Drop the collection and build it again.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Retry files that failed before.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Index a folder: new and changed files are embedded, deleted files removed."""
    if not path.is_dir():
        raise _fail(f"{path} is not a folder; pass the folder that holds the documents")
    settings = _settings(data_dir)
    with Live(console=err_console, refresh_per_second=4, transient=True) as live:
        progress = _LiveProgress(live)
        report = api.ingest(
            path, settings=settings, recreate=recreate, retry_failed=retry_failed, progress=progress
        )
    counts = report.counts
    if as_json:
        typer.echo(json.dumps({**asdict(report), "counts": counts.as_dict()}, default=str))
        return
    table = Table(title=f"ingest {path} ({report.duration_s:.1f} s)")
    for column in (
        "indexed",
        "unchanged",
        "failed",
        "deleted",
        "chunks embedded",
        "chunks reused",
        "chunks/s",
    ):
        table.add_column(column, justify="right")
    rate = counts.chunks_embedded / report.duration_s if report.duration_s else 0.0
    table.add_row(
        str(counts.indexed),
        str(counts.unchanged),
        str(counts.failed),
        str(counts.deleted),
        str(counts.chunks_embedded),
        str(counts.chunks_reused),
        f"{rate:.1f}",
    )
    console.print(table)
    if report.failures:
        console.print(
            f"{len(report.failures)} file(s) failed; see `tribrid status` for the reasons."
        )


def _snippet(text: str, query: str, width: int = 220) -> str:
    """The window of ``text`` that holds the most query words, so a hit shows why it hit."""
    words = text.split()
    wanted = {w.lower().strip(".,;:!?()") for w in query.split() if len(w) > 2}
    best, best_hits = 0, 0
    for start in range(len(words)):
        hits = sum(w in " ".join(words[start:])[:width].lower() for w in wanted)
        if hits and hits >= best_hits:
            best, best_hits = start, hits  # the latest such start: the hits open the window
    best = max(0, best - 4)  # a few words of context before the first hit
    rest = " ".join(words[best:])
    return ("… " if best else "") + rest[:width] + ("…" if len(rest) > width else "")


@cli.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[
        api.SearchMode, typer.Option("--mode", "-m", help="Ranking channel(s).")
    ] = api.SearchMode.HYBRID,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Number of results.")] = 10,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Search the index."""
    results = api.search(query, mode=mode, k=k, settings=_settings(data_dir))
    if as_json:
        rows = [
            {
                "path": r.path,
                "score": r.score,
                "chunk_index": r.chunk_index,
                "page": r.page,
                "text": r.text,
                "id": r.point_id,
            }
            for r in results
        ]
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"{mode.value}: {query}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("path", overflow="fold", min_width=12, ratio=2)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("snippet", overflow="fold", ratio=5)
    for rank, r in enumerate(results, 1):
        snippet = _snippet(r.text, query)
        where = r.path + (f" p.{r.page}" if r.page else "")
        table.add_row(str(rank), where, f"{r.score:.4f}", snippet)
    console.print(table)
    if not results:
        console.print("no results; is anything indexed? run `tribrid ingest PATH` first")


@cli.command()
def status(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Counts by status, and every failed file with its reason."""
    report = api.status(settings=_settings(data_dir))
    if as_json:
        payload: dict[str, Any] = asdict(report)
        typer.echo(json.dumps(payload, default=str))
        return
    counts = Table(title="documents")
    for name in report.counts:
        counts.add_column(name, justify="right")
    counts.add_column("chunks", justify="right")
    counts.add_row(*(str(v) for v in report.counts.values()), str(report.chunks))
    console.print(counts)
    if report.last_run is not None:
        run = report.last_run
        took = f"{run.duration_s:.1f} s" if run.duration_s is not None else "running"
        done = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in run.counts.as_dict().items() if v)
        console.print(f"last run #{run.id} ({run.status}, {took}): {done or 'nothing to do'}")
    if report.failures:
        failures = Table(title="failed files", show_lines=False)
        failures.add_column("path", overflow="fold")
        failures.add_column("reason")
        failures.add_column("message", overflow="fold")
        for f in report.failures:
            failures.add_row(f.key, f.error_kind or "", f.error_message or "")
        console.print(failures)


def main() -> None:
    """Entry point: run the CLI, turning tribrid errors into one-line messages."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cli()
    except TribridError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    except ValidationError as e:
        err_console.print(
            f"[red]error:[/red] {_settings_problem(e)}", highlight=False, soft_wrap=True
        )
        raise SystemExit(2) from None


def _settings_problem(error: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and what it must be."""
    problems = []
    for item in error.errors():
        path = [str(p) for p in item["loc"]]
        env = "TRIBRID_" + "__".join(p.upper() for p in path)
        problems.append(f"setting {'.'.join(path)} ({env}): {item['msg']}")
    return "; ".join(problems)

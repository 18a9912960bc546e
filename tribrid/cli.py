"""The ``tribrid`` command: a thin layer over :mod:`tribrid.app` and :mod:`tribrid.factory`."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tribrid import app as api
from tribrid import factory
from tribrid.errors import TribridError, redact, require_extras
from tribrid.evaluation import cli as evaluation_cli
from tribrid.ledger import ArchiveStatus, RunProgress
from tribrid.logs import JsonFormatter, LogFormat, setup_logging

if TYPE_CHECKING:
    from tribrid.ingestion.pipeline import SyncReport
    from tribrid.settings import Settings

cli = typer.Typer(
    name="tribrid",
    help="Index folders of documents into a hybrid (dense + SPLADE + BM25) Qdrant index and search it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # the installed package's (its __version__)

        typer.echo(f"tribrid {version('tribrid')}")
        raise typer.Exit()


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="TRIBRID_DATA_DIR",
        help="Folder holding the ledger, the embedded store and caches [default: ./.tribrid].",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
SourceName = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Name of the source: its files keep their points when the folder moves or is "
        "mounted elsewhere and is synced under the same name [default: keyed by the folder].",
    ),
]


@dataclass
class _Logging:
    """How this invocation logs (the global options), and the secrets to mask."""

    verbosity: int = 0
    log_format: LogFormat = LogFormat.TEXT
    secrets: list[str] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        """Whether a live display may draw on stderr (no log lines to interleave)."""
        return self.verbosity <= 0 and self.log_format is LogFormat.TEXT


_logging = _Logging()


@cli.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log more: -v one line per document and what each step does, -vv debug.",
        ),
    ] = 0,
    quiet: Annotated[
        int, typer.Option("--quiet", "-q", count=True, help="Log less: -q errors only.")
    ] = 0,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="TRIBRID_LOG_FORMAT",
            help="Log lines on stderr as text, or as one JSON object per line.",
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Index folders of documents into a hybrid (dense + SPLADE + BM25) Qdrant index and search it.

    Logs go to stderr; the options before the command apply to every command.
    """
    # Options of `tribrid` itself, before the command. Keep this module cheap to import:
    # heavy libraries are imported inside the commands (tests/test_startup.py).
    _logging.verbosity = verbose - quiet
    _logging.log_format = log_format
    setup_logging(verbosity=_logging.verbosity, log_format=log_format, secrets=_logging.secrets)


def _settings(data_dir: Path | None) -> Settings:
    from tribrid.settings import Settings  # pydantic-settings: not for `--help`

    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _fail(message: str) -> typer.Exit:
    _error(message)
    return typer.Exit(code=2)


class _LiveProgress:
    """Files, chunks and chunks/s, redrawn as documents finish; once the listing is done,
    the files left to parse and an ETA from the rate since then."""

    def __init__(self, live: Live) -> None:
        self._live = live
        self._started = time.monotonic()
        self.outcomes: dict[str, int] = {"indexed": 0, "unchanged": 0, "failed": 0, "deleted": 0}
        self.chunks = 0
        self.last = ""
        self._to_parse: int | None = None
        self._listed_at = self._started
        self._done_before = 0

    def listing_done(self, to_parse: int) -> None:
        self._to_parse = to_parse
        self._listed_at = time.monotonic()
        self._done_before = self.outcomes["indexed"] + self.outcomes["failed"]
        self._live.update(self.render())

    def document_done(self, key: str, outcome: str, chunks: int) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.last = key
        self._live.update(self.render())

    def chunks_embedded(self, count: int) -> None:
        self.chunks += count
        self._live.update(self.render())

    def render(self) -> Table:
        now = time.monotonic()
        since_listing = max(now - self._listed_at, 1e-6)
        table = Table.grid(padding=(0, 2))
        files = sum(self.outcomes.values())
        parts = ", ".join(f"{v} {k}" for k, v in self.outcomes.items() if v)
        table.add_row("files", f"{files} ({parts or 'listing…'})")
        table.add_row("chunks", f"{self.chunks}  ({self.chunks / since_listing:.1f} chunks/s)")
        if self._to_parse is not None:
            parsed = self.outcomes["indexed"] + self.outcomes["failed"] - self._done_before
            left = max(self._to_parse - parsed, 0)
            eta = f"{left / (parsed / since_listing):.0f} s" if parsed else "–"
            table.add_row("to parse", f"{left} of {self._to_parse}  (ETA {eta})")
        table.add_row("last", self.last[-80:])
        return table


@cli.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder to index.")],
    data_dir: DataDir = None,
    connector: Annotated[
        str,
        typer.Option(
            "--connector",
            help="What lists PATH: a connector name (`local` folder, `beir` dataset folder).",
        ),
    ] = "local",
    recreate: Annotated[
        bool,
        typer.Option(
            help="Rebuild the whole index as a new generation, switched to when complete "
            "(searches keep answering from the old one meanwhile)."
        ),
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Retry files that failed before.")] = False,
    source: SourceName = None,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            help="Queue the sync for `tribrid worker` processes and return at once with a run id.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Index a folder: new and changed files are embedded, deleted files removed."""
    if background:
        require_extras("`tribrid ingest --background`", "celery")
    else:
        require_extras("`tribrid ingest`", "index", "parse")
    if not path.is_dir():
        raise _fail(f"{path} is not a folder; pass the folder that holds the documents")
    from tribrid.connectors import CONNECTORS

    if connector not in CONNECTORS:
        raise _fail(
            f"unknown connector {connector!r}; valid names: {', '.join(sorted(CONNECTORS))}"
        )
    settings = _settings(data_dir)
    if background:
        if recreate:
            raise _fail("--recreate cannot run in the background; run it in the foreground")
        if connector != "local":
            raise _fail("--background syncs local folders only; leave out --connector")
        _ingest_in_background(
            path, settings, retry_failed=retry_failed, as_json=as_json, source=source
        )
        return
    from tribrid.errors import ChunkingChangedError, SchemaMismatchError

    def run(rebuild: bool) -> SyncReport:
        if not _logging.plain:  # log lines say what happens to each document: no live display
            return api.ingest(
                path,
                settings=settings,
                recreate=rebuild,
                retry_failed=retry_failed,
                connector=connector,
                source=source,
            )
        with Live(console=err_console, refresh_per_second=4, transient=True) as live:
            return api.ingest(
                path,
                settings=settings,
                recreate=rebuild,
                retry_failed=retry_failed,
                progress=_LiveProgress(live),
                connector=connector,
                source=source,
            )

    try:
        report = run(recreate)
    except (SchemaMismatchError, ChunkingChangedError) as e:
        # Another model or chunking than the index was built with: offer the rebuild at a
        # terminal.
        if recreate or not sys.stdin.isatty():
            raise
        err_console.print(f"[yellow]{e}[/yellow]", highlight=False, soft_wrap=True)
        if not typer.confirm(
            "Rebuild the index with the new settings? It is built beside the current one, "
            "which keeps answering searches until the new one is complete"
        ):
            raise typer.Exit(code=1) from None
        report = run(True)
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


def _ingest_in_background(
    path: Path, settings: Settings, *, retry_failed: bool, as_json: bool, source: str | None
) -> None:
    from tribrid.background import worker

    worker.configure(settings, create_folders=True)
    ledger = factory.build_ledger(settings)
    try:
        connector = factory.source_connector(settings, ledger, path, source=source)
        key = connector.source_key
        run_id = worker.enqueue_sync(
            ledger,
            path,
            queue=settings.celery.queue,
            retry_failed=retry_failed,
            source_key=key,
        )
    finally:
        ledger.close()
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "source_key": key}))
        return
    console.print(
        f"queued run #{run_id} for {path}; follow it with "
        f"`tribrid status --run {run_id} --follow` (workers: `tribrid worker`"
        + (", and one `tribrid worker --writer`" if factory.single_writer(settings) else "")
        + ")",
        highlight=False,
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


def _parse_filter(text: str) -> dict[str, Any]:
    """``--filter``'s JSON, checked against the filter language; the error names the field.

    The simple form (``{"filetype": "application/pdf", "page": {"gte": 2}}``) and a raw
    Qdrant filter (``{"must": [...]}``) are both accepted. A key that is not one of the
    indexed payload keys but looks like one is taken for a typo.
    """
    import difflib

    from tribrid.store.filters import validate_filter
    from tribrid.store.points import FILTERABLE_KEYS

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(
            f"--filter is not JSON ({e.msg} at character {e.pos}): {text!r}; write e.g. "
            '--filter \'{"filetype": "application/pdf"}\''
        ) from None
    if not isinstance(value, dict) or not value:
        raise _fail(
            f"--filter must be a JSON object of payload field to value, got {text!r}; "
            'e.g. {"filetype": "application/pdf", "page": {"gte": 2}}'
        )
    raw = {"must", "should", "must_not", "min_should"}
    if not set(value) & raw:
        for key in value:
            if key in FILTERABLE_KEYS:
                continue
            close = difflib.get_close_matches(key, list(FILTERABLE_KEYS), n=1, cutoff=0.75)
            if close:
                raise _fail(
                    f"--filter field {key!r} is not a payload field; did you mean "
                    f"{close[0]!r}? Filterable fields: {', '.join(sorted(FILTERABLE_KEYS))}"
                )
    try:
        validate_filter(value)
    except (ValueError, TypeError) as e:
        raise _fail(f"--filter: {e}") from None
    return value


def _search_with_config(
    query: str,
    config: Path,
    *,
    k: int,
    settings: Settings,
    filter: dict[str, Any] | None = None,
) -> list[api.SearchResult]:
    options: dict[str, Any] = {"k": k} if filter is None else {"k": k, "filter": filter}
    with api.as_retriever(settings=settings, config=config, **options) as retriever:
        chunks = retriever.search(query)
    return [api.SearchResult.of(c.id, c.score, c.payload) for c in chunks]


@cli.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    mode: Annotated[
        api.SearchMode, typer.Option("--mode", "-m", help="Ranking channel(s).")
    ] = api.SearchMode.HYBRID,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Number of results.")] = 10,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Fuse as this tuned retriever config says (`tribrid tune`)."),
    ] = None,
    filter_json: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Only chunks whose payload matches this JSON filter: "
            '\'{"filetype": "application/pdf"}\' (equal), \'{"filetype": ["text/markdown", '
            '"text/plain"]}\' (any of), \'{"page": {"gte": 2, "lt": 5}}\' (range); all must '
            'hold. A raw Qdrant filter ({"must": [...]}) works too.',
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Search the index."""
    filter = _parse_filter(filter_json) if filter_json is not None else None
    if config is not None:
        if mode is not api.SearchMode.HYBRID:
            raise _fail("--config sets the channels and their fusion; leave out --mode")
        results = _search_with_config(
            query, config, k=k, settings=_settings(data_dir), filter=filter
        )
    else:
        results = api.search(query, mode=mode, k=k, filter=filter, settings=_settings(data_dir))
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
def status(
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
    run_id: Annotated[
        int | None, typer.Option("--run", help="Show the progress of this (background) run.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="With --run: redraw until the run ends.")
    ] = False,
) -> None:
    """Counts by status, and every failed file with its reason."""
    if follow and run_id is None:
        raise _fail("--follow needs --run ID (the id `tribrid ingest --background` printed)")
    if run_id is not None:
        _run_status(_settings(data_dir), run_id, follow=follow, as_json=as_json)
        return
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
    if report.archives:
        console.print(_archives_table(report.archives))


def _archives_table(archives: list[ArchiveStatus]) -> Table:
    """Each archive, then its members indented under it."""
    table = Table(title="archives", show_lines=False)
    table.add_column("archive / member", overflow="fold")
    table.add_column("status")
    table.add_column("reason")
    for archive in archives:
        table.add_row(
            f"[bold]{archive.key}[/bold] ({archive.member_count} members)",
            archive.status,
            archive.error_kind or "",
        )
        for member in archive.members:
            table.add_row(f"  └ {member.key}", member.status, member.error_kind or "")
        hidden = archive.member_count - len(archive.members)
        if hidden > 0:
            table.add_row(f"  └ … {hidden} more", "", "")
    return table


def _stalled(progress: RunProgress) -> str | None:
    from tribrid.background.jobs import stall_reason

    return stall_reason(progress)


def _progress_json(progress: RunProgress) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "stalled": _stalled(progress),
        "run_id": progress.run.id,
        "source_key": progress.run.source_key,
        "status": progress.run.status.value,
        "listed": progress.listed,
        "queued": progress.queued,
        "in_progress": progress.in_progress,
        "indexed": progress.indexed,
        "failed": progress.failed,
        "deleted": progress.deleted,
        "counts": progress.run.counts.as_dict(),
        "rate_docs_per_s": progress.rate(now),
        "eta_s": progress.eta_s(now),
    }


def _render_progress(progress: RunProgress) -> Table:
    now = datetime.now(UTC)
    run = progress.run
    eta = progress.eta_s(now)
    counts = run.counts
    table = Table(title=f"run #{run.id} {run.source_key} ({run.status.value})")
    for column in (
        "queued",
        "in progress",
        "indexed",
        "failed",
        "unchanged",
        "deleted",
        "docs/s",
        "ETA",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        str(progress.queued) + ("" if progress.listed else " (listing…)"),
        str(progress.in_progress),
        str(progress.indexed),
        str(max(progress.failed, counts.failed)),
        str(counts.unchanged),
        str(max(progress.deleted, counts.deleted)),
        f"{progress.rate(now):.1f}",
        "done"
        if progress.finished
        else "stalled"
        if _stalled(progress)
        else ("–" if eta is None else f"{eta:.0f} s"),
    )
    return table


def _run_status(settings: Settings, run_id: int, *, follow: bool, as_json: bool) -> None:
    ledger = factory.build_ledger(settings)
    try:
        progress = ledger.run_progress(run_id)
        if follow and not as_json:
            with Live(_render_progress(progress), console=console, refresh_per_second=2) as live:
                while not progress.finished:
                    time.sleep(1.0)
                    progress = ledger.run_progress(run_id)
                    live.update(_render_progress(progress))
        elif follow:
            while not progress.finished:
                time.sleep(1.0)
                progress = ledger.run_progress(run_id)
    finally:
        ledger.close()
    if as_json:
        typer.echo(json.dumps(_progress_json(progress)))
    elif not follow:
        console.print(_render_progress(progress))
    if progress.run.error:
        console.print(f"run failed: {progress.run.error}", highlight=False)
    elif not as_json and (reason := _stalled(progress)):
        console.print(f"stalled: {reason}", highlight=False)


@cli.command("worker")
def worker_command(
    data_dir: DataDir = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Worker processes [default: one per core]."
        ),
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Comma-separated queues to consume.")
    ] = None,
    writer: Annotated[
        bool,
        typer.Option(
            "--writer",
            help="Be the single process that owns the embedded store and writes to it.",
        ),
    ] = False,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Celery log level.")] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics of this worker's processes on this port (0: any "
            "free one) [default: TRIBRID_CELERY__METRICS_PORT, else none].",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            "--metrics-host",
            help="Address of the metrics endpoint [default: 127.0.0.1].",
        ),
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="Celery pool.")] = "prefork",
    beat: Annotated[
        bool,
        typer.Option(
            "--beat",
            "-B",
            help="Also run celery beat, for the periodic resync (TRIBRID_CELERY__RESYNC_INTERVAL_S). "
            "Run exactly one.",
        ),
    ] = False,
) -> None:
    """Run a Celery worker that parses, encodes and writes queued documents."""
    import os

    require_extras("`tribrid worker`", "celery", "index", "parse")

    settings = _settings(data_dir)
    overrides: dict[str, Any] = {}
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if metrics_host is not None:
        overrides["metrics_host"] = metrics_host
    if overrides:
        celery = settings.celery.model_copy(update=overrides)
        settings = settings.model_copy(update={"celery": celery})
    if beat and settings.celery.resync_interval_s is None:
        raise _fail(
            "--beat runs the periodic resync, and none is configured; set "
            "TRIBRID_CELERY__RESYNC_INTERVAL_S (seconds), e.g. 3600"
        )
    if data_dir is not None:
        os.environ["TRIBRID_DATA_DIR"] = str(data_dir)  # for anything that re-reads settings
    from tribrid.background import worker

    worker.configure(settings, create_folders=True)
    worker.serve_metrics(settings)
    cfg = settings.celery
    if writer:
        if concurrency not in (None, 1):
            raise _fail("the writer owns the embedded store alone: it runs with --concurrency 1")
        if not factory.single_writer(settings):
            err_console.print(
                "note: this store backend takes writes from every worker; no writer is needed"
            )
        queue_list = [cfg.write_queue]
        concurrency = 1
        # One long-lived process keeps the store open: no recycling.
        worker.app.conf.worker_max_tasks_per_child = None
        worker.app.conf.worker_max_memory_per_child = None
    else:
        queue_list = [q for q in (queues or cfg.queue).split(",") if q]
        concurrency = concurrency or cfg.concurrency or os.cpu_count() or 1
    role = "writer" if writer else "tribrid"
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queue_list)}",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        f"--hostname={role}-{os.getpid()}@%h",
    ]
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule there
        argv.append("--beat")
    worker.app.worker_main(argv)


@cli.command()
def watch(
    path: Annotated[Path, typer.Argument(help="Folder to watch.")],
    data_dir: DataDir = None,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            help="Queue each sync for `tribrid worker` processes instead of syncing here.",
        ),
    ] = False,
    debounce: Annotated[
        float,
        typer.Option(
            "--debounce", min=0.0, help="Seconds without changes before a burst is synced."
        ),
    ] = 1.5,
    max_wait: Annotated[
        float,
        typer.Option(
            "--max-wait", min=0.0, help="Longest a burst of changes waits (a busy folder)."
        ),
    ] = 30.0,
    polling: Annotated[
        bool,
        typer.Option(
            "--polling",
            help="Poll every 2 s instead of OS notifications (network file systems, huge trees).",
        ),
    ] = False,
    initial_sync: Annotated[
        bool, typer.Option("--initial-sync/--no-initial-sync", help="Sync once at start.")
    ] = True,
    source: SourceName = None,
) -> None:
    """Keep a folder's index in sync: new, changed, deleted and renamed files, as they happen.

    Bursts of changes become one sync after a quiet period. By default the sync runs in
    this process (no broker, no worker); Ctrl-C or SIGTERM stops after the current sync.
    """
    require_extras("`tribrid watch`", "watch", *(("celery",) if background else ("index", "parse")))
    from tribrid import watch as watching

    if not path.is_dir():
        raise _fail(f"{path} is not a folder; pass the folder that holds the documents")
    settings = _settings(data_dir)
    connector = factory.local_folder(settings, path)
    watching.check_data_dir(connector, settings)
    debouncer = watching.Debouncer(quiet_s=debounce, max_wait_s=max(max_wait, debounce))

    def say(line: str) -> None:
        console.print(
            f"{datetime.now().strftime('%H:%M:%S')} {line}", highlight=False, soft_wrap=True
        )

    syncer: watching.Syncer = (
        watching.BackgroundSyncer(settings, connector.root, source=source)
        if background
        else watching.InProcessSyncer(settings, connector.root, source=source)
    )
    watcher = watching.FolderWatcher(
        connector,
        syncer,
        debouncer=debouncer,
        ignore=watching.ignored_paths(settings),
        polling=polling,
        report=say,
    )
    mode = "queueing syncs for workers" if background else "syncing in this process"
    say(f"watching {connector.root} ({mode}); Ctrl-C stops")
    with watching.stop_on_signals(say) as stop:
        try:
            watcher.run(stop, initial_sync=initial_sync)
        except KeyboardInterrupt:
            say("interrupted; the next sync finishes what this one left")
            raise typer.Exit(code=130) from None
    say(f"stopped after {watcher.syncs} sync(s)")


sources_cli = typer.Typer(
    help="The sources of the index: list them, rename one, remove one and its points.",
    no_args_is_help=True,
)
cli.add_typer(sources_cli, name="sources")


@sources_cli.command("list")
def sources_list(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """List every source: name, key, where it is, documents, chunks, last run."""
    found = api.sources(settings=_settings(data_dir))
    if as_json:
        rows = [
            {
                "name": s.name,
                "key": s.key,
                "kind": s.kind,
                "location": s.location,
                "documents": s.documents,
                "chunks": s.chunks,
                "last_run": None if s.last_run is None else s.last_run.id,
            }
            for s in found
        ]
        typer.echo(json.dumps(rows))
        return
    if not found:
        console.print("no sources yet; add one with `tribrid ingest PATH [--source NAME]`")
        return
    table = Table(title="sources")
    for column in ("name", "location", "documents", "chunks", "last run", "key"):
        table.add_column(column, justify="right" if column in ("documents", "chunks") else "left")
    for s in found:
        run = s.last_run
        last = (
            "-" if run is None else f"#{run.id} {run.status.value} {run.started_at:%Y-%m-%d %H:%M}"
        )
        key = "" if s.location == s.key else s.key
        table.add_row(s.name or "-", s.location, str(s.documents), str(s.chunks), last, key)
    console.print(table)


@sources_cli.command("rename")
def sources_rename(
    source: Annotated[str, typer.Argument(help="The source's name, or its key (local:/path).")],
    new_name: Annotated[str, typer.Argument(help="Its new name.")],
    data_dir: DataDir = None,
) -> None:
    """Name or rename a source; nothing is re-embedded. Sync it with `--source NEW_NAME`."""
    renamed = api.rename_source(source, new_name, settings=_settings(data_dir))
    console.print(
        f"source {renamed.key} is now named {renamed.name!r}; sync it with "
        f"`tribrid ingest FOLDER --source {renamed.name}`",
        highlight=False,
    )


@sources_cli.command("remove")
def sources_remove(
    source: Annotated[str, typer.Argument(help="The source's name, or its key (local:/path).")],
    data_dir: DataDir = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove a source: its points leave the index and the ledger forgets it (files stay)."""
    if not yes and not typer.confirm(f"remove the source {source!r} and all its points?"):
        raise typer.Exit(code=1)
    counts = api.remove_source(source, settings=_settings(data_dir))
    console.print(
        f"removed {source!r}: {counts.deleted} document(s), {counts.chunks_deleted} point(s)",
        highlight=False,
    )


@cli.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to listen on [default: 127.0.0.1]. Anything but loopback needs "
            "TRIBRID_SERVE__API_KEY.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port [default: 8765; 0 picks a free one]."),
    ] = None,
    watch: Annotated[
        list[Path] | None,
        typer.Option("--watch", help="Keep this folder in sync (repeatable)."),
    ] = None,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-root",
            help="A folder sync requests over HTTP may name (repeatable; watched folders are "
            "always allowed).",
        ),
    ] = None,
) -> None:
    """Own the data dir's embedded store, so every other tribrid process can use it at once.

    Searches, `tribrid ingest`, workers, watchers and LangChain retrievers on this data
    dir then go through this process (they find it by themselves). Ctrl-C or SIGTERM stops.
    """
    require_extras("`tribrid serve`", "server", "index")
    from tribrid.server.runner import serve as run_server

    for folder in [*(watch or []), *(allow_root or [])]:
        if not folder.is_dir():
            raise _fail(f"{folder} is not a folder")
    settings = _settings(data_dir)

    def ready(info: Any) -> None:
        console.print(
            f"serving {settings.store_path} at {info.url} (pid {info.pid}); Ctrl-C stops",
            highlight=False,
        )

    run_server(
        settings,
        host=host,
        port=port,
        watch=watch or [],
        allow_roots=allow_root or [],
        on_ready=ready,
    )


evaluation_cli.register(cli)


def main() -> None:
    """Entry point: run the CLI, turning tribrid errors into one-line messages."""
    import sys

    argv = sys.argv[1:]
    # Help reads no setting and prints none: it is spared the settings' start-up cost.
    secrets = [] if _only_help(argv) else _secrets()
    _logging.secrets = secrets
    setup_logging(secrets=secrets)  # until the global options say otherwise
    try:
        cli(args=hoist_log_options(argv))
    except TribridError as e:
        _error(redact(str(e), secrets))
        raise SystemExit(1) from None
    except ValidationError as e:
        _error(_settings_problem(e))
        raise SystemExit(2) from None


def _only_help(argv: list[str]) -> bool:
    """Whether the command line asks for help or the version only (before any ``--``)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return not options or bool({"--help", "-h", "--version"} & set(options))


_LOG_FLAGS = re.compile(r"^-(v+|q+)$|^--(verbose|quiet)$|^--log-format=")


def hoist_log_options(argv: list[str]) -> list[str]:
    """``argv`` with the logging options given after the command moved before it.

    ``-v``/``-q``/``--log-format`` belong to ``tribrid`` itself; this lets them be
    written anywhere (``tribrid ingest docs -v``), as users do. Nothing after ``--``
    moves.
    """
    front: list[str] = []
    rest: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            rest.append(token)
            rest.extend(tokens)
            break
        if _LOG_FLAGS.match(token):
            front.append(token)
        elif token == "--log-format":
            front.append(token)
            value = next(tokens, None)
            if value is not None:
                front.append(value)
        else:
            rest.append(token)
    return front + rest


def _error(message: str) -> None:
    """The one line a failed command ends with: a JSON log line under --log-format json."""
    if _logging.log_format is LogFormat.JSON:  # whatever -q says: a failure is always told
        record = logging.LogRecord("tribrid", logging.ERROR, __file__, 0, message, None, None)
        typer.echo(JsonFormatter(_logging.secrets).format(record), err=True)
    else:
        # Escaped: messages hold brackets (`pip install 'tribrid[index]'`) that are not markup.
        err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def _secrets() -> list[str]:
    """The secrets of the environment's settings, to mask in what the command prints."""
    from tribrid.settings import Settings

    try:
        return Settings().secrets()
    except ValidationError:
        return []  # the command reports the bad setting itself


def _settings_problem(error: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and what it must be."""
    problems = []
    for item in error.errors():
        path = [str(p) for p in item["loc"]]
        env = "TRIBRID_" + "__".join(p.upper() for p in path)
        problems.append(f"setting {'.'.join(path)} ({env}): {item['msg']}")
    return "; ".join(problems)


if __name__ == "__main__":  # python -m tribrid.cli
    main()

"""The Celery app: background ingestion by worker processes.

Start workers with ``tribrid worker`` (or ``celery -A tribrid.background.worker worker``);
queue a sync with ``tribrid ingest PATH --background`` and follow it with
``tribrid status --run ID --follow``. The tasks are thin wrappers around the plain
functions of :mod:`tribrid.background.jobs`, which call the same sync stages as
the foreground sync.

Queues:

* ``tribrid`` (``TRIBRID_CELERY__QUEUE``): ``sync_source`` lists a folder and enqueues
  ``process_documents`` tasks of document ids; ``process_documents`` leases, parses,
  chunks and encodes them.
* ``tribrid.write`` (``TRIBRID_CELERY__WRITE_QUEUE``): store writes, when the store is
  one that allows a single writing process (the embedded Qdrant Edge,
  ``TRIBRID_STORE__BACKEND=edge``), so exactly one worker consumes this queue, with one process:
  ``tribrid worker --writer``. Parse and encode workers send it the encoded points as
  JSON (ids, dense floats, sparse indices and values, payloads); it upserts them,
  records the documents in the ledger, deletes stale points and releases the leases.
  With a Qdrant server (``TRIBRID_STORE__BACKEND=qdrant``) there is no writer: every
  worker upserts directly.

Periodic resync: with ``TRIBRID_CELERY__RESYNC_INTERVAL_S`` set, celery beat
(``tribrid worker --beat``, or ``celery -A tribrid.background.worker beat``) sends
``resync_sources`` at that interval, which queues a ``sync_source`` run per folder (see
:mod:`tribrid.background.resync`).

Delivery: JSON only (pickle is refused), ``acks_late`` with ``reject_on_worker_lost``
(a task whose worker dies is delivered again; tasks are idempotent and leases keep two
workers off one document), prefetch 1, task events on (Flower works). Transient errors
(store unreachable, database locked, broker hiccup) are retried with exponential backoff
and jitter; when the retries run out the documents are recorded failed with kind
``store_failed`` (or ``encode_failed``) and the next sync tries them again.

Broker: ``TRIBRID_CELERY__BROKER_URL`` (Redis, RabbitMQ); by default kombu's filesystem
transport under ``<data_dir>/broker``, which needs no server but cannot hand back the
messages of a worker that was killed outright: their documents stay pending in the
ledger and the next sync queues them again.

Each worker process loads the models once, after the fork (``worker_process_init``),
with torch's threads set to the cores divided by the concurrency.

Logs and metrics: every record a task logs carries its Celery task id (and the run id
and document key where known, see :mod:`tribrid.logs`); ``TRIBRID_LOG_FORMAT=json``
makes every line JSON. With ``TRIBRID_CELERY__METRICS_PORT`` (``tribrid worker
--metrics-port``) the main process serves Prometheus metrics on
``TRIBRID_CELERY__METRICS_HOST`` (loopback by default): the pool processes count the
stages' work into prometheus_client's multiprocess files (:mod:`tribrid.metrics`), and
queue depth and run progress are read from the ledger at each scrape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_after_setup,
    celeryd_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from tribrid import factory, logs, metrics
from tribrid.background import jobs, resync
from tribrid.background.jobs import Batching
from tribrid.background.leases import lease_owner
from tribrid.background.sinks import (
    DELETE_POINTS,
    RECONCILE,
    WRITE_BATCH,
    WRITE_TASKS,
    DirectSink,
    QueueSink,
    StoreSink,
    adopt_leases,
)
from tribrid.connectors import source_location
from tribrid.encoders import EncoderSet
from tribrid.errors import (
    ChunkingChangedError,
    ConfigError,
    LedgerError,
    SchemaMismatchError,
    StoreError,
    redact,
)
from tribrid.ingestion.plan import chunking_change
from tribrid.ingestion.sources import resolve_source_key
from tribrid.ingestion.vector_cache import VectorCache
from tribrid.ingestion.write import batch_from_json, remove_orphans
from tribrid.ledger import QueueLedger, SqlLedger
from tribrid.ledger.database import no_fork
from tribrid.settings import Settings
from tribrid.store.base import VectorStore

log = logging.getLogger(__name__)

SYNC_SOURCE = "tribrid.sync_source"
RESYNC_SOURCES = resync.RESYNC_SOURCES
PROCESS_DOCUMENTS = "tribrid.process_documents"

#: Errors a task retries with backoff (see :func:`tribrid.background.jobs.is_transient`).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StoreError,
    LedgerError,
    SqlOperationalError,
    BrokerError,
    ConnectionError,
    TimeoutError,
)
#: Busy deferrals of one batch before it is left to the next sync.
_MAX_DEFERRALS = 20


def celery_config(settings: Settings, *, create_folders: bool = False) -> dict[str, Any]:
    """The Celery configuration the settings describe (a plain dict, for tests).

    Args:
        settings: The settings.
        create_folders: Create the filesystem broker's folders (a worker or a client about
            to connect; importing this module creates nothing).
    """
    cfg = settings.celery
    broker = settings.broker_url
    transport: dict[str, Any] = {}
    if broker.startswith("filesystem"):
        folder = settings.broker_path.resolve()
        if create_folders:
            for sub in ("queue", "processed", "control"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
        transport = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    elif broker.startswith(("redis", "rediss")):
        visibility = int(cfg.visibility_timeout_s)
        transport = {
            "visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(10, visibility // 4)),
            "unacked_restore_throttle": 1,
        }
    elif broker.startswith(("amqp", "pyamqp")):
        transport = {"confirm_publish": True}
    per_child_kb = cfg.max_memory_per_child_mb * 1024 if cfg.max_memory_per_child_mb else None
    return {
        "broker_url": broker,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "result_backend": cfg.result_backend,
        "task_ignore_result": cfg.result_backend is None,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_max_tasks_per_child": cfg.max_tasks_per_child,
        "worker_max_memory_per_child": per_child_kb,
        "task_default_queue": cfg.queue,
        "task_routes": {name: {"queue": cfg.write_queue} for name in WRITE_TASKS},
        # Periodic resync (celery beat), when TRIBRID_CELERY__RESYNC_INTERVAL_S is set.
        "beat_schedule": resync.beat_schedule(settings),
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
    }


app = Celery("tribrid")


def configure(settings: Settings | None = None, *, create_folders: bool = False) -> Settings:
    """(Re)configure :data:`app` from settings (default: the environment) and return them.

    The CLI calls this with its settings before it sends a task or starts a worker.
    """
    settings = settings or Settings()
    app.conf.update(celery_config(settings, create_folders=create_folders))
    # Connections and producers opened under the previous configuration would still
    # send to the previous broker (or broker folder): drop them.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    if "amqp" in vars(app):  # created on first use; nothing to drop before that
        app.amqp._producer_pool = None
    _runtime.settings = settings
    return settings


def enqueue_sync(
    ledger: QueueLedger,
    root: str | os.PathLike[str],
    *,
    queue: str,
    retry_failed: bool = False,
    source: str | None = None,
    source_key: str | None = None,
) -> int:
    """Start a background run of the folder ``root`` and queue its ``sync_source`` task.

    Used by ``tribrid ingest --background``, ``tribrid watch --background`` and the
    periodic resync. :func:`configure` must have been called (the broker comes from it).
    ``source`` names the source (see :mod:`tribrid.ingestion.sources`); ``source_key``
    gives its ledger key directly (the resync, which reads it from the ledger).

    Returns:
        The run id (``tribrid status --run ID`` follows it).

    Raises:
        ConnectorError: The folder does not exist.
        ConfigError: The broker cannot be reached (the run is recorded failed), or the
            source was cut with other chunking settings (no run is started).
    """
    from tribrid.connectors import LocalFolderConnector

    connector = LocalFolderConnector(root)  # the folder must exist
    key = source_key or resolve_source_key(ledger, connector, source)
    source_id = ledger.ensure_source(key, kind="local", location=connector.location)
    # Refused here too, not only by the worker that lists it: the caller hears at once.
    reason = chunking_change(ledger, source_id, key, _runtime.get_settings().chunking.model_dump())
    if reason:
        raise ChunkingChangedError(reason)
    run_id = ledger.start_run(source_id)
    kwargs: dict[str, Any] = {
        "root": str(connector.root),
        "run_id": run_id,
        "retry_failed": retry_failed,
    }
    if key != connector.source_key:
        kwargs["source_key"] = key
    try:
        sync_source.apply_async(
            kwargs=kwargs,
            queue=queue,
            retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1},
        )
    except Exception as e:
        secrets = _runtime.get_settings().secrets()
        ledger.fail_run(run_id, redact(f"could not queue the sync: {e}", secrets))
        raise ConfigError(
            redact(
                f"cannot queue the sync of {root} on the broker {app.conf.broker_url}: {e}; "
                "start the broker or set TRIBRID_CELERY__BROKER_URL",
                secrets,
            )
        ) from None
    return run_id


# -- per-process state -------------------------------------------------------------------


@dataclass
class _Runtime:
    """What one worker process opens once: settings, ledger, encoders, store."""

    settings: Settings | None = None
    concurrency: int | None = None
    queues: tuple[str, ...] | None = None
    ledger: SqlLedger | None = None
    encoders: EncoderSet | None = None
    store: VectorStore | None = None
    #: The multiprocess metrics folder, when the worker serves metrics.
    metrics_dir: Path | None = None
    #: Whether this worker made ``metrics_dir`` (and removes it when it stops).
    owns_metrics_dir: bool = False
    #: The process whose stage metrics are attached (a forked child attaches its own).
    metrics_pid: int | None = None
    #: Where the metrics are served.
    metrics_url: str | None = None
    vector_cache: VectorCache | None = None
    vector_cache_built: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def attach_metrics(self) -> None:
        """Count this process's stage work into the multiprocess files, once per process."""
        if self.metrics_dir is None or self.metrics_pid == os.getpid():
            return
        self.metrics_pid = os.getpid()
        metrics.attach(metrics.PipelineMetrics(None))

    def get_settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings()
        return self.settings

    def get_ledger(self) -> SqlLedger:
        with self.lock:
            if self.ledger is None:
                self.ledger = factory.build_ledger(self.get_settings())
            return self.ledger

    def get_encoders(self) -> EncoderSet:
        with self.lock:
            if self.encoders is None:
                self.encoders = factory.build_encoders(self.get_settings())
            return self.encoders

    def get_vector_cache(self) -> VectorCache | None:
        encoders = self.get_encoders()
        with self.lock:
            if not self.vector_cache_built:
                self.vector_cache = factory.vector_cache(self.get_settings(), encoders)
                self.vector_cache_built = True
            return self.vector_cache

    def get_store(self) -> VectorStore:
        encoders = self.get_encoders()
        with self.lock:
            if self.store is None:
                # With a server owning the store, wait for it when it restarts.
                self.store = factory.build_store(
                    self.get_settings(), encoders, route=factory.StoreRoute.WAIT
                )
            return self.store

    def drop_store(self) -> None:
        """Forget a store that failed, so the next task opens it again."""
        with self.lock:
            store, self.store = self.store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # it is already broken; closing is best effort
                log.debug("closing a failed store", exc_info=True)

    def close(self) -> None:
        self.drop_store()
        with self.lock:
            ledger, self.ledger = self.ledger, None
        if ledger is not None:
            ledger.close()

    @property
    def is_writer(self) -> bool:
        settings = self.get_settings()
        return self.queues is not None and set(self.queues) == {settings.celery.write_queue}

    def sink(self) -> StoreSink:
        settings = self.get_settings()
        if factory.single_writer(settings):
            return QueueSink(app, settings.celery.write_queue)
        return DirectSink(self.get_ledger(), self.get_store)


_runtime = _Runtime()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _set_up_logs(logger: Any = None, **kwargs: Any) -> None:
    """Mask URL passwords and API keys in everything the worker logs; bound fields (run,
    document, task) on every record; JSON lines with ``TRIBRID_LOG_FORMAT=json``."""
    settings = _runtime.get_settings()
    handlers = logger.handlers if logger is not None else []
    logs.format_handlers(handlers, settings.log_format, settings.secrets())
    # tribrid's records follow the worker's --loglevel, whatever the CLI set before.
    logging.getLogger("tribrid").setLevel(logging.NOTSET)


@celeryd_after_setup.connect
def _no_banner_in_json(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """With JSON logs, leave out Celery's start-up banner: every line is then JSON."""
    if instance is not None and _runtime.get_settings().log_format == logs.LogFormat.JSON:
        instance.quiet = True


#: The log-field tokens of the tasks running in this process, by task id.
_task_fields: dict[str, Any] = {}


@task_prerun.connect
def _bind_task(task_id: str | None = None, **kwargs: Any) -> None:
    """Every record a task logs carries its id; its stage work counts in the metrics."""
    _runtime.attach_metrics()
    if task_id is not None:
        _task_fields[task_id] = logs.bind_fields(task_id=task_id)


@task_postrun.connect
def _unbind_task(task_id: str | None = None, **kwargs: Any) -> None:
    token = _task_fields.pop(task_id, None) if task_id is not None else None
    if token is not None:
        with contextlib.suppress(ValueError):  # bound in another context: nothing to undo
            logs.unbind(token)


def serve_metrics(settings: Settings) -> None:
    """Serve the worker's metrics from this (main) process, before the pool forks.

    The pool's processes write prometheus_client's multiprocess files into one folder
    (``PROMETHEUS_MULTIPROC_DIR`` if set, else a fresh temporary one); this process
    sums them on every scrape and adds queue depth and run progress read from the ledger.
    Does nothing without ``TRIBRID_CELERY__METRICS_PORT`` or when already serving.

    Raises:
        ConfigError: The port cannot be bound.
    """
    cfg = settings.celery
    if cfg.metrics_port is None or _runtime.metrics_dir is not None:
        return
    from prometheus_client import start_http_server

    given = os.environ.get(metrics.MULTIPROC_ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="tribrid-metrics-"))
    _runtime.metrics_dir, _runtime.owns_metrics_dir = folder, not given
    metrics.enable_multiprocess(folder)

    def snapshots() -> list[metrics.RunSnapshot]:
        with no_fork():  # a scrape may come while the pool forks a child
            ledger = factory.build_ledger(settings)
            try:
                return jobs.run_snapshots(ledger)
            finally:
                ledger.close()

    registry = metrics.multiprocess_registry(folder, metrics.RunCollector(snapshots))
    try:
        server, _ = start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=registry)
    except OSError as e:
        raise ConfigError(
            f"cannot serve the worker's metrics on {cfg.metrics_host}:{cfg.metrics_port}: {e}; "
            "pick another --metrics-port (TRIBRID_CELERY__METRICS_PORT), or 0 for any free one"
        ) from None
    port = server.server_address[1]
    _runtime.metrics_url = f"http://{cfg.metrics_host}:{port}/metrics"  # logged once up


@celeryd_init.connect
def _remember_worker_options(sender: Any = None, conf: Any = None, **kwargs: Any) -> None:
    # Runs in the worker's main process, before the fork: children inherit what it sets.
    settings = _runtime.get_settings()
    if settings.log_format == logs.LogFormat.JSON:
        # JSON from the first line (Celery's own set-up comes later): warnings at start-up,
        # such as running as root, would otherwise be printed raw.
        logs.setup_logging(log_format=settings.log_format, secrets=settings.secrets())
    celery_config(settings, create_folders=True)
    options = kwargs.get("options") or {}
    _runtime.concurrency = options.get("concurrency") or os.cpu_count() or 1
    queues = options.get("queues")
    if isinstance(queues, str):
        queues = [q for q in queues.split(",") if q]
    _runtime.queues = tuple(queues) if queues else None
    serve_metrics(_runtime.get_settings())  # unless the CLI did already


@worker_process_init.connect
def _load_once_per_process(**kwargs: Any) -> None:
    """After the fork: size torch's threads, open the ledger, load the models."""
    settings = _runtime.get_settings()
    # Connections and model handles must not cross a fork: open this process's own.
    _runtime.ledger = None
    _runtime.store = None
    if _runtime.is_writer:
        return  # the writer only writes: no models to load
    cores = os.cpu_count() or 1
    threads = settings.models.torch_threads or max(1, cores // (_runtime.concurrency or 1))
    import torch

    torch.set_num_threads(threads)
    encoders = _runtime.get_encoders()
    try:
        encoders.warm_up()
    except Exception:  # surfaces again, with its message, on the first task
        log.exception("loading the models failed")


class _Reaper:
    """A thread of the worker's main process that runs :func:`jobs.reap` every so often.

    Each pass opens the ledger and closes it again inside :func:`no_fork`, so no
    connection is open while the pool forks a new child.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, settings: Settings) -> None:
        interval = settings.celery.reap_interval_s
        if interval is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(settings, interval), name="tribrid-reaper", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _run(self, settings: Settings, interval: float) -> None:
        queue = settings.celery.queue

        def enqueue(ids: list[int]) -> None:
            app.send_task(PROCESS_DOCUMENTS, args=[ids], queue=queue)

        while not self._stop.is_set():
            try:
                with no_fork():  # the pool may fork a child meanwhile
                    ledger = factory.build_ledger(settings)
                    try:
                        jobs.reap(
                            ledger,
                            enqueue=enqueue,
                            batch_documents=settings.celery.batch_documents,
                            stranded_after_s=settings.celery.stranded_after_s,
                        )
                    finally:
                        ledger.close()
            except Exception:  # the ledger or the broker is away: try again next time
                log.warning("the reaper could not run this time", exc_info=True)
            self._stop.wait(interval)


_reaper = _Reaper()


@worker_ready.connect
def _start_reaper(**kwargs: Any) -> None:
    """In the worker's main process, once the pool is up: heal runs whose worker died."""
    if _runtime.metrics_url is not None:
        log.info("serving metrics at %s", _runtime.metrics_url)
    if not _runtime.is_writer:
        _reaper.start(_runtime.get_settings())


@worker_shutdown.connect
def _stop_reaper(**kwargs: Any) -> None:
    _reaper.stop()
    if _runtime.metrics_dir is not None and _runtime.owns_metrics_dir:
        shutil.rmtree(_runtime.metrics_dir, ignore_errors=True)


@worker_process_shutdown.connect
def _close_process(**kwargs: Any) -> None:
    _runtime.close()
    if _runtime.metrics_dir is not None:
        metrics.process_exited(os.getpid())


# -- tasks -------------------------------------------------------------------------------


# Celery's autoretry reads the backoff when a task is declared: the worker bootstrap reads
# the retry settings from the environment now, once.
_RETRY = _runtime.get_settings().celery


class TribridTask(Task):
    """Base of tribrid's tasks: late acks, redelivery on worker loss, retries with backoff.

    When a task gives up on a transient error, the documents it was given are recorded
    as failed with the reason (see :meth:`on_failure`).
    """

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = (SchemaMismatchError,)
    max_retries = _RETRY.max_retries
    retry_backoff = _RETRY.retry_backoff_s
    retry_backoff_max = int(_RETRY.retry_backoff_max_s)
    retry_jitter = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        ids = self.document_ids(args, kwargs)
        if not ids:
            log.error("task %s %s failed: %r", self.name, task_id, exc)
            return
        kind = jobs.failure_kind(exc)
        message = (
            f"gave up after {self.request.retries} retries: {type(exc).__name__}: {exc}; "
            "the next sync tries again"
        )
        try:
            ledger = _runtime.get_ledger()
            jobs.fail_documents(
                ids, ledger=ledger, sink=_runtime.sink(), kind=kind, message=message
            )
        except Exception:
            log.exception("could not record the failure of %d documents", len(ids))

    def document_ids(self, args: Any, kwargs: Any) -> list[int]:
        """The ledger ids of the documents a call was about (none by default)."""
        return []


@app.task(name=SYNC_SOURCE, base=TribridTask, bind=True)
def sync_source(
    self: TribridTask,
    root: str,
    run_id: int | None = None,
    retry_failed: bool = False,
    source_key: str | None = None,
) -> dict[str, int]:
    """List the folder ``root`` and queue its new and changed documents (run ``run_id``);
    ``source_key`` is the key of a named source (default: the folder's own)."""
    settings = _runtime.get_settings()
    ledger = _runtime.get_ledger()
    connector = factory.build_connector(settings, root, source_key=source_key)
    if run_id is None:
        key = connector.source_key
        location = source_location(connector)
        run_id = ledger.start_run(ledger.ensure_source(key, kind="local", location=location))
    cfg = settings.celery
    batching = Batching(
        max_documents=cfg.batch_documents,
        max_chunks=cfg.batch_chunks or settings.models.batch_size * 4,
        bytes_per_chunk=max(200, settings.chunking.new_after_n_chars),
    )
    queue = cfg.queue

    def enqueue(ids: list[int]) -> None:
        process_documents.apply_async(args=[ids], queue=queue)

    try:
        counts = jobs.queue_sync(
            connector,
            ledger=ledger,
            run_id=run_id,
            sink=_runtime.sink(),
            enqueue=enqueue,
            batching=batching,
            max_file_bytes=factory.max_file_bytes(settings),
            retry_failed=retry_failed,
            archives=factory.archive_limits(settings),
            chunking=settings.chunking.model_dump(),
        )
    except Exception as e:
        if not jobs.is_transient(e) or self.request.retries >= (self.max_retries or 0):
            ledger.fail_run(run_id, f"{type(e).__name__}: {e}")
        raise
    return {"run_id": run_id, **counts.as_dict()}


class _DocumentTask(TribridTask):
    def document_ids(self, args: Any, kwargs: Any) -> list[int]:
        ids = kwargs.get("document_ids") if kwargs else None
        if ids is None and args:
            ids = args[0]
        return [int(i) for i in ids or []]


@app.task(name=PROCESS_DOCUMENTS, base=_DocumentTask, bind=True)
def process_documents(
    self: TribridTask, document_ids: list[int], deferrals: int = 0
) -> dict[str, int]:
    """Lease, parse, encode and write (or send to the writer) these documents."""
    settings = _runtime.get_settings()
    ledger = _runtime.get_ledger()
    try:
        report = jobs.process_documents(
            document_ids,
            ledger=ledger,
            encoders=_runtime.get_encoders(),
            sink=_runtime.sink(),
            options=factory.parse_options(settings),
            lease_s=settings.celery.lease_s,
            max_attempts=settings.celery.max_attempts,
            cache=_runtime.get_vector_cache(),
        )
    except StoreError:
        _runtime.drop_store()
        raise
    if report.busy and deferrals < _MAX_DEFERRALS:
        # Another live worker holds them: look again when its lease would expire.
        items = ledger.work_items(report.busy)
        now = datetime.now(UTC)
        expiries = [i.lease_expires_at for i in items if i.lease_expires_at is not None]
        wait = max([(e - now).total_seconds() for e in expiries] + [1.0]) + 1.0
        process_documents.apply_async(
            args=[report.busy],
            kwargs={"deferrals": deferrals + 1},
            countdown=min(wait, settings.celery.lease_s + 1),
            queue=settings.celery.queue,
        )
    return {
        "committed": len(report.committed),
        "failed": len(report.failed),
        "deleted": len(report.deleted),
        "skipped": len(report.skipped),
        "busy": len(report.busy),
    }


class _WriteTask(_DocumentTask):
    def document_ids(self, args: Any, kwargs: Any) -> list[int]:
        data = args[0] if args else (kwargs or {}).get("data")
        if not data:
            return []
        batch = batch_from_json(data)
        ledger = _runtime.get_ledger()
        ids = []
        for record in batch.documents:
            state = ledger.get_document(batch.source_id, record.key)
            if state is not None:
                ids.append(state.id)
        return ids


@app.task(name=RESYNC_SOURCES, base=TribridTask, bind=True)
def resync_sources(self: TribridTask) -> list[int]:
    """Celery beat's periodic task: queue a sync of every folder to keep in sync.

    The folders are ``TRIBRID_CELERY__RESYNC_SOURCES``, or every local source in the
    ledger (see :mod:`tribrid.background.resync`). Returns the ids of the runs queued.
    """
    settings = _runtime.get_settings()
    ledger = _runtime.get_ledger()
    cfg = settings.celery
    # Each folder syncs under the key of its ledger source (a named one keeps its own).
    keys = {
        Path(s.location.partition(":")[2]).as_posix(): s.key
        for s in ledger.sources()
        if s.location.startswith("local:")
    }
    return resync.resync(
        ledger,
        enqueue=lambda folder: enqueue_sync(
            ledger, folder, queue=cfg.queue, source_key=keys.get(folder.as_posix())
        ),
        folders=cfg.resync_sources,
        stalled_after_s=cfg.lease_s,
    )


@app.task(name=WRITE_BATCH, base=_WriteTask, bind=True)
def write_batch(
    self: TribridTask, data: dict[str, Any], owner: str, run_id: int | None = None
) -> dict[str, int]:
    """The writer: upsert an encoded batch, record it in the ledger, release its leases."""
    ledger = _runtime.get_ledger()
    batch = batch_from_json(data)
    writer = lease_owner()
    adopt_leases(
        ledger,
        batch,
        sender=owner,
        writer=writer,
        lease_s=_runtime.get_settings().celery.lease_s,
    )
    try:
        with logs.bind(run_id=run_id):
            sink = DirectSink(ledger, _runtime.get_store)
            counts = sink.commit(batch, owner=writer, run_id=run_id)
    except StoreError:
        _runtime.drop_store()
        raise
    return counts.as_dict()


@app.task(name=DELETE_POINTS, base=TribridTask, bind=True)
def delete_points(self: TribridTask, point_ids: list[str]) -> int:
    """The writer: delete points the ledger no longer lists."""
    try:
        _runtime.get_store().delete(point_ids)
    except StoreError:
        _runtime.drop_store()
        raise
    return len(point_ids)


@app.task(name=RECONCILE, base=TribridTask, bind=True)
def reconcile(self: TribridTask, run_id: int, source_id: int, source_key: str) -> int:
    """The writer, at the end of a run: remove points of the source the ledger lacks."""
    store = _runtime.get_store()
    removed = remove_orphans(_runtime.get_ledger(), store, source_id, source_key)
    store.flush()
    return removed


configure()

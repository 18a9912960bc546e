"""Parse and chunk documents in worker processes that one bad file cannot take down.

Parsing runs in long-lived worker processes, so that

* a per-file time limit can be enforced by killing the worker (and starting another);
* a crash, segfault or ``MemoryError`` on one file costs that file only;
* each worker's address space is capped (``RLIMIT_AS`` = ``memory_limit_mb``);
* parsing overlaps with whatever the parent does with the results (encoding).

Each worker is a fresh interpreter (``python -c …``, the *spawn* model: the parent, which
has torch loaded, is never forked). It is started directly rather than through
``multiprocessing``, so it does not re-import the parent's ``__main__`` (the CLI, and with
it torch); it refuses to import torch and pyarrow at all, and loads stand-ins for
unstructured's layout-model modules (:mod:`tribrid.ingestion.standins`). Workers import
``unstructured`` once and then parse file after file; they talk to the parent over a
socket pair with length-prefixed pickles.

:func:`~tribrid.ingestion.parse.parse_and_chunk` is the same work done in the calling
process, without the time limit: the building block for a Celery task.

Example:
    >>> options = ParseOptions(timeout_s=120)
    >>> with ParsePool(2, options=options) as pool:
    ...     for job, outcome in pool.imap(jobs):
    ...         print(job.document_key, type(outcome).__name__)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from tribrid import metrics
from tribrid.errors import ConfigError, MissingDependencyError, TribridError
from tribrid.ingestion.base import DocumentFailure, FailureKind, ParseOutcome
from tribrid.ingestion.parse import ParseJob, ParseOptions, parse_and_chunk

if TYPE_CHECKING:
    from tribrid.settings import ArchiveSettings, ChunkingSettings, ParsingSettings

log = logging.getLogger(__name__)

# Jobs handed to one worker at a time: the one it parses and the next, so it never waits
# for the parent (busy encoding) between two files.
_JOBS_PER_WORKER: Final = 2
_HEADER: Final = struct.Struct("!Q")
_STDERR_TAIL_BYTES: Final = 4096
_SHUTDOWN_GRACE_S: Final = 5.0
_MAX_STARTUP_FAILURES: Final = 3

#: Environment of every worker, on top of the parent's. One thread per worker, Tesseract
#: included (``OMP_THREAD_LIMIT``): the pool size is the parallelism. Fewer malloc arenas
#: keep the address space (RLIMIT_AS) honest. Each worker also gets its own ``TMPDIR``.
WORKER_ENVIRONMENT: Final[dict[str, str]] = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "OMP_THREAD_LIMIT": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
    "MPLBACKEND": "Agg",
    "PYTHONUNBUFFERED": "1",
}


class ParsePool:
    """Worker processes that parse and chunk files, with a time and memory limit per file.

    Results come back in **completion order**, not submission order: a large PDF does not
    hold up the small files behind it. At most ``2 × workers`` jobs are in flight, so
    memory stays bounded however many jobs the iterable yields, and each worker already
    holds its next file while the caller processes a result.

    A file that takes longer than ``timeout_s`` gets its worker killed (with any program
    the worker started) and comes back as a ``timeout`` failure; a worker that dies
    (segfault, out of memory, killed) turns its file into a ``crashed`` failure. Either
    way a new worker takes over and the other files go on.

    Workers start on ``__enter__`` (importing the parser takes seconds, in parallel with
    whatever the caller does next) and stop on ``__exit__``.

    Example:
        >>> with ParsePool.from_settings(settings.parsing, settings.chunking) as pool:
        ...     for job, outcome in pool.imap(jobs):
        ...         if isinstance(outcome, ParsedDocument):
        ...             encode(outcome.chunks)

    Args:
        workers: Number of worker processes.
        options: How to parse and chunk (default: :class:`ParseOptions` defaults).
        startup_timeout_s: Longest a worker may take to import the parser and get ready.
        recycle_after: Replace a worker after this many files (bounds slow leaks);
            ``None`` never.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        options: ParseOptions | None = None,
        startup_timeout_s: float = 300.0,
        recycle_after: int | None = 1000,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"ParsePool needs at least 1 worker, got {workers}")
        if recycle_after is not None and recycle_after < 1:
            raise ConfigError(f"recycle_after must be >= 1 or None, got {recycle_after}")
        self.workers = workers
        self.options = options or ParseOptions()
        self.startup_timeout_s = startup_timeout_s
        self.recycle_after = recycle_after
        self.peak_worker_rss_mb = 0.0
        self._slots: list[_Worker | None] = [None] * workers
        self._selector: selectors.DefaultSelector | None = None
        self._startup_failures = 0
        self._seq = 0

    @classmethod
    def from_settings(
        cls,
        parsing: ParsingSettings,
        chunking: ChunkingSettings,
        archives: ArchiveSettings | None = None,
        **kwargs: Any,
    ) -> ParsePool:
        """A pool sized and configured from the ``parsing``, ``chunking`` and ``archives``
        settings."""
        options = ParseOptions.from_settings(parsing, chunking, archives)
        return cls(parsing.workers, options=options, **kwargs)

    def __enter__(self) -> ParsePool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._slots if w is not None and w.alive]

    def start(self) -> None:
        """Start every worker now (they get ready in the background)."""
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
        for slot in range(self.workers):
            if self._slots[slot] is None:
                self._spawn(slot)

    def close(self) -> None:
        """Stop every worker: ask politely, then kill what is still running."""
        workers = [w for w in self._slots if w is not None]
        self._slots = [None] * self.workers
        for worker in workers:
            worker.request_shutdown()
        deadline = time.monotonic() + _SHUTDOWN_GRACE_S
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        """Parse every job; yield each with its outcome as soon as it is done.

        Jobs are drawn from ``jobs`` lazily, only as workers free up. Time limits are
        enforced while the caller waits in this iterator; a file that overruns while the
        caller is busy elsewhere is stopped as soon as it comes back.

        Yields:
            ``(job, outcome)`` in completion order; every job is yielded exactly once.

        Raises:
            TribridError: Workers cannot start (a broken installation or a memory limit
                too small to import the parser), or the parser is misconfigured.
        """
        self.start()
        for worker in self._slots:
            # Jobs of an iteration abandoned half-way run on (and are timed) but their
            # outcomes are dropped, so they can never be mistaken for this iteration's.
            if worker is not None:
                worker.orphan_all()
        source = iter(jobs)
        retry: deque[ParseJob] = deque()
        exhausted = False
        while True:
            exhausted = self._dispatch(source, retry, exhausted)
            if exhausted and not retry and not any(w and w.has_own_jobs() for w in self._slots):
                return
            yield from self._collect(retry)

    # -- scheduling ----------------------------------------------------------------------

    def _dispatch(
        self, source: Iterator[ParseJob], retry: deque[ParseJob], exhausted: bool
    ) -> bool:
        """Top up the workers with jobs; return whether ``source`` is exhausted.

        Jobs go round the workers one at a time, ready workers first, so two jobs land on
        two workers rather than queueing on one, and a handed-back job does not wait for a
        replacement worker to start while another worker is free.
        """
        if retry or not exhausted:
            for slot, current in enumerate(self._slots):
                if current is None:
                    self._spawn(slot)
        live = sorted((w for w in self._slots if w is not None), key=lambda w: not w.ready)
        for depth in range(1, _JOBS_PER_WORKER + 1):
            for worker in live:
                if len(worker.assigned) >= depth:
                    continue
                if retry:
                    job = retry.popleft()
                elif exhausted or (next_job := next(source, None)) is None:
                    return True
                else:
                    job = next_job
                self._seq += 1
                worker.submit(self._seq, job, self.options)
        return exhausted

    def _collect(self, retry: deque[ParseJob]) -> list[tuple[ParseJob, ParseOutcome]]:
        """Wait for the next message, death or deadline, and return the outcomes it ends."""
        assert self._selector is not None
        results: list[tuple[ParseJob, ParseOutcome]] = []
        # Read every message already waiting before judging deadlines: while the caller
        # was busy (encoding a long document), a worker may have started *and finished*
        # a file long ago, and only its "started" would otherwise be seen in time.
        ready = self._selector.select(self._seconds_to_next_deadline())
        while ready:
            for key, _ in ready:
                worker: _Worker = key.data
                if not worker.alive:
                    continue
                try:
                    message = worker.receive()
                except (EOFError, OSError, pickle.UnpicklingError):
                    self._bury(worker, retry, results)
                    continue
                self._handle(worker, message, results)
            ready = self._selector.select(0)
        now = time.monotonic()
        for live in [w for w in self._slots if w is not None]:
            deadline = live.job_deadline(self.options.timeout_s)
            if deadline is not None and now >= deadline:
                self._time_out(live, retry, results)
            elif not live.ready and now >= live.spawned_at + self.startup_timeout_s:
                live.kill()
                self._bury(live, retry, results, reason="it did not get ready in time")
        return results

    def _handle(
        self,
        worker: _Worker,
        message: tuple[Any, ...],
        results: list[tuple[ParseJob, ParseOutcome]],
    ) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self._startup_failures = 0
        elif kind == "started":
            _, seq, started_at = message
            worker.mark_started(seq, started_at)
        elif kind == "done":
            _, seq, outcome, peak_rss_mb = message
            assignment = worker.finish(seq)
            if not assignment.orphan:
                results.append((assignment.job, outcome))
                if assignment.started_at is not None:  # the clock is shared (monotonic)
                    metrics.observe("parse", time.monotonic() - assignment.started_at)
            self.peak_worker_rss_mb = max(self.peak_worker_rss_mb, peak_rss_mb)
            worker.clear_stderr()
        elif kind == "error":
            _, seq, error_type, text = message
            worker.finish(seq)
            error_class = _SYSTEM_ERRORS.get(error_type, TribridError)
            raise error_class(f"parse worker failed: {text}")
        else:  # pragma: no cover - protocol bug
            raise TribridError(f"parse worker sent an unknown message {kind!r}")

    def _time_out(
        self,
        worker: _Worker,
        retry: deque[ParseJob],
        results: list[tuple[ParseJob, ParseOutcome]],
    ) -> None:
        running = worker.running()
        worker.kill()
        self._forget(worker)
        retry.extendleft(reversed(worker.waiting_jobs()))
        if running is not None and not running.orphan:
            job = running.job
            key = job.document_key
            message = (
                f"{key}: parsing took longer than {self.options.timeout_s:g} s and was "
                "stopped; raise TRIBRID_PARSING__TIMEOUT_S or remove the file from the folder"
            )
            log.warning("%s", message)
            results.append((job, DocumentFailure(key, FailureKind.TIMEOUT, message)))

    def _bury(
        self,
        worker: _Worker,
        retry: deque[ParseJob],
        results: list[tuple[ParseJob, ParseOutcome]],
        reason: str | None = None,
    ) -> None:
        """Account for a dead worker: fail the file it was parsing, hand back the others."""
        status = worker.reap()
        tail = worker.stderr_tail()
        self._forget(worker)
        running = worker.running()
        retry.extendleft(reversed(worker.waiting_jobs()))
        if running is not None and not running.orphan:
            job = running.job
            key = job.document_key
            limit = self.options.memory_limit_mb
            hint = (
                f"if it ran out of memory, raise TRIBRID_PARSING__MEMORY_LIMIT_MB (now {limit})"
                if limit
                else "if it ran out of memory, exclude the file"
            )
            detail = f"; last output: {tail}" if tail else ""
            message = (
                f"{key}: the parser process died ({status}) while reading this file{detail}; "
                f"{hint}, or remove the file from the folder"
            )
            log.warning("%s", message)
            results.append((job, DocumentFailure(key, FailureKind.CRASHED, message)))
        elif running is None and not worker.ready:
            self._startup_failures += 1
            if self._startup_failures >= _MAX_STARTUP_FAILURES:
                raise TribridError(
                    f"parse workers cannot start ({reason or status}); last output: "
                    f"{tail or '(none)'}; check the installation and "
                    "TRIBRID_PARSING__MEMORY_LIMIT_MB"
                )

    def _seconds_to_next_deadline(self) -> float | None:
        deadlines = []
        for worker in self._slots:
            if worker is None:
                continue
            deadline = worker.job_deadline(self.options.timeout_s)
            if deadline is not None:
                deadlines.append(deadline)
            elif not worker.ready:
                deadlines.append(worker.spawned_at + self.startup_timeout_s)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    # -- worker bookkeeping --------------------------------------------------------------

    def _spawn(self, slot: int) -> _Worker:
        assert self._selector is not None
        worker = _Worker.spawn(self.options.memory_limit_mb, self.recycle_after)
        self._slots[slot] = worker
        self._selector.register(worker.sock, selectors.EVENT_READ, worker)
        return worker

    def _forget(self, worker: _Worker) -> None:
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.sock)
        self._slots = [None if current is worker else current for current in self._slots]
        worker.release()


_SYSTEM_ERRORS: Final[dict[str, type[TribridError]]] = {
    "ConfigError": ConfigError,
    "MissingDependencyError": MissingDependencyError,
}


@dataclass
class _Assignment:
    seq: int
    job: ParseJob
    started_at: float | None = None
    orphan: bool = False  # handed out by an abandoned imap(): its outcome is dropped


@dataclass(eq=False)
class _Worker:
    """The parent's handle on one worker process and the jobs handed to it, oldest first."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    stderr_path: Path
    scratch_dir: Path
    spawned_at: float
    ready: bool = False
    alive: bool = True
    assigned: deque[_Assignment] = field(default_factory=deque)

    @classmethod
    def spawn(cls, memory_limit_mb: int | None, recycle_after: int | None) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        stderr_fd, stderr_name = tempfile.mkstemp(prefix="tribrid-parse-", suffix=".log")
        os.close(stderr_fd)
        # The worker's temporary files (Tesseract's page images, LibreOffice's profiles and
        # conversions) go here, so that they are removed even when the worker is killed.
        scratch = tempfile.mkdtemp(prefix="tribrid-worker-")
        env = {**os.environ, **WORKER_ENVIRONMENT, "TMPDIR": scratch}
        # What multiprocessing's spawn passes too: the child finds what the parent finds.
        env["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
        bootstrap = (
            "from tribrid.ingestion.parse_pool import _serve; "
            f"_serve({child_sock.fileno()}, {memory_limit_mb!r}, {recycle_after!r})"
        )
        # Appending, so the parent can truncate the log between files while the child writes.
        stderr = os.open(stderr_name, os.O_WRONLY | os.O_APPEND)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", bootstrap],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                pass_fds=(child_sock.fileno(),),
                env=env,
                start_new_session=True,  # its own process group: a kill takes its children too
            )
        except BaseException:
            parent_sock.close()
            Path(stderr_name).unlink(missing_ok=True)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            os.close(stderr)
            child_sock.close()
        return cls(process, parent_sock, Path(stderr_name), Path(scratch), time.monotonic())

    def submit(self, seq: int, job: ParseJob, options: ParseOptions) -> None:
        self.assigned.append(_Assignment(seq, job))
        with contextlib.suppress(OSError):  # a dead worker is reported by the selector
            _send(self.sock, ("job", seq, job, options))

    def receive(self) -> tuple[Any, ...]:
        message = _recv(self.sock)
        if not isinstance(message, tuple) or not message:
            raise pickle.UnpicklingError(f"unexpected message from parse worker: {message!r}")
        return message

    def mark_started(self, seq: int, started_at: float) -> None:
        for assignment in self.assigned:
            if assignment.seq == seq:
                assignment.started_at = started_at

    def finish(self, seq: int) -> _Assignment:
        head = self.assigned.popleft()
        if head.seq != seq:  # pragma: no cover - protocol bug
            raise TribridError(f"parse worker answered job {seq} before job {head.seq}")
        return head

    def running(self) -> _Assignment | None:
        head = self.assigned[0] if self.assigned else None
        return head if head is not None and head.started_at is not None else None

    def waiting_jobs(self) -> list[ParseJob]:
        """Jobs handed over but not begun, to hand to another worker."""
        return [a.job for a in self.assigned if a.started_at is None and not a.orphan]

    def has_own_jobs(self) -> bool:
        return any(not a.orphan for a in self.assigned)

    def orphan_all(self) -> None:
        for assignment in self.assigned:
            assignment.orphan = True

    def job_deadline(self, timeout_s: float) -> float | None:
        """When the running job overruns (a shared monotonic clock), or ``None``."""
        head = self.assigned[0] if self.assigned else None
        if head is None or head.started_at is None:
            return None
        return head.started_at + timeout_s

    def request_shutdown(self) -> None:
        with contextlib.suppress(OSError):
            _send(self.sock, None)

    def kill(self) -> None:
        """Kill the worker and every process it started, and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def reap(self) -> str:
        """Wait for a worker that closed its socket and describe how it ended."""
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        else:
            # Leave no orphan helper (pandoc) behind: the group outlives its leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stop(self, grace_s: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        self.kill()
        self.release()

    def release(self) -> None:
        if self.alive:
            self.alive = False
            self.sock.close()
            self.stderr_path.unlink(missing_ok=True)
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def clear_stderr(self) -> None:
        with contextlib.suppress(OSError):
            os.truncate(self.stderr_path, 0)

    def stderr_tail(self) -> str:
        """The last lines the worker printed, e.g. a fatal error's traceback."""
        try:
            with self.stderr_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - _STDERR_TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-3:])[-500:]


def _send(sock: socket.socket, message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)))
    sock.sendall(data)


def _recv(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return pickle.loads(_recv_exact(sock, size))


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise EOFError("the other end closed the connection")
        received += count
    return buffer


# -- the worker side ---------------------------------------------------------------------


def _serve(fd: int, memory_limit_mb: int | None, recycle_after: int | None) -> None:
    """Main loop of a worker process: parse jobs until told to stop or recycled."""
    # Refuse torch before anything can import it: spaCy's thinc imports it when present,
    # and it would cost hundreds of MB per worker for nothing.
    sys.modules["torch"] = None  # type: ignore[assignment]
    # The same for pyarrow: pandas (which unstructured imports) loads it when installed,
    # though nothing a worker runs uses it (it reads tables into numpy-backed frames).
    sys.modules["pyarrow"] = None  # type: ignore[assignment]
    # And unstructured's layout-model registry and plotter, which load ONNX Runtime, ONNX
    # and matplotlib for models tribrid never runs.
    from tribrid.ingestion.standins import refuse_layout_models

    refuse_layout_models()
    import faulthandler
    import resource

    faulthandler.enable()
    if memory_limit_mb is not None:
        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pdfminer", "pypdf", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)

    from tribrid.ingestion.parsing import warm_up

    warm_up()
    _send(sock, ("ready", os.getpid()))
    done = 0
    while True:
        try:
            message = _recv(sock)
        except EOFError:
            return
        if message is None:
            return
        _, seq, job, options = message
        _send(sock, ("started", seq, time.monotonic()))
        try:
            outcome = parse_and_chunk(job, options)
        except TribridError as error:
            _send(sock, ("error", seq, type(error).__name__, str(error)))
            continue
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        _send(sock, ("done", seq, outcome, peak_mb))
        done += 1
        out_of_memory = isinstance(outcome, DocumentFailure) and outcome.kind == FailureKind.CRASHED
        if out_of_memory or (recycle_after is not None and done >= recycle_after):
            return  # a fresh worker takes over with a clean heap

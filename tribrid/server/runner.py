"""Starting and stopping ``tribrid serve``: bind, load, announce, answer, clean up.

Order at start: refuse a non-loopback address without an API key; refuse if another
server answers for the store; open the store, the ledger and the models (so the first
query is quick); bind the socket; write the descriptor (the server is then ready:
clients queue on the bound socket until the loop takes them); start the folder
watchers; answer until SIGINT/SIGTERM. At stop: the watchers stop, the sync under way
finishes, the descriptor is removed, the store and the ledger are closed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tribrid.encoders import EncoderSet
from tribrid.errors import ConfigError
from tribrid.server.state import ServerState
from tribrid.settings import Settings
from tribrid.store.remote import ServerInfo, discover, remove_descriptor, write_descriptor

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost`` counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to listen beyond this machine without an API key.

    Raises:
        ConfigError: ``host`` is not loopback and ``TRIBRID_SERVE__API_KEY`` is unset.
    """
    if not is_loopback(host) and settings.serve.api_key is None:
        raise ConfigError(
            f"binding {host} lets other machines reach the index, so it needs an API key: "
            "set TRIBRID_SERVE__API_KEY (clients send it as Authorization: Bearer <key>), "
            "or bind 127.0.0.1"
        )


class QueueSyncer:
    """A folder watcher's syncer that queues each sync on the server (one at a time)."""

    def __init__(self, state: ServerState, root: Path) -> None:
        self._state = state
        self._root = root
        self._job: int | None = None

    def warm_up(self) -> None:
        """Nothing to load: the server holds the models."""

    def ready(self) -> bool:
        return self._state.syncs.idle(self._job)

    def sync(self) -> str:
        job = self._state.syncs.submit(self._root)
        self._job = job.id
        return f"queued sync job {job.id} of {self._root}"

    def close(self) -> None:
        """Nothing to release."""


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its own signal handling: after a graceful stop it
        re-raises the signal, which would end the process before the descriptor is
        removed and the store closed. :func:`_stop_on_signals` asks it to stop instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)


@contextlib.contextmanager
def _stop_when_set(server: Any, stop: threading.Event) -> Iterator[None]:
    """A thread that asks the server to stop once ``stop`` is set."""
    done = threading.Event()

    def wait() -> None:
        while not done.is_set():
            if stop.wait(0.2):
                server.should_exit = True
                return

    thread = threading.Thread(target=wait, name="tribrid-serve-stop", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def _stop_on_signals(server: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask the server to stop (a second one forces it); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    # Made with IPPROTO_TCP, not socket.create_server's protocol 0: asyncio turns
    # TCP_NODELAY on only for accepted sockets it sees as TCP, and without it every
    # keep-alive answer (headers, then body) waits ~40 ms for the client's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(256)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port "
            "(0 picks a free one)"
        ) from e
    return sock


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    watch: Sequence[Path] = (),
    allow_roots: Sequence[Path] = (),
    on_ready: Callable[[ServerInfo], None] | None = None,
    stop: threading.Event | None = None,
    encoders: EncoderSet | None = None,
) -> None:
    """Run the server until SIGINT or SIGTERM (or ``stop`` is set).

    Args:
        settings: The data dir, models, store and serve settings.
        host: Address to bind (default ``settings.serve.host``, loopback).
        port: Port (default ``settings.serve.port``; 0 picks a free one).
        watch: Folders to keep in sync (their syncs run in the server).
        allow_roots: Folders a sync request over HTTP may name, besides ``watch`` and
            ``settings.serve.allow_roots``.
        on_ready: Called with the descriptor once the server answers.
        stop: Stops the server when set (for a server on a thread of its own; signals
            work on the main thread only).
        encoders: The encoders to use instead of the settings' (tests give fakes).

    Raises:
        ConfigError: A non-loopback address without an API key, a port in use, or a
            server already answering for this store.
    """
    import uvicorn

    from tribrid import factory
    from tribrid import watch as watching
    from tribrid.server.http import create_app

    host = host or settings.serve.host
    port = settings.serve.port if port is None else port
    check_bind(settings, host)
    store_path = settings.store_path
    running = discover(store_path)
    if running is not None:
        raise ConfigError(
            f"a tribrid server (pid {running.pid}) already owns {store_path} at "
            f"{running.url}; use it, or stop it first"
        )
    folders = [factory.local_folder(settings, folder) for folder in watch]
    roots = [*settings.serve.allow_roots, *allow_roots, *(f.root for f in folders)]
    state = ServerState(settings, allowed_roots=roots, encoders=encoders)
    try:
        state.encoders.warm_up()
        app = create_app(state)
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        key = settings.serve.api_key.get_secret_value() if settings.serve.api_key else None
        info = ServerInfo(
            url=f"http://{shown}:{bound_port}",
            pid=os.getpid(),
            host=socket.gethostname(),
            store=str(store_path.absolute()),
            api_key=key,
        )
        server = _Server(
            uvicorn.Config(app.state.asgi, log_level="warning", access_log=False, lifespan="off")
        )
        stop = stop or threading.Event()
        watchers = [
            threading.Thread(
                target=watching.FolderWatcher(
                    folder,
                    QueueSyncer(state, folder.root),
                    debouncer=watching.Debouncer(quiet_s=1.5, max_wait_s=30.0),
                    ignore=watching.ignored_paths(settings),
                    report=lambda line: log.info("watch: %s", line),
                ).run,
                args=(stop,),
                name=f"tribrid-watch-{n}",
                daemon=True,
            )
            for n, folder in enumerate(folders)
        ]
        write_descriptor(store_path, info)
        try:
            for thread in watchers:
                thread.start()
            if on_ready is not None:
                on_ready(info)
            with _stop_on_signals(server), _stop_when_set(server, stop):
                server.run(sockets=[sock])
        finally:
            stop.set()
            for thread in watchers:
                thread.join(timeout=30)
            sock.close()
            try:
                state.close()
            finally:
                # Last: until the store is closed, clients must keep asking the server.
                remove_descriptor(store_path, os.getpid())
    except BaseException:
        state.close()
        raise


__all__ = ["QueueSyncer", "check_bind", "is_loopback", "serve"]

"""Helpers of the server tests: a real ``tribrid serve`` on loopback, on a thread.

The server runs in the test's process (its own thread, a real socket on 127.0.0.1, a
free port) with the shared fake encoders, so it starts in a moment and loads no model.
Tests about real processes start ``tribrid serve`` as a subprocess instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fakes import fake_encoders
from tribrid.encoders import EncoderSet
from tribrid.server.runner import serve
from tribrid.settings import ServeSettings, Settings
from tribrid.store.remote import ServerInfo


@contextmanager
def running_server(
    data_dir: Path,
    *,
    encoders: EncoderSet | None = None,
    allow_roots: tuple[Path, ...] = (),
    **serve_settings: Any,
) -> Iterator[tuple[ServerInfo, Settings]]:
    """A server owning ``data_dir``'s store until the block ends."""
    settings = Settings(data_dir=data_dir, serve=ServeSettings(port=0, **serve_settings))
    ready: list[ServerInfo] = []
    failed: list[BaseException] = []
    started = threading.Event()
    stop = threading.Event()

    def run() -> None:
        try:
            serve(
                settings,
                allow_roots=allow_roots,
                encoders=encoders or fake_encoders(),
                stop=stop,
                on_ready=lambda info: (ready.append(info), started.set()),
            )
        except BaseException as e:
            failed.append(e)
            started.set()

    thread = threading.Thread(target=run, name="test-serve", daemon=True)
    thread.start()
    if not started.wait(60):
        raise TimeoutError("the test server did not start within 60 s")
    if failed:
        raise failed[0]
    try:
        yield ready[0], settings
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the test server did not stop"
        if failed:
            raise failed[0]

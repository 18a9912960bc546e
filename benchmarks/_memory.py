"""Peak resident memory of a process tree, sampled while a benchmark runs."""

from __future__ import annotations

import contextlib
import threading


class TreeMemory:
    """Samples the resident memory of this process and all its children (parse workers).

    Use as a context manager; ``peak_mb`` is the largest sum seen, in MiB. Sampling every
    ``interval_s`` can miss a peak shorter than that.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self.peak_mb = 0.0
        self.peak_main_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for process in [self._process, *self._process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss = process.memory_info().rss
                    total += rss
                    if process is self._process:
                        self.peak_main_mb = max(self.peak_main_mb, rss / 2**20)
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

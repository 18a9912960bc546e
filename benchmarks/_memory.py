"""Peak resident memory of a process tree, sampled while a benchmark runs."""

from __future__ import annotations

import contextlib
import threading

#: How a process of the tree is named in reports, by what its command line holds.
_KINDS = (
    ("parse_pool import _serve", "parse worker"),
    ("soffice", "LibreOffice"),
    ("tesseract", "Tesseract"),
    ("pdftoppm", "pdftoppm"),
)


#: A child that has not yet exec'd its program (a parse worker's helper, or a worker
#: being started): it still shows its parent's command line and resident pages, which it
#: shares (they are not extra memory).
FORK_KIND = "child between fork and exec"


def process_kind(cmdline: list[str], name: str) -> str:
    """The kind of a child process, for the composition at the peak."""
    joined = " ".join(cmdline)
    for marker, kind in _KINDS:
        if marker in joined:
            return kind
    return name or "other"


class TreeMemory:
    """Samples the resident memory of this process and all its children (parse workers).

    Use as a context manager; ``peak_mb`` is the largest sum seen, in MiB, not counting a
    worker's child caught between fork and exec (its pages are the worker's; the largest
    sum with them is ``peak_with_forks_mb``). Sampling every ``interval_s`` can miss a
    peak shorter than that. ``peak_parts`` is what the tree
    consisted of at that peak (MiB per kind of process: ``ingesting process``, ``parse
    worker``, ``Tesseract``, ``LibreOffice`` …), and ``max_by_kind`` the largest single
    process of each kind over the whole run.
    """

    def __init__(self, interval_s: float = 0.1, *, keep_samples: bool = False) -> None:
        import psutil

        self._process = psutil.Process()
        self._cmdline = self._process.cmdline()
        self._interval_s = interval_s
        self.peak_mb = 0.0
        self.peak_with_forks_mb = 0.0
        self.peak_main_mb = 0.0
        self.peak_parts: dict[str, float] = {}
        self.max_by_kind: dict[str, float] = {}
        self._kinds: dict[int, str] = {}
        #: With ``keep_samples``: (seconds since the start, MiB per kind) of every sample.
        self.samples: list[tuple[float, dict[str, float]]] | None = [] if keep_samples else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _kind(self, process: object) -> str:
        import psutil

        assert isinstance(process, psutil.Process)
        if process.pid == self._process.pid:
            return "ingesting process"
        kind = self._kinds.get(process.pid)
        if kind is None:
            cmdline = process.cmdline()
            # This process and its workers fork and exec their helpers (a worker, Tesseract
            # …); until the exec the child shows its parent's command line and shares its
            # pages. Such a pid is looked at again on the next sample.
            if cmdline == self._cmdline:
                return FORK_KIND
            kind = process_kind(cmdline, process.name())
            if kind == "parse worker" and process.ppid() != self._process.pid:
                return FORK_KIND
            self._kinds[process.pid] = kind
        return kind

    def _run(self) -> None:
        import time

        import psutil

        start = time.monotonic()
        while not self._stop.is_set():
            parts: dict[str, float] = {}
            for process in [self._process, *self._process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss = process.memory_info().rss / 2**20
                    kind = self._kind(process)
                    parts[kind] = parts.get(kind, 0.0) + rss
                    self.max_by_kind[kind] = max(self.max_by_kind.get(kind, 0.0), rss)
            with_forks = sum(parts.values())
            self.peak_with_forks_mb = max(self.peak_with_forks_mb, with_forks)
            total = with_forks - parts.get(FORK_KIND, 0.0)
            if self.samples is not None:
                self.samples.append((time.monotonic() - start, parts))
            self.peak_main_mb = max(self.peak_main_mb, parts.get("ingesting process", 0.0))
            if total > self.peak_mb:
                self.peak_mb = total
                self.peak_parts = parts
            self._stop.wait(self._interval_s)

    def composition(self, parts: dict[str, float] | None = None) -> str:
        """``parts`` (default: the peak's) as "kind N MiB, …", largest first."""
        parts = self.peak_parts if parts is None else parts
        ordered = sorted(parts.items(), key=lambda item: -item[1])
        return ", ".join(f"{kind} {mb:.0f} MiB" for kind, mb in ordered)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

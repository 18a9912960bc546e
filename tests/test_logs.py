"""tribrid.logs: levels, bound fields across threads, JSON lines, and no secret in either format."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from tribrid import logs
from tribrid.logs import LogFormat

PLANTED = "Pl4nted-S3cret"


class Stderr:
    """What tribrid's handler wrote to stderr (pytest's capture)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def getvalue(self) -> str:
        return self._capsys.readouterr().err


@pytest.fixture(name="stderr")
def stderr_fixture(capsys: pytest.CaptureFixture[str]) -> Stderr:
    """stderr as tribrid's handler writes it (tests/conftest.py restores logging after)."""
    return Stderr(capsys)


def test_levels_follow_v_and_q() -> None:
    assert logs.level_for(0) == logging.WARNING
    assert logs.level_for(1) == logging.INFO
    assert logs.level_for(2) == logs.level_for(5) == logging.DEBUG
    assert logs.level_for(-1) == logging.ERROR
    assert logs.level_for(-3) == logging.CRITICAL
    # Other libraries stay a step quieter: -v is about tribrid's work.
    assert logs.library_level_for(1) == logging.WARNING
    assert logs.library_level_for(2) == logging.INFO


def test_json_lines_carry_the_bound_fields(stderr: Stderr) -> None:
    logs.setup_logging(verbosity=1, log_format=LogFormat.JSON)
    log = logging.getLogger("tribrid.test")
    with logs.bind(run_id=7), logs.bind(document_key="a.pdf"):
        log.info("parsed %s", "a.pdf", extra={"outcome": "indexed", "chunks": 3})
    log.info("after the block")
    log.debug("not at -v")
    logging.getLogger("some.library").info("libraries stay at warning with -v")
    first, second = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert first["message"] == "parsed a.pdf" and first["level"] == "INFO"
    assert first["logger"] == "tribrid.test" and first["ts"].endswith("+00:00")
    assert (first["run_id"], first["document_key"]) == (7, "a.pdf")
    assert (first["outcome"], first["chunks"]) == ("indexed", 3)
    assert "run_id" not in second and "document_key" not in second


def test_bound_fields_stay_in_their_thread(stderr: Stderr) -> None:
    logs.setup_logging(verbosity=1, log_format=LogFormat.JSON)
    log = logging.getLogger("tribrid.test")
    ready = threading.Barrier(2)

    def work(key: str) -> None:
        with logs.bind(document_key=key):
            ready.wait(5)  # both threads are inside their blocks at once
            log.info("working")

    threads = [threading.Thread(target=work, args=(k,)) for k in ("a.md", "b.md")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = sorted(json.loads(line)["document_key"] for line in stderr.getvalue().splitlines())
    assert keys == ["a.md", "b.md"]


def test_text_lines_show_the_bound_fields(stderr: Stderr) -> None:
    logs.setup_logging(verbosity=0)
    with logs.bind(run_id=3, document_key="x/y.pdf", task_id="abc"):
        logging.getLogger("tribrid.test").warning("failed")
    assert stderr.getvalue() == "WARNING tribrid.test: failed [run=3 doc=x/y.pdf task=abc]\n"


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_no_secret_in_messages_or_tracebacks(stderr: Stderr, log_format: LogFormat) -> None:
    logs.setup_logging(verbosity=0, log_format=log_format, secrets=[f"{PLANTED}-key"])
    log = logging.getLogger("tribrid.test")
    log.warning("broker redis://:%s@127.0.0.1:6390/0 is down", PLANTED)
    log.warning("api key %s-key refused", PLANTED)
    try:
        raise ConnectionError(f"cannot reach amqp://guest:{PLANTED}@rabbit:5672//")
    except ConnectionError:
        log.exception("sync failed")
    printed = stderr.getvalue()
    assert printed.count("***") >= 3 and "ConnectionError" in printed
    assert PLANTED not in printed
    if log_format is LogFormat.JSON:
        records = [json.loads(line) for line in printed.splitlines()]
        assert len(records) == 3 and "Traceback" in records[2]["error"]


def test_json_logs_capture_warnings(stderr: Stderr) -> None:
    logs.setup_logging(verbosity=0, log_format=LogFormat.JSON)
    logging.getLogger("py.warnings").propagate = True
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old option", UserWarning, stacklevel=1)
    (record,) = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert record["logger"] == "py.warnings" and "an old option" in record["message"]


def test_setting_up_twice_keeps_one_handler(stderr: Stderr) -> None:
    logs.setup_logging(verbosity=0)
    logs.setup_logging(verbosity=1, log_format=LogFormat.JSON)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_tribrid", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, logs.JsonFormatter)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ingest", "docs", "-v"], ["-v", "ingest", "docs"]),
        (["-v", "ingest", "docs"], ["-v", "ingest", "docs"]),
        (
            ["search", "q", "-vv", "--log-format", "json", "-k", "3"],
            ["-vv", "--log-format", "json", "search", "q", "-k", "3"],
        ),
        (["status", "--log-format=json", "--quiet"], ["--log-format=json", "--quiet", "status"]),
        (["search", "--", "-v"], ["search", "--", "-v"]),  # a query that looks like a flag
        (["worker", "-Q", "q1", "-c", "2"], ["worker", "-Q", "q1", "-c", "2"]),
    ],
)
def test_log_options_may_follow_the_command(argv: list[str], expected: list[str]) -> None:
    from tribrid.cli import hoist_log_options

    assert hoist_log_options(argv) == expected

"""ParsePool with real worker processes: outcomes, limits, time-outs and crashes.

One pool (two workers) serves the module, so the seconds a worker needs to import the
parser are paid once; the tests that kill workers run last.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tribrid.errors import ConfigError
from tribrid.ingestion.base import DocumentFailure, FailureKind, ParsedDocument
from tribrid.ingestion.parse import ParseJob, ParseOptions, parse_and_chunk
from tribrid.ingestion.parse_pool import ParsePool
from tribrid.settings import ChunkingSettings, ParsingSettings

TIMEOUT_S = 5.0
MEMORY_LIMIT_MB = 4096


def _write_samples(folder: Path) -> list[Path]:
    from pypdf import PdfWriter

    folder.mkdir(exist_ok=True)
    (folder / "a.md").write_text("# Pier\n\nThe northern pier was rebuilt after the storms.\n")
    (folder / "b.txt").write_text("Cranes\n\nTwo new cranes unload the container ships.\n")
    (folder / "c.html").write_text("<h1>Berths</h1><p>Berth four is closed for dredging.</p>")
    (folder / "d.csv").write_text("berth,state\n1,open\n2,closed\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "junk.bin").write_bytes(os.urandom(2048))
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", algorithm="AES-128")
    with (folder / "locked.pdf").open("wb") as handle:
        writer.write(handle)
    return sorted(folder.iterdir())


def _slow_text(path: Path) -> Path:
    """A text file whose 3000 paragraphs take a worker well over TIMEOUT_S to classify."""
    path.write_text(
        "\n\n".join(
            f"Paragraph {i} tells how berth {i} was rebuilt after storm {i % 17}."
            for i in range(3000)
        )
    )
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def options() -> ParseOptions:
    return ParseOptions(timeout_s=TIMEOUT_S, memory_limit_mb=MEMORY_LIMIT_MB)


@pytest.fixture(scope="module")
def pool(options: ParseOptions, samples: list[Path]) -> Iterator[ParsePool]:
    with ParsePool(2, options=options) as started:
        # Two files per worker: both workers have imported the parser before any test runs.
        warm = [ParseJob("warm", f"w{i}.md", samples[0]) for i in range(4)]
        assert len(list(started.imap(warm))) == 4
        yield started


def _jobs(paths: list[Path]) -> list[ParseJob]:
    return [ParseJob("src", path.name, path) for path in paths]


@pytest.mark.slow
def test_pool_gives_the_same_outcomes_as_in_process(
    pool: ParsePool, options: ParseOptions, samples: list[Path]
) -> None:
    jobs = _jobs(samples)

    outcomes = dict(pool.imap(jobs))

    assert sorted(outcomes, key=lambda j: j.document_key) == jobs, "each job exactly once"
    for job, outcome in outcomes.items():
        expected = parse_and_chunk(job, options)
        assert type(outcome) is type(expected), job.document_key
        if isinstance(expected, ParsedDocument):
            assert isinstance(outcome, ParsedDocument)
            assert [c.point_id for c in outcome.chunks] == [c.point_id for c in expected.chunks]
            assert [c.metadata for c in outcome.chunks] == [c.metadata for c in expected.chunks]
        else:
            assert isinstance(outcome, DocumentFailure)
            assert (outcome.kind, outcome.message) == (expected.kind, expected.message)
    kinds = {job.document_key: getattr(o, "kind", "ok") for job, o in outcomes.items()}
    assert kinds == {
        "a.md": "ok",
        "b.txt": "ok",
        "c.html": "ok",
        "d.csv": "ok",
        "empty.txt": FailureKind.EMPTY,
        "junk.bin": FailureKind.UNSUPPORTED_TYPE,
        "locked.pdf": FailureKind.ENCRYPTED,
    }


@pytest.mark.slow
def test_jobs_are_drawn_lazily_with_bounded_work_in_flight(
    pool: ParsePool, samples: list[Path]
) -> None:
    drawn = 0

    def endless_supply() -> Iterator[ParseJob]:
        nonlocal drawn
        for n in range(40):
            drawn += 1
            yield ParseJob("src", f"copy-{n}.md", samples[0])

    received = 0
    for _ in pool.imap(endless_supply()):
        received += 1
        assert drawn - received < 2 * pool.workers + 1

    assert received == drawn == 40


@pytest.mark.slow
def test_workers_are_capped_and_never_load_torch(pool: ParsePool, tmp_path: Path) -> None:
    # A PDF page on each worker: its reading order is where numba (LLVM) used to load.
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with (tmp_path / "blank.pdf").open("wb") as handle:
        writer.write(handle)
    list(pool.imap(ParseJob("src", f"blank-{i}.pdf", tmp_path / "blank.pdf") for i in range(4)))
    pids = pool.worker_pids
    assert len(pids) == 2
    for pid in pids:
        limits = Path(f"/proc/{pid}/limits").read_text()
        (line,) = [row for row in limits.splitlines() if row.startswith("Max address space")]
        assert line.split()[3] == str(MEMORY_LIMIT_MB * 1024 * 1024)
        maps = Path(f"/proc/{pid}/maps").read_text()
        # Nor the libraries they never use that would cost memory in every worker (ONNX
        # Runtime and matplotlib come with unstructured's layout models).
        for library in ("libtorch", "llvmlite", "libarrow", "onnxruntime", "matplotlib"):
            assert library not in maps, library


@pytest.mark.slow
def test_abandoned_iteration_leaves_no_stale_results(pool: ParsePool, samples: list[Path]) -> None:
    first = pool.imap(_jobs(samples))
    next(first)
    first.close()  # four jobs are still in flight

    outcomes = list(pool.imap([ParseJob("src", "again.md", samples[0])]))

    assert [job.document_key for job, _ in outcomes] == ["again.md"]
    assert isinstance(outcomes[0][1], ParsedDocument)


@pytest.mark.slow
def test_a_file_finished_while_the_caller_was_busy_is_not_timed_out(
    pool: ParsePool, samples: list[Path]
) -> None:
    # The caller spends longer than the time limit on each result (as when it encodes a
    # long document); the files the workers finished meanwhile must come back parsed.
    jobs = [
        ParseJob("local:t", p.name, p)
        for p in samples
        if p.suffix in (".md", ".txt", ".html", ".csv")
    ]
    jobs = [j for j in jobs if j.document_key != "empty.txt"]
    outcomes = {}
    for job, outcome in pool.imap(jobs):
        outcomes[job.document_key] = outcome
        time.sleep(TIMEOUT_S + 1)
    assert set(outcomes) == {j.document_key for j in jobs}
    assert all(isinstance(o, ParsedDocument) for o in outcomes.values()), outcomes


@pytest.mark.slow
def test_a_hanging_parse_is_killed_after_the_timeout(pool: ParsePool, tmp_path: Path) -> None:
    slow = ParseJob("src", "slow.txt", _slow_text(tmp_path / "slow.txt"))
    quick = ParseJob("src", "quick.txt", tmp_path / "quick.txt")
    quick.path.write_text("Quick\n\nA short note about the harbour master.\n")
    pids_before = set(pool.worker_pids)

    started = time.monotonic()
    outcomes = dict(pool.imap([slow, quick]))
    elapsed = time.monotonic() - started

    failure = outcomes[slow]
    assert isinstance(failure, DocumentFailure)
    assert failure.kind == FailureKind.TIMEOUT
    assert "slow.txt" in failure.message
    assert "TRIBRID_PARSING__TIMEOUT_S" in failure.message
    assert isinstance(outcomes[quick], ParsedDocument)
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 5
    (killed,) = pids_before - set(pool.worker_pids)
    assert not Path(f"/proc/{killed}").exists(), "the worker was killed and reaped"

    # The pool replaces the worker and goes on.
    after = list(pool.imap(_jobs([quick.path])))
    assert isinstance(after[0][1], ParsedDocument)
    assert len(pool.worker_pids) == 2


@pytest.mark.slow
def test_a_dead_worker_fails_only_its_file(pool: ParsePool, tmp_path: Path) -> None:
    slow = ParseJob("src", "doomed.txt", _slow_text(tmp_path / "doomed.txt"))
    victims = pool.worker_pids

    def kill_workers() -> None:
        time.sleep(1.5)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_workers)
    killer.start()
    outcomes = list(pool.imap([slow]))
    killer.join()

    ((job, failure),) = outcomes
    assert job == slow
    assert isinstance(failure, DocumentFailure)
    assert failure.kind == FailureKind.CRASHED
    assert "doomed.txt" in failure.message
    assert "SIGKILL" in failure.message

    # New workers take over.
    quick = tmp_path / "after.md"
    quick.write_text("# After\n\nThe harbour reopened.\n")
    ((_, outcome),) = list(pool.imap(_jobs([quick])))
    assert isinstance(outcome, ParsedDocument)
    assert not set(victims) & set(pool.worker_pids)


def test_parse_and_chunk_in_process(tmp_path: Path, options: ParseOptions) -> None:
    path = tmp_path / "note.md"
    path.write_text("# Pier\n\nThe northern pier was rebuilt after the storms.\n")

    outcome = parse_and_chunk(ParseJob("src", "docs/note.md", path), options)

    assert isinstance(outcome, ParsedDocument)
    assert outcome.document_key == "docs/note.md"
    assert outcome.element_count == 2
    assert outcome.chunks[0].metadata["title"] == "Pier"


def test_options_from_settings() -> None:
    options = ParseOptions.from_settings(
        ParsingSettings(timeout_s=12, languages=["eng", "deu"]), ChunkingSettings(overlap=0)
    )

    assert options.timeout_s == 12
    assert options.languages == ("eng", "deu")
    assert options.overlap == 0
    assert ParsePool.from_settings(ParsingSettings(workers=3), ChunkingSettings()).workers == 3


def test_unusable_options_are_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="TRIBRID_PARSING__PDF_STRATEGY"):
        ParseOptions(strategy="hi_res")
    with pytest.raises(ConfigError, match="TRIBRID_PARSING__MEMORY_LIMIT_MB"):
        ParseOptions(memory_limit_mb=512)
    with pytest.raises(ConfigError, match="TRIBRID_CHUNKING__OVERLAP"):
        ParseOptions(max_characters=100, overlap=100)

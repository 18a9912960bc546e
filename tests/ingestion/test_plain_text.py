"""The in-process plain-text path: the parse pool's chunks, without unstructured."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tribrid.connectors import LocalFolderConnector
from tribrid.ingestion.base import DocumentFailure, ParsedDocument, ParseOutcome
from tribrid.ingestion.parse import ParseJob, ParseOptions
from tribrid.ingestion.pipeline import SyncPipeline
from tribrid.ingestion.plain_text import chunk_paragraphs, is_heading, paragraphs, parse_plain_text
from tribrid.ledger import SqlLedger
from tribrid.store import open_store
from tribrid.store.base import CollectionSchema

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
OPTION_SETS = [
    ParseOptions(memory_limit_mb=None),
    ParseOptions(memory_limit_mb=None, overlap_all=True),
    ParseOptions(
        memory_limit_mb=None,
        max_characters=500,
        new_after_n_chars=400,
        overlap=0,
        combine_text_under_n_chars=0,
    ),
    ParseOptions(
        memory_limit_mb=None,
        max_characters=300,
        new_after_n_chars=200,
        overlap=50,
        combine_text_under_n_chars=150,
        overlap_all=True,
    ),
]


def _job(path: Path) -> ParseJob:
    return ParseJob(source_key="local:t", document_key=path.name, path=path)


def test_paragraphs_follow_blank_lines_line_breaks_and_short_line_blocks() -> None:
    # Blank-line separated: broken lines are joined, a block of short lines stays apart.
    text = (
        "Apache License\nVersion 2.0, January 2004\n\n"
        "The big red fox is walking\ndown the long and winding lane.\n\n\n"
        "At the end of the lane the fox met a bear.\n"
    )
    assert paragraphs(text) == [
        "Apache License",
        "Version 2.0, January 2004",
        "The big red fox is walking down the long and winding lane.",
        "At the end of the lane the fox met a bear.",
    ]
    # Few blank lines: every line is a paragraph of its own.
    assert paragraphs("one line here\nanother line there\n  third  \n") == [
        "one line here",
        "another line there",
        "third",
    ]


def test_headings_are_short_capitalised_lines() -> None:
    assert is_heading("Methods and Materials")
    assert is_heading("RESULTS")
    assert not is_heading("Induction of myelodysplasia by myeloid-derived suppressor cells.")
    assert not is_heading("Dear Friends and Colleagues,")
    assert not is_heading("1234")
    assert not is_heading("THE END.")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.md", b"# Title\n\nText of a markdown file.\n"),
        ("bom.txt", b"\xef\xbb\xbfText with a byte-order mark.\n"),
        ("latin1.txt", "Caf\u00e9 au lait.\n".encode("latin-1")),
        ("windows.txt", b"Line one of a file.\r\nLine two of a file.\r\n"),
        ("bullets.txt", "Shopping\n\n\u2022 apples\n\u2022 pears\n".encode()),
        ("dashes.txt", b"Shopping\n\n- apples\n- pears\n"),
        ("page.txt", b"<html><body>Not plain text.</body></html>\n"),
        ("mail.txt", b"From: someone@example.com\nSubject: hello\n\nBody.\n"),
        ("blank.txt", b"   \n\n\t\n"),
        ("empty.txt", b""),
    ],
)
def test_files_it_is_not_sure_about_go_to_the_parser(
    tmp_path: Path, name: str, data: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert parse_plain_text(_job(path), ParseOptions(memory_limit_mb=None)) is None


def test_detected_languages_and_a_turned_off_path_go_to_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("A short note about the harbour and its ferries.\n")
    assert parse_plain_text(_job(path), ParseOptions(memory_limit_mb=None)) is not None
    assert parse_plain_text(_job(path), ParseOptions(memory_limit_mb=None, languages=())) is None
    off = ParseOptions(memory_limit_mb=None, plain_text=False)
    assert parse_plain_text(_job(path), off) is None


def test_the_pipeline_parses_text_here_and_sends_the_rest_to_the_parser(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "plain.txt").write_text("A note about ferries and the evening gale.\n")
    (folder / "bullets.txt").write_text("Shopping\n\n\u2022 apples\n\u2022 pears\n")
    (folder / "notes.md").write_text("# Notes\n\nText.\n")
    sent: list[str] = []

    class Parser:
        def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
            for job in jobs:
                sent.append(job.document_key)
                yield job, DocumentFailure(job.document_key, "unsupported_type", "fake parser")  # type: ignore[arg-type]

    encoders = fake_encoders()
    schema = CollectionSchema(
        name="t",
        dense_size=encoders.dense.dimension,
        dense_model=encoders.dense.model_name,
        splade_model=encoders.splade.model_name,
        bm25_model=encoders.bm25.model_name,
    )
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = open_store("edge", schema, path=tmp_path / "store")
    try:
        pipeline = SyncPipeline(
            ledger=ledger,
            store=store,
            encoders=encoders,
            parser_factory=lambda: contextlib.nullcontext(Parser()),
            plain_text=ParseOptions(memory_limit_mb=None),
        )
        report = pipeline.sync(LocalFolderConnector(folder))
    finally:
        store.close()
        ledger.close()
    assert sorted(sent) == ["bullets.txt", "notes.md"]
    assert (report.counts.indexed, report.counts.failed) == (1, 2)


def _synthetic_texts(count: int) -> list[str]:
    rnd = random.Random(7)
    words = (SHARED / "scifact" / "corpus.jsonl").read_text()[:200_000].split()

    def para(size: int) -> str:
        return " ".join(rnd.choice(words) for _ in range(size))

    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rnd.randint(1, 12)):
            kind = rnd.random()
            if kind < 0.2:
                parts.append(para(rnd.randint(1, 4)) + "\n" + para(rnd.randint(1, 4)))
            elif kind < 0.5:
                lines = (para(rnd.randint(3, 30)) for _ in range(rnd.randint(1, 5)))
                parts.append("\n".join(lines))
            else:
                parts.append(para(rnd.randint(20, 600)))
        separator = rnd.choice(["\n\n", "\n", "\n\n\n", "\n \n"])
        texts.append(separator.join(parts) + rnd.choice(["", "\n", "  \n"]))
    return texts


def _corpus(folder: Path) -> list[Path]:
    folder.mkdir()
    files = []
    with (SHARED / "scifact" / "corpus.jsonl").open() as lines:
        for n, line in enumerate(lines):
            if n >= 40:
                break
            record = json.loads(line)
            path = folder / f"scifact-{record['_id']}.txt"
            path.write_text(f"{record['title']}\n\n{record['text']}\n")
            files.append(path)
    for n, text in enumerate(_synthetic_texts(40)):
        path = folder / f"synthetic-{n}.txt"
        path.write_text(text)
        files.append(path)
    files += sorted((SHARED / "example-docs").glob("*.txt"))
    return files


@pytest.mark.slow
def test_same_paragraphs_and_chunks_as_the_parse_pool(tmp_path: Path) -> None:
    """Given unstructured's heading decisions, the chunks (text, ids, order, metadata)
    are the parse pool's, for every option set; the paragraphs always are."""
    from tribrid.ingestion.parse import parse_and_chunk
    from tribrid.ingestion.parsing import partition_with_page_count

    checked = 0
    for path in _corpus(tmp_path / "docs"):
        job = _job(path)
        if parse_plain_text(job, OPTION_SETS[0]) is None:
            continue
        elements, _ = partition_with_page_count(
            path,
            document_key=path.name,
            strategy="fast",
            max_file_mb=200,
            max_pages=2000,
            languages=("eng",),
            ocr=False,
            ocr_max_pages=1,
        )
        assert paragraphs(path.read_text()) == [e.text for e in elements], path
        found = [(e.text, e.category == "Title") for e in elements]
        stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        for options in OPTION_SETS:
            mine = chunk_paragraphs(job, found, options, last_modified=stamp)
            pool = parse_and_chunk(job, options)
            assert isinstance(pool, ParsedDocument), path
            assert [(c.point_id, c.index, c.text, dict(c.metadata)) for c in mine] == [
                (c.point_id, c.index, c.text, dict(c.metadata)) for c in pool.chunks
            ], (path, options)
            checked += 1
    assert checked >= 4 * 60


@pytest.mark.slow
def test_scifact_files_get_the_pool_chunks_with_at_most_another_title(tmp_path: Path) -> None:
    """With its own heading rule, SciFact files (a title line, an abstract) get the parse
    pool's chunk texts and ids; only the ``title`` metadata may differ."""
    from tribrid.ingestion.parse import parse_and_chunk

    for path in _corpus(tmp_path / "docs")[:40]:
        mine = parse_plain_text(_job(path), OPTION_SETS[0])
        pool = parse_and_chunk(_job(path), OPTION_SETS[0])
        assert mine is not None and isinstance(pool, ParsedDocument)
        assert [(c.point_id, c.text) for c in mine.chunks] == [
            (c.point_id, c.text) for c in pool.chunks
        ]
        for a, b in zip(mine.chunks, pool.chunks, strict=True):
            assert {k: v for k, v in a.metadata.items() if k != "title"} == {
                k: v for k, v in b.metadata.items() if k != "title"
            }


def test_text_files_never_import_unstructured(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Harbour Notes\n\n" + "The ferry leaves at seven. " * 80 + "\n")
    code = (
        "import sys; from pathlib import Path; "
        "from tribrid.ingestion.parse import ParseJob, ParseOptions; "
        "from tribrid.ingestion.plain_text import parse_plain_text; "
        f"d = parse_plain_text(ParseJob('s', 'a.txt', Path({str(path)!r})), ParseOptions()); "
        "assert d is not None and len(d.chunks) > 1; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('unstructured', 'spacy')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

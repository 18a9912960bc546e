"""OCR with the real Tesseract and legacy Office files with the real LibreOffice.

Nothing is mocked: each test skips, saying what to install, when its program is missing
(``make install`` installs both as root). Scanned pages are drawn with Pillow in large
type, so that Tesseract reads them in about a second; the real scans of example-docs
take longer and are marked slow.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from tribrid.errors import ParseError
from tribrid.ingestion.base import Chunk, DocumentFailure, FailureKind, ParsedDocument
from tribrid.ingestion.chunking import chunk_elements
from tribrid.ingestion.parse import ParseJob, ParseOptions
from tribrid.ingestion.parse_pool import WORKER_ENVIRONMENT, ParsePool
from tribrid.ingestion.parsing import ocr_missing, partition_document
from tribrid.settings import ChunkingSettings, ParsingSettings

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

EXAMPLE_DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "example-docs"
needs_examples = pytest.mark.skipif(not EXAMPLE_DOCS.is_dir(), reason="example-docs not present")
needs_tesseract = pytest.mark.skipif(
    ocr_missing(pdf=True) is not None, reason=f"OCR needs {ocr_missing(pdf=True)}"
)
needs_soffice = pytest.mark.skipif(
    shutil.which("soffice") is None,
    reason="needs LibreOffice: apt-get install libreoffice-writer-nogui libreoffice-impress-nogui",
)


def _chunks(path: Path, key: str | None = None, **options: object) -> tuple[Chunk, ...]:
    key = key or path.name
    elements = partition_document(path, document_key=key, **options)  # type: ignore[arg-type]
    return chunk_elements(elements, source_key="test", document_key=key)


def _text(chunks: Sequence[Chunk]) -> str:
    return " ".join(" ".join(chunk.text.split()) for chunk in chunks)


def _failure(path: Path, **options: object) -> ParseError:
    with pytest.raises(ParseError) as caught:
        partition_document(path, document_key=path.name, **options)  # type: ignore[arg-type]
    assert path.name in str(caught.value), "the message must name the file"
    return caught.value


def _page(line: str) -> PILImage:
    """A small white page with one line of large black type."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (900, 160), "white")
    ImageDraw.Draw(page).text((30, 50), line, fill="black", font=ImageFont.load_default(40))
    return page


def _scanned_pdf(path: Path, lines: Sequence[str]) -> Path:
    """A PDF of one image-only page per line, as a scanner makes."""
    pages = [_page(line) for line in lines]
    # 200 px an inch: small pages, rendered for OCR at ~1600 x 300 px.
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=200)
    return path


# -- OCR ------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_tesseract
@needs_examples
def test_real_image_is_ocred() -> None:
    key = "img/table-multi-row-column-cells.png"  # a table as a screenshot

    chunks = _chunks(EXAMPLE_DOCS / key, key)

    text = _text(chunks)
    for words in ("Participants", "Accuracy", "Low Vision 5 2 3", "Dexterity", "1199 sec"):
        assert words in text
    assert {chunk.metadata["filetype"] for chunk in chunks} == {"image/png"}
    assert {chunk.metadata["page"] for chunk in chunks} == {1}


@pytest.mark.slow
@needs_tesseract
def test_image_is_ocred(tmp_path: Path) -> None:
    path = tmp_path / "notice.png"
    _page("The harbour master signed").save(path)

    chunks = _chunks(path)

    assert "harbour master signed" in _text(chunks)
    assert [chunk.metadata["filetype"] for chunk in chunks] == ["image/png"]
    assert chunks[0].metadata["page_numbers"] == [1]


@pytest.mark.slow
@needs_tesseract
def test_pdf_without_text_layer_is_ocred_page_by_page(tmp_path: Path) -> None:
    path = _scanned_pdf(
        tmp_path / "scan.pdf", ["The harbour master signed", "The lighthouse was repainted"]
    )

    elements = partition_document(path, document_key="scan.pdf")
    chunks = chunk_elements(elements, source_key="test", document_key="scan.pdf")

    pages = {element.metadata.page_number: element.text for element in elements}
    assert "harbour master" in pages[1]
    assert "lighthouse" in pages[2]
    # The two short pages make one chunk, which keeps both page numbers.
    assert sorted({p for chunk in chunks for p in chunk.metadata["page_numbers"]}) == [1, 2]
    assert chunks[0].metadata["page"] == 1
    assert {chunk.metadata["filetype"] for chunk in chunks} == {"application/pdf"}


@pytest.mark.slow
@needs_tesseract
@needs_examples
def test_real_scanned_pdf_is_ocred() -> None:
    key = "pdf/loremipsum-flat.pdf"

    chunks = _chunks(EXAMPLE_DOCS / key, key)

    assert "Lorem ipsum dolor sit amet" in _text(chunks)
    assert all(chunk.metadata["page_numbers"] == [1] for chunk in chunks)
    assert chunks[0].metadata["page"] == 1


@needs_tesseract
def test_blank_image_is_empty(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(path)

    error = _failure(path)

    assert error.kind == FailureKind.EMPTY
    assert "OCR found no text" in str(error)


@needs_tesseract
def test_blank_scanned_pdf_has_no_text_layer(tmp_path: Path) -> None:
    path = _scanned_pdf(tmp_path / "blank.pdf", [""])

    error = _failure(path)

    assert error.kind == FailureKind.NO_TEXT_LAYER
    assert "OCR found no text" in str(error)


@needs_examples
def test_ocr_off_keeps_images_and_scans_unindexed() -> None:
    image = _failure(EXAMPLE_DOCS / "img" / "DA-1p.png", ocr=False)
    scan = _failure(EXAMPLE_DOCS / "pdf" / "loremipsum-flat.pdf", ocr=False)

    assert image.kind == FailureKind.UNSUPPORTED_TYPE
    assert scan.kind == FailureKind.NO_TEXT_LAYER
    for error in (image, scan):
        assert "needs OCR, but OCR is turned off" in str(error)
        assert "TRIBRID_PARSING__OCR=true" in str(error)


@needs_tesseract
def test_scans_over_the_ocr_page_limit_are_refused_before_ocr(tmp_path: Path) -> None:
    path = _scanned_pdf(tmp_path / "long-scan.pdf", ["one", "two", "three"])

    started = time.monotonic()
    error = _failure(path, ocr_max_pages=2)

    assert error.kind == FailureKind.TOO_MANY_PAGES
    assert "no text layer and 3 pages, over the 2 page limit for OCR" in str(error)
    assert "TRIBRID_PARSING__OCR_MAX_PAGES" in str(error)
    assert time.monotonic() - started < 5.0, "the limit must be checked before any OCR"


@needs_tesseract
def test_a_missing_tesseract_language_pack_is_named(tmp_path: Path) -> None:
    installed = subprocess.run(
        ["tesseract", "--list-langs"], capture_output=True, text=True, check=True
    ).stdout.split()
    if "chr" in installed:
        pytest.skip("the Cherokee language pack is installed")
    path = _scanned_pdf(tmp_path / "scan.pdf", ["harbour"])

    error = _failure(path, languages=("chr",))

    assert error.kind == FailureKind.UNSUPPORTED_TYPE
    assert "language pack" in str(error)
    assert "TRIBRID_PARSING__LANGUAGES" in str(error)


def test_ocr_settings_reach_the_parse_options() -> None:
    default = ParseOptions.from_settings(ParsingSettings(), ChunkingSettings())
    changed = ParseOptions.from_settings(
        ParsingSettings(ocr=False, ocr_max_pages=5), ChunkingSettings()
    )

    assert (default.ocr, default.ocr_max_pages) == (True, 20)
    assert (changed.ocr, changed.ocr_max_pages) == (False, 5)
    # One Tesseract thread per worker: the pool size is the parallelism.
    assert WORKER_ENVIRONMENT["OMP_THREAD_LIMIT"] == "1"


# -- legacy Office via LibreOffice ------------------------------------------------------------


@pytest.mark.slow
@needs_soffice
@needs_examples
@pytest.mark.parametrize(
    ("name", "filetype", "words"),
    [
        ("simple.doc", "application/msword", "This is my first thought."),
        ("fake-power-point.ppt", "application/vnd.ms-powerpoint", "Adding a Bullet Slide"),
    ],
)
def test_legacy_office_file_is_converted(
    tmp_path: Path, name: str, filetype: str, words: str
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    path = folder / name
    shutil.copyfile(EXAMPLE_DOCS / name, path)

    chunks = _chunks(path, f"docs/{name}")

    assert words in _text(chunks)
    assert {chunk.metadata["filetype"] for chunk in chunks} == {filetype}
    assert chunks[0].metadata["filename"] == name
    # LibreOffice writes a lock file beside what it opens: it must open a copy elsewhere.
    assert [p.name for p in folder.iterdir()] == [name]


@pytest.mark.slow
@needs_soffice
@needs_examples
def test_damaged_legacy_office_file_is_corrupt(tmp_path: Path) -> None:
    # The OLE container's header survives, so the type is still DOC; the Word stream does not.
    data = (EXAMPLE_DOCS / "simple.doc").read_bytes()
    path = tmp_path / "broken.doc"
    path.write_bytes(data[:2048] + bytes(len(data) - 2048))

    error = _failure(path)

    assert error.kind == FailureKind.CORRUPT
    assert "LibreOffice could not convert this DOC file" in str(error)
    assert "source file could not be loaded" in str(error)
    assert "javaldx" not in str(error)


@pytest.mark.slow
@needs_soffice
@needs_examples
def test_two_workers_convert_legacy_files_at_once() -> None:
    names = ["duplicate-paragraphs.doc", "simple.doc"]
    jobs = [ParseJob("src", name, EXAMPLE_DOCS / name) for name in names]

    # One file per worker, handed over as both start: they convert side by side, each
    # soffice with its own profile (unstructured's partition_doc shares the user's profile
    # and waits while any soffice runs on the machine, giving up after 10 s).
    with ParsePool(2, options=ParseOptions(timeout_s=120)) as pool:
        scratch = [worker.scratch_dir for worker in pool._slots if worker is not None]
        outcomes = {job.document_key: outcome for job, outcome in pool.imap(jobs)}

    for name in names:
        outcome = outcomes[name]
        assert isinstance(outcome, ParsedDocument), cast(DocumentFailure, outcome).message
    assert "some text" in _text(cast(ParsedDocument, outcomes["duplicate-paragraphs.doc"]).chunks)
    assert "favorite things" in _text(cast(ParsedDocument, outcomes["simple.doc"]).chunks)
    assert len(scratch) == 2
    assert not any(folder.exists() for folder in scratch), "the workers' TMPDIRs are removed"

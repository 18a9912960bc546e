"""tribrid's Tesseract agent against ``unstructured``'s stock one, with the real Tesseract.

:class:`~tribrid.ingestion.ocr.PageOCR` must give the elements the stock agent gives (text,
boxes, order) with one Tesseract run a page instead of two, and with the page written as
grey when its channels are equal. Pages are drawn with Pillow or cut from example-docs
scans, small enough that Tesseract reads them in about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tribrid.ingestion.parsing import ocr_missing, prepare_unstructured

EXAMPLE_DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "example-docs"
needs_examples = pytest.mark.skipif(not EXAMPLE_DOCS.is_dir(), reason="example-docs not present")
pytestmark = pytest.mark.skipif(ocr_missing() is not None, reason=f"OCR needs {ocr_missing()}")

STOCK = "unstructured.partition.utils.ocr_models.tesseract_ocr.OCRAgentTesseract"


@pytest.fixture(scope="module", autouse=True)
def _unstructured() -> None:
    prepare_unstructured()


def _layout(agent: Any, image: Any) -> list[tuple[str | None, tuple[float, ...], str | None]]:
    elements = agent.get_layout_elements_from_image(image)
    return [
        (
            element.text,
            (element.bbox.x1, element.bbox.y1, element.bbox.x2, element.bbox.y2),
            element.type,
        )
        for element in elements.as_list()
    ]


def _agents() -> tuple[Any, Any]:
    from unstructured.partition.utils.ocr_models.tesseract_ocr import OCRAgentTesseract

    from tribrid.ingestion.ocr import PageOCR

    return OCRAgentTesseract("eng"), PageOCR("eng")


@pytest.fixture
def tesseract_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """The real ``run_tesseract``, recording the image file and the outputs of each run."""
    from unstructured_pytesseract import pytesseract

    runs: list[tuple[str, str]] = []
    real = pytesseract.run_tesseract

    def recording(
        input_filename: str, output_filename_base: str, extension: str, *args: Any, **kwargs: Any
    ) -> None:
        from PIL import Image

        with Image.open(input_filename) as written:
            runs.append((written.mode, extension))
        real(input_filename, output_filename_base, extension, *args, **kwargs)

    monkeypatch.setattr(pytesseract, "run_tesseract", recording)
    yield runs


def _page(lines: list[str], colour: str = "black", size: int = 36) -> Any:
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (1100, 90 + 60 * len(lines)), "white")
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        draw.text((40, 40 + 60 * row), line, fill=colour, font=ImageFont.load_default(size))
    return page


def test_the_agent_unstructured_loads_is_tribrids() -> None:
    from unstructured.partition.utils.ocr_models.ocr_interface import OCRAgent

    from tribrid.ingestion.ocr import PageOCR

    assert type(OCRAgent.get_agent(language="eng")) is PageOCR


def test_a_grey_page_is_read_once_as_grey_with_the_stock_agents_result(
    tesseract_runs: list[tuple[str, str]],
) -> None:
    stock, ours = _agents()
    page = _page(["The harbour master signed the", "register on the ninth of May"])

    expected = _layout(stock, page)
    stock_runs = list(tesseract_runs)
    tesseract_runs.clear()
    got = _layout(ours, page)

    assert got == expected
    assert "harbour" in " ".join(text or "" for text, _, _ in got)
    assert [mode for mode, _ in stock_runs] == ["RGB", "RGB"]  # hOCR, then text
    assert tesseract_runs == [("L", "hocr txt")]
    # The page was let go once written; unstructured's loop reads only its size after.
    assert page.size == (1100, 210)
    with pytest.raises(ValueError, match="closed image"):
        page.load()


def test_a_colour_page_is_sent_as_colour(tesseract_runs: list[tuple[str, str]]) -> None:
    stock, ours = _agents()
    page = _page(["Red ink on the quarterly ledger"], colour="#b01010")

    expected = _layout(stock, page)
    tesseract_runs.clear()

    assert _layout(ours, page) == expected
    assert tesseract_runs == [("RGB", "hocr txt")]


def test_small_text_takes_the_stock_agents_zoomed_second_pass(
    tesseract_runs: list[tuple[str, str]],
) -> None:
    stock, ours = _agents()
    # 12 px type is under unstructured's minimum text height: the words are OCRed again on
    # a page scaled up.
    page = _page(["minutes of the harbour board, third session"], size=12)

    expected = _layout(stock, page)
    tesseract_runs.clear()

    assert _layout(ours, page) == expected
    assert [extension for _, extension in tesseract_runs] == ["hocr txt", "hocr"]


@pytest.mark.slow
@needs_examples
def test_a_real_scan_gives_the_stock_agents_elements() -> None:
    from PIL import Image

    stock, ours = _agents()
    with Image.open(EXAMPLE_DOCS / "img" / "DA-1p.png") as scan:
        page = scan.convert("RGB").crop((0, 0, scan.width, scan.height // 3))

    expected = _layout(stock, page)

    assert _layout(ours, page) == expected
    assert len(expected) >= 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK"])
def test_other_modes_reach_tesseract_as_the_stock_agent_sends_them(mode: str) -> None:
    from PIL import Image
    from unstructured_pytesseract import pytesseract

    from tribrid.ingestion.ocr import tesseract_input

    page = _page(["Tide tables"]).convert(mode)

    expected, _ = pytesseract.prepare(np.array(page))
    got = tesseract_input(page)

    assert got.mode == expected.mode
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert isinstance(got, Image.Image)


def test_an_rgb_page_is_used_as_it_is_unless_grey() -> None:
    from tribrid.ingestion.ocr import tesseract_input

    grey = _page(["Soundings"])
    colour = _page(["Soundings"], colour="#2040c0")

    as_grey = tesseract_input(grey)
    assert as_grey.mode == "L"
    assert np.array_equal(np.asarray(as_grey), np.asarray(grey)[:, :, 0])
    assert tesseract_input(colour) is colour


def test_a_missing_language_pack_fails_as_with_the_stock_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from unstructured_pytesseract import pytesseract

    from tribrid.ingestion.ocr import PageOCR

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(pytesseract.TesseractError) as caught:
        PageOCR("qqq").get_layout_elements_from_image(_page(["Harbour"]))
    assert "qqq" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # the page and Tesseract's output are removed


def test_a_page_of_another_mode_is_left_open() -> None:
    stock, ours = _agents()
    page = _page(["Tide tables for the third quarter"]).convert("L")

    assert _layout(ours, page) == _layout(stock, page)  # the stock agent reads it after
    page.load()

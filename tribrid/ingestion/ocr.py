"""Tesseract OCR of a page: one image file, one Tesseract run, the page held once.

``unstructured``'s Tesseract agent OCRs a page twice (once for words with boxes as hOCR,
once for the text in reading order) and, each time, copies the page into a numpy array,
copies that back into an image and writes it as PNG. A scanned page rendered at 350 dpi
is about 60 MiB of RGB, so the parse worker held it three times while Tesseract, which
reads 24-bit pages as 32-bit, held it again.

:class:`PageOCR` gives ``unstructured`` the same results with less: the page is written
once, as 8-bit grey when its three channels are equal (a scanned grey page rendered as RGB,
the common case; Tesseract turns colour into grey with weights that sum to one, so equal
channels give it the same grey either way), and one Tesseract run writes both the hOCR
and the text. An RGB page is closed as soon as its file is written, so the worker does
not hold it while Tesseract runs; the zoomed second pass the stock agent makes for text
that is too small or too large reads it back from that file. Anything else about the page
(other modes, colour) reaches Tesseract as the stock agent would have sent it.

``tests/ingestion/test_ocr_agent.py`` checks the elements against the stock agent's.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Final

import numpy as np
from PIL import Image, ImageChops
from unstructured.partition.utils.config import env_config
from unstructured.partition.utils.constants import (
    IMAGE_COLOR_DEPTH,
    TESSERACT_MAX_SIZE,
    TESSERACT_TEXT_HEIGHT,
)
from unstructured.partition.utils.ocr_models.tesseract_ocr import (
    OCRAgentTesseract,
    zoom_image,
)
from unstructured_pytesseract import pytesseract as _pytesseract

if TYPE_CHECKING:
    import pandas as pd
    from unstructured_inference.inference.layoutelement import LayoutElements

# The stock agent asks for character boxes so that low-confidence characters can be
# dropped from each word.
_HOCR_CONFIG: Final = "-c tessedit_create_hocr=1 -c hocr_char_boxes=1"


class PageOCR(OCRAgentTesseract):
    """``unstructured``'s Tesseract agent with one run and one image file per page."""

    def get_layout_elements_from_image(self, image: Image.Image) -> LayoutElements:
        from unstructured.partition.pdf_image.inference_utils import (
            build_layout_elements_from_ocr_regions,
        )

        size = image.size
        with tempfile.TemporaryDirectory(prefix="tribrid-ocr-") as directory:
            page = os.path.join(directory, "page.png")
            _write(tesseract_input(image), page)
            if image.mode == "RGB":
                # The file is the page now. unstructured's OCR loop reads only the size of
                # the image it handed over and then closes it, so its pixels (60 MiB for
                # a 350 dpi scan) are let go before Tesseract starts rather than after.
                image.close()
            hocr, text = self._run(page, directory, want_text=True)
            ocr_df = self._words(hocr)
            zoom: float = 1
            text_height = ocr_df[TESSERACT_TEXT_HEIGHT].quantile(
                env_config.TESSERACT_TEXT_HEIGHT_QUANTILE
            )
            if (
                text_height < env_config.TESSERACT_MIN_TEXT_HEIGHT
                or text_height > env_config.TESSERACT_MAX_TEXT_HEIGHT
            ):
                # Same rule as the stock agent: OCR the words again on a scaled page.
                max_zoom = max(
                    0,
                    np.round(np.sqrt(TESSERACT_MAX_SIZE / np.prod(size) / IMAGE_COLOR_DEPTH), 1),
                )
                zoom = min(
                    np.round(env_config.TESSERACT_OPTIMUM_TEXT_HEIGHT / text_height, 1), max_zoom
                )
                source = _reopen(page) if image.mode == "RGB" else image
                zoomed = zoom_image(source, zoom)
                del source
                _write(tesseract_input(zoomed), page)
                del zoomed
                hocr, _ = self._run(page, directory, want_text=False)
                ocr_df = self._words(hocr)
        return build_layout_elements_from_ocr_regions(
            ocr_regions=self.parse_data(ocr_df, zoom=zoom),
            ocr_text=text,
            group_by_ocr_text=True,
        )

    def _words(self, hocr: bytes) -> pd.DataFrame:
        return self.hocr_to_dataframe(
            hocr,  # type: ignore[arg-type]  # lxml reads the bytes Tesseract wrote
            env_config.TESSERACT_CHARACTER_CONFIDENCE_THRESHOLD,
        ).dropna()

    def _run(self, page: str, directory: str, *, want_text: bool) -> tuple[bytes, str]:
        """OCR the image file ``page`` once; return its hOCR and, when asked, its text."""
        extensions = "hocr txt" if want_text else "hocr"
        base = os.path.join(directory, "out")
        _pytesseract.run_tesseract(
            page, base, extensions, self.language, _HOCR_CONFIG, nice=0, timeout=0
        )
        with open(f"{base}.hocr", "rb") as file:
            hocr = file.read()
        text = ""
        if want_text:
            with open(f"{base}.txt", "rb") as file:
                text = file.read().decode("utf-8")
        return hocr, text


def _write(page: Image.Image, path: str) -> None:
    page.save(path, format="PNG")


def _reopen(path: str) -> Image.Image:
    """The RGB page again, from the file written of it (grey when its channels were equal)."""
    with Image.open(path) as written:
        return written.convert("RGB")


def tesseract_input(image: Image.Image) -> Image.Image:
    """The image to write for Tesseract: what the stock agent writes, or its grey twin.

    The stock agent passes ``numpy.array(image)`` to ``unstructured_pytesseract``, which
    makes an image of it again (and lays anything with alpha on white). For RGB that round
    trip changes nothing, so the page itself is used; when its three channels are equal, one
    of them is the same page in grey.
    """
    if image.mode != "RGB":
        prepared, _ = _pytesseract.prepare(np.array(image))
        return prepared
    red, green, blue = image.split()
    if (
        ImageChops.difference(red, green).getbbox() is None
        and ImageChops.difference(green, blue).getbbox() is None
    ):
        return red
    del red, green, blue
    return image


__all__ = ["PageOCR", "tesseract_input"]

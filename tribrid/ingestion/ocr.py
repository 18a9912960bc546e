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
and the text. Anything else about the page (other modes, colour) reaches Tesseract as the
stock agent would have sent it, and the zoomed second pass the stock agent makes for text
that is too small or too large is kept as it is.

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

#: What ``unstructured``'s ``OCR_AGENT`` names to use this agent.
AGENT: Final = f"{__name__}.PageOCR"

# The stock agent asks for character boxes so that low-confidence characters can be
# dropped from each word.
_HOCR_CONFIG: Final = "-c tessedit_create_hocr=1 -c hocr_char_boxes=1"


class PageOCR(OCRAgentTesseract):
    """``unstructured``'s Tesseract agent with one run and one image file per page."""

    def get_layout_elements_from_image(self, image: Image.Image) -> LayoutElements:
        from unstructured.partition.pdf_image.inference_utils import (
            build_layout_elements_from_ocr_regions,
        )

        hocr, text = self._run(image, want_text=True)
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
                np.round(np.sqrt(TESSERACT_MAX_SIZE / np.prod(image.size) / IMAGE_COLOR_DEPTH), 1),
            )
            zoom = min(
                np.round(env_config.TESSERACT_OPTIMUM_TEXT_HEIGHT / text_height, 1), max_zoom
            )
            zoomed = zoom_image(image, zoom)
            hocr, _ = self._run(zoomed, want_text=False)
            del zoomed
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

    def _run(self, image: Image.Image, *, want_text: bool) -> tuple[bytes, str]:
        """OCR ``image`` once; return its hOCR and, when asked, its text."""
        extensions = "hocr txt" if want_text else "hocr"
        with tempfile.TemporaryDirectory(prefix="tribrid-ocr-") as directory:
            page = tesseract_input(image)
            source = os.path.join(directory, "page.png")
            page.save(source, format="PNG")
            del page
            base = os.path.join(directory, "out")
            _pytesseract.run_tesseract(
                source, base, extensions, self.language, _HOCR_CONFIG, nice=0, timeout=0
            )
            with open(f"{base}.hocr", "rb") as file:
                hocr = file.read()
            text = ""
            if want_text:
                with open(f"{base}.txt", "rb") as file:
                    text = file.read().decode("utf-8")
        return hocr, text


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


__all__ = ["AGENT", "PageOCR", "tesseract_input"]

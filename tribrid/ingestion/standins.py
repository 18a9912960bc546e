"""Stand-ins for the parts of ``unstructured_inference`` that only layout models use.

``unstructured`` imports ``unstructured_inference.inference.layout`` for every PDF, and that
module imports the layout-model registry (``models.base``, which loads ONNX Runtime and
ONNX to be ready to quantize a model) and a debugging plotter (``visualize``, which loads
matplotlib). tribrid runs no layout model: its PDF strategies are ``fast`` and the
Tesseract-only ``ocr_only`` (see :data:`tribrid.ingestion.parsing.SUPPORTED_PDF_STRATEGIES`).
So a parse worker, a process of tribrid's own, registers these two small modules under
those names before ``unstructured`` is imported: each keeps the names other modules import
from it, and calling one raises an error that says why.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Final, NoReturn

#: The modules replaced, the functions each must still offer (they refuse to run), and its
#: constants other modules read (the registry's default model name, which
#: `unstructured.partition.pdf` reads for hi_res).
REPLACED: Final[dict[str, tuple[tuple[str, ...], dict[str, object]]]] = {
    "unstructured_inference.models.base": (("get_model",), {"DEFAULT_MODEL": "yolox"}),
    "unstructured_inference.visualize": (("draw_bbox",), {}),
}


class LayoutModelsUnavailable(RuntimeError):
    """A layout model or its plotter was asked for in a process that refuses them."""


def refuse_layout_models() -> None:
    """Register the stand-ins, unless the real modules are already imported.

    Call before anything imports ``unstructured``. Idempotent.
    """
    for name, (functions, constants) in REPLACED.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name, f"tribrid stand-in for {name}: layout models refused")
        for function in functions:
            setattr(module, function, _refusal(name, function))
        for constant, value in constants.items():
            setattr(module, constant, value)
        module.__tribrid_standin__ = True  # type: ignore[attr-defined]
        sys.modules[name] = module


def _refusal(module: str, function: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise LayoutModelsUnavailable(
            f"{module}.{function} needs unstructured's layout models, which tribrid's parse "
            "workers do not load (tribrid parses PDFs with the 'fast' strategy and OCR with "
            "Tesseract only); use unstructured directly for the 'hi_res' strategy"
        )

    refuse.__name__ = refuse.__qualname__ = function
    return refuse

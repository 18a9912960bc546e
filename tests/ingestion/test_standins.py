"""The stand-ins a parse worker puts in place of unstructured's layout-model modules.

Each test runs in a fresh interpreter: the stand-ins only work before ``unstructured`` is
imported, and this test process has imported it already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tribrid.ingestion.parsing import ocr_missing

EXAMPLE_DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "example-docs"


def _run(code: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"DO_NOT_TRACK": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.slow
def test_unstructured_imports_without_onnxruntime_or_matplotlib() -> None:
    out = _run(
        """
        import sys
        from tribrid.ingestion.standins import refuse_layout_models, LayoutModelsUnavailable
        refuse_layout_models()
        from tribrid.ingestion import parsing
        parsing.warm_up()
        import unstructured.partition.pdf as pdf
        print(sorted(m for m in ("onnxruntime", "onnx", "matplotlib") if m in sys.modules))
        print(pdf.default_hi_res_model())
        from unstructured_inference.inference.layout import get_model
        try:
            get_model("yolox")
        except LayoutModelsUnavailable as e:
            print("refused:", e)
        """
    )
    loaded, model, refusal = out.splitlines()
    assert loaded == "[]"
    assert model == "yolox"  # what unstructured's hi_res default reads from the registry
    assert "get_model" in refusal and "'fast' strategy" in refusal


def test_real_modules_already_imported_are_left_alone() -> None:
    out = _run(
        """
        import unstructured_inference.visualize
        from tribrid.ingestion.standins import refuse_layout_models
        refuse_layout_models()
        import sys
        print(hasattr(sys.modules["unstructured_inference.visualize"], "__tribrid_standin__"))
        print(hasattr(sys.modules["unstructured_inference.models.base"], "__tribrid_standin__"))
        """
    )
    assert out.split() == ["False", "True"]


@pytest.mark.slow
@pytest.mark.skipif(ocr_missing(pdf=True) is not None, reason="OCR needs Tesseract")
@pytest.mark.skipif(not EXAMPLE_DOCS.is_dir(), reason="example-docs not present")
def test_pdfs_parse_and_ocr_as_before_with_the_stand_ins() -> None:
    code = """
        import sys
        {prelude}
        from pathlib import Path
        from tribrid.ingestion.parsing import partition_document
        root = Path({root!r})
        for name in ("pdf/layout-parser-paper-fast.pdf", "pdf/loremipsum-flat.pdf"):
            elements = partition_document(root / name, document_key=name)
            print(repr([(e.category, e.text, e.metadata.page_number) for e in elements]))
        """
    prelude = "from tribrid.ingestion.standins import refuse_layout_models; refuse_layout_models()"
    with_standins = _run(code.format(prelude=prelude, root=str(EXAMPLE_DOCS)))
    without = _run(code.format(prelude="", root=str(EXAMPLE_DOCS)))
    assert with_standins == without
    assert "Lorem ipsum" in with_standins

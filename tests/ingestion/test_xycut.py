"""XY-cut without numba orders boxes, and so PDF elements, exactly as numba's does.

The reference is ``unstructured``'s own module compiled by the real numba, loaded beside
the numba-free one under no name (so it never replaces it).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tribrid.ingestion.parsing import partition_document, prepare_unstructured
from tribrid.ingestion.xycut import XYCUT_MODULE, load_xycut, projection_by_bboxes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DOCS = ROOT.parent / "shared" / "data" / "example-docs"
needs_examples = pytest.mark.skipif(not EXAMPLE_DOCS.is_dir(), reason="example-docs not present")


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    """``unstructured``'s XY-cut module as ``unstructured`` wrote it, compiled by numba."""
    pytest.importorskip("numba")
    spec = importlib.util.find_spec(XYCUT_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages(count: int, seed: int) -> list[np.ndarray]:
    """Pages of random boxes ``(left, top, right, bottom)``, some empty or inverted."""
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(count):
        n = int(rng.integers(1, 40))
        left = rng.integers(0, 600, n)
        top = rng.integers(0, 800, n)
        # Mostly real boxes; some of zero width or height, a few with the end before the start.
        right = left + rng.integers(-3, 300, n).clip(min=-2)
        bottom = top + rng.integers(-3, 40, n).clip(min=-2)
        boxes = np.stack([left, top, right.clip(min=0), bottom.clip(min=0)], axis=1)
        pages.append(boxes.astype(int))
    return pages


def test_projection_is_the_same_histogram(compiled: ModuleType) -> None:
    for boxes in _pages(200, seed=1):
        for axis in (0, 1):
            ours = projection_by_bboxes(boxes, axis)
            theirs = compiled.projection_by_bboxes(boxes, axis)
            assert ours.dtype == theirs.dtype == np.int64
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("function", ["recursive_xy_cut", "recursive_xy_cut_swapped"])
def test_reading_order_is_the_same(compiled: ModuleType, function: str) -> None:
    plain = load_xycut()
    for boxes in _pages(200, seed=2):
        ours: list[int] = []
        theirs: list[int] = []
        getattr(plain, function)(boxes, np.arange(len(boxes)), ours)
        getattr(compiled, function)(boxes, np.arange(len(boxes)), theirs)
        assert [int(i) for i in ours] == [int(i) for i in theirs]


def _described(path: Path) -> list[tuple[Any, ...]]:
    elements = partition_document(path, document_key=path.name)
    return [
        (
            type(e).__name__,
            e.text,
            e.metadata.page_number,
            e.metadata.coordinates.points if e.metadata.coordinates else None,
        )
        for e in elements
    ]


@needs_examples
@pytest.mark.parametrize(
    "name", ["layout-parser-paper-fast.pdf", "DA-1p.pdf", "reliance.pdf", "a1977-backus-p21.pdf"]
)
def test_pdf_elements_are_the_same_as_with_numba(
    compiled: ModuleType, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_unstructured()
    path = EXAMPLE_DOCS / "pdf" / name
    without = _described(path)
    plain = sys.modules[XYCUT_MODULE]
    for helper in ("projection_by_bboxes", "split_projection_profile"):
        monkeypatch.setattr(plain, helper, getattr(compiled, helper))
    with_numba = _described(path)
    assert len(without) > 5
    assert without == with_numba


@pytest.mark.slow
def test_parsing_never_imports_numba() -> None:
    code = (
        "import sys\n"
        "from tribrid.ingestion.parsing import prepare_unstructured\n"
        "prepare_unstructured()\n"
        "import unstructured.partition.utils.sorting\n"
        "print('numba' in sys.modules, 'llvmlite' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.split() == ["False", "False"]

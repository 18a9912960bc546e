"""``unstructured``'s XY-cut reading order, without numba.

``unstructured`` orders the text boxes of a PDF page by recursive XY-cut
(``unstructured.partition.utils.xycut``). Two small helpers of that module are compiled
with numba, and importing numba loads LLVM into every process that parses, plus the
compiled code on its first page: a large part of a parse worker's memory (see
``benchmarks/results/example-docs.md``) for two loops over a page's boxes.

:func:`load_xycut` imports that module without numba: while it is imported, ``numba``
resolves to a stand-in whose ``njit`` returns the function unchanged, and the stand-in
is removed again right after. The module's own recursion is kept as it is; of the two
helpers, ``split_projection_profile`` runs as the plain Python ``unstructured`` wrote
(already numpy), and ``projection_by_bboxes``, a per-pixel loop, is replaced by
:func:`projection_by_bboxes`, the same histogram built with numpy. The reading order,
and so every element and chunk, is the same as with numba (tests compare both).

A process that has imported numba already gets the module as ``unstructured`` wrote it.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: The module of ``unstructured`` this replaces numba in.
XYCUT_MODULE: Final = "unstructured.partition.utils.xycut"


def projection_by_bboxes(boxes: npt.NDArray[np.integer[Any]], axis: int) -> npt.NDArray[np.int64]:
    """How many boxes cover each pixel along one axis: ``unstructured``'s histogram.

    The same result as ``unstructured``'s loop (``res[j] += 1`` for ``j`` in
    ``range(start, end)`` of every box), built as a running sum of +1 at each box's start
    and -1 at its end. Boxes are ``(left, top, right, bottom)`` with non-negative
    coordinates (``unstructured`` sorts only such pages); a box whose end is not after its
    start covers nothing, as in the loop.

    Args:
        boxes: Integer array of shape ``(N, 4)``.
        axis: 0 projects the x coordinates, 1 the y coordinates.

    Returns:
        An ``int64`` array as long as the largest coordinate on that axis.
    """
    assert axis in (0, 1)
    length = int(np.max(boxes[:, axis::2]))
    starts = boxes[:, axis].astype(np.int64)
    ends = boxes[:, axis + 2].astype(np.int64)
    covering = ends > starts
    steps = np.zeros(length + 1, dtype=np.int64)
    np.add.at(steps, starts[covering], 1)
    np.add.at(steps, ends[covering], -1)
    return np.cumsum(steps[:length], dtype=np.int64)


def load_xycut() -> types.ModuleType:
    """Import ``unstructured``'s XY-cut module without importing numba (see the module doc).

    Idempotent: the module stays in ``sys.modules``, where ``unstructured``'s sorting
    finds it. When numba is already imported, the module is imported as is.

    Returns:
        The ``unstructured.partition.utils.xycut`` module.
    """
    loaded = sys.modules.get(XYCUT_MODULE)
    if loaded is not None:
        return loaded
    if "numba" in sys.modules:
        return importlib.import_module(XYCUT_MODULE)
    stand_in = types.ModuleType("numba")
    stand_in.njit = _plain_njit  # type: ignore[attr-defined]
    sys.modules["numba"] = stand_in
    try:
        module = importlib.import_module(XYCUT_MODULE)
    finally:
        if sys.modules.get("numba") is stand_in:
            del sys.modules["numba"]
    module.projection_by_bboxes = projection_by_bboxes  # type: ignore[attr-defined]
    return module


def _plain_njit(*args: Any, **kwargs: Any) -> Any:
    """``numba.njit`` that compiles nothing: ``@njit`` and ``@njit(...)`` return the function."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        return function

    return decorate

"""Give the memory a batch freed back to the operating system.

ONNX Runtime and torch allocate large buffers for every batch (attention scores grow
with batch x length squared). glibc keeps freed memory in its heaps and raises its
mmap threshold after large frees, so a process that encoded one batch of long texts
keeps that peak resident for the rest of the run. ``malloc_trim`` returns the free
pages; it is cheap next to a batch and a no-op where the C library lacks it.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory() -> None:
    """Return free heap memory to the operating system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

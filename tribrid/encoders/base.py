"""Protocols and records of the three encoders: dense, learned sparse (SPLADE) and BM25."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from typing import TypeAlias

    import numpy as np
    import numpy.typing as npt

    DenseMatrix: TypeAlias = npt.NDArray[np.float32]


def __getattr__(name: str) -> Any:
    # ``DenseMatrix`` needs numpy; built on first use, so the records and enums here (which
    # settings and the CLI import) cost nothing to import.
    if name == "DenseMatrix":
        import numpy as np
        import numpy.typing as npt

        return npt.NDArray[np.float32]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class EncoderBackend(StrEnum):
    """What runs the dense and SPLADE networks.

    ``onnx`` computes the same function as ``torch`` (vectors agree to ~1e-6) and is
    faster on CPU; ``onnx-int8`` stores the weights of the matrix products as int8, faster
    again, with vectors close to (not equal to) torch's. All three keep the model identity
    recorded in the collection schema, so an index built with one is queried with another.
    """

    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: strictly increasing indices and their finite, non-zero weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError(
                f"SparseVector has {len(self.indices)} indices but {len(self.values)} values"
            )
        if any(b <= a for a, b in zip(self.indices, self.indices[1:], strict=False)):
            raise ValueError("SparseVector indices must be strictly increasing")
        if self.indices and self.indices[0] < 0:
            raise ValueError("SparseVector indices must be >= 0")
        if not all(math.isfinite(v) for v in self.values):
            raise ValueError("SparseVector values must be finite")

    @classmethod
    def from_pairs(cls, pairs: dict[int, float]) -> SparseVector:
        """Build from an index→weight mapping, dropping zeros and sorting indices."""
        items = sorted((i, float(v)) for i, v in pairs.items() if v != 0.0)
        return cls(tuple(i for i, _ in items), tuple(v for _, v in items))

    def __len__(self) -> int:
        return len(self.indices)

    def dot(self, other: SparseVector) -> float:
        """Inner product with another sparse vector."""
        mine = dict(zip(self.indices, self.values, strict=True))
        return sum(mine.get(i, 0.0) * v for i, v in zip(other.indices, other.values, strict=True))


@runtime_checkable
class DenseEncoder(Protocol):
    """Turns texts into L2-normalised dense vectors of a fixed dimension."""

    def warm_up(self) -> None:
        """Load the model now (idempotent); encoding calls it anyway."""
        ...

    @property
    def model_name(self) -> str:
        """Identity of the model, recorded in the collection schema."""
        ...

    @property
    def dimension(self) -> int:
        """Length of every vector this encoder returns."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> DenseMatrix:
        """Encode passages; returns an array of shape ``(len(texts), dimension)``."""
        ...

    def encode_query(self, text: str) -> DenseMatrix:
        """Encode one query; returns an array of shape ``(dimension,)``."""
        ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Turns texts into sparse vectors (SPLADE weights or BM25 term frequencies)."""

    def warm_up(self) -> None:
        """Load the model now (idempotent); encoding calls it anyway."""
        ...

    @property
    def model_name(self) -> str:
        """Identity of the model or scheme, recorded in the collection schema."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode passages, one sparse vector each."""
        ...

    def encode_query(self, text: str) -> SparseVector:
        """Encode one query."""
        ...

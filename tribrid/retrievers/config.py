"""A retriever configuration file: the fusion settings ``tribrid tune`` writes.

The file is JSON. Its ``retriever`` fields are options of
:class:`~tribrid.retrievers.TribridRetriever`; ``notes`` says where they came from
(dataset, split, scores, binary calibration) and is never read back as options.

Example:
    >>> config = RetrieverConfig.load("tuned.json")                      # doctest: +SKIP
    >>> retriever = TribridRetriever.from_config(config, store=store, encoders=encoders)
    ... # doctest: +SKIP
    >>> retriever = tribrid.as_retriever(config="tuned.json")           # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tribrid.errors import ConfigError
from tribrid.retrievers.defaults import (
    DEFAULT_FUSION,
    DEFAULT_WEIGHTING,
    DEFAULT_WEIGHTS,
    default_feedback,
)
from tribrid.retrievers.feedback import Feedback
from tribrid.retrievers.fusion import FusionMethod, Normalization, Weighting
from tribrid.store.base import Channel

CONFIG_FORMAT = "tribrid-retriever-config/1"


class RetrieverSettings(BaseModel):
    """The fusion options a configuration file sets (see ``TribridRetriever``)."""

    model_config = ConfigDict(extra="forbid")

    # The retriever's defaults (tribrid.retrievers.defaults).
    channels: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    fusion: FusionMethod = DEFAULT_FUSION
    rrf_k: int = Field(default=60, ge=0)
    normalization: Normalization = Normalization.MINMAX
    prefetch_k: int | None = Field(default=None, ge=1)
    weighting: Weighting = DEFAULT_WEIGHTING
    feedback: Feedback | None = Field(default_factory=default_feedback)
    oversampling: float = Field(default=8.0, ge=1.0)

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, value: dict[str, float]) -> dict[str, float]:
        valid = [c.value for c in Channel]
        for name, weight in value.items():
            if name not in valid:
                raise ValueError(f"unknown channel {name!r}; valid channels: {valid}")
            if weight < 0:
                raise ValueError(f"channel {name!r} has weight {weight}; weights must be >= 0")
        if not any(w > 0 for w in value.values()):
            raise ValueError("no channel has a weight above 0")
        return value


class RetrieverConfig(BaseModel):
    """A saved retriever configuration: options plus where they came from.

    Attributes:
        format: Version tag of the file format.
        retriever: The options, passed to :class:`~tribrid.retrievers.TribridRetriever`.
        notes: Provenance (dataset, splits, scores, calibration); informational only.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["tribrid-retriever-config/1"] = "tribrid-retriever-config/1"
    retriever: RetrieverSettings = Field(default_factory=RetrieverSettings)
    notes: dict[str, Any] = Field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The retriever options, ready for ``TribridRetriever(**options)``."""
        return self.retriever.model_dump(exclude_none=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RetrieverConfig:
        """Read and validate a configuration file.

        Raises:
            ConfigError: The file is missing, is not JSON, or holds invalid options.
        """
        source = Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"retriever config {source} does not exist; write one with `tribrid tune`"
            ) from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read retriever config {source}: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise ConfigError(f"retriever config {source} is invalid: {problems}") from e

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the configuration as JSON (atomically) and return its path."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        os.replace(tmp, target)
        return target


def load_config(config: RetrieverConfig | str | os.PathLike[str]) -> RetrieverConfig:
    """A :class:`RetrieverConfig` from itself or from a file path."""
    return config if isinstance(config, RetrieverConfig) else RetrieverConfig.load(config)


__all__ = ["CONFIG_FORMAT", "RetrieverConfig", "RetrieverSettings", "load_config"]

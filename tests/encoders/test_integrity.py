"""The shipped models are the pinned ones, and an ONNX export is what it was when made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tribrid.encoders import _onnx, models
from tribrid.encoders.models import PINNED, ResolvedModel, resolve_model, verify_model
from tribrid.errors import EncoderError


def test_the_shipped_models_match_their_pinned_digests() -> None:
    for kind in ("dense", "splade"):
        resolved = resolve_model("default", kind=kind)
        assert verify_model(resolved) == PINNED[resolved.identity]


def test_a_changed_file_of_a_shipped_model_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = Path(resolve_model("default", kind="dense").location)
    copy = tmp_path / "model"
    for path in real.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(real)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)  # the 90 MB weights are not copied
    (copy / "config.json").unlink()
    (copy / "config.json").write_text((real / "config.json").read_text().replace("384", "385"))
    identity = "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setattr(models, "_verified", {})
    with pytest.raises(EncoderError, match=r"model file .*config\.json .* not the pinned"):
        verify_model(ResolvedModel(str(copy), identity))
    (copy / "vocab.txt").unlink()
    (copy / "config.json").unlink()
    (copy / "config.json").symlink_to(real / "config.json")
    with pytest.raises(EncoderError, match=r"is missing .*vocab\.txt"):
        verify_model(ResolvedModel(str(copy), identity))
    assert verify_model(ResolvedModel(str(copy), "my-own-model")) == {}  # not pinned


def _export(tmp_path: Path, source: dict[str, str] | None = None) -> Path:
    def build(folder: Path) -> dict[str, object]:
        (folder / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
        (folder / "tokenizer.json").write_text("{}")
        return {"backend": "onnx", **({"source_sha256": source} if source else {})}

    return _onnx.ensure_export(tmp_path / "export", build)


def test_an_export_records_its_files_and_is_checked_on_load(tmp_path: Path) -> None:
    pinned = PINNED["splade-tiny"]
    folder = _export(tmp_path, pinned)
    manifest = json.loads((folder / _onnx.MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json"}
    _onnx.verify_export(folder, source=pinned)
    with pytest.raises(EncoderError, match="not made from the pinned files"):
        _onnx.verify_export(folder, source=PINNED["sentence-transformers/all-MiniLM-L6-v2"])
    (folder / "model.onnx").write_bytes(b"\x08\x07tampered")
    with pytest.raises(EncoderError, match=r"model\.onnx has SHA-256 .* it changed; delete"):
        _onnx.verify_export(folder)


def test_an_export_without_digests_is_refused(tmp_path: Path) -> None:
    folder = _export(tmp_path)
    manifest = json.loads((folder / _onnx.MANIFEST).read_text())
    del manifest["files"]
    (folder / _onnx.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(EncoderError, match="records no file digests"):
        _onnx.verify_export(folder)


def test_a_verified_export_is_not_hashed_again_until_a_file_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each load checks the files' stat against the last verification; a write to a file
    (even one that restores its size and mtime) changes its ctime and forces a hash."""
    folder = _export(tmp_path)
    hashed: list[str] = []
    real_sha = _onnx.file_sha256

    def counting(path: Path) -> str:
        hashed.append(path.name)
        return real_sha(path)

    monkeypatch.setattr(_onnx, "file_sha256", counting)
    _onnx.verify_export(folder)
    assert sorted(hashed) == ["model.onnx", "tokenizer.json"]
    hashed.clear()
    _onnx.verify_export(folder)
    assert hashed == []

    model = folder / "model.onnx"
    before = model.stat()
    model.write_bytes(b"\x08\x07onnx-bytez")  # same size
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime
    with pytest.raises(EncoderError, match=r"model\.onnx has SHA-256 .* it changed"):
        _onnx.verify_export(folder)
    assert "model.onnx" in hashed

    # A record made against another manifest is not trusted either.
    model.write_bytes(b"\x08\x07onnx-bytes")
    _onnx.verify_export(folder)
    manifest = json.loads((folder / _onnx.MANIFEST).read_text())
    manifest["files"]["model.onnx"] = "0" * 64
    (folder / _onnx.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(EncoderError, match="it changed"):
        _onnx.verify_export(folder)

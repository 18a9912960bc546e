"""The optimized graph ONNX Runtime makes at load is kept beside an export and reused.

Real exports of the shipped MiniLM and splade-tiny (copied out of the session's model
cache so each test owns its folder) and real ONNX Runtime sessions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tribrid.encoders import _onnx
from tribrid.encoders.base import EncoderBackend
from tribrid.encoders.dense import SentenceTransformerEncoder
from tribrid.encoders.splade import SpladeEncoder


@pytest.fixture
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions are shared per process; these tests need each load to happen."""
    monkeypatch.setattr(_onnx, "_sessions", {})


def _link_or_copy(source: str, target: str) -> None:
    """Hard links: the exports are only read here, and tens of MB each."""
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def _copy_export(source: Path, target: Path) -> Path:
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(_onnx.OPTIMIZED),
        copy_function=_link_or_copy,
    )
    return target


@pytest.fixture
def dense_export(model_cache_dir: str, tmp_path: Path) -> Path:
    encoder = SentenceTransformerEncoder(
        backend=EncoderBackend.ONNX_INT8, cache_dir=model_cache_dir
    )
    return _copy_export(encoder.export_folder(), tmp_path / "export")


def _run(session: object, tokens: list[int]) -> np.ndarray:
    ids = np.array([tokens], dtype=np.int64)
    feeds = {}
    for spec in session.get_inputs():  # type: ignore[attr-defined]
        if "mask" in spec.name:
            feeds[spec.name] = np.ones_like(ids)
        elif "type" in spec.name:
            feeds[spec.name] = np.zeros_like(ids)
        else:
            feeds[spec.name] = ids
    return np.asarray(session.run(None, feeds)[0])  # type: ignore[attr-defined]


def _loaded_from(session: object) -> Path:
    return Path(session._model_path)  # type: ignore[attr-defined]


def _optimized_files(export: Path) -> list[str]:
    folder = export / _onnx.OPTIMIZED
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


TOKENS = [101, 2129, 2515, 19387, 10173, 2573, 1029, 102]


@pytest.mark.usefixtures("fresh_sessions")
def test_the_second_load_uses_the_optimized_graph_and_gives_the_same_output(
    dense_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = dense_export / "model.onnx"
    first = _onnx.session(model, 1)
    assert _loaded_from(first) == model
    files = _optimized_files(dense_export)
    assert len(files) == 2 and files[0].startswith("model-") and files[0].endswith(".json")

    monkeypatch.setattr(_onnx, "_sessions", {})
    second = _onnx.session(model, 1)
    assert _loaded_from(second) == dense_export / _onnx.OPTIMIZED / files[1]
    np.testing.assert_array_equal(_run(first, TOKENS), _run(second, TOKENS))
    # The manifest's digests are of the export's own files: still verified.
    _onnx.verify_export(dense_export)


@pytest.mark.usefixtures("fresh_sessions")
def test_a_changed_optimized_graph_is_made_again_not_trusted(
    dense_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = dense_export / "model.onnx"
    expected = _run(_onnx.session(model, 1), TOKENS)
    graph = next((dense_export / _onnx.OPTIMIZED).glob("model-*.onnx"))
    graph.write_bytes(b"\x08\x07not a graph")

    monkeypatch.setattr(_onnx, "_sessions", {})
    again = _onnx.session(model, 1)
    assert _loaded_from(again) == model  # from the export, optimizing as before
    np.testing.assert_array_equal(_run(again, TOKENS), expected)
    assert graph.stat().st_size > 1000  # written again …
    monkeypatch.setattr(_onnx, "_sessions", {})
    assert _loaded_from(_onnx.session(model, 1)) == graph  # … and used from then on


@pytest.mark.usefixtures("fresh_sessions")
def test_graphs_of_another_runtime_or_cpu_are_removed(dense_export: Path) -> None:
    folder = dense_export / _onnx.OPTIMIZED
    folder.mkdir()
    for name in ("model-0000000000000000.onnx", "model-0000000000000000.json"):
        (folder / name).write_text("left by another ONNX Runtime")
    (folder / "projection-0000000000000000.onnx").write_text("another network's")
    _onnx.session(dense_export / "model.onnx", 1)
    names = _optimized_files(dense_export)
    assert "model-0000000000000000.onnx" not in names
    assert "model-0000000000000000.json" not in names
    assert "projection-0000000000000000.onnx" in names
    assert len([n for n in names if n.startswith("model-")]) == 2


@pytest.mark.usefixtures("fresh_sessions")
def test_an_export_folder_that_cannot_be_written_loads_as_before(dense_export: Path) -> None:
    # A file where the folder of optimized graphs would go: it cannot be made (as a
    # read-only cache folder, which a test running as root cannot otherwise simulate).
    (dense_export / _onnx.OPTIMIZED).write_text("")
    session = _onnx.session(dense_export / "model.onnx", 1)
    assert _loaded_from(session) == dense_export / "model.onnx"
    assert _run(session, TOKENS).shape[-1] > 0


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_sessions")
def test_an_int8_export_is_made_from_the_fp32_exports_own_files(
    model_cache_dir: str, tmp_path: Path
) -> None:
    """The fp32 folder gains optimized graphs once loaded; the int8 export made from it
    later quantizes and copies only what its manifest lists."""
    fp32 = SpladeEncoder(backend=EncoderBackend.ONNX, cache_dir=model_cache_dir)
    cache = tmp_path / "cache"
    folder = fp32.export_folder()
    target = _copy_export(folder, cache / folder.parent.name / folder.name)
    _onnx.session(target / "model.onnx", 1)
    assert (target / _onnx.OPTIMIZED).is_dir()

    int8 = SpladeEncoder(backend=EncoderBackend.ONNX_INT8, cache_dir=cache)
    made = int8.export_folder()
    assert sorted(p.name for p in made.iterdir()) == sorted(
        [_onnx.MANIFEST, *_onnx.read_manifest(target)["files"]]
    )
    assert int8.encode_query("hybrid search").indices

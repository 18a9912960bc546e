"""ONNX and int8 encoder backends against torch, on real SciFact passages and real models.

Exports go to the session's shared cache (``model_cache_dir``): each model is exported
once per test session, whichever test asks first.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from tribrid.encoders import _onnx
from tribrid.encoders._torch import load_model
from tribrid.encoders.base import EncoderBackend, SparseVector
from tribrid.encoders.dense import SentenceTransformerEncoder
from tribrid.encoders.splade import SpladeEncoder, _rows_to_sparse
from tribrid.errors import MissingDependencyError
from tribrid.factory import build_encoders, collection_schema
from tribrid.settings import Settings

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact" / "corpus.jsonl"
ONNX_BACKENDS = [EncoderBackend.ONNX, EncoderBackend.ONNX_INT8]
QUERIES = ["what causes cancer in mice", "aspirin", "brain white matter in newborns"]

# Stated tolerances, per backend. fp32 ONNX computes torch's function (float rounding
# only); int8 approximates it: per-channel int8 weights keep MiniLM's vectors at cosine
# ~0.99 and splade-tiny's top terms mostly in place (see benchmarks/results/encoding.md
# for what this costs in nDCG@10).
DENSE_MIN_COSINE = {EncoderBackend.ONNX: 0.9999, EncoderBackend.ONNX_INT8: 0.97}
DENSE_MEAN_COSINE = {EncoderBackend.ONNX: 0.9999, EncoderBackend.ONNX_INT8: 0.985}
SPLADE_TOP20_OVERLAP = {EncoderBackend.ONNX: 0.99, EncoderBackend.ONNX_INT8: 0.8}
SPLADE_SPEARMAN = {EncoderBackend.ONNX: 0.999, EncoderBackend.ONNX_INT8: 0.9}
SPLADE_PEARSON = {EncoderBackend.ONNX: 0.9999, EncoderBackend.ONNX_INT8: 0.95}


def _passages(n: int, words: int = 100) -> list[str]:
    out = []
    with SCIFACT.open() as lines:
        for line in lines:
            text = json.loads(line)["text"].split()
            if len(text) >= words:
                out.append(" ".join(text[:words]))
            if len(out) == n:
                return out
    raise AssertionError(f"{SCIFACT} has fewer than {n} passages of {words} words")


@pytest.fixture(scope="module")
def passages() -> list[str]:
    # Real passages, plus short ones so that batches mix lengths.
    texts = _passages(16)
    return [*texts[:8], "Aspirin.", *texts[8:], "Mice lacking p53 develop tumours early."]


@pytest.fixture(scope="module")
def dense_reference(passages: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Torch's vectors of the passages and of QUERIES."""
    torch_encoder = SentenceTransformerEncoder()
    return torch_encoder.encode_documents(passages), [
        torch_encoder.encode_query(q) for q in QUERIES
    ]


@pytest.fixture(scope="module")
def splade_reference(passages: list[str]) -> tuple[list[SparseVector], list[SparseVector]]:
    """Torch's vectors of the passages and of QUERIES."""
    torch_encoder = SpladeEncoder()
    return torch_encoder.encode_documents(passages), [
        torch_encoder.encode_query(q) for q in QUERIES
    ]


def _dense_array(vector: SparseVector, size: int = 30522) -> np.ndarray:
    out = np.zeros(size, dtype=np.float64)
    out[list(vector.indices)] = vector.values
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ONNX_BACKENDS, ids=lambda b: b.value)
def test_dense_backend_agrees_with_torch(
    backend: EncoderBackend,
    passages: list[str],
    dense_reference: tuple[np.ndarray, list[np.ndarray]],
    model_cache_dir: str,
) -> None:
    encoder = SentenceTransformerEncoder(backend=backend, cache_dir=model_cache_dir, batch_size=8)
    reference, query_reference = dense_reference
    vectors = encoder.encode_documents(passages)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() >= DENSE_MIN_COSINE[backend], cosines
    assert cosines.mean() >= DENSE_MEAN_COSINE[backend], cosines
    for query, expected in zip(QUERIES, query_reference, strict=True):
        assert float(encoder.encode_query(query) @ expected) >= DENSE_MIN_COSINE[backend]
    assert encoder.model_name == SentenceTransformerEncoder().model_name  # one model in the schema
    assert encoder.dimension == 384


@pytest.mark.slow
@pytest.mark.parametrize("backend", ONNX_BACKENDS, ids=lambda b: b.value)
def test_splade_backend_agrees_with_torch(
    backend: EncoderBackend,
    passages: list[str],
    splade_reference: tuple[list[SparseVector], list[SparseVector]],
    model_cache_dir: str,
) -> None:
    encoder = SpladeEncoder(backend=backend, cache_dir=model_cache_dir, batch_size=8)
    reference, query_reference = splade_reference
    vectors = encoder.encode_documents(passages)
    overlaps, spearmans, pearsons = [], [], []
    for ref, got in zip(reference, vectors, strict=True):
        a, b = _dense_array(ref), _dense_array(got)
        top_a, top_b = set(np.argsort(-a)[:20]), set(np.argsort(-b)[:20])
        overlaps.append(len(top_a & top_b) / 20)
        either = (a > 0) | (b > 0)
        spearmans.append(spearmanr(a[either], b[either]).statistic)
        pearsons.append(np.corrcoef(a[either], b[either])[0, 1])
    assert np.mean(overlaps) >= SPLADE_TOP20_OVERLAP[backend], overlaps
    assert np.mean(spearmans) >= SPLADE_SPEARMAN[backend], spearmans
    assert np.mean(pearsons) >= SPLADE_PEARSON[backend], pearsons
    # What retrieval sees: query-passage scores rank the passages the same way.
    for query, theirs in zip(QUERIES, query_reference, strict=True):
        mine = encoder.encode_query(query)
        scores = [mine.dot(v) for v in vectors]
        reference_scores = [theirs.dot(v) for v in reference]
        assert np.corrcoef(scores, reference_scores)[0, 1] >= SPLADE_PEARSON[backend]
    assert encoder.model_name == "splade-tiny"


@pytest.mark.slow
def test_pad_free_projection_equals_the_naive_projection(passages: list[str]) -> None:
    # sentence-transformers projects every position, padding included, then masks.
    passages = [*passages[:6], *passages[-2:]]  # long and short: padding in the naive batch
    encoder = SpladeEncoder()
    naive_model = load_model(
        "SparseEncoder", encoder._resolved.location, device="cpu", max_seq_length=256
    )
    naive = _rows_to_sparse(
        naive_model.encode_document(passages, batch_size=32, convert_to_sparse_tensor=True),
        len(passages),
    )
    for expected, got in zip(naive, encoder.encode_documents(passages), strict=True):
        assert got.indices == expected.indices
        assert np.allclose(got.values, expected.values, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [EncoderBackend.TORCH, EncoderBackend.ONNX], ids=str)
def test_splade_length_sorted_batches_come_back_in_input_order(
    backend: EncoderBackend, passages: list[str], model_cache_dir: str
) -> None:
    mixed = [passages[0][:40], passages[1], "p53", passages[2][:300], passages[3], "tumour"]
    encoder = SpladeEncoder(backend=backend, cache_dir=model_cache_dir, batch_size=2)
    together = encoder.encode_documents(mixed)
    for text, row in zip(mixed, together, strict=True):
        alone = encoder.encode_documents([text])[0]
        assert alone.indices == row.indices
        assert np.allclose(alone.values, row.values, atol=1e-4)


@pytest.mark.slow
def test_splade_top_k_keeps_the_largest_weights(passages: list[str]) -> None:
    full = SpladeEncoder().encode_documents(passages[:3])
    cut = SpladeEncoder(top_k=16).encode_documents(passages[:3])
    for whole, top in zip(full, cut, strict=True):
        assert len(top) == 16 < len(whole)
        assert min(top.values) >= sorted(whole.values, reverse=True)[15] - 1e-6
        assert set(top.indices) <= set(whole.indices)
    query = SpladeEncoder(top_k=1).encode_query(passages[0])
    assert len(query) > 1  # queries keep every weight


@pytest.mark.slow
def test_second_construction_reuses_the_export(
    model_cache_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = SpladeEncoder(backend=EncoderBackend.ONNX_INT8, cache_dir=model_cache_dir)
    folder = first.export_folder()
    stamp = (folder / _onnx.MANIFEST).stat().st_mtime_ns

    def no_export(self: object, folder: Path) -> dict[str, object]:
        raise AssertionError("exported again although the cache holds the export")

    monkeypatch.setattr(SpladeEncoder, "_export", no_export)
    monkeypatch.setattr(_onnx, "quantize", no_export)
    again = SpladeEncoder(backend=EncoderBackend.ONNX_INT8, cache_dir=model_cache_dir)
    assert again.export_folder() == folder
    assert len(again.encode_query("p53 tumour suppressor")) > 0
    assert (folder / _onnx.MANIFEST).stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and p.is_dir()] == []


def _race(target: str, log: str, start_at: float) -> None:
    def build(folder: Path) -> dict[str, object]:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.3)  # long enough for the other process to arrive meanwhile
        (folder / "model.onnx").write_text("x")
        return {"kind": "test"}

    time.sleep(max(0.0, start_at - time.time()))
    _onnx.ensure_export(Path(target), build)


@pytest.mark.slow
def test_racing_processes_export_once_and_atomically(tmp_path: Path) -> None:
    target, log = tmp_path / "m" / "onnx-v1", tmp_path / "log"
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    workers = [
        context.Process(target=_race, args=(str(target), str(log), start_at)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert log.read_text() == "built\n"
    assert (target / "model.onnx").read_text() == "x"
    assert json.loads((target / _onnx.MANIFEST).read_text())["format"] == _onnx.EXPORT_FORMAT
    assert sorted(p.name for p in target.parent.iterdir() if p.is_dir()) == ["onnx-v1"]


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "m" / "onnx-v1"

    def build(folder: Path) -> dict[str, object]:
        (folder / "model.onnx").write_text("half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        _onnx.ensure_export(target, build)
    assert not target.exists()
    assert [p for p in target.parent.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_missing_onnx_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # onnx is installed here; None in sys.modules makes its import fail as if it were not.
    monkeypatch.setitem(sys.modules, "onnx", None)
    encoder = SpladeEncoder(backend="onnx", cache_dir=tmp_path)
    with pytest.raises(MissingDependencyError, match=r"the torch extra .*tribrid\[torch\]"):
        encoder.warm_up()
    assert [p.name for p in tmp_path.rglob("*") if p.is_dir() and "onnx-v" in p.name] == []
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="TRIBRID_MODELS__BACKEND=torch"):
        _onnx.import_onnxruntime()


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="torch, onnx, onnx-int8"):
        SentenceTransformerEncoder(backend="tensorrt")


def test_settings_pick_backends_and_keep_the_schema(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        models={"backend": "onnx-int8", "splade_backend": "torch", "cache_dir": None},
    )
    encoders = build_encoders(settings)
    assert encoders.dense.backend is EncoderBackend.ONNX_INT8  # type: ignore[attr-defined]
    assert encoders.splade.backend is EncoderBackend.TORCH  # type: ignore[attr-defined]
    assert settings.model_cache_dir == tmp_path / "models"
    # Backends compute the same model: an index built with torch opens with onnx-int8.
    torch_settings = Settings(data_dir=tmp_path)
    assert collection_schema(settings, encoders) == collection_schema(
        torch_settings, build_encoders(torch_settings)
    )


@pytest.mark.slow
def test_the_dense_and_splade_batch_sizes_are_set_apart(
    tmp_path: Path, model_cache_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``models.dense_batch_size`` reaches MiniLM's forward passes; SPLADE keeps
    ``models.batch_size``."""
    from tribrid.encoders import _tokens

    asked: list[int] = []
    batches = _tokens.TokenBatcher.batches

    def recording(self: _tokens.TokenBatcher, texts: list[str], batch_size: int, *cap: int):  # type: ignore[no-untyped-def]
        asked.append(batch_size)
        return batches(self, texts, batch_size, *cap)

    monkeypatch.setattr(_tokens.TokenBatcher, "batches", recording)
    models = {"dense_batch_size": 3, "batch_size": 7, "cache_dir": model_cache_dir}
    settings = Settings(data_dir=tmp_path, models=models)
    encoders = build_encoders(settings)
    texts = [f"passage number {i} about lighthouses" for i in range(10)]
    encoders.dense.encode_documents(texts)
    assert asked == [3]
    encoders.splade.encode_documents(texts)
    assert asked == [3, 7]
    assert Settings().models.dense_batch_size == 1 and Settings().models.batch_size == 32


@pytest.mark.slow
def test_a_passages_dense_vector_does_not_depend_on_its_neighbours(
    tmp_path: Path, model_cache_dir: str
) -> None:
    """At the default dense batch (one passage per pass) the int8 activations are scaled
    for that passage alone: the same text gets the same vector whatever is encoded with
    it (what the vector cache assumes), and the vector its query gets."""
    settings = Settings(data_dir=tmp_path, models={"cache_dir": model_cache_dir})
    dense = build_encoders(settings).dense
    text = "Lighthouse keepers logged the tides every night."
    alone = dense.encode_documents([text])[0]
    others = ["A long passage about something else entirely. " * 20, "Tides.", "x " * 200]
    among = dense.encode_documents([others[0], text, *others[1:]])[1]
    assert list(among) == list(alone)
    assert list(dense.encode_query(text)) == list(alone)


@pytest.mark.parametrize(("spinning", "entry"), [(True, "1"), (False, "0")])
def test_sessions_spin_as_the_module_says(
    monkeypatch: pytest.MonkeyPatch, spinning: bool, entry: str
) -> None:
    """Thread spinning is set explicitly (benchmarks/results/onnx-spinning.md)."""
    ort = _onnx.import_onnxruntime()
    monkeypatch.setattr(_onnx, "SPINNING", spinning)
    options = _onnx._session_options(ort, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
    assert options.intra_op_num_threads == 1 and not options.enable_cpu_mem_arena

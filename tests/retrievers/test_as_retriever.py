"""tribrid.as_retriever: a retriever over the index the settings name, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import tribrid
from tests.support.retrievers import corpus_points
from tribrid.encoders import EncoderSet
from tribrid.errors import StoreBusyError
from tribrid.factory import build_store
from tribrid.retrievers import HybridRetriever

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py


@pytest.fixture
def data_dir(tmp_path: Path, encoders: EncoderSet) -> Path:
    """A data dir whose embedded store holds the corpus, as `tribrid ingest` leaves it."""
    store = build_store(tribrid.Settings(data_dir=tmp_path), encoders)
    store.upsert(corpus_points(encoders))
    store.close()
    return tmp_path


def test_as_retriever_opens_the_settings_index(data_dir: Path) -> None:
    retriever = tribrid.as_retriever(data_dir=data_dir, k=2, fusion="dbsf")
    assert isinstance(retriever, HybridRetriever)
    try:
        assert (retriever.k, retriever.fusion, retriever.oversampling) == (2, "dbsf", 8.0)
        docs = retriever.invoke("ZX-9000 gasket")
        assert len(docs) == 2 and docs[0].metadata["path"] == "pump.pdf"
        # The embedded store is held open: one process (and one store) at a time.
        with pytest.raises(StoreBusyError, match="already open"):
            tribrid.as_retriever(data_dir=data_dir)
    finally:
        retriever.close()
    with tribrid.as_retriever(settings=tribrid.Settings(data_dir=data_dir)) as again:
        assert again.invoke("tomato", k=1)[0].metadata["filetype"] == "txt"


def test_as_retriever_closes_the_store_on_bad_options(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="no absolute meaning"):
        tribrid.as_retriever(data_dir=data_dir, fusion="rrf", score_threshold=0.1)
    tribrid.as_retriever(data_dir=data_dir).close()  # not left locked

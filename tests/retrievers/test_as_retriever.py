"""tribrid.as_retriever: a retriever over the index the settings name, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import tribrid
from tests.support.retrievers import corpus_points
from tribrid.encoders import EncoderSet
from tribrid.errors import SchemaMismatchError
from tribrid.factory import build_store
from tribrid.retrievers import HybridRetriever, TribridVectorStore

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
        # A second retriever in this process shares the open embedded store.
        other = tribrid.as_retriever(data_dir=data_dir)
        try:
            assert other.invoke("tomato", k=1)[0].metadata["filetype"] == "txt"
        finally:
            other.close()
        assert retriever.invoke("ZX-9000 gasket")[0].metadata["path"] == "pump.pdf"
    finally:
        retriever.close()
    with tribrid.as_retriever(settings=tribrid.Settings(data_dir=data_dir)) as again:
        assert again.invoke("tomato", k=1)[0].metadata["filetype"] == "txt"


def test_a_retriever_and_a_vector_store_share_one_embedded_store(
    data_dir: Path, encoders: EncoderSet
) -> None:
    settings = tribrid.Settings(data_dir=data_dir)
    retriever = tribrid.as_retriever(settings=settings, k=1)
    try:
        with TribridVectorStore.open(
            path=settings.store_path,
            collection=settings.store.collection,
            encoders=encoders,
            settings=settings,
        ) as vs:
            (added,) = vs.add_texts(["The QZ-7 valve seals with a copper ring."])
            # Written through the vector store, found through the retriever at once.
            assert retriever.invoke("QZ-7 valve copper ring")[0].id == added
        assert retriever.invoke("ZX-9000 gasket")[0].metadata["path"] == "pump.pdf"
    finally:
        retriever.close()
    refused = pytest.raises(SchemaMismatchError, match="open as collection 'tribrid', not 'other'")
    with tribrid.as_retriever(settings=settings), refused:
        TribridVectorStore.open(path=settings.store_path, collection="other", encoders=encoders)


def test_as_retriever_closes_the_store_on_bad_options(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="no absolute meaning"):
        tribrid.as_retriever(data_dir=data_dir, fusion="rrf", score_threshold=0.1)
    tribrid.as_retriever(data_dir=data_dir).close()  # not left locked

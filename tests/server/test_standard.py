"""LangChain's standard retriever suite against a retriever that talks to ``tribrid serve``.

The server is real (HTTP on loopback, on a thread of the test process) and answers with
the shared fake encoders over the retriever tests' corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from tests.fakes import fake_encoders
from tests.support.retrievers import corpus_points
from tests.support.server import running_server
from tribrid import factory
from tribrid.retrievers.remote import RemoteRetriever


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("standard") / "data") as (info, settings):
        store = factory.build_store(settings, fake_encoders())
        store.upsert(corpus_points(fake_encoders()))
        store.close()
        yield info.url


class TestRemoteRetriever(RetrieversIntegrationTests):
    _url: str

    @pytest.fixture(autouse=True)
    def _server(self, server_url: str) -> None:
        # The suite builds retrievers from a property, which cannot take fixtures.
        type(self)._url = server_url

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return RemoteRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"url": self._url}

    @property
    def retriever_query_example(self) -> str:
        return "how often does the pump need a new gasket?"


def test_remote_retriever_by_url_through_the_facade(server_url: str, tmp_path: Path) -> None:
    import tribrid

    retriever = tribrid.as_retriever(url=server_url, data_dir=tmp_path, k=2, fusion="rrf")
    assert isinstance(retriever, RemoteRetriever)
    docs = retriever.invoke("ZX-9000 gasket")
    assert len(docs) == 2 and docs[0].metadata["path"] == "pump.pdf"
    with pytest.raises(ValueError, match="unknown retriever option"):
        retriever.invoke("x", top=3)


@pytest.mark.slow
def test_the_langchain_example_asks_a_server_from_another_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[2] / "examples" / "langchain_server.py"
    with running_server(tmp_path / ".tribrid-demo") as (_, settings):
        store = factory.build_store(settings, fake_encoders())
        store.upsert(corpus_points(fake_encoders()))
        store.close()
        done = subprocess.run(
            [sys.executable, str(example), "how often does the pump need a new gasket?"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("asking RemoteRetriever")
    assert "pump.pdf] The ZX-9000 pump needs a new gasket" in done.stdout
    assert done.stdout.rstrip().endswith("Question: how often does the pump need a new gasket?")

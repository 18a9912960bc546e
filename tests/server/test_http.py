"""``tribrid serve`` over real HTTP on loopback: discovery, store operations, search,
syncs, metrics, and every kind of bad request answered with a clear 4xx.

The server runs on a thread of the test process with the shared fake encoders (see
tests/support/server.py), so these tests load no model.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import fake_encoders
from tests.support.retrievers import CORPUS, corpus_points
from tests.support.server import running_server
from tribrid import factory
from tribrid.errors import ConfigError, SchemaMismatchError, StoreError
from tribrid.retrievers.hybrid import HybridRetriever
from tribrid.retrievers.remote import RemoteRetriever
from tribrid.server.runner import check_bind
from tribrid.settings import ServeSettings, Settings
from tribrid.store.base import Channel, ChannelQuery, StoreQuery
from tribrid.store.remote import (
    SERVER_FILE,
    RemoteStore,
    ServerInfo,
    descriptor,
    discover,
    write_descriptor,
)


def _post(info: ServerInfo, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(info.url + path, json=body, headers=headers, timeout=30, trust_env=False)


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    with running_server(tmp_path / "data", allow_roots=(docs,)) as (info, settings):
        store = factory.build_store(settings, fake_encoders())
        store.upsert(corpus_points(fake_encoders()))
        yield info, settings, store, docs
        store.close()


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One server for the module's tests that change nothing on it (bad requests, its
    description, clients it refuses): starting a server per test is most of their time."""
    with running_server(tmp_path_factory.mktemp("read-only") / "data") as (info, settings):
        yield info, settings


def test_the_server_is_found_from_the_store_folder(served) -> None:  # type: ignore[no-untyped-def]
    info, settings, store, _ = served
    assert isinstance(store, RemoteStore)
    assert discover(settings.store_path) == info
    path = settings.store_path / SERVER_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the descriptor may hold a key
    health = httpx.get(info.url + "/health", trust_env=False).json()
    assert (health["pid"], health["store"]) == (os.getpid(), str(settings.store_path.absolute()))


def test_a_stale_descriptor_is_ignored(tmp_path: Path) -> None:
    store_path = tmp_path / "store"
    store_path.mkdir()
    dead = ServerInfo(
        "http://127.0.0.1:9", pid=2**22 + 12345, host=os.uname().nodename, store=str(store_path)
    )
    write_descriptor(store_path, dead)
    assert descriptor(store_path) == dead
    assert discover(store_path) is None
    # A live pid whose address does not answer as that server is stale too.
    write_descriptor(
        store_path, ServerInfo("http://127.0.0.1:9", os.getpid(), dead.host, str(store_path))
    )
    assert discover(store_path) is None


def test_store_operations_through_the_server(served) -> None:  # type: ignore[no-untyped-def]
    _, _, store, _ = served
    points = corpus_points(fake_encoders())
    assert store.count() == len(points) == len(CORPUS)
    assert store.ids() == {p.id for p in points}
    assert store.count({"path": "pump.pdf"}) == 3
    hits = store.query(
        StoreQuery(
            channels=(ChannelQuery(Channel.BM25, fake_encoders().bm25.encode_query("gasket")),),
            limit=2,
        )
    )
    assert hits[0].payload["path"] == "pump.pdf"
    first = points[0].id
    store.set_payload(first, {"checked": True})
    assert store.retrieve([first])[0].payload["checked"] is True
    store.delete([first])
    store.delete_by_filter({"path": "garden.txt"})
    assert store.count() == len(points) - 2
    store.upsert(points)  # the same points again: one copy each
    assert store.count() == len(points)
    store.flush()


def test_search_gives_what_the_in_process_retriever_gives(served) -> None:  # type: ignore[no-untyped-def]
    info, _, store, _ = served
    local = HybridRetriever(store=store, encoders=fake_encoders(), k=4)
    remote = RemoteRetriever(url=info.url, k=4)
    for query, options in [
        ("pump gasket", {}),
        ("tomato", {"fusion": "rrf"}),
        (
            "fusion of rankings",
            {"channels": {"bm25": 1, "splade": 0.5}, "filter": {"path": ["fusion.md", "bm25.md"]}},
        ),
        ("quantization", {"store_fusion": True}),
        # Options issue 14 added: the server takes them and gives the same documents.
        ("pump warranty valves", {"chunks_per_document": 1, "k": 3}),
        ("pump gasket", {"relevance_threshold": 0.2}),
        ("pump gasket", {"internal_metadata": True}),
    ]:
        want = local.invoke(query, **options)
        got = remote.invoke(query, **options)
        assert [d.id for d in got] == [d.id for d in want], query
        for a, b in zip(got, want, strict=True):
            # Same documents, same scores per channel: JSON carries the floats exactly.
            assert a.metadata == b.metadata
    remote.close()


@pytest.mark.asyncio
async def test_async_search(served) -> None:  # type: ignore[no-untyped-def]
    info, *_ = served
    docs = await RemoteRetriever(url=info.url, k=2).ainvoke("gasket pump")
    assert len(docs) == 2 and docs[0].metadata["path"] == "pump.pdf"
    assert set(docs[0].metadata["channel_ranks"]) == {"dense", "splade", "bm25"}


@pytest.mark.slow
def test_a_sync_request_indexes_an_allowed_folder(served) -> None:  # type: ignore[no-untyped-def]
    info, _, _, docs = served
    (docs / "otters.md").write_text("# Otters\n\nRiver otters eat crayfish in the delta.\n")
    answer = _post(info, "/v1/sync", {"path": str(docs)})
    assert answer.status_code == 202, answer.text
    job = answer.json()["job"]
    deadline = time.monotonic() + 120
    while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = httpx.get(f"{info.url}/v1/jobs/{job['id']}", trust_env=False).json()["job"]
    assert job["status"] == "done", job
    assert job["counts"]["indexed"] == 1
    run = httpx.get(f"{info.url}/v1/runs/{job['run_id']}", trust_env=False).json()["run"]
    assert run["run"]["status"] == "completed"
    found = RemoteRetriever(url=info.url, k=1).invoke("crayfish", channels=["bm25"])
    assert found[0].metadata["path"] == "otters.md"
    metrics = httpx.get(info.url + "/metrics", trust_env=False).text
    assert 'tribrid_documents_total{outcome="indexed"} 1.0' in metrics
    assert 'tribrid_queries_total{outcome="ok"}' in metrics
    assert "tribrid_sync_queue_depth 0.0" in metrics
    # The sync stages' metrics, and the run read from the ledger at the scrape.
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    for stage in ("parse", "encode", "upsert"):
        assert samples[("tribrid_stage_seconds_count", (("stage", stage),))] >= 1, stage
    assert samples[("tribrid_chunks_indexed_total", ())] >= 1
    source = f"local:{docs.resolve()}"
    assert samples[("tribrid_run_id", (("source", source),))] == job["run_id"]
    assert samples[("tribrid_run_running", (("source", source),))] == 0
    assert samples[("tribrid_run_documents", (("source", source), ("state", "indexed")))] == 1
    assert samples[("tribrid_queue_depth", ())] == 0 and samples[("tribrid_ledger_up", ())] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": -3}, "k"),
        ({"query": "x", "top": 3}, "top"),
        ({"query": ""}, "query"),
        ({"k": 3}, "query"),
        ({"query": "x", "filter": {"page": {"near": 3}}}, "near"),
        ({"query": "x", "channels": {"colbert": 1}}, "colbert"),
        ({"query": "x", "fusion": "magic"}, "magic"),
    ],
)
def test_bad_searches_get_a_4xx_naming_the_field(
    read_only, body: dict[str, object], field: str
) -> None:  # type: ignore[no-untyped-def]
    info, _ = read_only
    answer = _post(info, "/v1/search", body)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_malformed_json_and_bad_store_requests(served) -> None:  # type: ignore[no-untyped-def]
    info, *_ = served
    broken = httpx.post(
        info.url + "/v1/search",
        content=b'{"query": "x", ',
        headers={"content-type": "application/json"},
        trust_env=False,
    )
    assert broken.status_code == 422 and "JSON" in broken.text
    bad_point = _post(
        info,
        "/v1/store/upsert",
        {"points": [{"id": "x", "dense": ["a"], "splade": [[], []], "bm25": [[], []]}]},
    )
    assert bad_point.status_code == 422 and "points[0].dense" in bad_point.text
    wrong_size = _post(
        info,
        "/v1/store/upsert",
        {
            "points": [
                {
                    "id": "0b4f6e4e-6a3e-5b7e-9d41-000000000001",
                    "dense": [1.0, 2.0],
                    "splade": [[], []],
                    "bm25": [[], []],
                }
            ]
        },
    )
    assert wrong_size.status_code == 422 and "dense" in wrong_size.text
    bad_query = _post(
        info, "/v1/store/query", {"query": {"channels": [{"channel": "nope", "vector": []}]}}
    )
    assert bad_query.status_code == 422 and "query.channels[0].channel" in bad_query.text
    extra = _post(info, "/v1/store/delete", {"ids": [], "all": True})
    assert extra.status_code == 422 and "all" in extra.text


def test_sync_requests_stay_under_the_allowed_roots(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    info, _, _, docs = served
    for path in ("/etc", str(tmp_path), str(docs / ".." / "data"), str(docs / "missing")):
        answer = _post(info, "/v1/sync", {"path": path})
        assert answer.status_code == 403, (path, answer.text)
        assert "--allow-root" in answer.json()["detail"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (docs / "link").symlink_to(outside)  # a link out of the root does not widen it
    assert _post(info, "/v1/sync", {"path": str(docs / "link")}).status_code == 403


def test_a_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", max_body_mb=0.001) as (info, _):
        answer = _post(info, "/v1/search", {"query": "x" * 2000})
        assert answer.status_code == 413 and "TRIBRID_SERVE__MAX_BODY_MB" in answer.text
        chunked = httpx.post(
            info.url + "/v1/search",
            content=iter([b'{"query": "', b"y" * 3000, b'"}']),
            headers={"content-type": "application/json"},
            trust_env=False,
        )
        assert chunked.status_code == 413


def test_an_api_key_is_required_when_set(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", api_key="s3cret-key") as (info, settings):
        assert info.api_key == "s3cret-key"
        assert _post(info, "/v1/search", {"query": "x"}).status_code == 401
        wrong = _post(info, "/v1/search", {"query": "x"}, authorization="Bearer nope")
        assert wrong.status_code == 401 and "API key" in wrong.text
        assert (
            _post(info, "/v1/search", {"query": "x"}, authorization="Bearer s3cret-key").status_code
            == 200
        )
        assert (
            _post(info, "/v1/search", {"query": "x"}, **{"x-api-key": "s3cret-key"}).status_code
            == 200
        )
        assert httpx.get(info.url + "/metrics", trust_env=False).status_code == 401
        assert httpx.get(info.url + "/health", trust_env=False).status_code == 200
        # Local clients take the key from the descriptor.
        store = factory.build_store(settings, fake_encoders())
        assert store.count() == 0
        store.close()
        with pytest.raises(StoreError, match="API key"):
            RemoteRetriever(url=info.url).invoke("x")


def test_binding_beyond_loopback_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="TRIBRID_SERVE__API_KEY"):
        check_bind(Settings(), "0.0.0.0")
    with pytest.raises(ConfigError, match="API key"):
        check_bind(Settings(), "192.168.1.20")
    check_bind(Settings(serve=ServeSettings(api_key="k")), "0.0.0.0")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(Settings(), host)


def test_a_second_server_on_the_same_store_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    info, settings, *_ = served
    with (
        pytest.raises(ConfigError, match=f"already owns .* at {info.url}"),
        running_server(settings.data_dir),
    ):
        pass


def test_clients_with_other_models_are_refused(read_only) -> None:  # type: ignore[no-untyped-def]
    _, settings = read_only
    with pytest.raises(SchemaMismatchError, match="dense_size is 8 on the server but 4 here"):
        factory.build_store(settings, fake_encoders(4))


def test_the_openapi_description_lists_the_routes(read_only) -> None:  # type: ignore[no-untyped-def]
    info, _ = read_only
    paths = set(httpx.get(info.url + "/openapi.json", trust_env=False).json()["paths"])
    assert {"/v1/search", "/v1/store/upsert", "/v1/sync", "/metrics", "/health"} <= paths
    assert (
        json.loads(httpx.get(info.url + "/openapi.json", trust_env=False).text)["info"]["title"]
        == "tribrid"
    )

"""What only the Qdrant server store does: metadata, connection errors, request shape."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from tests.support.store import CORPUS_SIZE, SCHEMA, corpus
from tribrid.encoders.base import SparseVector
from tribrid.errors import MissingDependencyError, SchemaMismatchError, StoreError
from tribrid.store import qdrant as qdrant_module
from tribrid.store.base import Channel, ChannelQuery, StoreQuery
from tribrid.store.points import FILTERABLE_KEYS
from tribrid.store.qdrant import METADATA_KEY, QdrantServerStore
from tribrid.store.schema import schema_record


@pytest.fixture
def client() -> Iterator[QdrantClient]:
    client = QdrantClient(location=":memory:")
    yield client
    client.close()


def test_schema_and_vectors_are_stored_in_the_collection(client: QdrantClient) -> None:
    QdrantServerStore(SCHEMA, client=client).close()
    config = client.get_collection(SCHEMA.name).config
    assert config.metadata == {METADATA_KEY: schema_record(SCHEMA)}
    vectors = config.params.vectors
    assert isinstance(vectors, dict)
    dense = vectors["dense"]
    assert (dense.size, dense.distance) == (SCHEMA.dense_size, models.Distance.COSINE)
    assert dense.quantization_config == models.BinaryQuantization(
        binary=models.BinaryQuantizationConfig(
            always_ram=True,
            encoding=models.BinaryQuantizationEncoding.TWO_BITS,
            query_encoding=models.BinaryQuantizationQueryEncoding.SCALAR8BITS,
        )
    )
    sparse = config.params.sparse_vectors or {}
    assert sparse["bm25"].modifier == models.Modifier.IDF
    assert sparse["splade"].modifier is None


def test_a_collection_not_made_by_tribrid_is_refused_and_kept(client: QdrantClient) -> None:
    client.create_collection(
        SCHEMA.name, vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT)
    )
    client.upsert(SCHEMA.name, [models.PointStruct(id=1, vector=[1.0] * 8)])
    with pytest.raises(SchemaMismatchError) as caught:
        QdrantServerStore(SCHEMA, client=client)
    message = str(caught.value)
    assert "collection 'tribrid-test'" in message
    assert "no 'tribrid' metadata" in message
    assert "--recreate" in message
    assert client.count(SCHEMA.name).count == 1


def test_the_vector_config_is_checked_not_only_the_metadata(client: QdrantClient) -> None:
    client.create_collection(
        SCHEMA.name,
        vectors_config={"dense": models.VectorParams(size=16, distance=models.Distance.COSINE)},
        sparse_vectors_config={"bm25": models.SparseVectorParams()},
        metadata={METADATA_KEY: schema_record(SCHEMA)},
    )
    with pytest.raises(SchemaMismatchError) as caught:
        QdrantServerStore(SCHEMA, client=client)
    message = str(caught.value)
    assert "dense size 16 but the dense model gives 8" in message
    assert "no binary quantization" in message
    assert "no 'splade' sparse vector" in message
    assert "no IDF modifier on its 'bm25' vector" in message


def test_an_unreachable_server_names_the_url() -> None:
    url = "http://127.0.0.1:9"  # the discard port: nothing listens there
    with pytest.raises(StoreError, match="check the server is up") as caught:
        QdrantServerStore(SCHEMA, url=url, timeout=2)
    assert url in str(caught.value)
    assert caught.value.__cause__ is not None


def test_a_missing_qdrant_client_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(MissingDependencyError, match="pip install"):
        QdrantServerStore(SCHEMA, url=":memory:")


def test_a_given_client_stays_open(client: QdrantClient) -> None:
    store = QdrantServerStore(SCHEMA, client=client)
    store.close()
    assert client.collection_exists(SCHEMA.name)


def test_an_own_in_memory_client() -> None:
    with QdrantServerStore(SCHEMA, url=":memory:") as store:
        store.upsert(corpus())
        assert store.count() == CORPUS_SIZE


def test_payload_indexes_are_created_on_a_server(
    client: QdrantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[tuple[str, Any]] = []

    def record(collection: str, key: str, schema: Any, **kwargs: Any) -> None:
        created.append((key, schema))

    monkeypatch.setattr(qdrant_module, "_is_local", lambda client: False)
    monkeypatch.setattr(client, "create_payload_index", record)
    QdrantServerStore(SCHEMA, client=client).close()
    kinds = {"keyword": "KEYWORD", "integer": "INTEGER", "datetime": "DATETIME"}
    # Every documented filter key, not only tribrid's own two (issue 14).
    assert created == [
        (key, getattr(models.PayloadSchemaType, kinds[kind.value]))
        for key, kind in FILTERABLE_KEYS.items()
    ]
    assert {"path", "source", "filetype", "page", "title"} <= {key for key, _ in created}


def test_payload_indexes_missing_from_an_existing_collection_are_added(
    client: QdrantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection made when only source_key and document_key were indexed gets the
    others on its next open."""
    QdrantServerStore(SCHEMA, client=client).close()
    created: list[str] = []
    get_collection = client.get_collection

    def old_collection(name: str) -> Any:
        info = get_collection(name)
        return info.model_copy(
            update={
                "payload_schema": {
                    key: models.PayloadIndexInfo(
                        data_type=models.PayloadSchemaType.KEYWORD, points=0
                    )
                    for key in ("source_key", "document_key")
                }
            }
        )

    monkeypatch.setattr(qdrant_module, "_is_local", lambda client: False)
    monkeypatch.setattr(client, "get_collection", old_collection)
    monkeypatch.setattr(
        client, "create_payload_index", lambda c, key, schema, **kw: created.append(key)
    )
    QdrantServerStore(SCHEMA, client=client).close()
    assert created == [k for k in FILTERABLE_KEYS if k not in ("source_key", "document_key")]


def test_server_queries_carry_quantization_params_and_weighted_rrf(
    client: QdrantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a real server receives; the in-memory engine would ignore the params."""
    store = QdrantServerStore(SCHEMA, client=client)
    store.upsert(corpus())
    sent: list[dict[str, Any]] = []
    query_points = client.query_points

    def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(copy.deepcopy(kwargs))
        kwargs["search_params"] = None  # the in-memory engine warns about any
        kwargs["prefetch"] = [
            p.model_copy(update={"params": None}) for p in kwargs.get("prefetch") or []
        ]
        return query_points(*args, **kwargs)

    monkeypatch.setattr(client, "query_points", spy)
    monkeypatch.setattr(store, "_local", False)
    store.query(StoreQuery(channels=(ChannelQuery(Channel.BINARY, [1.0] * 8),), oversampling=4.0))
    store.query(
        StoreQuery(
            channels=(
                ChannelQuery(Channel.DENSE, [1.0] * 8, weight=2.0),
                ChannelQuery(Channel.BINARY, [1.0] * 8),
                ChannelQuery(Channel.SPLADE, SparseVector.from_pairs({103: 1.0})),
            ),
            rrf_k=30,
            prefetch_limit=7,
            filter={"lang": "en"},
        )
    )
    single, fused = sent
    assert single["using"] == "dense"
    assert single["search_params"] == models.SearchParams(
        quantization=models.QuantizationSearchParams(ignore=False, rescore=True, oversampling=4.0)
    )
    assert fused["query"] == models.RrfQuery(rrf=models.Rrf(k=30, weights=[2.0, 1.0, 1.0]))
    dense, binary, splade = fused["prefetch"]
    assert dense.using == binary.using == "dense"
    assert splade.using == "splade"
    assert dense.params == models.SearchParams(
        quantization=models.QuantizationSearchParams(ignore=True)
    )
    assert binary.params == models.SearchParams(
        quantization=models.QuantizationSearchParams(ignore=False, rescore=True, oversampling=8.0)
    )
    assert splade.params is None
    only_english = models.Filter(
        must=[models.FieldCondition(key="lang", match=models.MatchValue(value="en"))]
    )
    assert all(p.limit == 7 and p.filter == only_english for p in (dense, binary, splade))


def test_an_edge_filter_is_refused_with_the_portable_forms(client: QdrantClient) -> None:
    import qdrant_edge as qe

    store = QdrantServerStore(SCHEMA, client=client)
    edge_filter = qe.Filter(must=[qe.FieldCondition(key="n", match=qe.MatchValue(1))])
    with pytest.raises(ValueError, match=r"only the embedded \(edge\) store.*models\.Filter"):
        store.count(edge_filter)

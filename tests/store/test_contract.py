"""One contract, every backend: Qdrant Edge in a temp folder and an in-memory Qdrant.

Expected rankings are computed here, independently of Qdrant (cosine with numpy, sparse
dot products, Qdrant's BM25 IDF, the RRF formula), so a backend that ranks, filters or
fuses differently fails rather than agreeing with itself.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from tests.support.store import (
    BACKENDS,
    COMMON_TERM,
    CORPUS_SIZE,
    SCHEMA,
    StoreOpener,
    corpus,
    corpus_payload,
    filled_store,
    make_point,
    pid,
)
from tribrid.encoders.base import SparseVector
from tribrid.errors import SchemaMismatchError, StoreError
from tribrid.store.base import (
    AsyncSearch,
    BinaryEncoding,
    CandidateSearch,
    Channel,
    ChannelQuery,
    Fusion,
    Hit,
    QueryEncoding,
    StoreQuery,
    VectorStore,
    search_candidates,
)


def one(channel: Channel, vector: Any, **kwargs: Any) -> StoreQuery:
    return StoreQuery(channels=(ChannelQuery(channel, vector),), **kwargs)


def dense_matrix() -> np.ndarray:
    return np.array([p.dense for p in corpus()])


def cosine_ranking(query: np.ndarray) -> list[tuple[str, float]]:
    matrix = dense_matrix()
    scores = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    order = np.argsort(-scores)
    return [(pid(int(i)), float(scores[i])) for i in order]


def sparse_ranking(query: SparseVector, docs: Sequence[SparseVector]) -> list[tuple[str, float]]:
    scored = [(pid(i), doc.dot(query)) for i, doc in enumerate(docs)]
    return sorted([s for s in scored if s[1] > 0], key=lambda s: -s[1])


def qdrant_idf(n_with_term: int, n_total: int) -> float:
    """Qdrant's IDF: ln(1 + (N - n + 0.5) / (n + 0.5))."""
    return math.log(1 + (n_total - n_with_term + 0.5) / (n_with_term + 0.5))


def rrf_scores(
    rankings: Sequence[Sequence[str]], k: int, weights: Sequence[float]
) -> dict[str, float]:
    """Qdrant's weighted RRF: a hit at 0-based rank r scores 1 / ((r + 1) / w + k - 1)."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, point_id in enumerate(ranking):
            scores[point_id] = scores.get(point_id, 0.0) + 1 / ((rank + 1) / weight + k - 1)
    return scores


def assert_scores(hits: list[Hit], expected: dict[str, float], rel: float = 1e-4) -> None:
    """Hits are sorted, carry the expected scores, and are the best ``len(hits)`` ones."""
    assert hits, "no hits"
    for hit in hits:
        assert hit.id in expected, f"unexpected hit {hit.id}"
        assert hit.score == pytest.approx(expected[hit.id], rel=rel, abs=1e-6), hit.id
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    left_out = [s for i, s in expected.items() if i not in {h.id for h in hits}]
    assert all(s <= min(scores) + 1e-6 for s in left_out), "a better point was left out"


FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"lang": "en"}, lambda p: p["lang"] == "en"),
    ({"n": 3}, lambda p: p["n"] == 3),
    ({"score": 1.5}, lambda p: p["score"] == 1.5),
    ({"source_key": ["src-0", "src-2"]}, lambda p: p["source_key"] in ("src-0", "src-2")),
    ({"n": [1, 5, 7, 40]}, lambda p: p["n"] in (1, 5, 7)),
    ({"score": {"gte": 1.0, "lt": 3.0}}, lambda p: 1.0 <= p["score"] < 3.0),
    ({"n": {"gt": 8}}, lambda p: p["n"] > 8),
    ({"lang": "de", "n": {"lte": 5}}, lambda p: p["lang"] == "de" and p["n"] <= 5),
    ({"document_key": "doc-4", "source_key": "src-1"}, lambda p: p["n"] == 4),
    ({"source_key": "nope"}, lambda p: False),
    ({"n": []}, lambda p: False),
]

# Raw Qdrant filters (qdrant-client models and their JSON form), passed through.
RAW_FILTERS: list[tuple[Any, Callable[[dict[str, Any]], bool]]] = [
    (
        {
            "must": [{"key": "lang", "match": {"value": "en"}}],
            "must_not": [{"key": "n", "range": {"gte": 8}}],
        },
        lambda p: p["lang"] == "en" and p["n"] < 8,
    ),
    (
        models.Filter(
            should=[
                models.FieldCondition(key="n", match=models.MatchValue(value=1)),
                models.FieldCondition(key="source_key", match=models.MatchAny(any=["src-2"])),
            ]
        ),
        lambda p: p["n"] == 1 or p["source_key"] == "src-2",
    ),
    (
        {
            "min_should": {
                "conditions": [
                    {"key": "lang", "match": {"value": "en"}},
                    {"key": "n", "range": {"gte": 6}},
                    {"key": "score", "range": {"lte": 2.0}},
                ],
                "min_count": 2,
            }
        },
        lambda p: (p["lang"] == "en") + (p["n"] >= 6) + (p["score"] <= 2.0) >= 2,
    ),
    (
        {
            "must": {
                "should": [
                    {"key": "n", "match": {"value": 3}},
                    {"key": "document_key", "match": {"value": "doc-4"}},
                ]
            }
        },
        lambda p: p["n"] in (3, 4),
    ),
    ({"must": [{"has_id": [pid(1), pid(2), pid(99)]}]}, lambda p: p["n"] in (1, 2)),
    (
        {"must": [{"key": "source_key", "match": {"except": ["src-0"]}}]},
        lambda p: p["source_key"] != "src-0",
    ),
    (
        {"must": [{"is_empty": {"key": "missing"}}, {"key": "n", "range": {"lt": 2}}]},
        lambda p: p["n"] < 2,
    ),
    ({"must": [{"is_null": {"key": "n"}}]}, lambda p: False),
    ({"must": ["a", "b"]}, lambda p: False),  # not conditions: the simple any-of on "must"
]

BAD_FILTERS: list[tuple[Any, str]] = [
    (
        {"must": [{"key": "n", "match": {"valu": 3}}]},
        r"has the keys of a Qdrant filter but is not a valid one: must\.",
    ),
    ({"must": [{"key": "flag", "match": {"value": True}}]}, "filter on 'flag': boolean"),
    (
        models.Filter(
            must=[models.FieldCondition(key="flag", match=models.MatchValue(value=False))]
        ),
        "filter on 'flag': boolean",
    ),
    (42, "filter must be a dict such as .* got builtins.int"),
    (["lang", "en"], "filter must be a dict"),
]

# Lower bounds of recall@10 against exact search on 2,000 random 384-d unit vectors,
# scalar8 queries, oversampling 8 and rescoring. Measured on Edge 0.9: 1 bit 0.78,
# 1.5 bits 0.72, 2 bits 0.955 (in-memory Qdrant searches exactly: 1.0). Random
# vectors are the hard case; real embeddings have more structure and do better.
RECALL_BOUNDS = {
    BinaryEncoding.ONE_BIT: 0.68,
    BinaryEncoding.ONE_AND_HALF_BITS: 0.62,
    BinaryEncoding.TWO_BITS: 0.9,
}


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorStore]:
    """:func:`corpus` in one store per backend, flushed, for the tests that only read it
    (or check that a refused write changed nothing): filling a store per test was most of
    their time."""
    with filled_store(request.param, tmp_path_factory.mktemp("shared"), corpus()) as store:
        yield store


class TestStoreContract:
    """Behaviour every :class:`~tribrid.store.base.VectorStore` backend must share."""

    # -- writing and reading -------------------------------------------------------

    def test_upsert_is_idempotent(self, store: VectorStore) -> None:
        points = corpus()
        store.upsert(points)
        store.upsert(points)
        store.flush()
        assert store.count() == CORPUS_SIZE
        assert store.ids() == {pid(i) for i in range(CORPUS_SIZE)}

    def test_upsert_overwrites_payload_and_vectors(self, store: VectorStore) -> None:
        store.upsert(corpus())
        moved = make_point(3, [0, 0, 0, 0, 0, 0, 0, 1], payload={"text": "new"})
        store.upsert([moved])
        assert store.count() == CORPUS_SIZE
        [hit] = store.retrieve([pid(3)])
        assert hit.payload == {"text": "new"}
        top = store.query(one(Channel.DENSE, [0, 0, 0, 0, 0, 0, 0, 1], limit=1))
        assert top[0].id == pid(3)
        assert top[0].score == pytest.approx(1.0, abs=1e-5)

    def test_retrieve_returns_payloads_and_skips_missing_ids(self, shared: VectorStore) -> None:
        hits = shared.retrieve([pid(1), pid(4), pid(999)])
        assert {h.id: h.payload for h in hits} == {
            pid(1): corpus_payload(1),
            pid(4): corpus_payload(4),
        }
        assert all(h.score == 0.0 for h in hits)
        assert shared.retrieve([]) == []

    def test_ids_pages_through_more_than_one_page(self, store: VectorStore) -> None:
        rng = np.random.default_rng(3)
        points = [make_point(i, rng.standard_normal(SCHEMA.dense_size)) for i in range(2500)]
        store.upsert(points)
        assert store.ids() == {p.id for p in points}
        assert store.count() == 2500

    def test_delete_removes_points_and_ignores_missing_ids(self, filled: VectorStore) -> None:
        filled.delete([pid(0), pid(5), pid(999)])
        filled.delete([])
        assert filled.count() == CORPUS_SIZE - 2
        assert pid(0) not in filled.ids()
        assert filled.retrieve([pid(5)]) == []

    def test_delete_by_filter_removes_only_matches(self, filled: VectorStore) -> None:
        filled.delete_by_filter({"source_key": "src-1"})
        assert filled.ids() == {pid(i) for i in range(CORPUS_SIZE) if i % 3 != 1}
        filled.delete_by_filter({"n": {"gte": 9}})
        assert filled.ids() == {pid(i) for i in range(9) if i % 3 != 1}

    def test_delete_by_filter_refuses_an_empty_filter(self, shared: VectorStore) -> None:
        with pytest.raises(ValueError, match="non-empty filter"):
            shared.delete_by_filter({})
        assert shared.count() == CORPUS_SIZE

    def test_set_payload_merges(self, filled: VectorStore) -> None:
        filled.set_payload(pid(2), {"lang": "fr", "extra": [1, 2]})
        [hit] = filled.retrieve([pid(2)])
        assert hit.payload == {**corpus_payload(2), "lang": "fr", "extra": [1, 2]}
        assert filled.count({"lang": "fr"}) == 1

    def test_set_payload_on_a_missing_point_fails(self, shared: VectorStore) -> None:
        with pytest.raises(StoreError, match=pid(999)) as caught:
            shared.set_payload(pid(999), {"x": 1})
        assert caught.value.__cause__ is not None  # the backend's own error, kept

    def test_rejects_ids_that_are_not_uuids(self, store: VectorStore) -> None:
        with pytest.raises(ValueError, match="not a UUID"):
            store.upsert([replace(make_point(0, [1] * 8), id="chunk-0")])
        with pytest.raises(ValueError, match="not a UUID"):
            store.delete(["chunk-0"])

    def test_rejects_vectors_of_the_wrong_size(self, shared: VectorStore) -> None:
        with pytest.raises(ValueError, match="dense vector of size 3"):
            shared.upsert([make_point(0, [1, 0, 0])])
        with pytest.raises(ValueError, match="size 3"):
            shared.query(one(Channel.DENSE, [1, 0, 0]))
        with pytest.raises(ValueError, match="SparseVector"):
            shared.query(one(Channel.BM25, [1.0] * 8))

    def test_closed_store_refuses_work(self, open_store: StoreOpener) -> None:
        store = open_store()
        store.close()
        store.close()  # twice is fine
        with pytest.raises(StoreError, match="closed"):
            store.count()

    # -- each channel's ranking ----------------------------------------------------

    @pytest.mark.parametrize("channel", [Channel.DENSE, Channel.BINARY])
    def test_dense_channels_rank_by_cosine(self, shared: VectorStore, channel: Channel) -> None:
        query = np.random.default_rng(11).standard_normal(SCHEMA.dense_size)
        expected = cosine_ranking(query)
        hits = shared.query(one(channel, query.tolist(), limit=5))
        # 8-d codes of 12 points: oversampling covers them all, so rescoring is exact.
        assert [h.id for h in hits] == [i for i, _ in expected[:5]]
        assert_scores(hits, dict(expected))
        assert hits[0].payload == corpus_payload(int(np.argmax(dense_matrix() @ query)))

    def test_splade_ranks_shared_heavy_terms_first(self, shared: VectorStore) -> None:
        query = SparseVector.from_pairs({103: 2.0, 108: 1.0, 202: 0.4})
        hits = shared.query(one(Channel.SPLADE, query, limit=CORPUS_SIZE))
        assert [h.id for h in hits[:2]] == [pid(3), pid(8)]
        assert_scores(hits, dict(sparse_ranking(query, [p.splade for p in corpus()])))

    def test_bm25_idf_lifts_rare_terms_where_splade_does_not(self, store: VectorStore) -> None:
        rare, n_total = 2, 10
        docs = {0: SparseVector.from_pairs({COMMON_TERM: 1.5})}
        docs.update(
            {i: SparseVector.from_pairs({COMMON_TERM: 1.0, 500 + i: 1.0}) for i in range(1, 9)}
        )
        docs[9] = SparseVector.from_pairs({rare: 1.0})
        store.upsert([make_point(i, [1] * 8, splade=v, bm25=v) for i, v in docs.items()])
        store.flush()
        query = SparseVector.from_pairs({COMMON_TERM: 1.0, rare: 1.0})

        by_splade = store.query(one(Channel.SPLADE, query, limit=3))
        assert by_splade[0].id == pid(0)  # weight 1.5 beats 1.0 without IDF
        assert by_splade[0].score == pytest.approx(1.5)

        by_bm25 = store.query(one(Channel.BM25, query, limit=3))
        assert [h.id for h in by_bm25[:2]] == [pid(9), pid(0)]
        assert by_bm25[0].score == pytest.approx(qdrant_idf(1, n_total), rel=1e-4)
        assert by_bm25[1].score == pytest.approx(1.5 * qdrant_idf(9, n_total), rel=1e-4)

    # -- fusion --------------------------------------------------------------------

    @pytest.mark.parametrize("dense_channel", [Channel.DENSE, Channel.BINARY])
    @pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 3.0, 0.5)])
    def test_rrf_fuses_channels_with_k_and_weights(
        self, filled: VectorStore, dense_channel: Channel, weights: tuple[float, float, float]
    ) -> None:
        matrix = dense_matrix()
        dense_query = matrix[2] + 0.8 * matrix[5]  # no ties: 2 then 5
        splade_query = SparseVector.from_pairs({105: 1.0, 107: 1.0})
        bm25_query = SparseVector.from_pairs({305: 1.0, 309: 0.5})
        rankings = [
            [i for i, _ in cosine_ranking(dense_query)],
            [pid(7), pid(5)],
            [pid(5), pid(9)],
        ]
        for k in (60, 2):
            query = StoreQuery(
                channels=(
                    ChannelQuery(dense_channel, dense_query.tolist(), weights[0]),
                    ChannelQuery(Channel.SPLADE, splade_query, weights[1]),
                    ChannelQuery(Channel.BM25, bm25_query, weights[2]),
                ),
                limit=5,
                prefetch_limit=CORPUS_SIZE,
                rrf_k=k,
            )
            hits = filled.query(query)
            assert len(hits) == 5
            assert hits[0].id == pid(5)
            assert_scores(hits, rrf_scores(rankings, k, weights))

    def test_prefetch_limit_bounds_each_channel(self, shared: VectorStore) -> None:
        query = np.random.default_rng(5).standard_normal(SCHEMA.dense_size)
        fused = shared.query(
            StoreQuery(
                channels=(
                    ChannelQuery(Channel.DENSE, query.tolist()),
                    ChannelQuery(Channel.BINARY, query.tolist()),
                ),
                limit=10,
                prefetch_limit=3,
            )
        )
        assert [h.id for h in fused] == [i for i, _ in cosine_ranking(query)[:3]]

    def test_dbsf_puts_the_point_every_channel_agrees_on_first(self, shared: VectorStore) -> None:
        target = corpus()[6]
        query = StoreQuery(
            channels=(
                ChannelQuery(Channel.DENSE, list(target.dense)),
                ChannelQuery(Channel.SPLADE, SparseVector.from_pairs({106: 1.0, 201: 0.2})),
                ChannelQuery(Channel.BM25, SparseVector.from_pairs({306: 1.0, COMMON_TERM: 0.1})),
            ),
            fusion=Fusion.DBSF,
            limit=4,
        )
        hits = shared.query(query)
        assert hits[0].id == target.id
        assert hits[0].score > hits[1].score
        assert hits[0].payload == corpus_payload(6)

    def test_batch_and_async_searches_equal_one_by_one(self, shared: VectorStore) -> None:
        matrix = dense_matrix()
        queries = [
            one(Channel.DENSE, matrix[3].tolist(), limit=4, filter={"lang": "de"}),
            one(Channel.BM25, SparseVector.from_pairs({COMMON_TERM: 1.0, 305: 1.0}), limit=3),
            StoreQuery(
                channels=(
                    ChannelQuery(Channel.BINARY, matrix[8].tolist()),
                    ChannelQuery(Channel.SPLADE, SparseVector.from_pairs({108: 1.0})),
                ),
                limit=5,
                with_payload=False,
            ),
        ]
        expected = [shared.query(q) for q in queries]
        assert all(expected)
        assert shared.query_batch(queries) == expected
        assert shared.query_batch([]) == []
        ids = [pid(2), pid(999), pid(7)]

        async def run() -> tuple[list[list[Hit]], list[Hit], list[Hit]]:
            assert isinstance(shared, AsyncSearch)
            return (
                await shared.aquery_batch(queries),
                await shared.aquery(queries[0]),
                await shared.aretrieve(ids),
            )

        batch, single, fetched = asyncio.run(run())
        assert batch == expected
        assert single == expected[0]
        assert sorted(fetched, key=lambda h: h.id) == sorted(
            shared.retrieve(ids), key=lambda h: h.id
        )

    def test_candidates_are_the_batch_hits_as_keys_and_scores(self, shared: VectorStore) -> None:
        matrix = dense_matrix()
        queries = [
            one(Channel.DENSE, matrix[3].tolist(), limit=6, filter={"lang": "de"}),
            one(Channel.BINARY, matrix[8].tolist(), limit=5),
            one(Channel.SPLADE, SparseVector.from_pairs({108: 1.0, 109: 0.5}), limit=4),
            one(Channel.BM25, SparseVector.from_pairs({COMMON_TERM: 1.0, 305: 1.0}), limit=3),
        ]
        expected = shared.query_batch(queries)
        assert all(expected)
        assert isinstance(shared, CandidateSearch)
        found = shared.candidates(queries)
        assert [[c.to_id(k) for k in c.keys] for c in found] == [
            [h.id for h in e] for e in expected
        ]
        assert [list(c.scores) for c in found] == [[h.score for h in e] for e in expected]
        # Keys are the store's own: equal and equally hashed for the same point.
        keys = found[0].keys
        assert {k: i for i, k in enumerate(keys)}[keys[1]] == 1
        assert shared.candidates([]) == []
        assert asyncio.run(shared.acandidates(queries)) == found
        assert search_candidates(shared, queries) == found

    def test_with_payload_false_leaves_payloads_out(self, shared: VectorStore) -> None:
        hits = shared.query(one(Channel.DENSE, [1.0] * 8, limit=3, with_payload=False))
        assert len(hits) == 3
        assert all(h.payload == {} for h in hits)

    # -- filters -------------------------------------------------------------------

    @pytest.mark.parametrize(("filter", "predicate"), FILTERS, ids=[str(f) for f, _ in FILTERS])
    def test_filters_select_the_same_points_everywhere(
        self,
        shared: VectorStore,
        filter: dict[str, Any],
        predicate: Callable[[dict[str, Any]], bool],
    ) -> None:
        expected = {pid(i) for i in range(CORPUS_SIZE) if predicate(corpus_payload(i))}
        assert shared.ids(filter) == expected
        assert shared.count(filter) == len(expected)
        query = np.ones(SCHEMA.dense_size)
        for channel in (Channel.DENSE, Channel.BINARY):
            hits = shared.query(one(channel, query.tolist(), limit=CORPUS_SIZE, filter=filter))
            assert {h.id for h in hits} == expected
        fused = shared.query(
            StoreQuery(
                channels=(
                    ChannelQuery(Channel.DENSE, query.tolist()),
                    ChannelQuery(Channel.BM25, SparseVector.from_pairs({COMMON_TERM: 1.0})),
                ),
                limit=CORPUS_SIZE,
                filter=filter,
            )
        )
        assert {h.id for h in fused} == expected

    def test_raw_qdrant_filters_select_the_same_points_everywhere(
        self, filled: VectorStore
    ) -> None:
        # One test over all filters: a filled store per filter would cost seconds each.
        for filter, predicate in RAW_FILTERS:
            self.test_filters_select_the_same_points_everywhere(filled, filter, predicate)
        filled.delete_by_filter({"must_not": [{"key": "source_key", "match": {"value": "src-1"}}]})
        assert filled.ids() == {pid(i) for i in range(CORPUS_SIZE) if i % 3 == 1}

    def test_unsupported_filters_are_refused_clearly(self, shared: VectorStore) -> None:
        for filter, message in BAD_FILTERS:
            with pytest.raises(ValueError, match=message):
                shared.count(filter)
            with pytest.raises(ValueError, match=message):
                shared.query(one(Channel.DENSE, [1.0] * 8, filter=filter))

    # -- schema checks -------------------------------------------------------------

    def test_other_dense_size_is_refused_and_data_kept(self, open_store: StoreOpener) -> None:
        store = open_store()
        store.upsert(corpus())
        store.close()
        with pytest.raises(SchemaMismatchError) as caught:
            open_store(replace(SCHEMA, dense_size=16))
        message = str(caught.value)
        assert "collection 'tribrid-test'" in message
        assert "dense size 8 but the dense model gives 16" in message
        assert "--recreate" in message
        again = open_store()
        assert again.count() == CORPUS_SIZE
        assert again.retrieve([pid(1)])[0].payload == corpus_payload(1)

    @pytest.mark.parametrize("field", ["dense_model", "splade_model", "bm25_model"])
    def test_other_model_is_refused_and_data_kept(
        self, open_store: StoreOpener, field: str
    ) -> None:
        store = open_store()
        store.upsert(corpus())
        store.close()
        with pytest.raises(SchemaMismatchError) as caught:
            open_store(replace(SCHEMA, **{field: "other-model"}))
        message = str(caught.value)
        assert "'other-model'" in message
        assert repr(getattr(SCHEMA, field)) in message
        assert open_store().count() == CORPUS_SIZE

    def test_recreate_starts_empty_with_the_new_schema(self, open_store: StoreOpener) -> None:
        store = open_store()
        store.upsert(corpus())
        store.close()
        wider = replace(SCHEMA, dense_size=16, dense_model="dense-b")
        recreated = open_store(wider, recreate=True)
        assert recreated.count() == 0
        recreated.upsert([make_point(0, [1.0] * 16)])
        recreated.close()
        reopened = open_store(wider)
        assert reopened.count() == 1
        reopened.close()
        with pytest.raises(SchemaMismatchError):
            open_store()

    def test_stored_quantization_wins_over_the_setting(self, open_store: StoreOpener) -> None:
        open_store().close()
        reopened = open_store(
            replace(
                SCHEMA, binary_encoding=BinaryEncoding.ONE_BIT, query_encoding=QueryEncoding.BINARY
            )
        )
        assert reopened.schema.binary_encoding is SCHEMA.binary_encoding
        assert reopened.schema.query_encoding is SCHEMA.query_encoding

    def test_binary_tier_keeps_its_placement_and_searches(self, open_store: StoreOpener) -> None:
        tier = replace(SCHEMA, dense_on_disk=True)
        store = open_store(tier)
        assert store.schema.dense_on_disk
        store.upsert(corpus())
        store.flush()
        matrix = dense_matrix()
        hits = store.query(one(Channel.BINARY, matrix[5].tolist(), limit=3, oversampling=4.0))
        assert hits[0].id == pid(5)
        store.close()
        # The stored placement wins over the setting, both ways.
        reopened = open_store(SCHEMA)
        assert reopened.schema.dense_on_disk
        assert reopened.count() == CORPUS_SIZE
        reopened.close()

    def test_default_store_keeps_floats_in_ram(self, open_store: StoreOpener) -> None:
        open_store().close()
        reopened = open_store(replace(SCHEMA, dense_on_disk=True))
        assert not reopened.schema.dense_on_disk

    # -- binary quantization at scale ----------------------------------------------

    @pytest.mark.slow
    @pytest.mark.parametrize("encoding", list(BinaryEncoding))
    def test_binary_channel_recall(self, open_store: StoreOpener, encoding: BinaryEncoding) -> None:
        n_points, n_queries, dim = 2000, 40, 384
        rng = np.random.default_rng(42)
        vectors = rng.standard_normal((n_points, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
        store = open_store(replace(SCHEMA, dense_size=dim, binary_encoding=encoding))
        store.upsert([make_point(i, v) for i, v in enumerate(vectors)])
        store.flush()
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]

        def recall(channel: Channel, oversampling: float) -> float:
            found = 0
            for q, truth in zip(queries, exact, strict=True):
                hits = store.query(
                    one(
                        channel, q.tolist(), limit=10, oversampling=oversampling, with_payload=False
                    )
                )
                found += len({h.id for h in hits} & {pid(int(i)) for i in truth})
            return found / (10 * n_queries)

        dense = recall(Channel.DENSE, 1.0)
        plain = recall(Channel.BINARY, 1.0)
        rescored = recall(Channel.BINARY, 8.0)
        print(
            f"\n{open_store.backend} {encoding.value}: recall@10 dense {dense:.3f}, "
            f"binary {plain:.3f}, binary x8 + rescore {rescored:.3f}"
        )
        assert dense == 1.0
        assert rescored >= RECALL_BOUNDS[encoding]
        assert rescored >= plain
        if open_store.backend == "edge":
            # The codes are really searched: without oversampling they lose neighbours.
            assert plain < 0.9

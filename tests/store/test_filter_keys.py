"""Every documented filter key, filtered on both backends (issue 14).

qdrant-client's in-process engine has no strict mode (and no payload indexes), so the
server backend cannot be run here with unindexed filtering refused; the indexes a server
gets are checked in test_qdrant.py, Edge's in test_edge.py. This runs each documented
key's filter on both backends and checks it selects exactly the right points.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.store import BACKENDS, filled_store, make_point, pid
from tribrid.store.base import Channel, ChannelQuery, StoreQuery, VectorStore
from tribrid.store.points import FILTERABLE_KEYS


def payload(i: int) -> dict[str, Any]:
    """Point ``i`` of document ``doc-{i // 2}``: two chunks a document."""
    doc = i // 2
    return {
        "source_key": f"local:/root-{doc % 2}",
        "document_key": f"doc-{doc}.eml",
        "path": f"doc-{doc}.eml",
        "source": f"doc-{doc}.eml",
        "filename": f"doc-{doc}.eml",
        "filetype": "message/rfc822" if doc % 2 else "text/markdown",
        "title": f"Section {i % 3}",
        "page": i + 1,
        "page_numbers": [i + 1, i + 2],
        "chunk_index": i % 2,
        "languages": ["eng"] if i % 3 else ["deu", "eng"],
        "last_modified": f"2024-0{1 + doc}-15T10:00:00",
        "sent_from": [f"sender-{doc}@example.com"],
        "sent_to": ["team@example.com", f"person-{i}@example.com"],
        "cc_recipient": [f"cc-{i % 2}@example.com"],
        "subject": f"Subject {doc}",
        "text": f"chunk {i}",
    }


POINTS = 8

#: A simple-form filter on each documented key, and the points it must select.
CASES: dict[str, tuple[dict[str, Any], set[int]]] = {
    "source_key": ({"source_key": "local:/root-1"}, {2, 3, 6, 7}),
    "document_key": ({"document_key": "doc-1.eml"}, {2, 3}),
    "path": ({"path": "doc-2.eml"}, {4, 5}),
    "source": ({"source": ["doc-0.eml", "doc-3.eml"]}, {0, 1, 6, 7}),
    "filename": ({"filename": "doc-3.eml"}, {6, 7}),
    "filetype": ({"filetype": "message/rfc822"}, {2, 3, 6, 7}),
    "title": ({"title": "Section 0"}, {0, 3, 6}),
    "page": ({"page": {"gte": 3, "lt": 5}}, {2, 3}),
    "page_numbers": ({"page_numbers": 2}, {0, 1}),
    "chunk_index": ({"chunk_index": 1}, {1, 3, 5, 7}),
    "languages": ({"languages": "deu"}, {0, 3, 6}),
    "last_modified": (
        {"must": [{"key": "last_modified", "range": {"gte": "2024-03-01T00:00:00Z"}}]},
        {4, 5, 6, 7},
    ),
    "sent_from": ({"sent_from": "sender-1@example.com"}, {2, 3}),
    "sent_to": ({"sent_to": "person-5@example.com"}, {5}),
    "cc_recipient": ({"cc_recipient": "cc-1@example.com"}, {1, 3, 5, 7}),
    "subject": ({"subject": "Subject 0"}, {0, 1}),
}


def test_every_documented_key_has_a_case() -> None:
    assert set(CASES) == set(FILTERABLE_KEYS)


@pytest.fixture(scope="module", params=BACKENDS)
def keyed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorStore]:
    """One filled store per backend for the whole module: the tests only read it."""
    points = [make_point(i, [1.0 + i] + [1.0] * 7, payload=payload(i)) for i in range(POINTS)]
    with filled_store(request.param, tmp_path_factory.mktemp("keyed"), points) as store:
        yield store


@pytest.mark.parametrize("key", list(CASES))
def test_each_documented_filter_selects_exactly_its_points(keyed: VectorStore, key: str) -> None:
    filter, expected = CASES[key]
    wanted = {pid(i) for i in expected}
    assert keyed.ids(filter) == wanted
    assert keyed.count(filter) == len(wanted)
    query = StoreQuery(
        channels=(ChannelQuery(Channel.DENSE, [1.0] * 8),), limit=POINTS, filter=filter
    )
    assert {h.id for h in keyed.query(query)} == wanted

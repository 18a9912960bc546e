"""Self-querying: LangChain structured queries become tribrid filters.

``SelfQueryRetriever`` lives in ``langchain-classic``, which tribrid does not depend on
(and which is not installed here), so its pipeline is rebuilt by hand from
langchain-core's parts: a fake chat model emits a fixed structured query as JSON, the
query is parsed into langchain-core's ``StructuredQuery``, ``TribridTranslator`` turns it
into a filter, and the vector store searches with it, on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda
from langchain_core.structured_query import (
    Comparator,
    Comparison,
    FilterDirective,
    Operation,
    Operator,
    StructuredQuery,
)

from tests.fakes import fake_encoders
from tests.support.retrievers import BACKENDS, open_backend
from tribrid.retrievers import METADATA_FIELDS, TribridTranslator, TribridVectorStore
from tribrid.store.filters import validate_filter

T = TribridTranslator()


def cmp(comparator: str, attribute: str, value: Any) -> Comparison:
    return Comparison(comparator=Comparator(comparator), attribute=attribute, value=value)


def translated(directive: FilterDirective) -> Any:
    _, kwargs = T.visit_structured_query(StructuredQuery(query="q", filter=directive))
    validate_filter(kwargs["filter"])  # both backends accept it
    return kwargs["filter"]


def test_comparisons() -> None:
    assert translated(cmp("eq", "path", "a.md")) == {
        "must": [{"key": "path", "match": {"value": "a.md"}}]
    }
    assert translated(cmp("eq", "score", 0.5)) == {
        "must": [{"key": "score", "range": {"gte": 0.5, "lte": 0.5}}]
    }
    assert translated(cmp("ne", "page", 2)) == {
        "must_not": [{"key": "page", "match": {"value": 2}}]
    }
    assert translated(cmp("gte", "page", 2)) == {"must": [{"key": "page", "range": {"gte": 2.0}}]}
    assert translated(cmp("in", "filetype", ["a", "b"])) == {
        "must": [{"key": "filetype", "match": {"any": ["a", "b"]}}]
    }
    assert translated(cmp("nin", "page", [1, 2])) == {
        "must": [{"key": "page", "match": {"except": [1, 2]}}]
    }
    assert translated(cmp("contain", "languages", "eng")) == {
        "must": [{"key": "languages", "match": {"value": "eng"}}]
    }
    assert translated(cmp("like", "subject", "pump")) == {
        "must": [{"key": "subject", "match": {"text": "pump"}}]
    }


def test_dates_become_datetime_ranges() -> None:
    day = {"type": "date", "date": "2024-05-14"}
    assert translated(cmp("gt", "last_modified", day)) == {
        "must": [{"key": "last_modified", "range": {"gt": "2024-05-14T00:00:00+00:00"}}]
    }
    assert translated(cmp("eq", "last_modified", day)) == {
        "must": [
            {
                "key": "last_modified",
                "range": {"gte": "2024-05-14T00:00:00+00:00", "lt": "2024-05-15T00:00:00+00:00"},
            }
        ]
    }


def test_operations_nest() -> None:
    directive = Operation(
        operator=Operator.AND,
        arguments=[
            cmp("eq", "topic", "pumps"),
            Operation(
                operator=Operator.OR,
                arguments=[
                    cmp("lt", "page", 3),
                    Operation(operator=Operator.NOT, arguments=[cmp("eq", "lang", "de")]),
                ],
            ),
        ],
    )
    assert translated(directive) == {
        "must": [
            {"key": "topic", "match": {"value": "pumps"}},
            {
                "should": [
                    {"key": "page", "range": {"lt": 3.0}},
                    {"must_not": [{"key": "lang", "match": {"value": "de"}}]},
                ]
            },
        ]
    }


def test_refusals_name_the_field() -> None:
    with pytest.raises(ValueError, match="'flag': boolean values cannot be filtered"):
        translated(cmp("eq", "flag", True))
    with pytest.raises(ValueError, match="only strings or only integers"):
        translated(cmp("in", "page", [1, "a"]))
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        translated(cmp("gt", "last_modified", {"type": "date", "date": "yesterday"}))
    assert T.visit_structured_query(StructuredQuery(query="q", filter=None, limit=3)) == (
        "q",
        {"k": 3},
    )


def test_metadata_fields_name_documented_keys() -> None:
    from tribrid.store.points import FILTERABLE_KEYS

    assert {f["name"] for f in METADATA_FIELDS} <= set(FILTERABLE_KEYS)


# -- the pipeline, with a fake LLM ------------------------------------------------------


def _directive(data: dict[str, Any]) -> FilterDirective:
    if "operator" in data:
        return Operation(
            operator=Operator(data["operator"]),
            arguments=[_directive(a) for a in data["arguments"]],
        )
    return cmp(data["comparator"], data["attribute"], data["value"])


def _structured(text: str) -> StructuredQuery:
    data = json.loads(text)
    return StructuredQuery(
        query=data["query"],
        filter=_directive(data["filter"]) if data.get("filter") else None,
        limit=data.get("limit"),
    )


LLM_ANSWER = json.dumps(
    {
        "query": "gasket",
        "filter": {
            "operator": "and",
            "arguments": [
                {"comparator": "eq", "attribute": "topic", "value": "pumps"},
                {
                    "operator": "or",
                    "arguments": [
                        {"comparator": "gte", "attribute": "page", "value": 3},
                        {"comparator": "in", "attribute": "model", "value": ["ZX-1"]},
                    ],
                },
                {
                    "operator": "not",
                    "arguments": [{"comparator": "eq", "attribute": "lang", "value": "de"}],
                },
            ],
        },
        "limit": 10,
    }
)


@pytest.fixture(params=BACKENDS)
def vs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TribridVectorStore]:
    encoders = fake_encoders()
    store = open_backend(request.param, encoders, tmp_path / "store")
    vs = TribridVectorStore(store, encoders)
    vs.add_texts(
        [f"gasket note {i}" for i in range(6)],
        [
            {"topic": "pumps", "page": 1, "model": "ZX-1", "lang": "en"},  # kept: model
            {"topic": "pumps", "page": 4, "model": "ZX-2", "lang": "en"},  # kept: page
            {"topic": "pumps", "page": 5, "model": "ZX-2", "lang": "de"},  # not: lang
            {"topic": "pumps", "page": 1, "model": "ZX-2", "lang": "en"},  # neither
            {"topic": "food", "page": 9, "model": "ZX-1", "lang": "en"},  # topic
            {"topic": "pumps", "page": 3, "model": "ZX-9", "lang": "fr"},  # kept: page
        ],
        ids=[str(i) for i in range(6)],
    )
    yield vs
    store.close()


def _chain(vs: TribridVectorStore) -> Any:
    """What SelfQueryRetriever does: LLM, parse, translate, search (sync and async)."""

    async def asearch(q: tuple[str, dict[str, Any]]) -> list[Any]:
        return await vs.asimilarity_search(q[0], **q[1])

    search = RunnableLambda(lambda q: vs.similarity_search(q[0], **q[1]), afunc=asearch)
    llm = FakeListChatModel(responses=[LLM_ANSWER])
    return llm | StrOutputParser() | RunnableLambda(_structured) | T.visit_structured_query | search


def test_a_fake_llms_structured_query_filters_the_search(vs: TribridVectorStore) -> None:
    docs = _chain(vs).invoke("gaskets on pump pages 3 and up, or ZX-1, not in German")
    assert sorted(d.id or "" for d in docs) == ["0", "1", "5"]


@pytest.mark.asyncio
async def test_the_same_pipeline_async(vs: TribridVectorStore) -> None:
    docs = await _chain(vs).ainvoke("gaskets on pump pages 3 and up, or ZX-1, not in German")
    assert sorted(d.id or "" for d in docs) == ["0", "1", "5"]

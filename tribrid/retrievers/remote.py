"""A LangChain retriever over a ``tribrid serve`` process: the same search, no models here.

The server runs :class:`~tribrid.retrievers.hybrid.TribridRetriever`'s own search (query
encoding included) with the options this retriever sends, so the documents, their
order, their fused score and each channel's score and rank are the ones an in-process
retriever on the same index gives. This process loads no model and opens no store:
any number of applications can query one index while it is being written.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from tribrid.errors import StoreError
from tribrid.retrievers.hybrid import CALL_OPTIONS, RetrievedChunk, to_document
from tribrid.store.remote import answer_json, shared_client
from tribrid.store.wire import filter_to_json

#: The options a server search takes (a reranker runs in the client's process only).
#: (How documents are made, ``internal_metadata``, is this process's business too.)
REMOTE_OPTIONS = tuple(
    o for o in CALL_OPTIONS if o not in ("reranker", "rerank_candidates", "internal_metadata")
)


#: Options whose explicit ``None`` is sent: it turns a default off on the server.
_NULLABLE = ("chunks_per_document", "feedback")


class RemoteRetriever(BaseRetriever):
    """Hybrid search answered by ``tribrid serve``.

    ``tribrid.as_retriever()`` returns one by itself when a server owns the data dir;
    make one directly to use a server by its URL.

    Attributes:
        url: The server's base URL, e.g. ``http://127.0.0.1:8765``.
        api_key: The server's API key, if it has one.
        timeout: Seconds to wait for an answer.
        k: Number of documents (any other retriever option — ``channels``, ``fusion``,
            ``filter``, ``prefetch_k``, ``store_fusion``, ``relevance_threshold``,
            ``chunks_per_document`` … — is a field too, and can be overridden per call,
            as with ``TribridRetriever``). Documents carry the same ``relevance`` as
            an in-process retriever's; the server uses the default calibration.

    Example:
        ::

            retriever = RemoteRetriever(url="http://127.0.0.1:8765", k=5)
            docs = retriever.invoke("binary quantization", filter={"filetype": "text/markdown"})
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    api_key: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=60.0, gt=0)
    k: int = Field(default=10, ge=1)
    filter: Any = None
    score_threshold: float | None = None
    channels: Any = None
    fusion: str | None = None
    rrf_k: int | None = None
    normalization: str | None = None
    prefetch_k: int | None = None
    weighting: str | None = None
    feedback: Any = None
    oversampling: float | None = None
    store_fusion: bool | None = None
    relevance_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    chunks_per_document: int | None = Field(default=None, ge=1)
    internal_metadata: bool = False

    def _body(self, query: str, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - set(REMOTE_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown retriever option(s) {sorted(unknown)}; valid options: "
                f"{list(REMOTE_OPTIONS)}"
            )
        options = {name: getattr(self, name) for name in REMOTE_OPTIONS} | overrides
        # None means "the server's default", except for an explicit override: a null
        # chunks_per_document or feedback turns the default cap or round off.
        body = {
            name: value
            for name, value in options.items()
            if value is not None or (name in overrides and name in _NULLABLE)
        }
        if "filter" in body:
            body["filter"] = filter_to_json(body["filter"])
        if hasattr(body.get("feedback"), "model_dump"):
            body["feedback"] = body["feedback"].model_dump()
        return {"query": query, **body}

    def search(self, query: str, **options: Any) -> list[RetrievedChunk]:
        """Search on the server; chunks with their fused and per-channel scores."""
        client = shared_client(self.url, api_key=self.api_key, timeout=self.timeout)
        answer = client.post("/v1/search", self._body(query, options))
        return [_chunk(item) for item in answer["results"]]

    async def asearch(self, query: str, **options: Any) -> list[RetrievedChunk]:
        """:meth:`search` without blocking the event loop."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(
            base_url=self.url.rstrip("/"), headers=headers, timeout=self.timeout, trust_env=False
        ) as client:
            try:
                response = await client.post("/v1/search", json=self._body(query, options))
            except httpx.HTTPError as e:
                raise StoreError(
                    f"cannot reach the tribrid server at {self.url} ({type(e).__name__}: "
                    f"{e}); is `tribrid serve` running?"
                ) from e
        answer = answer_json(response, self.url, "/v1/search")
        return [_chunk(item) for item in answer["results"]]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        internal = bool(kwargs.pop("internal_metadata", self.internal_metadata))
        return [to_document(chunk, internal=internal) for chunk in self.search(query, **kwargs)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        internal = bool(kwargs.pop("internal_metadata", self.internal_metadata))
        chunks = await self.asearch(query, **kwargs)
        return [to_document(chunk, internal=internal) for chunk in chunks]

    def close(self) -> None:
        """Nothing to release: connections are pooled per server for the process (see
        :func:`~tribrid.store.remote.shared_client`). For symmetry with
        ``TribridRetriever``, so ``with tribrid.as_retriever() as r:`` works either way."""

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _chunk(item: dict[str, Any]) -> RetrievedChunk:
    return RetrievedChunk(
        id=str(item["id"]),
        score=float(item["score"]),
        payload=item.get("payload") or {},
        channel_scores=dict(item.get("channel_scores") or {}),
        channel_ranks={k: int(v) for k, v in (item.get("channel_ranks") or {}).items()},
        relevance=float(item["relevance"]) if item.get("relevance") is not None else None,
    )


__all__ = ["REMOTE_OPTIONS", "RemoteRetriever"]

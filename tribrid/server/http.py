"""The HTTP face of ``tribrid serve``: a FastAPI application over a :class:`ServerState`.

Routes (JSON in and out; the OpenAPI description is at ``/openapi.json``):

* ``GET /health`` — liveness, the pid and the store folder (no key needed);
* ``POST /v1/search`` — hybrid search with every retriever option; documents come
  back with their fused score and each channel's score and rank;
* ``GET /v1/store/schema``, ``POST /v1/store/{upsert,set_payload,delete,
  delete_by_filter,query,query_batch,retrieve,count,ids,flush}`` — the store operations
  other tribrid processes use (:class:`~tribrid.store.remote.RemoteStore`);
* ``POST /v1/sync`` — queue a sync of a folder under the allowed roots;
  ``GET /v1/jobs/{id}``, ``GET /v1/runs/{id}``, ``GET /v1/status`` — progress;
* ``GET /metrics`` — Prometheus.

Every request body is read with a size limit, validated field by field (unknown fields
are refused), and never unpickled. With an API key, every route but ``/health`` needs
``Authorization: Bearer <key>`` (or ``X-API-Key``), compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hmac
import importlib.metadata
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tribrid.errors import SchemaMismatchError, StoreError, TribridError
from tribrid.retrievers.engine import HybridSearch, RetrievedChunk
from tribrid.server.state import ServerState
from tribrid.store.filters import validate_filter
from tribrid.store.remote import schema_json
from tribrid.store.wire import hit_to_json, point_from_json, query_from_json

log = logging.getLogger(__name__)

__version__ = importlib.metadata.version("tribrid")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    """A search: the query and any retriever option (see ``HybridSearch``)."""

    query: str = Field(min_length=1, max_length=20_000)
    k: int | None = Field(default=None, gt=0, le=1000)
    filter: Any = None
    score_threshold: float | None = None
    channels: dict[str, float] | list[str] | str | None = None
    fusion: str | None = None
    rrf_k: int | None = Field(default=None, ge=0)
    normalization: str | None = None
    prefetch_k: int | None = Field(default=None, gt=0, le=10_000)
    weighting: str | None = None
    feedback: dict[str, Any] | None = None
    oversampling: float | None = Field(default=None, ge=1.0, le=1000.0)
    store_fusion: bool | None = None
    relevance_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    chunks_per_document: int | None = Field(default=None, gt=0, le=1000)


class PointsRequest(_Strict):
    points: list[dict[str, Any]] = Field(max_length=10_000)


class PayloadRequest(_Strict):
    id: str = Field(min_length=1)
    payload: dict[str, Any]


class IdsRequest(_Strict):
    ids: list[str] = Field(max_length=100_000)


class FilterRequest(_Strict):
    filter: Any = None


class QueryRequest(_Strict):
    query: dict[str, Any]


class QueryBatchRequest(_Strict):
    queries: list[dict[str, Any]] = Field(max_length=64)


class SyncRequest(_Strict):
    path: str = Field(min_length=1, max_length=4096)
    retry_failed: bool = False


def chunk_json(chunk: RetrievedChunk) -> dict[str, Any]:
    """A search result as JSON."""
    return {
        "id": chunk.id,
        "score": chunk.score,
        "payload": dict(chunk.payload),
        "channel_scores": chunk.channel_scores,
        "channel_ranks": chunk.channel_ranks,
        "relevance": chunk.relevance,
    }


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self._refuse(send)
            return
        # Read the whole body first (the application would), refusing it at the limit:
        # an error raised inside the application's own read would become a 400.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self._app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {
                "detail": f"request body over the limit of {self._limit} bytes "
                "(TRIBRID_SERVE__MAX_BODY_MB); send smaller batches"
            },
            status_code=413,
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app(state: ServerState) -> FastAPI:
    """The application answering for ``state``."""
    settings = state.settings
    api_key = settings.serve.api_key.get_secret_value() if settings.serve.api_key else None
    app = FastAPI(
        title="tribrid",
        version=__version__,
        description="Hybrid search and store operations of one tribrid data dir.",
    )
    base = HybridSearch(
        store=state.store,
        encoders=state.encoders,
        oversampling=settings.quantization.oversampling,
    )

    def authorized(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise _Unauthorized

    guarded = [Depends(authorized)]

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": "missing or wrong API key: send Authorization: Bearer <key>"},
            status_code=401,
        )

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, exc: _Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(SchemaMismatchError)
    async def _mismatch(request: Request, exc: SchemaMismatchError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        state.metrics.failures.labels(request.url.path).inc()
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> JSONResponse:
        state.metrics.failures.labels(request.url.path).inc()
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(TribridError)
    async def _tribrid(request: Request, exc: TribridError) -> JSONResponse:
        state.metrics.failures.labels(request.url.path).inc()
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "pid": os.getpid(),
            "store": str(settings.store_path.absolute()),
            "version": __version__,
            "uptime_s": round(time.time() - state.started_at, 1),
        }

    @app.post("/v1/search", dependencies=guarded)
    def search(body: SearchRequest) -> dict[str, Any]:
        options = body.model_dump(exclude_none=True, exclude={"query"})
        # An explicit null turns off a default cap or round (e.g. "chunks_per_document").
        for name in ("chunks_per_document", "feedback"):
            if name in body.model_fields_set and getattr(body, name) is None:
                options[name] = None
        started = time.perf_counter()
        try:
            chunks = base.search(body.query, **options)
        except Exception:
            state.metrics.queries.labels("error").inc()
            raise
        took = time.perf_counter() - started
        state.metrics.queries.labels("ok").inc()
        state.metrics.query_seconds.observe(took)
        return {"results": [chunk_json(c) for c in chunks], "took_ms": round(took * 1000, 3)}

    def op(name: str) -> None:
        state.metrics.store_ops.labels(name).inc()

    @app.get("/v1/store/schema", dependencies=guarded)
    def store_schema() -> dict[str, Any]:
        return schema_json(state.store.schema)

    @app.post("/v1/store/upsert", dependencies=guarded)
    def upsert(body: PointsRequest) -> dict[str, Any]:
        points = [point_from_json(p, f"points[{n}]") for n, p in enumerate(body.points)]
        op("upsert")
        state.store.upsert(points)
        return {"upserted": len(points)}

    @app.post("/v1/store/set_payload", dependencies=guarded)
    def set_payload(body: PayloadRequest) -> dict[str, Any]:
        op("set_payload")
        state.store.set_payload(body.id, body.payload)
        return {}

    @app.post("/v1/store/delete", dependencies=guarded)
    def delete(body: IdsRequest) -> dict[str, Any]:
        op("delete")
        state.store.delete(body.ids)
        return {"deleted": len(body.ids)}

    @app.post("/v1/store/delete_by_filter", dependencies=guarded)
    def delete_by_filter(body: FilterRequest) -> dict[str, Any]:
        op("delete_by_filter")
        state.store.delete_by_filter(validate_filter(body.filter))
        return {}

    @app.post("/v1/store/query", dependencies=guarded)
    def query(body: QueryRequest) -> dict[str, Any]:
        request = _checked_query(body.query, "query")
        op("query")
        return {"hits": [hit_to_json(h) for h in state.store.query(request)]}

    @app.post("/v1/store/query_batch", dependencies=guarded)
    def query_batch(body: QueryBatchRequest) -> dict[str, Any]:
        requests = [_checked_query(q, f"queries[{n}]") for n, q in enumerate(body.queries)]
        op("query_batch")
        hits = state.store.query_batch(requests)
        return {"hits": [[hit_to_json(h) for h in batch] for batch in hits]}

    @app.post("/v1/store/retrieve", dependencies=guarded)
    def retrieve(body: IdsRequest) -> dict[str, Any]:
        op("retrieve")
        return {"hits": [hit_to_json(h) for h in state.store.retrieve(body.ids)]}

    @app.post("/v1/store/count", dependencies=guarded)
    def count(body: FilterRequest) -> dict[str, Any]:
        op("count")
        return {"count": state.store.count(validate_filter(body.filter))}

    @app.post("/v1/store/ids", dependencies=guarded)
    def ids(body: FilterRequest) -> dict[str, Any]:
        op("ids")
        return {"ids": sorted(state.store.ids(validate_filter(body.filter)))}

    @app.post("/v1/store/flush", dependencies=guarded)
    def flush() -> dict[str, Any]:
        op("flush")
        state.store.flush()
        return {}

    @app.post("/v1/sync", dependencies=guarded, status_code=202)
    def sync(body: SyncRequest) -> dict[str, Any]:
        folder = Path(body.path).expanduser()
        try:
            resolved = folder.resolve(strict=True)
        except OSError:
            resolved = None
        if resolved is None or not state.allowed(resolved):
            roots = ", ".join(str(r) for r in state.allowed_roots) or "none"
            raise _Forbidden(
                f"path {body.path!r} is not a folder under the roots this server may sync "
                f"(allowed: {roots}); start it with --allow-root, or run `tribrid ingest "
                "PATH` on this machine"
            )
        if not resolved.is_dir():
            raise ValueError(f"path {body.path!r} is not a folder")
        return {"job": state.syncs.submit(resolved, retry_failed=body.retry_failed).as_dict()}

    @app.get("/v1/jobs/{job_id}", dependencies=guarded)
    def job(job_id: int) -> Response:
        found = state.syncs.get(job_id)
        if found is None:
            return JSONResponse({"detail": f"no sync job {job_id}"}, status_code=404)
        return JSONResponse({"job": found.as_dict()})

    @app.get("/v1/runs/{run_id}", dependencies=guarded)
    def run(run_id: int) -> dict[str, Any]:
        progress = state.ledger.run_progress(run_id)
        return {"run": _plain(progress)}

    @app.get("/v1/status", dependencies=guarded)
    def status() -> dict[str, Any]:
        return {"status": _plain(state.ledger.status())}

    @app.get("/metrics", dependencies=guarded)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    limited = BodyLimit(app, int(settings.serve.max_body_mb * 2**20))
    app.state.asgi = limited
    return app


class _Unauthorized(Exception):
    pass


class _Forbidden(Exception):
    pass


def _checked_query(data: dict[str, Any], where: str) -> Any:
    request = query_from_json(data, where)
    return dataclasses.replace(request, filter=validate_filter(request.filter))


def _plain(record: Any) -> Any:
    """A ledger record (dataclasses, enums, datetimes) as JSON-ready data."""
    import json

    return json.loads(json.dumps(dataclasses.asdict(record), default=str))


__all__ = ["BodyLimit", "SearchRequest", "chunk_json", "create_app"]

"""The store of another process: ``tribrid serve``, found from the store folder.

Qdrant Edge lets one process open a store. ``tribrid serve`` is that process, long
lived; it writes a small descriptor, ``tribrid-serve.json``, into the store folder when
it is ready to answer (address, pid, host, and the API key when it has one; readable by
its owner only) and removes it when it stops. Every other tribrid process finds the
server with :func:`discover` and talks to it: :class:`RemoteStore` is the
:class:`~tribrid.store.base.VectorStore` it then uses, and :class:`ServerClient` the
plain HTTP client under it (searches and syncs use it too).

A descriptor left by a server that died is *stale*: its pid is gone on this host, or
its address does not answer as that server. :func:`discover` ignores it, so a client
opens the store itself again; :func:`descriptor` still reports it, for processes that
should wait for the owner to come back (background workers).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from tribrid.errors import SchemaMismatchError, StoreError
from tribrid.store.base import CollectionSchema, Hit, Point, StoreFilter, StoreQuery
from tribrid.store.wire import (
    filter_to_json,
    hit_from_json,
    point_to_json,
    query_to_json,
    schema_from_json,
    schema_to_json,
)

#: The descriptor ``tribrid serve`` writes into the store folder it owns.
SERVER_FILE = "tribrid-serve.json"
#: Points per upsert request (a few MB of JSON).
UPSERT_BATCH = 256


@dataclass(frozen=True)
class ServerInfo:
    """What a server's descriptor says.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:8765``.
        pid: The server's process id.
        host: The host name it runs on.
        store: The store folder it owns.
        api_key: The key requests must carry, if it has one.
    """

    url: str
    pid: int
    host: str
    store: str
    api_key: str | None = None


def write_descriptor(store_path: Path, info: ServerInfo) -> Path:
    """Write the descriptor atomically, readable by its owner only; returns its path."""
    target = Path(store_path) / SERVER_FILE
    tmp = target.with_name(f".{SERVER_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(info), handle)
    os.replace(tmp, target)
    return target


def remove_descriptor(store_path: Path, pid: int) -> None:
    """Remove the descriptor if it is still the one ``pid`` wrote."""
    info = descriptor(store_path)
    if info is not None and info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (Path(store_path) / SERVER_FILE).unlink()


def descriptor(store_path: Path) -> ServerInfo | None:
    """The descriptor in ``store_path``, live or stale; ``None`` when there is none."""
    try:
        data = json.loads((Path(store_path) / SERVER_FILE).read_text())
        return ServerInfo(
            url=str(data["url"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            store=str(data["store"]),
            api_key=data.get("api_key"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _process_gone(info: ServerInfo) -> bool:
    if info.host != socket.gethostname():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def discover(store_path: Path, *, timeout: float = 2.0) -> ServerInfo | None:
    """The live server that owns ``store_path``, or ``None``.

    A descriptor whose process is gone, or whose address does not answer as the server
    of this store, is stale and ignored.
    """
    info = descriptor(store_path)
    if info is None or _process_gone(info):
        return None
    client = ServerClient(info.url, api_key=info.api_key, timeout=timeout)
    try:
        health = client.get("/health")
    except StoreError:
        return None
    finally:
        client.close()
    if health.get("pid") != info.pid or health.get("store") != info.store:
        return None
    return info


class ServerClient:
    """A small JSON client of ``tribrid serve``; errors come back as tribrid errors.

    Args:
        url: The server's base URL.
        api_key: Sent as ``Authorization: Bearer`` when given.
        timeout: Seconds to wait for each answer.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy set for the outside world must not see loopback calls.
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, trust_env=False
        )

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON object."""
        return self._call("GET", path, None)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON object and read one back."""
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        import httpx

        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise StoreError(
                f"cannot reach the tribrid server at {self.url} ({type(e).__name__}: {e}); "
                "is `tribrid serve` running?"
            ) from e
        return answer_json(response, self.url, path)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()


_shared: dict[tuple[str, str | None, float], ServerClient] = {}
_shared_lock = threading.Lock()


def shared_client(url: str, *, api_key: str | None = None, timeout: float = 60.0) -> ServerClient:
    """One pooled client per server for the whole process, closed at exit.

    Making an HTTP client costs more than a search on loopback, and keep-alive
    connections save a handshake per call; retrievers that are never closed leave no
    socket behind, since the pool is closed when the interpreter exits.
    """
    key = (url.rstrip("/"), api_key, timeout)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            if not _shared:
                atexit.register(_close_shared)
            client = _shared[key] = ServerClient(url, api_key=api_key, timeout=timeout)
        return client


def _forget_shared_after_fork() -> None:
    # A child must not use its parent's sockets: it opens its own on first use.
    _shared.clear()


os.register_at_fork(after_in_child=_forget_shared_after_fork)


def _close_shared() -> None:
    with _shared_lock:
        clients = list(_shared.values())
        _shared.clear()
    for client in clients:
        client.close()


def search_server(
    url: str,
    query: str,
    options: Mapping[str, Any],
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """One hybrid search answered by ``tribrid serve``: its results as JSON objects.

    Each result has ``id``, ``score``, ``payload`` and the per-channel scores and ranks.
    This is the request :class:`~tribrid.retrievers.remote.RemoteRetriever` makes,
    without LangChain: ``tribrid search`` through a server imports neither it nor a model.

    Args:
        url: The server's base URL.
        query: The query text (the server encodes it).
        options: Retriever options (``k``, ``channels``, ``filter`` …); ``None`` values
            are left out, a filter is sent in its JSON form.
        api_key: The server's API key, if it has one.
        timeout: Seconds to wait for the answer.
    """
    body = {name: value for name, value in options.items() if value is not None}
    if "filter" in body:
        body["filter"] = filter_to_json(body["filter"])
    answer = shared_client(url, api_key=api_key, timeout=timeout).post(
        "/v1/search", {"query": query, **body}
    )
    results: list[dict[str, Any]] = answer["results"]
    return results


def answer_json(response: Any, url: str, path: str) -> dict[str, Any]:
    """The JSON object of a server's answer; a refusal or failure as a tribrid error."""
    try:
        data = response.json()
    except ValueError:
        data = {"detail": response.text[:500]}
    if response.status_code < 400:
        if not isinstance(data, dict):
            raise StoreError(f"the tribrid server at {url} answered {path} with no JSON object")
        return data
    detail = data.get("detail") if isinstance(data, dict) else data
    message = f"the tribrid server at {url} refused {path}: {detail}"
    if response.status_code in (401, 403):
        raise StoreError(message + "; check the API key (TRIBRID_SERVE__API_KEY)")
    if response.status_code == 409:
        raise SchemaMismatchError(message)
    if response.status_code < 500:
        raise ValueError(message)
    raise StoreError(message)


class RemoteStore:
    """The store a ``tribrid serve`` process owns, used from another process.

    Every call is one HTTP request to the server, which runs it on its open store;
    writes from any number of processes are serialised there, so it takes any number
    of writers.

    Example:
        ::

            info = discover(settings.store_path)
            store = RemoteStore.open(schema, url=info.url, api_key=info.api_key)
    """

    single_writer: ClassVar[bool] = False

    def __init__(self, client: ServerClient, schema: CollectionSchema) -> None:
        self._client = client
        self._schema = schema

    @classmethod
    def open(
        cls,
        schema: CollectionSchema,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        recreate: bool = False,
    ) -> Self:
        """Connect to the server at ``url`` and check that its collection is ``schema``.

        Raises:
            ValueError: No ``url``.
            StoreError: The server cannot be reached, or ``recreate`` was asked.
            SchemaMismatchError: The server's collection was built otherwise.
        """
        if url is None:
            raise ValueError("the 'remote' store backend needs the server's url")
        if recreate:
            raise StoreError(
                f"cannot empty the store that the tribrid server at {url} owns; run "
                "`tribrid ingest FOLDER --recreate` instead, which builds a new generation "
                "beside it and switches the server to it when complete"
            )
        client = ServerClient(url, api_key=api_key, timeout=timeout)
        try:
            served = schema_from_json(client.get("/v1/store/schema")["schema"])
            problems = [
                f"{name} is {served.fingerprint()[name]!r} on the server but {wanted!r} here"
                for name, wanted in schema.fingerprint().items()
                if served.fingerprint()[name] != wanted
            ]
            if served.name != schema.name:
                problems.insert(0, f"holds collection {served.name!r}, not {schema.name!r}")
            if problems:
                raise SchemaMismatchError(
                    f"the store the tribrid server at {url} owns does not match: "
                    + "; ".join(problems)
                    + "; use the same models and settings as the server, or another data dir"
                )
        except BaseException:
            client.close()
            raise
        return cls(client, served)

    @property
    def schema(self) -> CollectionSchema:
        return self._schema

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._client.url

    def upsert(self, points: Sequence[Point]) -> None:
        for start in range(0, len(points), UPSERT_BATCH):
            batch = points[start : start + UPSERT_BATCH]
            self._client.post("/v1/store/upsert", {"points": [point_to_json(p) for p in batch]})

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        self._client.post("/v1/store/set_payload", {"id": point_id, "payload": dict(payload)})

    def delete(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self._client.post("/v1/store/delete", {"ids": list(point_ids)})

    def delete_by_filter(self, filter: StoreFilter) -> None:
        self._client.post("/v1/store/delete_by_filter", {"filter": filter_to_json(filter)})

    def query(self, query: StoreQuery) -> list[Hit]:
        answer = self._client.post("/v1/store/query", {"query": query_to_json(query)})
        return [hit_from_json(h) for h in answer["hits"]]

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        answer = self._client.post(
            "/v1/store/query_batch", {"queries": [query_to_json(q) for q in queries]}
        )
        return [[hit_from_json(h) for h in hits] for hits in answer["hits"]]

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        answer = self._client.post("/v1/store/retrieve", {"ids": list(point_ids)})
        return [hit_from_json(h) for h in answer["hits"]]

    def count(self, filter: StoreFilter | None = None) -> int:
        return int(
            self._client.post("/v1/store/count", {"filter": filter_to_json(filter)})["count"]
        )

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        answer = self._client.post("/v1/store/ids", {"filter": filter_to_json(filter)})
        return {str(i) for i in answer["ids"]}

    def flush(self) -> None:
        self._client.post("/v1/store/flush", {})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteStore({self._client.url!r}, collection={self._schema.name!r})"


def schema_json(schema: CollectionSchema) -> dict[str, Any]:
    """What ``GET /v1/store/schema`` answers (the server uses it)."""
    return {"schema": schema_to_json(schema)}


__all__ = [
    "SERVER_FILE",
    "RemoteStore",
    "ServerClient",
    "ServerInfo",
    "answer_json",
    "descriptor",
    "discover",
    "remove_descriptor",
    "shared_client",
    "write_descriptor",
]

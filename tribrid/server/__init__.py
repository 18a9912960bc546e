"""``tribrid serve``: one long-lived process that owns a data dir's embedded store.

Qdrant Edge lets one process open a store. The server is that process: it opens the
store and the ledger, loads the models once, and answers over HTTP (loopback by
default) with hybrid search, the store operations other tribrid processes need
(``tribrid ingest``, Celery workers, the watcher, LangChain retrievers and vector
stores write and read through it), sync requests, status, health and Prometheus
metrics. Clients find it by themselves from the store folder
(:func:`tribrid.store.remote.discover`).

* :mod:`~tribrid.server.state` — what the server holds open, and the sync queue;
* :mod:`~tribrid.server.http` — the FastAPI application (routes, limits, the API key);
* :mod:`~tribrid.server.metrics` — the Prometheus metrics;
* :mod:`~tribrid.server.runner` — binding, the descriptor file, start and stop.

Importing this package imports nothing heavy.
"""

"""The one sync core: parse, plan and write, and the foreground pipeline that runs them.

* :mod:`~tribrid.ingestion.base` — the records (``Chunk``, ``ParsedDocument``,
  ``DocumentFailure``, ``FailureKind``);
* :mod:`~tribrid.ingestion.parse` — parse jobs, options and outcomes, and the text path;
  :mod:`~tribrid.ingestion.parse_pool` runs parsing in guarded worker processes;
* :mod:`~tribrid.ingestion.plan` — what a sync does with each listed document;
* :mod:`~tribrid.ingestion.write` — encode, upsert, record, delete stale; failures and
  removals;
* :mod:`~tribrid.ingestion.pipeline` — :class:`SyncPipeline`, the foreground sync.

The background runtime (:mod:`tribrid.background`) calls the same stages from Celery
tasks; see docs/architecture.md.
"""

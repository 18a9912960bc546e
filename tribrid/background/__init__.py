"""The Celery runtime of background ingestion, above the sync core.

* :mod:`~tribrid.background.worker` — the Celery app, its configuration, per-process
  state and the tasks (``celery -A tribrid.background.worker worker``);
* :mod:`~tribrid.background.jobs` — the plain functions the tasks wrap;
* :mod:`~tribrid.background.sinks` — where encoded batches go (the store, or the writer
  queue of a single-writer store);
* :mod:`~tribrid.background.leases` — lease owners;
* :mod:`~tribrid.background.resync` — the periodic resync of celery beat.

Importing this package imports nothing heavy; the Celery app lives in ``worker``.
"""

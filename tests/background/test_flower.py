"""Flower against the worker app: it loads our app, and the workers send task events.

Flower is the optional extra ``tribrid[flower]`` (in ``dev`` too, so this runs in CI).
A live check with a worker was done by hand (see the README): ``celery -A
tribrid.background.worker flower`` lists each task as sent, received, started and
succeeded.
"""

from __future__ import annotations

from pathlib import Path

from tornado.ioloop import IOLoop

from tribrid.background import worker
from tribrid.settings import Settings


def test_workers_send_the_events_flower_reads(tmp_path: Path) -> None:
    config = worker.celery_config(Settings(data_dir=tmp_path))
    assert config["worker_send_task_events"]  # `-E`: started, succeeded, failed, retried
    assert config["task_send_sent_event"]  # clients announce what they queue
    assert config["event_serializer"] == "json"
    assert worker.app.conf.worker_send_task_events and worker.app.conf.task_send_sent_event


def test_flower_builds_on_the_worker_app() -> None:
    from flower.app import Flower
    from flower.options import default_options

    loop = IOLoop(make_current=False)
    flower = Flower(capp=worker.app, options=default_options, io_loop=loop)
    try:
        assert flower.capp is worker.app
        assert flower.options.enable_events
        # Flower's event consumer and its task list use our app and its task names.
        assert flower.events.capp is worker.app
        assert {worker.SYNC_SOURCE, worker.PROCESS_DOCUMENTS} <= set(flower.capp.tasks)
    finally:
        flower.executor.shutdown(wait=True)
        loop.close(all_fds=True)

"""A process that forks while another of its threads uses the ledger (a Celery worker's
main process: the reaper and the metrics scrapes run beside a pool that forks children).

SQLite's lock bookkeeping is per process and in memory; a child forked while a
connection is open inherits the bookkeeping without the locks. Without ``no_fork`` the
children below fail with "database is locked" or hang (and a ledger shared with other
processes can be damaged); with it every child reads and writes normally.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tribrid.ledger.database import Database, no_fork

CHILDREN = 12
WRITES = 20
CHILD_DEADLINE_S = 15


def _write(db: Database, value: int) -> None:
    with db.write("add a row") as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS marks (v INTEGER)"))
        session.execute(text("INSERT INTO marks VALUES (:v)"), {"v": value})
    with db.read("count the rows") as session:
        session.execute(text("SELECT count(*) FROM marks")).scalar()


def _child(url: str) -> int:
    try:
        with Database(url) as db:
            for _ in range(WRITES):
                _write(db, 2)
    except Exception as e:  # reported through the exit status
        os.write(2, f"child failed: {e}\n".encode())
        return 1
    return 0


@pytest.mark.slow
def test_children_forked_while_a_thread_uses_the_ledger_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    stop = threading.Event()
    errors: list[BaseException] = []
    passes = 0

    def churn() -> None:
        nonlocal passes
        while not stop.is_set():
            try:
                with no_fork(), Database(url) as db:
                    _write(db, 1)
                passes += 1
            except BaseException as e:
                errors.append(e)
                return

    thread = threading.Thread(target=churn)
    thread.start()
    statuses = []
    try:
        for _ in range(CHILDREN):
            pid = os.fork()
            if pid == 0:
                # Without the guard a child can also hang on a lock its parent's thread
                # held at the fork: the alarm turns that into a failure, not a stuck suite.
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(CHILD_DEADLINE_S)
                os._exit(_child(url))
            statuses.append(os.waitpid(pid, 0)[1])
            if statuses[-1]:
                break  # one broken child is the verdict
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert passes > 0  # the thread really used the ledger while the children forked
    assert statuses == [0] * CHILDREN
    with Database(url) as db, db.read("count") as session:
        rows = session.execute(text("SELECT count(*) FROM marks WHERE v = 2")).scalar()
    assert rows == CHILDREN * WRITES

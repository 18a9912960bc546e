"""The background run queue in the SQL ledger: queued documents, leases and progress.

A background run (``tribrid ingest --background``, ``tribrid watch --background``, a
periodic resync) lists its source once and queues the documents to (re-)index as
``pending`` for the run. Workers lease pending documents, index them, and add what
they did to the run's counts; after each batch they ask the ledger to complete the run,
which succeeds once the listing is done and nothing is pending. A lease expires, so a
document whose worker died goes back to the queue; a per-document count of parses
that began and never ended lets the caller give up on a file that kills its workers.

This is the role the :class:`~tribrid.ledger.base.RunQueue` protocol describes. It
works on the rows that :mod:`tribrid.ledger.bookkeeping` records.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from tribrid.errors import LedgerError
from tribrid.ledger.base import DocumentStatus, RunCounts, RunProgress, RunStatus, WorkItem
from tribrid.ledger.bookkeeping import document_by_id, lock_document, to_run, truncate
from tribrid.ledger.database import DatabaseRole, batches, rowcount
from tribrid.ledger.models import DocumentRow, RunRow, SourceRow, utcnow


class SqlRunQueue(DatabaseRole):
    """The queue of a background run: which documents wait, who holds them, how far it got.

    Implements :class:`~tribrid.ledger.base.RunQueue`. Every method runs in its own
    transaction, and every claim is one conditional ``UPDATE``, so any number of
    workers in any number of processes can share the queue.

    Args:
        db: The open database holding the queue.
    """

    def queue_documents(
        self, source_id: int, run_id: int, documents: Sequence[tuple[str, str, int, int]]
    ) -> list[int]:
        """Mark documents as work to do for ``run_id``, in one transaction.

        A new document gets a ``pending`` row; a known one becomes ``pending`` and keeps
        its chunks (its points stay searchable until a worker replaces them) and what was
        recorded of its file until a worker records what it parsed.

        A document that ``run_id`` queued already and that is no longer pending (a worker
        indexed it, or recorded it failed or deleted) is left alone: a listing delivered
        twice, the second copy running while workers already finish the first one's
        documents, must not send them round again.

        Args:
            documents: ``(key, path, size, mtime_ns)`` of every document to queue.

        Returns:
            The row ids of the documents now pending for the run, in the order given.
        """
        ids: list[int] = []
        with self._db.write(f"queue {len(documents)} documents for run {run_id}") as session:
            for key, path, size, mtime_ns in documents:
                document = lock_document(
                    self._db, session, source_id, key, path=path, size=size, mtime_ns=mtime_ns
                )
                if document.run_id == run_id and document.status != DocumentStatus.PENDING:
                    continue  # this run has finished it already
                document.status = DocumentStatus.PENDING.value
                document.run_id = run_id
                document.updated_at = utcnow()
                ids.append(document.id)
        return ids

    def work_items(self, document_ids: Sequence[int]) -> list[WorkItem]:
        """The current state of documents, for a task that was handed their ids.

        Unknown ids are left out; the rest come back in the order given.
        """
        found: dict[int, WorkItem] = {}
        with self._db.read("read documents to work on") as session:
            for batch in batches(list(dict.fromkeys(document_ids))):
                rows = session.execute(
                    select(DocumentRow, SourceRow.key, SourceRow.location)
                    .join(SourceRow)
                    .where(DocumentRow.id.in_(batch))
                )
                for document, source_key, location in rows:
                    found[document.id] = WorkItem(
                        id=document.id,
                        source_id=document.source_id,
                        source_key=source_key,
                        source_location=location,
                        key=document.key,
                        path=document.path,
                        status=DocumentStatus(document.status),
                        size=document.size,
                        mtime_ns=document.mtime_ns,
                        run_id=document.run_id,
                        lease_owner=document.lease_owner,
                        lease_expires_at=document.lease_expires_at,
                        open_attempts=document.open_attempts,
                    )
        return [found[i] for i in document_ids if i in found]

    def leased_pending(self) -> list[WorkItem]:
        """Pending documents of running runs that a worker holds a lease on.

        The reaper (:func:`tribrid.background.jobs.reap`) reads them to find leases
        whose holder died.
        """
        with self._db.read("read the leased pending documents") as session:
            ids = list(
                session.scalars(
                    select(DocumentRow.id)
                    .join(RunRow, RunRow.id == DocumentRow.run_id)
                    .where(
                        DocumentRow.status == DocumentStatus.PENDING.value,
                        DocumentRow.lease_owner.is_not(None),
                        RunRow.status == RunStatus.RUNNING.value,
                    )
                )
            )
        return self.work_items(ids)

    def claim_stranded(self, quiet_s: float) -> list[int]:
        """Queued documents whose task message was lost: claim them to be queued again.

        A running, fully listed run whose pending documents nobody holds and in which
        nothing has happened for ``quiet_s`` seconds has lost its messages (a broker
        restarted without persistence, a queue was purged): waiting longer brings
        nothing. The documents claimed are marked as touched now, so the next claim on
        the same run waits another ``quiet_s``; queuing them twice is harmless (a task
        skips a document that is done or held), only wasteful, and this bounds it.

        Returns:
            Ids of the documents to queue again.
        """
        now = utcnow()
        before = now - timedelta(seconds=quiet_s)
        with self._db.write("claim documents whose task messages were lost") as session:
            # Only the documents of running runs are looked at (the run_id index), not
            # the whole table: every worker's reaper asks this every few seconds.
            listed = select(RunRow.id).where(
                RunRow.status == RunStatus.RUNNING.value,
                RunRow.listed_at.is_not(None),
                RunRow.listed_at < before,
            )
            recent = select(DocumentRow.run_id).where(
                DocumentRow.run_id.in_(listed), DocumentRow.updated_at >= before
            )
            held = select(DocumentRow.run_id).where(
                DocumentRow.run_id.in_(listed),
                DocumentRow.status == DocumentStatus.PENDING.value,
                DocumentRow.lease_owner.is_not(None),
                DocumentRow.lease_expires_at >= now,
            )
            quiet_runs = listed.where(RunRow.id.not_in(recent), RunRow.id.not_in(held))
            ids = list(
                session.scalars(
                    select(DocumentRow.id).where(
                        DocumentRow.status == DocumentStatus.PENDING.value,
                        DocumentRow.run_id.in_(quiet_runs),
                        or_(
                            DocumentRow.lease_owner.is_(None),
                            DocumentRow.lease_expires_at < now,
                        ),
                    )
                )
            )
            for batch in batches(ids):
                session.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id.in_(batch))
                    .values(updated_at=now)
                    .execution_options(synchronize_session=False)
                )
        return ids

    def acquire_leases(
        self,
        document_ids: Sequence[int],
        owner: str,
        ttl_s: float,
        *,
        take_over: Collection[str] = (),
    ) -> list[int]:
        """Claim pending documents for ``owner`` until ``ttl_s`` from now.

        Each claim is one conditional ``UPDATE``: it succeeds only if the document is
        pending and its lease is free, expired, already ``owner``'s, or held by one of
        ``take_over`` (owners known to be dead). Two workers can never both succeed.

        Returns:
            The ids claimed, in the order given.
        """
        if not owner:
            raise ValueError("a lease needs an owner")
        now = utcnow()
        expires = now + timedelta(seconds=ttl_s)
        free = or_(
            DocumentRow.lease_owner.is_(None),
            DocumentRow.lease_expires_at < now,
            DocumentRow.lease_owner == owner,
        )
        if take_over:
            free = or_(free, DocumentRow.lease_owner.in_(list(take_over)))
        acquired: list[int] = []
        with self._db.write(f"lease {len(document_ids)} documents") as session:
            for document_id in document_ids:
                result = session.execute(
                    update(DocumentRow)
                    .where(
                        DocumentRow.id == document_id,
                        DocumentRow.status == DocumentStatus.PENDING.value,
                        free,
                    )
                    .values(lease_owner=owner, lease_expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
                if rowcount(result) == 1:
                    acquired.append(document_id)
        return acquired

    def renew_leases(self, document_ids: Sequence[int], owner: str, ttl_s: float) -> int:
        """Extend ``owner``'s leases to ``ttl_s`` from now; returns how many it still holds."""
        expires = utcnow() + timedelta(seconds=ttl_s)
        with self._db.write("renew leases") as session:
            renewed = 0
            for batch in batches(list(document_ids)):
                result = session.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id.in_(batch), DocumentRow.lease_owner == owner)
                    .values(lease_expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
                renewed += rowcount(result)
            return renewed

    def release_leases(self, document_ids: Sequence[int], owner: str) -> None:
        """Give up ``owner``'s leases on these documents (others' leases are left alone)."""
        with self._db.write("release leases") as session:
            for batch in batches(list(document_ids)):
                session.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id.in_(batch), DocumentRow.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )

    def begin_attempt(self, document_id: int) -> int:
        """Record that a parse of the document begins; returns the unfinished attempts.

        Called before parsing and paired with :meth:`end_attempt`: a worker that dies on
        the file leaves the count raised, so the count says how many workers it killed.
        """
        with self._db.write(f"begin an attempt on document {document_id}") as session:
            document = document_by_id(self._db, session, document_id)
            document.open_attempts += 1
            return document.open_attempts

    def end_attempt(self, document_id: int) -> None:
        """Record that the parse of the document finished, whatever its outcome."""
        with self._db.write(f"end an attempt on document {document_id}") as session:
            session.execute(
                update(DocumentRow)
                .where(DocumentRow.id == document_id)
                .values(open_attempts=0)
                .execution_options(synchronize_session=False)
            )

    def add_run_counts(self, run_id: int, counts: RunCounts, *, listed: bool = False) -> None:
        """Add to a run's counts (several workers do, concurrently).

        Args:
            listed: Also record that the listing is done and every document is queued.
                Only the first listing of a run counts: a second copy of it (a message
                delivered twice) adds nothing.
        """
        values: dict[str, Any] = {
            name: getattr(RunRow, name) + value for name, value in counts.as_dict().items() if value
        }
        if listed:
            values["listed_at"] = utcnow()
        if not values:
            return
        statement = update(RunRow).where(RunRow.id == run_id)
        if listed:
            statement = statement.where(RunRow.listed_at.is_(None))
        with self._db.write(f"count the work of run {run_id}") as session:
            session.execute(statement.values(**values).execution_options(synchronize_session=False))

    def complete_run_if_done(self, run_id: int) -> bool:
        """Complete a background run whose listing is done and has nothing pending.

        Leases left on its finished documents are cleared. Safe to call from every
        worker after every batch: exactly one call completes the run.

        Returns:
            Whether this call completed the run.
        """
        with self._db.write(f"complete run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status != RunStatus.RUNNING.value or run.listed_at is None:
                return False
            pending = session.execute(
                select(func.count())
                .select_from(DocumentRow)
                .where(
                    DocumentRow.run_id == run_id,
                    DocumentRow.status == DocumentStatus.PENDING.value,
                )
            ).scalar_one()
            if pending:
                return False
            session.execute(
                update(DocumentRow)
                .where(DocumentRow.run_id == run_id, DocumentRow.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            now = utcnow()
            run.status = RunStatus.COMPLETED.value
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()
            return True

    def fail_run(self, run_id: int, error: str) -> None:
        """Record that a background run stopped (its listing failed); counts are kept."""
        with self._db.write(f"fail run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status != RunStatus.RUNNING.value:
                return
            now = utcnow()
            run.status = RunStatus.FAILED.value
            run.error = truncate(error)
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()

    def run_progress(self, run_id: int) -> RunProgress:
        """Where a run stands: queued, in progress, indexed, failed, from one snapshot.

        Raises:
            LedgerError: There is no such run.
        """
        now = utcnow()
        with self._db.read(f"read the progress of run {run_id}") as session:
            row = session.execute(
                select(RunRow, SourceRow.key).join(SourceRow).where(RunRow.id == run_id)
            ).one_or_none()
            if row is None:
                raise LedgerError(
                    f"ledger {self._db.url} has no run {run_id}; "
                    "`tribrid status` lists the last run"
                )
            run, source_key = row
            leased = and_(DocumentRow.lease_owner.is_not(None), DocumentRow.lease_expires_at >= now)
            by_state: dict[tuple[str, bool], int] = {}
            for status, is_leased, count in session.execute(
                select(DocumentRow.status, leased, func.count())
                .where(DocumentRow.run_id == run_id)
                .group_by(DocumentRow.status, leased)
            ):
                by_state[(status, bool(is_leased))] = count

            def total(status: DocumentStatus) -> int:
                return sum(v for (s, _), v in by_state.items() if s == status.value)

            owners = sorted(
                owner
                for owner in session.scalars(
                    select(DocumentRow.lease_owner)
                    .where(
                        DocumentRow.run_id == run_id,
                        DocumentRow.status == DocumentStatus.PENDING.value,
                        DocumentRow.lease_owner.is_not(None),
                    )
                    .distinct()
                )
                if owner is not None
            )
            last_change = session.scalar(
                select(func.max(DocumentRow.updated_at)).where(DocumentRow.run_id == run_id)
            )
            times = [t for t in (run.started_at, run.listed_at, last_change) if t is not None]

            return RunProgress(
                run=to_run(run, source_key),
                queued=by_state.get((DocumentStatus.PENDING.value, False), 0),
                in_progress=by_state.get((DocumentStatus.PENDING.value, True), 0),
                indexed=total(DocumentStatus.INDEXED),
                failed=total(DocumentStatus.FAILED),
                deleted=total(DocumentStatus.DELETED),
                listed=run.listed_at is not None,
                lease_owners=tuple(owners),
                last_activity=max(times) if times else None,
            )


__all__ = ["SqlRunQueue"]

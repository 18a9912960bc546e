"""Rebuilding an index as a new generation, while the live one keeps answering.

:func:`rebuild` syncs every source into a generation being built beside the live one
(:mod:`tribrid.store.generations`; an alias switch on a Qdrant server), then makes it
live in one step. Searches answer from the old generation until then; if anything
fails the new generation is dropped and the old one stays live.

The ledger follows the documents one at a time: each is recorded with the chunks and
the generation it was written to. A rebuild that fails leaves some documents recorded
in the dropped generation; the next sync of the live one indexes those again (their
points there are then orphans, which it removes), so the ledger and the live store
agree again after one sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tribrid.connectors.base import Connector
from tribrid.ingestion.pipeline import ProgressListener, SyncPipeline, SyncReport
from tribrid.store.base import VectorStore
from tribrid.store.generations import StagedGeneration

log = logging.getLogger(__name__)

#: Builds the sync of one generation's store (the pipeline is told to trust only the
#: points already in that store: it starts empty).
PipelineFor = Callable[[VectorStore], SyncPipeline]


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did.

    Attributes:
        generation: The generation that is live now.
        reports: One sync report per source, in the order synced.
        duration_s: Wall-clock seconds, switch included.
    """

    generation: int
    reports: tuple[SyncReport, ...]
    duration_s: float


def rebuild(
    staged: StagedGeneration,
    sources: Sequence[Connector],
    pipeline_for: PipelineFor,
    *,
    progress: ProgressListener | None = None,
) -> RebuildReport:
    """Sync ``sources`` into the generation ``staged``, then make it live.

    Args:
        staged: The new generation, empty (from ``begin_generation``).
        sources: Every source the index holds: a source left out would vanish from
            search at the switch.
        pipeline_for: Builds the sync pipeline writing to the generation's store.
        progress: Receives progress as the sources sync.

    Raises:
        Whatever a sync raises; the new generation is dropped first and the live one
        keeps answering.
    """
    started = time.monotonic()
    reports: list[SyncReport] = []
    try:
        pipeline = pipeline_for(staged.store)
        for connector in sources:
            reports.append(pipeline.sync(connector, progress=progress))
        staged.publish()
    except BaseException:
        log.warning("rebuild of generation %d failed; the live generation stays", staged.number)
        staged.abandon()
        raise
    log.info("generation %d is live", staged.number)
    return RebuildReport(
        generation=staged.number,
        reports=tuple(reports),
        duration_s=time.monotonic() - started,
    )


__all__ = ["PipelineFor", "RebuildReport", "rebuild"]

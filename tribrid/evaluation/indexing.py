"""Index a BEIR dataset's corpus through the normal pipeline (cached by the ledger)."""

from __future__ import annotations

import os

from tribrid import factory
from tribrid.connectors.beir import BeirCorpusConnector
from tribrid.encoders import EncoderSet
from tribrid.ingestion.parse import TextChunker
from tribrid.ingestion.pipeline import ProgressListener, SyncReport
from tribrid.settings import Settings


def index_dataset(
    dataset: str | os.PathLike[str],
    settings: Settings,
    *,
    encoders: EncoderSet | None = None,
    progress: ProgressListener | None = None,
) -> SyncReport:
    """Sync the dataset's ``corpus.jsonl`` into the index of ``settings``.

    Records go through :class:`~tribrid.ingestion.pipeline.SyncPipeline` like files do,
    chunked by :class:`~tribrid.ingestion.parse.TextChunker` (no parsing). The ledger
    remembers every record, so a second call costs one pass over the corpus file and
    encodes nothing; a changed record is re-encoded alone.

    Args:
        dataset: The dataset folder (holding ``corpus.jsonl``).
        settings: Where the index lives (``data_dir``) and which models build it.
        encoders: Encoders to use (default: built from ``settings``); pass them to
            reuse models already loaded.
        progress: Receives progress events.

    Returns:
        What the sync did.
    """
    connector = BeirCorpusConnector(dataset)
    options = factory.parse_options(settings)
    encoders = encoders or factory.build_encoders(settings)
    ledger = factory.build_ledger(settings)
    try:
        store = factory.build_store(settings, encoders)
        try:
            pipeline = factory.sync_pipeline(
                settings,
                ledger=ledger,
                store=store,
                encoders=encoders,
                parsers=lambda: TextChunker(options),
            )
            return pipeline.sync(connector, progress=progress)
        finally:
            store.close()
    finally:
        ledger.close()

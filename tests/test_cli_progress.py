"""The live progress of `tribrid ingest`: chunks/s, and an ETA once the listing is done."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tribrid.cli import _LiveProgress


class _Live:
    def update(self, renderable: Any) -> None:
        self.last = renderable


def _text(progress: _LiveProgress) -> str:
    console = Console(width=120, record=True)
    console.print(progress.render())
    return console.export_text()


def test_eta_appears_once_the_listing_is_done_and_counts_down() -> None:
    progress = _LiveProgress(_Live())  # type: ignore[arg-type]
    progress.document_done("old.txt", "unchanged", 0)
    assert "to parse" not in _text(progress)

    progress.listing_done(4)
    assert "0 of 4" not in _text(progress) and "4 of 4  (ETA –)" in _text(progress)
    progress.chunks_embedded(10)
    progress.document_done("a.txt", "indexed", 6)
    progress.document_done("b.txt", "failed", 0)
    text = _text(progress)
    assert "2 of 4  (ETA " in text and "ETA –" not in text
    assert "chunks/s" in text

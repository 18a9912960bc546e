"""Compressed files and archives through the whole foreground sync.

Real parsing (in this process, or in the guarded parse workers), a real Qdrant Edge
store and a real SQLite ledger; the models are the fakes (with the real BM25).
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import fake_encoders
from tests.support.connectors import (
    compressed,
    files_below,
    hostile_set,
    write_tar,
    write_zip,
    zip_bomb,
    zip_bytes,
)
from tests.support.ingestion import FolderIndex
from tribrid.factory import collection_schema
from tribrid.ingestion.parse import ParseOptions
from tribrid.ingestion.parse_pool import ParsePool
from tribrid.ledger import SqlLedger
from tribrid.ledger.base import DocumentStatus
from tribrid.settings import Settings
from tribrid.store import open_store

# One distinct word per document, so a BM25 search names the document that holds it.
FIVE = {
    "notes/quokka.md": "# Quokka\n\nThe quokka smiles at every visitor on Rottnest island.\n",
    "pages/heron.html": (
        "<html><head><title>Heron</title></head><body><h1>Heron</h1>"
        "<p>A grey heron waits motionless in the shallow estuary.</p></body></html>"
    ),
    "logs/walrus.txt": "The walrus hauled itself onto the ice floe at noon.\n",
    "tables/narwhal.csv": "animal,habitat\nnarwhal,arctic fjords\nbeluga,arctic estuaries\n",
    "guide/pangolin.rst": "Pangolin\n========\n\nThe pangolin rolls into a scaly ball.\n",
}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    return root


@pytest.fixture()
def index(tmp_path: Path, folder: Path) -> Iterator[FolderIndex]:
    encoders = fake_encoders()
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = open_store("edge", collection_schema(Settings(), encoders), path=tmp_path / "store")
    try:
        yield FolderIndex(folder, ledger, store, encoders)
    finally:
        store.close()
        ledger.close()


@pytest.mark.slow  # real parsing loads unstructured and its spaCy model
def test_compressed_texts_markdown_and_html_are_found_by_search(
    index: FolderIndex, folder: Path
) -> None:
    compressed(folder / "changelog.gz", "The marmot package was rebuilt against libfoo.\n")
    compressed(folder / "README.bz2", "Configure the ocelot daemon before its first start.\n")
    compressed(folder / "NEWS.Debian.xz", "The capybara service now listens on port 8080.\n")
    compressed(folder / "guide.md.gz", "# Guide\n\nThe axolotl regrows its limbs.\n")
    compressed(folder / "notes.zst", "The okapi browses in the rain forest.\n")
    (folder / "plain.md").write_text("# Plain\n\nThe tapir snorkels with its trunk.\n")
    (folder / "page.html").write_text("<html><body><p>The gecko licks its eyes.</p></body></html>")

    report = index.sync()

    assert report.counts.failed == 0, report.failures
    assert report.counts.indexed == 7
    for word, key in [
        ("marmot", "changelog.gz"),
        ("ocelot", "README.bz2"),
        ("capybara", "NEWS.Debian.xz"),
        ("axolotl", "guide.md.gz"),
        ("okapi", "notes.zst"),
        ("tapir", "plain.md"),
        ("gecko", "page.html"),
    ]:
        assert index.paths(word, k=1) == [key], word
    hits = index.store.retrieve(list(index.store.ids()))
    markdown = next(h for h in hits if h.payload["document_key"] == "guide.md.gz")
    assert "axolotl" in markdown.payload["text"]
    metadata = markdown.payload.get("metadata", markdown.payload)
    assert metadata["compression"] == "gzip" and metadata["contained"] == "guide.md"
    assert metadata["filetype"] == "text/markdown"


@pytest.mark.slow  # real parsing loads unstructured and its spaCy model
def test_a_zip_of_five_documents_gives_five_searchable_documents_removed_with_it(
    index: FolderIndex, folder: Path
) -> None:
    archive = write_zip(folder / "animals.zip", FIVE)

    first = index.sync()

    assert first.counts.failed == 0, first.failures
    members = {k: s for k, s in index.states().items() if k.startswith("animals.zip!/")}
    assert sorted(members) == sorted(f"animals.zip!/{name}" for name in FIVE)
    assert all(s.status == DocumentStatus.INDEXED and s.chunk_count > 0 for s in members.values())
    assert "animals.zip" not in index.states()  # an archive that reads has no row of its own
    for word, name in [
        ("quokka", "notes/quokka.md"),
        ("heron", "pages/heron.html"),
        ("walrus", "logs/walrus.txt"),
        ("narwhal", "tables/narwhal.csv"),
        ("pangolin", "guide/pangolin.rst"),
    ]:
        assert index.paths(word, k=1) == [f"animals.zip!/{name}"], word

    # Unchanged: the archive is not even opened.
    assert index.sync().counts.unchanged == 5

    # One member changes: only its new chunk is encoded, the others are only touched.
    before = {k: s.chunk_count for k, s in members.items()}
    write_zip(archive, {**FIVE, "logs/walrus.txt": "A bearded seal dozed beside the walrus.\n"})
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = index.sync()
    assert changed.counts.indexed == 1 and changed.counts.unchanged == 4, changed.failures
    assert changed.counts.chunks_embedded == 1 and changed.counts.chunks_deleted == 1
    assert index.paths("bearded seal", k=1) == ["animals.zip!/logs/walrus.txt"]
    assert {k: s.chunk_count for k, s in index.states().items()} == before

    # Deleted: every member's points go with it.
    archive.unlink()
    gone = index.sync()
    assert gone.counts.deleted == 5
    assert index.store.count() == 0 and index.states() == {}


@pytest.mark.slow  # real parsing loads unstructured and its spaCy model
def test_members_of_nested_archives_and_of_tarballs_are_documents(
    index: FolderIndex, folder: Path
) -> None:
    inner = zip_bytes({"deep/lynx.md": "# Lynx\n\nThe lynx stalks the snowshoe hare.\n"})
    write_zip(folder / "outer.zip", {"inner.zip": inner, "top.txt": "The ibex climbs the dam."})
    write_tar(folder / "bundle.tar.xz", {"a/yak.md": "# Yak\n\nThe yak carries salt."}, mode="w:xz")
    write_zip(
        folder / "mixed.zip", {"tool.exe": b"MZ\x90\x00" + bytes(200), "ok.md": "# Ok\n\nemu"}
    )

    report = index.sync()

    assert index.paths("lynx snowshoe", k=1) == ["outer.zip!/inner.zip!/deep/lynx.md"]
    assert index.paths("ibex", k=1) == ["outer.zip!/top.txt"]
    assert index.paths("yak salt", k=1) == ["bundle.tar.xz!/a/yak.md"]
    failures = {f.key: f.kind for f in report.failures}
    assert failures == {"mixed.zip!/tool.exe": "unsupported_type"}  # one member fails alone
    assert index.states()["mixed.zip!/ok.md"].status == DocumentStatus.INDEXED


def _temp_entries() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("tribrid-")}


@pytest.mark.slow
def test_hostile_archives_fail_with_reasons_quickly_in_bounded_memory_writing_nothing(
    index: FolderIndex, folder: Path, tmp_path: Path
) -> None:
    expected = hostile_set(folder)
    outside = files_below(tmp_path.parent)
    temp_before = _temp_entries()
    tracemalloc.start()
    started = time.monotonic()
    try:
        report = index.sync()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    states = index.states()
    for key, kind in expected.items():
        assert states[key].status == DocumentStatus.FAILED, key
        assert states[key].error_kind == kind, (key, states[key])
    messages = {f.key: f.message for f in report.failures}
    assert "TRIBRID_ARCHIVES__MAX_RATIO" in messages["bomb.zip"]
    assert "TRIBRID_ARCHIVES__MAX_RATIO" in messages["bomb.txt.gz"]
    assert "TRIBRID_ARCHIVES__MAX_DEPTH" in messages["deep.zip"]
    assert "../escape-probe.txt" in messages["traversal.zip"]
    assert "/etc/passwd" in messages["links.tar"] and "device" in messages["links.tar"]
    # Each refused member has its own row and reason, and no key ever holds `..`.
    assert messages["traversal.zip!/..%2Fescape-probe.txt"].endswith("it is never written or read")
    assert states["links.tar!/null"].error_kind == "unsafe_member"
    assert not any(".." in key.split("/") for key in states)
    assert index.store.count() == 0

    assert elapsed < ParseOptions().timeout_s and elapsed < 10, elapsed
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    # Nothing was written: not beside the folder, not above it, not in the temp dir.
    created = files_below(tmp_path.parent) - outside
    index_files = {
        p for p in created if p.is_relative_to(tmp_path / "store") or p.name.startswith("ledger.db")
    }
    assert created == index_files, sorted(created - index_files)
    assert _temp_entries() <= temp_before
    assert not list(tmp_path.parent.rglob("*escape-probe*"))
    assert not Path("/tmp/absolute-escape-probe.txt").exists()


def test_an_archive_that_becomes_a_bomb_loses_its_members(index: FolderIndex, folder: Path) -> None:
    archive = write_zip(folder / "box.zip", {"a.txt.gz": b"not gzip at all"})
    first = index.sync()
    assert {f.key for f in first.failures} == {"box.zip!/a.txt.gz"}

    zip_bomb(archive)
    second = index.sync()

    assert second.counts.deleted == 1 and second.counts.failed == 1
    states = index.states()
    assert states["box.zip"].error_kind == "too_large"
    assert not any(key.startswith("box.zip!/") for key in states)
    assert index.sync().counts.failed == 0  # unchanged failures are not read again


@pytest.mark.slow  # starts the guarded parse workers
def test_hostile_files_fail_in_the_parse_workers_within_their_limits(
    tmp_path: Path, folder: Path
) -> None:
    (folder / "ok.md").write_text("# Ok\n\nThe dingo howls.\n")
    settings = Settings()
    encoders = fake_encoders()
    ledger = SqlLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    store = open_store("edge", collection_schema(settings, encoders), path=tmp_path / "store")
    try:
        with ParsePool.from_settings(
            settings.parsing, settings.chunking, settings.archives
        ) as pool:
            index = FolderIndex(folder, ledger, store, encoders, parser=pool)
            index.sync()
            baseline_mb = pool.peak_worker_rss_mb  # a worker that parsed a small file
            expected = hostile_set(folder)
            started = time.monotonic()
            report = index.sync()
            elapsed = time.monotonic() - started
            states = index.states()
            peak_mb = pool.peak_worker_rss_mb
    finally:
        store.close()
        ledger.close()
    assert {k: states[k].error_kind for k in expected} == expected
    assert states["ok.md"].status == DocumentStatus.INDEXED, report.failures
    assert elapsed < settings.parsing.timeout_s
    # The gzip bomb was read by a worker: a few MB more than a small file, not gigabytes.
    assert peak_mb - baseline_mb < 64, (baseline_mb, peak_mb)

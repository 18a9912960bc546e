"""Connectors by name: the registry behind ``tribrid ingest PATH --connector NAME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tribrid import factory
from tribrid.connectors import (
    CONNECTORS,
    BeirCorpusConnector,
    ConnectorOptions,
    ListedItem,
    LocalFolderConnector,
    TextDocument,
    open_connector,
)
from tribrid.settings import ConnectorSettings, Settings

TRIBRID = Path(sys.executable).with_name("tribrid")


class NotesConnector:
    """A connector a user adds: one text record per line of a notes file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_location(cls, location: str, options: ConnectorOptions) -> NotesConnector:
        return cls(Path(location))

    @property
    def source_key(self) -> str:
        return f"notes:{self.path}"

    def list_documents(self) -> Iterator[ListedItem]:
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            yield TextDocument(
                self.source_key, f"line-{number}", self.path, len(line), 0, text=line
            )


def test_a_registered_class_is_opened_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("otters eat fish\nquokkas smile\n")
    monkeypatch.setitem(CONNECTORS, "notes", NotesConnector)
    connector = factory.build_connector(Settings(data_dir=tmp_path), notes, connector="notes")
    assert isinstance(connector, NotesConnector)
    assert [item.key for item in connector.list_documents()] == ["line-1", "line-2"]


def test_local_folders_get_the_connector_settings(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# a")
    (tmp_path / "b.txt").write_text("b")
    settings = Settings(data_dir=tmp_path / "data", connector=ConnectorSettings(include=["*.md"]))
    connector = factory.build_connector(settings, tmp_path)
    assert isinstance(connector, LocalFolderConnector)
    assert [item.key for item in connector.list_documents()] == ["a.md"]
    assert isinstance(open_connector("beir", str(_dataset(tmp_path))), BeirCorpusConnector)


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown connector 'nope'; valid names: \['beir', 'local'\]"
    ):
        open_connector("nope", "/tmp")


def test_the_cli_refuses_an_unknown_connector(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TRIBRID), "ingest", str(tmp_path), "--connector", "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, "TRIBRID_DATA_DIR": str(tmp_path / "data")},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown connector 'nope'; valid names: beir, local" in result.stderr


def _dataset(root: Path) -> Path:
    folder = root / "dataset"
    folder.mkdir()
    rows = [
        {"_id": "otters", "title": "Otters", "text": "River otters eat fish and crayfish."},
        {"_id": "quokkas", "title": "Quokkas", "text": "Quokkas live on Rottnest Island."},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.slow
def test_tribrid_ingest_reads_a_beir_dataset_through_the_registry(tmp_path: Path) -> None:
    env = {**os.environ, "TRIBRID_DATA_DIR": str(tmp_path / "data")}
    dataset = _dataset(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TRIBRID), *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    ingested = run("ingest", str(dataset), "--connector", "beir", "--json")
    assert ingested.returncode == 0, ingested.stderr
    counts = json.loads(ingested.stdout)["counts"]
    assert (counts["indexed"], counts["failed"]) == (2, 0)
    found = run("search", "Rottnest Island", "--mode", "bm25", "-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    assert [hit["path"] for hit in json.loads(found.stdout)] == ["quokkas"]

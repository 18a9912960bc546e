"""LocalFolderConnector: streaming, filters, hidden folders, symlinks and unreadable files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tribrid.connectors import ListingFailure, LocalFolderConnector, SourceDocument
from tribrid.connectors.base import file_sha256
from tribrid.errors import ConnectorError


def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _split(
    connector: LocalFolderConnector,
) -> tuple[dict[str, SourceDocument], dict[str, ListingFailure]]:
    docs: dict[str, SourceDocument] = {}
    failures: dict[str, ListingFailure] = {}
    for item in connector.list_documents():
        if isinstance(item, SourceDocument):
            docs[item.key] = item
        else:
            failures[item.key] = item
    return docs, failures


def test_lists_nested_files_with_relative_keys_and_stats(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "alpha")
    _write(tmp_path / "sub" / "deeper" / "b.md", "# beta")
    docs, failures = _split(LocalFolderConnector(tmp_path))
    assert failures == {}
    assert set(docs) == {"a.txt", "sub/deeper/b.md"}
    b = docs["sub/deeper/b.md"]
    assert b.size == len("# beta")
    assert b.mtime_ns == (tmp_path / "sub" / "deeper" / "b.md").stat().st_mtime_ns
    assert b.extension == "md"
    assert b.content_hash == file_sha256(tmp_path / "sub" / "deeper" / "b.md")


def test_source_key_is_stable_and_names_the_root(tmp_path: Path) -> None:
    first = LocalFolderConnector(tmp_path)
    second = LocalFolderConnector(str(tmp_path) + "/")
    assert first.source_key == second.source_key == f"local:{tmp_path.resolve().as_posix()}"


def test_skips_hidden_and_vcs_folders_by_default(tmp_path: Path) -> None:
    _write(tmp_path / ".git" / "config")
    _write(tmp_path / ".hidden.txt")
    _write(tmp_path / "node_modules" / "x.js")
    _write(tmp_path / "visible.txt")
    docs, _ = _split(LocalFolderConnector(tmp_path))
    assert set(docs) == {"visible.txt"}
    docs, _ = _split(LocalFolderConnector(tmp_path, include_hidden=True))
    assert {".git/config", ".hidden.txt", "visible.txt"} <= set(docs)


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    for name in ("a.pdf", "b.md", "c.txt", "drafts/d.md"):
        _write(tmp_path / name)
    docs, _ = _split(LocalFolderConnector(tmp_path, include=["*.md", "*.pdf"], exclude=["drafts"]))
    assert set(docs) == {"a.pdf", "b.md"}


def test_symlink_outside_root_is_refused_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = _write(tmp_path / "secret.txt", "do not index")
    _write(root / "inside.txt")
    (root / "escape.txt").symlink_to(outside)
    (root / "escape_dir").symlink_to(tmp_path)
    for follow in (False, True):
        docs, failures = _split(LocalFolderConnector(root, follow_symlinks=follow))
        assert set(docs) == {"inside.txt"}
        assert {k: f.kind for k, f in failures.items()} == {
            "escape.txt": "outside_root",
            "escape_dir": "outside_root",
        }
        assert "outside the folder" in failures["escape.txt"].message


def test_symlink_inside_root_followed_only_when_asked_and_loops_end(tmp_path: Path) -> None:
    _write(tmp_path / "real" / "doc.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real" / "doc.txt")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")
    docs, failures = _split(LocalFolderConnector(tmp_path))
    assert set(docs) == {"real/doc.txt"} and failures == {}
    docs, failures = _split(LocalFolderConnector(tmp_path, follow_symlinks=True))
    assert set(docs) == {"link.txt", "real/doc.txt"} and failures == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file; permissions cannot be tested")
def test_unreadable_file_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    locked = _write(tmp_path / "locked.txt")
    locked.chmod(0)
    _write(tmp_path / "ok.txt")
    docs, failures = _split(LocalFolderConnector(tmp_path))
    assert set(docs) == {"ok.txt"}
    assert failures["locked.txt"].kind == "unreadable"


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    docs, failures = _split(LocalFolderConnector(tmp_path))
    assert docs == {}
    assert failures["dangling.txt"].kind == "unreadable"


def test_listing_is_lazy(tmp_path: Path) -> None:
    for i in range(50):
        _write(tmp_path / f"d{i}" / "f.txt")
    iterator = LocalFolderConnector(tmp_path).list_documents()
    first = next(iterator)
    assert isinstance(first, SourceDocument)
    # A generator: the rest of the tree has not been walked yet.
    assert iterator.gi_frame is not None  # type: ignore[attr-defined]


def test_missing_root_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="does not exist"):
        LocalFolderConnector(tmp_path / "nope")
    file = _write(tmp_path / "file.txt")
    with pytest.raises(ConnectorError, match="is not a folder"):
        LocalFolderConnector(file)


def test_special_files_and_undecodable_names_are_refused_with_their_reason(tmp_path: Path) -> None:
    _write(tmp_path / "ok.txt")
    os.mkfifo(tmp_path / "pipe.txt")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "wb") as latin1:
        latin1.write(b"menu")
    (tmp_path / b"bad\xffdir".decode("utf-8", "surrogateescape")).mkdir()
    _write(tmp_path / b"bad\xffdir".decode("utf-8", "surrogateescape") / "inner.txt")
    docs, failures = _split(LocalFolderConnector(tmp_path))
    assert set(docs) == {"ok.txt"}
    assert failures["pipe.txt"].kind == "not_a_file"
    assert "named pipe (FIFO), not a regular file" in failures["pipe.txt"].message
    assert failures["caf\\xe9.txt"].kind == "bad_name"
    # A folder with such a name is refused whole (its files are not walked).
    assert failures["bad\\xffdir"].kind == "bad_name"
    assert set(failures) == {"pipe.txt", "caf\\xe9.txt", "bad\\xffdir"}
    # Excluded special files are not reported at all.
    _, failures = _split(LocalFolderConnector(tmp_path, exclude=["*.txt"]))
    assert "pipe.txt" not in failures

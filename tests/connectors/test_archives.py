"""Reading compressed files and archives: keys, limits, refusals, and nothing written."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.connectors import (
    MIB,
    compressed,
    files_below,
    gzip_bomb,
    link_and_device_tar,
    nested_zip,
    traversal_zip,
    write_tar,
    write_zip,
    zip_bomb,
)
from tribrid.connectors.archives import (
    ArchiveLimitError,
    ArchiveLimits,
    Compression,
    MemberMissingError,
    archive_format,
    compression_of,
    decompress_file,
    extract_member,
    member_digest,
    member_key,
    scan_archive,
    split_member_key,
)
from tribrid.errors import ConfigError, ParseError
from tribrid.ingestion.base import FailureKind

LIMITS = ArchiveLimits()


def test_names_say_what_is_an_archive_and_what_is_compressed() -> None:
    assert archive_format("a.ZIP") == ("zip", None)
    assert archive_format("logs.tar.gz") == ("tar", "gzip")
    assert archive_format("logs.tgz") == ("tar", "gzip")
    assert archive_format("notes.gz") is None and archive_format(".zip") is None
    assert compression_of("changelog.gz") == Compression.GZIP
    assert compression_of("logs.tar.gz") is None  # an archive, not one compressed file
    assert compression_of("notes.md") is None


def test_member_keys_split_back_into_archive_and_chain() -> None:
    key = member_key("docs/a.zip", ("dir/b.tar.gz", "c.md"))
    assert key == "docs/a.zip!/dir/b.tar.gz!/c.md"
    assert split_member_key(key) == ("docs/a.zip", ("dir/b.tar.gz", "c.md"))
    assert split_member_key("news!/a.md") == ("news!/a.md", ())  # a folder called `news!`
    assert split_member_key("plain.md") == ("plain.md", ())


def test_every_failure_kind_used_here_is_a_failure_kind() -> None:
    from tribrid.connectors import archives

    kinds = {
        getattr(archives, name)
        for name in ("TOO_LARGE", "TOO_MANY_MEMBERS", "TOO_DEEP", "UNSAFE_MEMBER", "ENCRYPTED")
    }
    assert kinds <= {k.value for k in FailureKind}


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="TRIBRID_ARCHIVES"):
        ArchiveLimits(max_ratio=0.5)
    with pytest.raises(ConfigError, match="MAX_DEPTH"):
        ArchiveLimits(max_depth=-1)


def test_a_zip_lists_its_members_with_hashes_and_nested_ones_to_the_depth(tmp_path: Path) -> None:
    inner = tmp_path / "inner.zip"
    write_zip(inner, {"c.md": "# C"})
    archive = write_zip(
        tmp_path / "a.zip",
        {
            "a.md": "# A",
            "dir/b.txt": "b",
            ".hidden": "x",
            "__MACOSX/._a.md": "x",
            "in.zip": inner.read_bytes(),
        },
    )
    entries = scan_archive(archive, key="a.zip", limits=LIMITS)
    assert [(e.key, e.failure) for e in entries] == [
        ("a.zip!/a.md", None),
        ("a.zip!/dir/b.txt", None),
        ("a.zip!/in.zip!/c.md", None),
    ]
    assert entries[2].chain == ("in.zip", "c.md")
    assert member_digest(archive, ("in.zip", "c.md"), key=entries[2].key, limits=LIMITS) == (
        3,
        entries[2].digest,
    )
    flat = scan_archive(archive, key="a.zip", limits=ArchiveLimits(max_depth=1))
    assert [e.failure[0] for e in flat if e.failure] == ["too_deep"]


def test_a_member_is_written_under_a_name_chosen_here(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "t.tar.bz2", {"x/../../evil.md": "x", "x/ok.md": "# ok"}, mode="w:bz2"
    )
    out = tmp_path / "out"
    out.mkdir()
    path = extract_member(
        archive, ("x/ok.md",), key="t.tar.bz2!/x/ok.md", limits=LIMITS, folder=out
    )
    assert path == out / "member.md" and path.read_text() == "# ok"
    with pytest.raises(MemberMissingError):
        extract_member(archive, ("x/../../evil.md",), key="k", limits=LIMITS, folder=out)
    assert files_below(tmp_path) == {archive, out, path}


@pytest.mark.parametrize(
    ("build", "kind", "setting"),
    [
        (lambda p: zip_bomb(p / "bomb.zip"), "too_large", "TRIBRID_ARCHIVES__MAX_RATIO"),
        (lambda p: nested_zip(p / "deep.zip", 10), "too_deep", "TRIBRID_ARCHIVES__MAX_DEPTH"),
        (lambda p: traversal_zip(p / "up.zip"), "unsafe_member", "never written"),
        (lambda p: link_and_device_tar(p / "links.tar"), "unsafe_member", "never followed"),
    ],
    ids=["zip-bomb", "10-deep", "traversal", "links-and-devices"],
)
def test_hostile_archives_are_refused_fast_in_bounded_memory_writing_nothing(
    tmp_path: Path, build: Callable[[Path], Path], kind: str, setting: str
) -> None:
    archive = build(tmp_path)
    before = files_below(tmp_path)
    tracemalloc.start()
    started = time.monotonic()
    try:
        try:
            entries = scan_archive(archive, key=archive.name, limits=LIMITS)
        except ArchiveLimitError as error:
            failures = [(error.kind, str(error))]
        else:
            assert entries and all(e.failure is not None for e in entries)
            failures = [e.failure for e in entries if e.failure is not None]
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert any(k == kind and setting in message for k, message in failures), failures
    assert elapsed < 1.0, elapsed
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"
    assert files_below(tmp_path) == before
    assert not list(tmp_path.parent.rglob("*escape-probe*"))


def test_a_gzip_bomb_stops_at_the_ratio_limit_within_a_second(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "bomb.log.gz", gigabytes=4)
    out = tmp_path / "out"
    out.mkdir()
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ParseError, match="TRIBRID_ARCHIVES__MAX_RATIO") as caught:
            decompress_file(bomb, Compression.GZIP, key="bomb.log.gz", limits=LIMITS, folder=out)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.kind == "too_large"
    assert elapsed < 1.0 and peak < 8 * MIB, (elapsed, peak)
    assert sum(p.stat().st_size for p in out.iterdir()) < 16 * MIB  # what was written, bounded


def test_byte_and_member_limits_name_their_settings(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {f"{i}.txt": "x" * 4096 for i in range(20)})
    with pytest.raises(ArchiveLimitError, match="TRIBRID_ARCHIVES__MAX_MEMBERS"):
        scan_archive(archive, key="a.zip", limits=ArchiveLimits(max_members=10))
    with pytest.raises(ArchiveLimitError, match="TRIBRID_ARCHIVES__MAX_TOTAL_MB"):
        scan_archive(archive, key="a.zip", limits=ArchiveLimits(max_total_mb=0.05))
    entries = scan_archive(archive, key="a.zip", limits=ArchiveLimits(max_member_mb=0.001))
    assert {e.failure[0] for e in entries if e.failure} == {"too_large"}
    assert "TRIBRID_ARCHIVES__MAX_MEMBER_MB" in (entries[0].failure or ("", ""))[1]


def test_damaged_archives_and_members_fail_as_corrupt(tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(ParseError) as caught:
        scan_archive(broken, key="broken.zip", limits=LIMITS)
    assert caught.value.kind == "corrupt"
    bad_gzip = tmp_path / "bad.txt.gz"
    bad_gzip.write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate")
    with pytest.raises(ParseError) as caught:
        decompress_file(
            bad_gzip, Compression.GZIP, key="bad.txt.gz", limits=LIMITS, folder=tmp_path
        )
    assert caught.value.kind == "corrupt"


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_each_compression_decompresses_to_a_file_named_by_the_inner_type(
    tmp_path: Path, suffix: str
) -> None:
    source = compressed(tmp_path / f"notes.md{suffix}", "# Notes\n\nhello")
    out = tmp_path / "out"
    out.mkdir()
    codec = compression_of(source.name)
    assert codec is not None
    path = decompress_file(source, codec, key=source.name, limits=LIMITS, folder=out)
    assert path == out / "inner.md" and path.read_text() == "# Notes\n\nhello"

"""Builders of archives and compressed files for the tests, hostile ones included.

Every hostile file is generated small and fast (a bomb is a few MB at most that
declares or inflates to gigabytes); nothing big is committed.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

MIB = 1 << 20


def write_zip(path: Path, members: Mapping[str, bytes | str]) -> Path:
    """A deflated zip of ``members`` (name → content), in order."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def zip_bytes(members: Mapping[str, bytes | str], *, level: int | None = None) -> bytes:
    """The bytes of a deflated zip of ``members``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def write_tar(path: Path, members: Mapping[str, bytes | str], *, mode: str = "w:gz") -> Path:
    """A tar (gzip-compressed by default) of regular ``members``."""
    with tarfile.open(path, mode) as archive:
        for name, content in members.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def zip_bomb(path: Path, *, fanout: int = 4, leaf_mb: int = 16) -> Path:
    """A 42.zip-style bomb: zips of zips whose leaves are megabytes of zeros.

    About 1 MB on disk with the defaults; fully unpacked ``fanout² × leaf_mb`` MB, and the
    ratio of each leaf is about a thousand.
    """
    leaf = zip_bytes({f"zero{i}.bin": bytes(leaf_mb * MIB) for i in range(fanout)}, level=1)
    middle = {f"layer{i}.zip": leaf for i in range(fanout)}
    return write_zip(path, middle)


def gzip_bomb(path: Path, *, gigabytes: int = 4) -> Path:
    """A gzip file of a few MB that inflates to ``gigabytes`` GiB of zeros.

    One gzip member of 64 MiB of zeros, repeated: gzip readers read concatenated members
    as one stream.
    """
    member = gzip.compress(bytes(64 * MIB), compresslevel=9)
    with path.open("wb") as handle:
        for _ in range(gigabytes * 16):
            handle.write(member)
    return path


def traversal_zip(path: Path) -> Path:
    """A zip whose members try to leave the folder: ``../`` and absolute names."""
    return write_zip(
        path,
        {
            "../escape-probe.txt": "written outside the folder",
            "../../etc/escape-probe.txt": "further outside",
            "/tmp/absolute-escape-probe.txt": "an absolute path",
        },
    )


def link_and_device_tar(path: Path) -> Path:
    """A tar holding only a symlink to ``/etc/passwd``, a hard link and a device."""
    with tarfile.open(path, "w") as archive:
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
        hard = tarfile.TarInfo("shadow")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "/etc/shadow"
        archive.addfile(hard)
        device = tarfile.TarInfo("null")
        device.type = tarfile.CHRTYPE
        device.devmajor, device.devminor = 1, 3
        archive.addfile(device)
    return path


def nested_zip(path: Path, depth: int, *, leaf: str = "innermost.txt") -> Path:
    """A zip nested ``depth`` levels deep, with one text at the bottom."""
    content: bytes = b"the innermost text of a deeply nested archive"
    name = leaf
    for level in range(depth - 1):
        content = zip_bytes({name: content})
        name = f"level{depth - 1 - level}.zip"
    return write_zip(path, {name: content})


def compressed(path: Path, text: str) -> Path:
    """``path`` holding ``text`` compressed by the format its suffix names."""
    data = text.encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(data))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(data))
    elif path.suffix == ".zst":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        raise ValueError(f"no compression for {path.name}")
    return path


def hostile_set(folder: Path) -> dict[str, str]:
    """Write every hostile file into ``folder``; return their keys and the expected kinds."""
    zip_bomb(folder / "bomb.zip")
    gzip_bomb(folder / "bomb.txt.gz")
    traversal_zip(folder / "traversal.zip")
    link_and_device_tar(folder / "links.tar")
    nested_zip(folder / "deep.zip", 10)
    return {
        "bomb.zip": "too_large",
        "bomb.txt.gz": "too_large",
        "traversal.zip": "unsafe_member",
        "links.tar": "unsafe_member",
        "deep.zip": "too_deep",
    }


def files_below(folder: Path) -> set[Path]:
    """Every path below ``folder`` (files, links and folders)."""
    return set(folder.rglob("*"))
